"""Engine throughput: preprocess + augmentation + collate of B=256, T=64 batches against the NumPy per-sample way.

Data (generated here, GISLR-like): sequence lengths log-normal with median 30 frames, clipped to 10..300 (mean ~40),
~1/3 of frames without hands, 5% of points missing, default 87-point x/y layout. The kernel runs a whole epoch of
batches; the baseline is the NumPy per-sample reference of the same pipeline (`BatchProcessor.reference_process`: a
Python loop over samples, vectorized NumPy inside, then np.stack as the collate) on a subset of the same samples in
the same run; both are checked equal before timing. Rounds alternate (best of several) so both see the same load.
The same epoch is also timed on one Numba thread: the kernel's cost per sample without thread overheads, and the
figure to compare when other work shares the machine's cores.
Compile time is kept apart from throughput: warm-ups compile (or load) every kernel a case times before timing, and
their compile seconds are reported as `compile_s` (0 when Numba's cache had them). `test_compile_time` measures what
a first `predict` and a first CPU `train` compile on an empty cache (fresh NUMBA_CACHE_DIR, fresh processes) and the
cached load, and checks that predict compiles no augmentation op and no parallel kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numba
import numpy as np
import pytest

from slr_fast.engine import BatchProcessor, compile_seconds
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.preprocess import PreprocessConfig

B, T = 256, 64
HAND_POINTS = np.r_[DEFAULT_LAYOUT.part_slices()["left_hand"], DEFAULT_LAYOUT.part_slices()["right_hand"]]


def timed(request) -> bool:
    opt = request.config.getoption
    return bool(opt("benchmark_enable", default=False) or not opt("benchmark_disable", default=False))


def gislr_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frames, offsets) of n GISLR-like sequences (see module docstring)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(30.0), 0.8, n))), 10, 300).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    F = int(offsets[-1])
    frames = (rng.random((1, 87, 2)) + np.cumsum(rng.normal(0, 0.005, (F, 87, 2)), axis=0)).astype(np.float32)
    frames[rng.random((F, 87)) < 0.05] = np.nan
    frames[np.ix_(rng.random(F) < 1 / 3, HAND_POINTS)] = np.nan
    return frames, offsets


@pytest.fixture(scope="module")
def data(request):
    return gislr_like(8192 if timed(request) else 512)


def _best(fn, rounds: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (all threads) seconds of fn over rounds."""
    best, cpu = float("inf"), float("inf")
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return best, cpu


