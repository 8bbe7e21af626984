"""BatchProcessor: preprocessing + augmentation of a whole batch of raw sequences in one compiled call (the kernels
and what they do per sample: kernels.py).

Which kernel runs: a batch of PARALLEL_MIN_BATCH samples or more, called from a thread with more than one Numba
thread (numba.set_num_threads is per thread), runs on `_parallel`; anything else on `_serial`, on the calling thread.
A process compiles (or loads from Numba's cache) only the variants it calls: `predict` the one-thread preprocessing
kernel; training on a CPU the one-thread kernels (the loader's thread has one Numba thread there, see
slr_fast.loader.LoaderConfig.engine_threads). Inputs are passed as read-only views, so writable and read-only arrays
(a store's index is read-only) share one compiled signature.

Randomness: counter-based (slr_fast.augment.rng), keyed by (seed, epoch, sample id, op position), so batches do
not depend on thread count, kernel or batch composition, and a resumed run reproduces them. Bad input: 0 frames give
x = 0, mask = 0, length 0 and FLAG_EMPTY; non-finite coordinates are missing points; no NaN/inf ever reaches `x`.
"""

from __future__ import annotations

import contextlib
import threading
import time

import numba as nb
import numpy as np

from slr_fast.augment import reference as aug_ref
from slr_fast.augment.pipeline import AugmentPipeline, load_pipeline
from slr_fast.augment.rng import stream_key_np, uniform1_np
from slr_fast.engine import compiling
from slr_fast.engine.kernels import Augment, Out, Prep, Source, _parallel, _serial, layout_tables
from slr_fast.errors import UserInputError
from slr_fast.layout import Layout
from slr_fast.preprocess import reference as pre_ref
from slr_fast.preprocess.config import FLAG_EMPTY, FLAG_MIRRORED, FLAG_NO_HAND, FLAG_NO_POINTS, PreprocessConfig

# Batches smaller than this run on the calling thread: threads save little on a few samples (~20 us each), and
# `predict` on a handful of files then never compiles the parallel kernel.
PARALLEL_MIN_BATCH = 64
# Held around every call of the parallel kernel: Numba's workqueue threading layer (the fallback where neither TBB
# nor OpenMP is available) aborts the process when two threads enter parallel code at once. Serial calls need no
# lock. Re-entrant, so code that holds it (slr_fast.loader.PROCESS_LOCK is this lock) can still call `process`.
PARALLEL_LOCK = threading.RLock()


def _readonly(a: np.ndarray) -> np.ndarray:
    if not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def _parallel_for(batch_size: int, threads: int | None = None) -> bool:
    """Whether a batch of `batch_size` runs on the parallel kernel, with `threads` Numba threads (None: the calling
    thread's numba.get_num_threads())."""
    return batch_size >= PARALLEL_MIN_BATCH and (nb.get_num_threads() if threads is None else threads) > 1


