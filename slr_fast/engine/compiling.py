"""Numba compiles the engine's kernels the first time a machine runs them: tens of seconds on 2 cores, then a cached
load of ~0.3 s. This module says so when it happens, records how long it took, and compiles ahead (`warm_cache`,
run by `make setup`) so that no command has to wait.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Seconds a first compile took on this project's 2-core machine with a core to itself, each on an empty cache (README,
# "Preprocessing and augmentation"), by (kernel, augmented): the estimate the notice gives.
COMPILE_ESTIMATE_S = {("_serial", False): 25, ("_serial", True): 40, ("_parallel", False): 35, ("_parallel", True): 50}
ready: set[tuple[str, bool]] = set()  # (kernel, augmented) this process has compiled or loaded from the cache
compile_seconds: dict[str, float] = {}  # what was compiled in this process -> seconds it took


def first_call(kernel, args, what: str, estimate_s: int) -> None:
    """Call `kernel` for the first time in this process; if Numba has to compile it (no cache entry), say so on
    the `slr_fast.engine` logger (stderr when logging is not configured) before and after, and record the time."""
    from numba.core import event

    started = []

    class Notice(event.Listener):
        def on_start(self, ev):
            if ev.data["dispatcher"] is kernel and not started:
                started.append(time.perf_counter())
                log.warning(f"slr_fast: compiling the keypoint engine ({what}) with Numba: once per machine, about "
                            f"{estimate_s} s on 2 cores; later runs load it from Numba's cache")

        def on_end(self, ev):
            pass

    with event.install_listener("numba:compile", Notice()):
        kernel(*args)
    if started:
        compile_seconds[what] = seconds = time.perf_counter() - started[0]
        log.warning(f"slr_fast: keypoint engine ({what}) compiled in {seconds:.0f} s")


def _package() -> Path:
    return Path(__file__).resolve().parent.parent


def kernel_sources_digest() -> str:
    """SHA-256 of the code the kernels are compiled from: the engine, preprocess and augment packages."""
    h = hashlib.sha256()
    for folder in ("engine", "preprocess", "augment"):
        for path in sorted((_package() / folder).glob("*.py")):
            h.update(f"{folder}/{path.name}".encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def warm_cache(parallel: bool = False) -> dict[str, float]:
    """Compile the kernels the commands use into Numba's cache (`make setup` runs this): the one-thread kernels
    (predict, eval, training on a CPU), with `parallel` also the parallel ones (a CUDA machine's loaders). Returns
    the seconds each compile took (0: it was cached).

    Numba checks a cache entry against its own source file only, so after a change to a helper module (a pull, an
    edit) a caller's entry can be stale. When the kernels' sources differ from those of the last warm-up, the cache
    files in the three packages' __pycache__ folders are deleted first (a cache under NUMBA_CACHE_DIR is left alone).
    """
    from slr_fast.engine.processor import BatchProcessor
    from slr_fast.layout import DEFAULT_LAYOUT

    stamp = _package() / "engine" / "__pycache__" / "kernels-sources.sha256"
    digest = kernel_sources_digest()
    if not stamp.is_file() or stamp.read_text() != digest:
        for folder in ("engine", "preprocess", "augment"):
            cache = _package() / folder / "__pycache__"
            for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
                f.unlink(missing_ok=True)
    times = {}
    # Preprocessing first: once the augmenting kernel is loaded, processors without augmentation use it instead.
    for augment in (None, "default"):
        bp = BatchProcessor(DEFAULT_LAYOUT, None, augment)
        for threads in (1, 2) if parallel else (1,):
            compile_seconds.clear()
            bp.warmup(threads=threads)
            what = f"{'augment' if augment else 'preprocess'}, {'parallel' if threads > 1 else 'one thread'}"
            times[what] = sum(compile_seconds.values())
    stamp.parent.mkdir(exist_ok=True)
    stamp.write_text(digest)
    return times
