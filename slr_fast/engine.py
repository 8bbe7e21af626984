"""BatchProcessor: preprocessing + augmentation of a whole batch in one compiled call.

Per sample, inside one Numba `prange` over the batch (no Python per sample):

1. find the frames that show a hand (a point with any non-finite channel, NaN or inf, is missing);
2. drop hand-less frames before the temporal ops, so a crop or warp works on the frames that will be used and a
   crop can never cut away every hand (no hand anywhere: keep all frames, FLAG_NO_HAND);
3. normalization statistics (sequence / part / none) from those kept raw frames: timing augmentations change when
   things happen, not where the signer stands or how big they are;
4. temporal augmentations (crop, time warp, speed change) composed as one map of source positions; the frames are
   then fetched once at those positions (linear interpolation between neighbours) and normalized on the way;
5. spatial augmentations in their listed order, in normalized units about the normalized centre; detector-like
   noise thus acts at the raw frame rate, before resampling smooths it as it smooths real detector jitter;
6. resample to T (window mean / linear / pad) and NaN -> 0 with the presence mask, written straight into the
   caller's (B, T, P, C) buffers: this is the collate.

Steps 1-3 are one sweep over the raw frames (`preprocess.compiled.scan`: per-point sums of the kept frames), so the
input is read from memory once; steps 4-6 work on a per-sample buffer that stays in cache. Measured cost, default
87-point layout, T=64, GISLR-like lengths (benchmarks/test_engine.py): ~17 us per sample for preprocessing and
~22 us with the default augmentation on one thread.

Randomness: counter-based (slr_fast.augment.rng), keyed by (seed, epoch, sample id, op position), so batches do
not depend on thread count or batch composition, and a resumed run reproduces them. Bad input: 0 frames give
x = 0, mask = 0, length 0 and FLAG_EMPTY; non-finite coordinates are missing points; no NaN/inf ever reaches `x`.
"""

from __future__ import annotations

import threading

import numba as nb
import numpy as np

from slr_fast.augment import compiled as aug
from slr_fast.augment import reference as aug_ref
from slr_fast.augment.pipeline import AugmentPipeline, load_pipeline
from slr_fast.augment.rng import stream_key, stream_key_np, uniform, uniform1_np
from slr_fast.layout import Layout
from slr_fast.preprocess import collate
from slr_fast.preprocess import compiled as pre
from slr_fast.preprocess import reference as pre_ref
from slr_fast.preprocess.config import FLAG_EMPTY, FLAG_NO_HAND, FLAG_NO_POINTS, PreprocessConfig


@nb.njit(cache=True)
def _process_one(b, frames, offsets, indices, sample_ids, seed, epoch, cfg, growth, ops, params, n_temporal,
                 part_bounds, part_ids, hand_points, hand_parts, mirror_idx, partner, out_x, out_mask, out_len,
                 out_flags):
    T, drop_handless, norm, rs, mask_mode, mask_level = cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
    P, C = frames.shape[1], frames.shape[2]
    nparts = part_bounds.shape[0] - 1
    i = indices[b]
    sid = sample_ids[b]
    start, n = offsets[i], offsets[i + 1] - offsets[i]
    flags = 0
    keep = np.empty(max(n, 1), np.int64)
    sums = np.empty((pre.NSUMS, P))
    ref = np.empty(3)
    k, no_hand = pre.scan(frames, start, n, drop_handless, hand_points, keep, sums, ref)
    if no_hand:
        flags |= FLAG_NO_HAND
    length = 0
    x, mask = out_x[b], out_mask[b]
    if k > 0:
        shift = np.empty((P, C))
        inv = np.empty(P)
        centre = np.zeros(3)
        pre.norm_params(sums, ref, norm, part_bounds, shift, inv, centre)
        cap = int(k * growth) + 2 * ops.shape[0] + 2
        pos = np.empty(cap)
        nxt = np.empty(cap)
        for j in range(k):
            pos[j] = j
        m = k
        for r in range(n_temporal):
            k0 = stream_key(seed, epoch, sid, ops[r, 1], 0)
            if uniform(k0, 0) < params[r, 0]:
                m = aug.apply_temporal(ops[r, 0], pos, m, nxt, params[r, 1:], k0)
                pos, nxt = nxt, pos
        w = np.empty((m, P, C), np.float32)
        pre.gather(frames, keep, k, pos, m, shift, inv, w)
        tmp = np.empty((P, C), np.float32)
        for r in range(n_temporal, ops.shape[0]):
            k0 = stream_key(seed, epoch, sid, ops[r, 1], 0)
            if uniform(k0, 0) < params[r, 0]:
                aug.apply_spatial(ops[r, 0], w, m, params[r, 1:], seed, epoch, sid, ops[r, 1], centre, part_bounds,
                                  part_ids, hand_parts, mirror_idx, partner, tmp)
        length = collate.resample_out(w, m, T, rs, x, mask, np.empty((4, P)))
    else:
        flags |= FLAG_EMPTY
        x[:] = 0.0
        mask[:] = 0.0
    part_any = np.empty(nparts, np.bool_)
    collate.mask_options(x, mask, length, part_ids, nparts, mask_mode, mask_level, part_any)
    if length > 0:
        anything = False
        for t in range(length):
            for p in range(P):
                if mask[t, p] > 0:
                    anything = True
                    break
            if anything:
                break
        if not anything:
            flags |= FLAG_NO_POINTS
    out_len[b] = length
    out_flags[b] = flags