def _throughput(benchmark, request, data, augment, group: str):
    frames, offsets = data
    N = len(offsets) - 1
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=T), augment, seed=0)
    compile_seconds.clear()
    bp.warmup()  # the parallel kernel (this thread's Numba threads, batches of B)...
    bp.warmup(threads=1)  # ...and the one-thread kernel timed below: compiles stay outside the timed region
    compile_s = sum(compile_seconds.values())  # 0 when Numba's cache had them
    out = bp.alloc(B)
    order = np.random.default_rng(1).permutation(N)
    batches = [order[s:s + B] for s in range(0, N - B + 1, B)]

    def epoch(e=0):
        for idx in batches:
            bp.process(frames, offsets, idx, e, out)

    sub = order[: (256 if timed(request) else 32)]
    got = bp.process(frames, offsets, sub, 0, bp.alloc(len(sub)))
    want = bp.reference_process(frames, offsets, sub, 0)
    np.testing.assert_allclose(got["x"], want["x"], rtol=1e-6, atol=1e-6)  # same work on both sides
    assert np.isfinite(got["x"]).all()

    rounds = 5 if timed(request) else 1
    t_kernel = t_ref = c_kernel = c_ref = float("inf")
    for _ in range(rounds):  # alternate so both ways see the same machine load
        t, c = _best(epoch, 1)
        t_kernel, c_kernel = min(t_kernel, t), min(c_kernel, c)
        t, c = _best(lambda: bp.reference_process(frames, offsets, sub, 0), 1)
        t_ref, c_ref = min(t_ref, t), min(c_ref, c)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # the same epoch on one thread: the kernel's cost per sample without thread overheads
    try:
        t1, c1 = _best(epoch, 2 if timed(request) else 1)
    finally:
        numba.set_num_threads(threads)
    n_kernel = len(batches) * B
    sps = n_kernel / t_kernel
    ref_sps = len(sub) / t_ref
    benchmark.group = group
    benchmark.extra_info.update({
        "samples_per_s": round(sps), "numpy_samples_per_s": round(ref_sps), "speedup_vs_numpy": round(sps / ref_sps, 1),
        # CPU time summed over threads: what the work costs, less sensitive to other load on the machine.
        "cpu_us_per_sample": round(c_kernel / n_kernel * 1e6, 2),
        "one_thread_samples_per_s": round(n_kernel / t1), "one_thread_cpu_us_per_sample": round(c1 / n_kernel * 1e6, 2),
        "numpy_cpu_us_per_sample": round(c_ref / len(sub) * 1e6, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "batch": B, "T": T, "threads": threads, "augment": bp.augment.to_config(), "compile_s": round(compile_s, 1),
        "mean_frames": float(np.diff(offsets).mean()),
    })
    print(f"\n{group} ({len(bp.augment)} ops): {sps:,.0f} samples/s, NumPy per-sample {ref_sps:,.0f} samples/s, "
          f"speedup x{sps / ref_sps:.1f}, {threads} threads; CPU {c_kernel / n_kernel * 1e6:.1f} vs "
          f"{c_ref / len(sub) * 1e6:.0f} us/sample; one thread {n_kernel / t1:,.0f} samples/s, CPU "
          f"{c1 / n_kernel * 1e6:.1f} us/sample; load average {os.getloadavg()[0]:.1f}")
    benchmark.pedantic(epoch, rounds=3 if timed(request) else 1, iterations=1)


def test_preprocess_only(benchmark, request, data):
    _throughput(benchmark, request, data, None, "preprocess")


def test_default_augment(benchmark, request, data):
    """The target: preprocess + the default augmentation (the user's ops) + collate, T=64."""
    _throughput(benchmark, request, data, "default", "augment")


def test_full_augment(benchmark, request, data):
    """Every augmentation op in one pipeline (the wish-list), for scale."""
    _throughput(benchmark, request, data, "full", "augment")


_COMPILE = """
import json, sys, time
from numba.core import event
compiled = []
class Record(event.Listener):
    def on_start(self, ev):
        pass
    def on_end(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__module__ + "." + ev.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Record())
t0 = time.perf_counter()
from slr_fast.engine import BatchProcessor
from slr_fast.layout import DEFAULT_LAYOUT
t1 = time.perf_counter()
if sys.argv[1] == "predict":  # a few files, preprocessing only, on the calling thread
    BatchProcessor(DEFAULT_LAYOUT).warmup(batch_size=1)
else:  # a CPU training run: its loaders' one-thread kernels, the augmenting one and evaluation's
    BatchProcessor(DEFAULT_LAYOUT, None, "default").warmup(threads=1)
    BatchProcessor(DEFAULT_LAYOUT).warmup(threads=1)
print(json.dumps({"import_s": t1 - t0, "compile_s": time.perf_counter() - t1, "compiled": compiled}))
"""


@pytest.mark.slow
def test_compile_time(benchmark, tmp_path):
    """Compile time apart from throughput: what a first `predict` and a first CPU `train` compile, each in a fresh
    process on an empty Numba cache, and the same `train` again from the cache. Also checks that predict compiles
    no augmentation op and no parallel kernel, and that the cached run compiles nothing and rewrites no entry."""
    def once(what: str, cache: str) -> dict:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / cache))
        res = subprocess.run([sys.executable, "-c", _COMPILE, what], env=env, capture_output=True, text=True,
                             timeout=900)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])

    def cache_files(cache: str) -> dict:
        return {str(f): f.stat().st_mtime_ns for f in (tmp_path / cache).rglob("*") if f.suffix in (".nbi", ".nbc")}

    predict = once("predict", "predict")
    assert not [f for f in predict["compiled"] if ".augment." in f or f.endswith("._parallel")], predict["compiled"]
    # The suite (benchmarks disabled) checks the cache on predict's kernels; the CPU train's cold compile (~40 s on
    # 2 cores) is timed when benchmarks run.
    what = "predict" if benchmark.disabled else "train"
    cold = predict if what == "predict" else once("train", "train")
    after_cold = cache_files(what)
    cached = benchmark.pedantic(lambda: once(what, what), rounds=1, iterations=1)
    benchmark.group = "preprocess"
    benchmark.extra_info.update({"predict_compile_cold_s": round(predict["compile_s"], 2),
                                 f"{what}_compile_cold_s": round(cold["compile_s"], 2),
                                 f"{what}_compile_cached_s": round(cached["compile_s"], 2),
                                 "import_s": round(cached["import_s"], 2),
                                 "load_average_1min": round(os.getloadavg()[0], 1)})
    print(f"\ncompile: predict cold {predict['compile_s']:.1f} s, {what} cold {cold['compile_s']:.1f} s, "
          f"cached {cached['compile_s']:.2f} s; load average {os.getloadavg()[0]:.1f}")
    # The cache was used: the cold run wrote it, and the second process compiled nothing and rewrote no entry.
    assert after_cold, "the cold run wrote no Numba cache"
    assert cached["compiled"] == [] and cache_files(what) == after_cold