class BatchProcessor:
    """Preprocess + augment a batch of raw sequences into fixed (B, T, P, C) buffers (see module docstring)."""

    def __init__(self, layout: Layout, preprocess: PreprocessConfig | None = None,
                 augment: AugmentPipeline | list | str | None = None, seed: int = 0):
        self.layout = layout
        self.preprocess = preprocess if preprocess is not None else PreprocessConfig()
        self.augment = load_pipeline(augment)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ValueError(f"BatchProcessor seed must be an integer in [0, 2^63), got {seed!r}")
        self.seed = int(seed)
        self.tables = layout_tables(layout)
        if self.preprocess.drop_handless and self.tables.hand_points.size == 0:
            raise UserInputError(f"drop_handless=True needs a layout with hand parts; layout {layout.name!r} has parts "
                             f"{list(layout.part_names)}")
        if self.preprocess.dominant_hand != "keep" and (self.tables.sides < 0).any():
            raise UserInputError(f"dominant_hand={self.preprocess.dominant_hand!r} needs a layout with both hands; "
                                 f"layout {layout.name!r} has parts {list(layout.part_names)}")
        self._ops, self._params, self._n_temporal = self.augment.kernel_tables()
        self._growth = self.augment.growth()
        pc = self.preprocess
        self._prep = Prep(pc.T, int(pc.drop_handless), *pc.codes())

    @property
    def out_channels(self) -> int:
        """Channels of out["x"]: the layout's, plus one when the mask is also a channel."""
        return self.layout.num_channels + (1 if self.preprocess.mask == "channel" else 0)

    def alloc(self, B: int) -> dict[str, np.ndarray]:
        """Output buffers for up to B samples: x, mask, length (the contract) and flags (FLAG_* bits)."""
        T, P = self.preprocess.T, self.layout.num_points
        return {"x": np.zeros((B, T, P, self.out_channels), np.float32), "mask": np.zeros((B, T, P), np.float32),
                "length": np.zeros(B, np.int32), "flags": np.zeros(B, np.int32)}

    def _check(self, frames, offsets, indices, sample_ids, out):
        P, C = self.layout.num_points, self.layout.num_channels
        if frames.ndim != 3 or frames.shape[1:] != (P, C):
            raise ValueError(f"frames must be (F, {P}, {C}) for layout {self.layout.name!r}, got {frames.shape}")
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] < 0 or offsets[-1] > len(frames) or \
                np.any(np.diff(offsets) < 0):
            raise ValueError(f"offsets must be non-decreasing within 0..{len(frames)} (frames rows), "
                             f"got {len(offsets)} offsets from {offsets[:1]} to {offsets[-1:]}")
        B = len(indices)
        bad = indices[(indices < 0) | (indices >= len(offsets) - 1)]
        if bad.size:
            raise IndexError(f"sequence indices {bad[:5].tolist()} outside 0..{len(offsets) - 2}")
        if len(sample_ids) != B or (B and sample_ids.min() < 0):
            raise ValueError(f"sample_ids must be {B} non-negative integers, got {sample_ids[:5]}...")
        want = {"x": (self.preprocess.T, P, self.out_channels), "mask": (self.preprocess.T, P), "length": (),
                "flags": ()}
        dtypes = {"x": np.float32, "mask": np.float32, "length": np.int32, "flags": np.int32}
        for key, shape in want.items():
            if key == "flags" and key not in out:
                continue
            buf = out.get(key)
            if buf is None or buf.shape[1:] != shape or buf.shape[0] < B or buf.dtype != dtypes[key] or \
                    not buf.flags.c_contiguous:
                got = None if buf is None else (buf.shape, buf.dtype)
                raise ValueError(f"out[{key!r}] must be C-contiguous {np.dtype(dtypes[key]).name} with shape "
                                 f"(>={B}, {', '.join(map(str, shape))}), got {got}; use BatchProcessor.alloc(B)")

    def process(self, frames: np.ndarray, offsets: np.ndarray, indices: np.ndarray, epoch: int,
                out: dict[str, np.ndarray], sample_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Fill out[...][:B] for sequences `indices` of (frames, offsets); returns those B-row views."""
        frames = np.ascontiguousarray(frames, dtype=np.float32)  # no copy when already float32 C-order
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        indices = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        sample_ids = indices if sample_ids is None else np.ascontiguousarray(sample_ids, dtype=np.int64).reshape(-1)
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self._check(frames, offsets, indices, sample_ids, out)
        B = len(indices)
        flags = out["flags"] if "flags" in out else np.zeros(B, np.int32)
        src = Source(_readonly(frames), _readonly(offsets), _readonly(indices), _readonly(sample_ids))
        self._run(src, int(epoch), Out(out["x"], out["mask"], out["length"], flags), _parallel_for(B))
        res = {k: out[k][:B] for k in ("x", "mask", "length")}
        res["flags"] = flags[:B]
        return res

    def _run(self, src: Source, epoch: int, out: Out, parallel: bool) -> None:
        kernel = _parallel if parallel else _serial
        # Without augmentation the augmenting kernel (given no ops) makes the same batch, so a process that already
        # has it uses it rather than compiling the preprocessing-only one as well (a training run's eval loaders).
        key = (kernel.__name__, len(self.augment) > 0 or (kernel.__name__, True) in compiling.ready)
        aug = Augment(self._ops, self._params, self._n_temporal, self._growth, self.seed, epoch) if key[1] else None
        args = (src, self._prep, self.tables, aug, out)
        with PARALLEL_LOCK if parallel else contextlib.nullcontext():
            if key in compiling.ready:
                kernel(*args)
                return
            what = f"{'preprocessing + augmentation' if key[1] else 'preprocessing'}, " \
                   f"{'parallel' if parallel else 'one thread'}"
            compiling.first_call(kernel, args, what, compiling.COMPILE_ESTIMATE_S[key])
            compiling.ready.add(key)

    def warmup(self, batch_size: int = 256, threads: int | None = None) -> float:
        """Compile (or load from Numba's cache) the kernel `process` runs for batches of `batch_size` on a thread
        with `threads` Numba threads (None: this thread's); returns the seconds it took."""
        t0 = time.perf_counter()
        P, C = self.layout.num_points, self.layout.num_channels
        frames = np.random.default_rng(0).random((6, P, C), dtype=np.float32)
        ids = np.array([0, 1])
        out = self.alloc(2)
        src = Source(_readonly(frames), _readonly(np.array([0, 2, 6])), _readonly(ids), _readonly(ids))
        self._run(src, 0, Out(out["x"], out["mask"], out["length"], out["flags"]), _parallel_for(batch_size, threads))
        return time.perf_counter() - t0

    def config(self) -> dict:
        """Everything that determines the output, for saving with a training run."""
        return {"layout": self.layout.to_dict(), "preprocess": self.preprocess.to_dict(),
                "augment": self.augment.to_config(), "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> BatchProcessor:
        """Inverse of `config()`."""
        return cls(Layout.from_dict(config["layout"]), PreprocessConfig.from_dict(config["preprocess"]),
                   AugmentPipeline.from_config(config["augment"]), int(config["seed"]))

    def __repr__(self) -> str:
        return (f"BatchProcessor(layout={self.layout.name!r}, preprocess={self.preprocess}, seed={self.seed},\n"
                f"  augment={self.augment!r})")

    # ---- NumPy per-sample reference (tests, benchmarks' baseline) ---------------------------------------------
    def reference_sample(self, seq: np.ndarray, epoch: int, sample_id: int, stop: str = "") -> dict:
        """The same sample through the plain NumPy reference: x, mask, length, flags (stop="resample": before it)."""
        pc, t = self.preprocess, self.tables
        seq = np.asarray(seq, np.float32)
        flags = 0
        T, P, C = pc.T, self.layout.num_points, self.layout.num_channels
        if pc.drop_handless:
            keep, no_hand = pre_ref.handed_frames(seq, t.hand_points)
            flags |= FLAG_NO_HAND if no_hand else 0
        else:
            keep = np.arange(len(seq))
        if len(keep) == 0:
            y, length, flags, w = np.full((T, P, C), np.nan, np.float32), 0, flags | FLAG_EMPTY, seq[:0]
        else:
            shift, inv, centre = pre_ref.norm_params(seq, keep, pc.normalize, t.part_bounds)
            pos = np.arange(len(keep), dtype=np.float64)
            codes = self._ops
            key = lambda opid: lambda s: stream_key_np(self.seed, epoch, sample_id, opid, s)  # noqa: E731
            # Rows of the kernel tables: temporal ops first, each with its op id (list position + 1) and params.
            applied = [(r, self.augment.ops[codes[r, 1] - 1], key(int(codes[r, 1]))) for r in range(len(codes))]
            applied = [(r, op, k) for r, op, k in applied if uniform1_np(k(0), 0) < op.p]
            for r, op, k in applied:
                if r < self._n_temporal:
                    pos = aug_ref.TEMPORAL_REFS[op.name](pos, self._params[r, 1:], k)
            w = pre_ref.gather(seq, keep, pos, shift, inv)
            if pc.dominant_hand != "keep":
                (ll, lh), (rl, rh) = ((t.part_bounds[s], t.part_bounds[s + 1]) for s in t.sides)
                left, right = pre_ref.hand_motion(seq, keep, ll, lh), pre_ref.hand_motion(seq, keep, rl, rh)
                if (left > right) if pc.dominant_hand == "right" else (right > left):
                    w = aug_ref.mirror(w, len(w), None, None, centre, t)
                    flags |= FLAG_MIRRORED
            for r, op, k in applied:
                if r >= self._n_temporal:
                    w = aug_ref.SPATIAL_REFS[op.name](w, len(w), self._params[r, 1:], k, centre, t)
            if stop == "resample":
                return {"frames": w, "flags": flags}
            y, length = pre_ref.resample(w, T, pc.resample)
        x, mask = pre_ref.finalize(y, length, t.part_ids, pc.mask, pc.mask_level)
        if length > 0 and not mask[:length].any():
            flags |= FLAG_NO_POINTS
        return {"x": x, "mask": mask, "length": length, "flags": flags}

    def reference_process(self, frames: np.ndarray, offsets: np.ndarray, indices: np.ndarray, epoch: int,
                          sample_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`process` done one sample at a time in NumPy, returning freshly stacked arrays (the collate)."""
        ids = indices if sample_ids is None else sample_ids
        res = [self.reference_sample(frames[offsets[i]:offsets[i + 1]], epoch, int(s))
               for i, s in zip(indices, ids, strict=True)]
        return {"x": np.stack([r["x"] for r in res]), "mask": np.stack([r["mask"] for r in res]),
                "length": np.array([r["length"] for r in res], np.int32),
                "flags": np.array([r["flags"] for r in res], np.int32)}


def augment_preview(frames: np.ndarray, layout: Layout, pipeline: AugmentPipeline | list | str | None,
                    seed: int = 0, epoch: int = 0, sample_id: int = 0, preprocess: PreprocessConfig | None = None,
                    resampled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) augmentation of one raw sequence (n, P, C), NaN = missing, for `slr-fast show --augment`.

    Default: the frames just before resampling (hand-less frames dropped, normalized), so time warps show as a
    change of length; computed by the NumPy reference, which the tests hold equal to the kernel. resampled=True:
    the kernel's (length, P, C) output instead, missing points NaN.
    """
    pc = preprocess if preprocess is not None else PreprocessConfig()
    plain = BatchProcessor(layout, pc, None, seed)
    aug_bp = BatchProcessor(layout, pc, pipeline, seed)
    seq = np.asarray(frames, np.float32)
    if not resampled:
        return (plain.reference_sample(seq, epoch, sample_id, stop="resample")["frames"],
                aug_bp.reference_sample(seq, epoch, sample_id, stop="resample")["frames"])
    res = []
    for bp in (plain, aug_bp):
        out = bp.process(seq, np.array([0, len(seq)]), np.array([0]), epoch, bp.alloc(1), np.array([sample_id]))
        n = int(out["length"][0])
        x = out["x"][0, :n, :, :layout.num_channels].copy()
        x[out["mask"][0, :n] == 0] = np.nan
        res.append(x)
    return res[0], res[1]


def preview_figure(frames: np.ndarray, layout: Layout, pipeline: AugmentPipeline | list | str | None, **kwargs):
    """A matplotlib figure: rows "original" and "augmented" of augment_preview (kwargs passed on)."""
    from slr_fast.viz import draw_comparison

    before, after = augment_preview(frames, layout, pipeline, **kwargs)
    return draw_comparison({"original": before, "augmented": after}, layout)