@nb.njit(cache=True, parallel=True)
def _process_batch(frames, offsets, indices, sample_ids, seed, epoch, cfg, growth, ops, params, n_temporal,
                   part_bounds, part_ids, hand_points, hand_parts, mirror_idx, partner, out_x, out_mask, out_len,
                   out_flags):
    for b in nb.prange(indices.shape[0]):
        _process_one(b, frames, offsets, indices, sample_ids, seed, epoch, cfg, growth, ops, params, n_temporal,
                     part_bounds, part_ids, hand_points, hand_parts, mirror_idx, partner, out_x, out_mask, out_len,
                     out_flags)


def layout_tables(layout: Layout) -> dict[str, np.ndarray]:
    """The layout facts the kernels need, as int64 arrays."""
    sizes = np.asarray(layout.part_sizes, np.int64)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    hand_parts = np.asarray(layout.hand_parts(), np.int64)
    hand_points = (np.concatenate([np.arange(bounds[h], bounds[h + 1]) for h in hand_parts]).astype(np.int64)
                   if hand_parts.size else np.zeros(0, np.int64))
    mirror = layout.mirror_index().astype(np.int64)
    part_ids = layout.part_ids().astype(np.int64)
    # Hand-swap partners: a hand point whose mirror lies in the other hand (left i <-> right i).
    partner = np.full(layout.num_points, -1, np.int64)
    in_hand = np.isin(part_ids, hand_parts)
    for p in np.flatnonzero(in_hand):
        q = mirror[p]
        if q != p and in_hand[q] and part_ids[q] != part_ids[p]:
            partner[p] = q
    return {"part_bounds": bounds, "part_ids": part_ids, "hand_points": hand_points, "hand_parts": hand_parts,
            "mirror": mirror, "partner": partner}


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
        if self.preprocess.drop_handless and self.tables["hand_points"].size == 0:
            raise ValueError(f"drop_handless=True needs a layout with hand parts; layout {layout.name!r} has parts "
                             f"{list(layout.part_names)}")
        self._ops, self._params, self._n_temporal = self.augment.kernel_tables()
        self._growth = self.augment.growth()
        pc = self.preprocess
        norm, rs, mask_mode, mask_level = pc.codes()
        self._cfg = np.array([pc.T, int(pc.drop_handless), norm, rs, mask_mode, mask_level], np.int64)
        self._busy = threading.Lock()

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
        if not self._busy.acquire(blocking=False):
            # Numba's default threading layer aborts the process if two threads enter parallel code at once.
            raise RuntimeError("BatchProcessor.process is already running in another thread; call it from one "
                               "thread only (the loader's prefetch thread)")
        try:
            t = self.tables
            _process_batch(frames, offsets, indices, sample_ids, self.seed, int(epoch), self._cfg, self._growth,
                           self._ops, self._params, self._n_temporal, t["part_bounds"], t["part_ids"],
                           t["hand_points"], t["hand_parts"], t["mirror"], t["partner"], out["x"], out["mask"],
                           out["length"], flags)
        finally:
            self._busy.release()
        res = {k: out[k][:B] for k in ("x", "mask", "length")}
        res["flags"] = flags[:B]
        return res

    def warmup(self) -> float:
        """Compile (or load from Numba's cache) the batch kernel on a tiny input; returns the seconds it took."""
        import time

        t0 = time.perf_counter()
        P, C = self.layout.num_points, self.layout.num_channels
        frames = np.random.default_rng(0).random((6, P, C), dtype=np.float32)
        self.process(frames, np.array([0, 2, 6]), np.array([0, 1]), 0, self.alloc(2))
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
            keep, no_hand = pre_ref.handed_frames(seq, t["hand_points"])
            flags |= FLAG_NO_HAND if no_hand else 0
        else:
            keep = np.arange(len(seq))
        if len(keep) == 0:
            y, length, flags, w = np.full((T, P, C), np.nan, np.float32), 0, flags | FLAG_EMPTY, seq[:0]
        else:
            shift, inv, centre = pre_ref.norm_params(seq, keep, pc.normalize, t["part_bounds"])
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
            for r, op, k in applied:
                if r >= self._n_temporal:
                    w = aug_ref.SPATIAL_REFS[op.name](w, len(w), self._params[r, 1:], k, centre, t)
            if stop == "resample":
                return {"frames": w, "flags": flags}
            y, length = pre_ref.resample(w, T, pc.resample)
        x, mask = pre_ref.finalize(y, length, t["part_ids"], pc.mask, pc.mask_level)
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
