"""The engine's compiled kernels: one sample (`_sample`), and a whole batch on the calling thread (`_serial`) or on
Numba's threads (`_parallel`, a `prange` over samples). No Python runs per sample.

Per sample:

1. find the frames that show a hand (a point with any non-finite channel, NaN or inf, is missing);
2. drop hand-less frames before the temporal ops, so a crop or warp works on the frames that will be used and a
   crop can never cut away every hand (no hand anywhere: keep all frames, FLAG_NO_HAND);
3. normalization statistics (sequence / part / none) from those kept raw frames: timing augmentations change when
   things happen, not where the signer stands or how big they are;
4. temporal augmentations (crop, time warp, speed change) composed as one map of source positions; the frames are
   then fetched once at those positions (linear interpolation between neighbours) and normalized on the way; with
   `dominant_hand`, mirrored left/right when the other hand moves more over the kept raw frames (FLAG_MIRRORED);
5. spatial augmentations in their listed order, in normalized units about the normalized centre; detector-like
   noise thus acts at the raw frame rate, before resampling smooths it as it smooths real detector jitter;
6. resample to T (window mean / linear / pad) and NaN -> 0 with the presence mask, written straight into the
   caller's (B, T, P, C) buffers: this is the collate.

Steps 1-3 are one sweep over the raw frames (`preprocess.compiled.scan`: per-point sums of the kept frames), so the
input is read from memory once; steps 4-6 work on a per-sample buffer that stays in cache. Measured cost, default
87-point layout, T=64, GISLR-like lengths (benchmarks/test_engine.py): ~17 us per sample for preprocessing and
~22 us with the default augmentation on one thread.

Arguments travel as named tuples (Source, Prep, LayoutTables, Augment, Out), which Numba passes like their fields.
Without augmentation the kernels get `aug=None`: Numba prunes the `aug is not None` branches before typing, so the
preprocessing-only variant never compiles an augmentation op. Compile-time details that matter (a first compile is
tens of seconds on 2 cores): `_parallel` passes an int64 sample index (prange's own is unsigned, which would compile
`_sample` a second time), and helpers get typed, not literal, constants (a literal argument compiles another
specialization).
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from slr_fast.augment import compiled as augk
from slr_fast.augment.rng import stream_key, uniform
from slr_fast.layout import Layout
from slr_fast.preprocess import collate
from slr_fast.preprocess import compiled as pre
from slr_fast.preprocess.config import FLAG_EMPTY, FLAG_MIRRORED, FLAG_NO_HAND, FLAG_NO_POINTS


class Source(NamedTuple):
    """The batch's input: raw frames (F, P, C), offsets (N+1,), the sequences to process and their sample ids."""

    frames: np.ndarray
    offsets: np.ndarray
    indices: np.ndarray
    sample_ids: np.ndarray


class Prep(NamedTuple):
    """PreprocessConfig as the integer codes the kernels read."""

    T: int
    drop_handless: int
    normalize: int
    resample: int
    mask: int
    mask_level: int
    dominant: int  # 0 keep, 1 right, 2 left (DOMINANT_MODES)


class LayoutTables(NamedTuple):
    """The layout facts the kernels need, as int64 arrays."""

    part_bounds: np.ndarray  # (parts + 1,) first point of each part, then P
    part_ids: np.ndarray  # (P,) part of each point
    hand_points: np.ndarray  # the points of the hand parts
    hand_parts: np.ndarray  # the parts that are hands
    mirror: np.ndarray  # (P,) the point each point becomes under a left/right mirror
    partner: np.ndarray  # (P,) the other hand's point a hand swap exchanges it with, -1 outside the hands
    sides: np.ndarray  # (2,) the left hand's part and the right hand's, -1 where the layout has none


class Augment(NamedTuple):
    """An augmentation pipeline's kernel tables (AugmentPipeline.kernel_tables) and what keys its randomness."""

    ops: np.ndarray  # (K, 2) int64: op code, op id (list position + 1); temporal ops first
    params: np.ndarray  # (K, MAX_PARAMS) float64: p, then the op's parameters
    n_temporal: int
    growth: float  # bound of frames after the temporal ops / frames before
    seed: int
    epoch: int


class Out(NamedTuple):
    """The caller's buffers, row b per sample."""

    x: np.ndarray  # (B, T, P, C or C+1) float32
    mask: np.ndarray  # (B, T, P) float32
    length: np.ndarray  # (B,) int32
    flags: np.ndarray  # (B,) int32


@nb.njit(cache=True)
def _sample(b, src, prep, tabs, aug, out):
    """Sample b of the batch into row b of out (steps 1-6 of the module docstring); aug None: no augmentation."""
    frames = src.frames
    P, C = frames.shape[1], frames.shape[2]
    nparts = tabs.part_bounds.shape[0] - 1
    i = src.indices[b]
    start, n = src.offsets[i], src.offsets[i + 1] - src.offsets[i]
    flags = 0
    keep = np.empty(max(n, 1), np.int64)
    sums = np.empty((pre.NSUMS, P))
    ref = np.empty(3)
    k, no_hand = pre.scan(frames, start, n, prep.drop_handless, tabs.hand_points, keep, sums, ref)
    if no_hand:
        flags |= FLAG_NO_HAND
    length = 0
    x, mask = out.x[b], out.mask[b]
    if k > 0:
        shift = np.empty((P, C))
        inv = np.empty(P)
        centre = np.zeros(3)
        pre.norm_params(sums, ref, prep.normalize, tabs.part_bounds, shift, inv, centre)
        cap = k
        if aug is not None:
            cap = int(k * aug.growth) + 2 * aug.ops.shape[0] + 2
        pos = np.empty(cap)
        for j in range(k):
            pos[j] = j
        m = k
        if aug is not None:
            sid = src.sample_ids[b]
            nxt = np.empty(cap)
            for r in range(aug.n_temporal):
                k0 = stream_key(aug.seed, aug.epoch, sid, aug.ops[r, 1], 0)
                if uniform(k0, 0) < aug.params[r, 0]:
                    m = augk.apply_temporal(aug.ops[r, 0], pos, m, nxt, aug.params[r, 1:], k0)
                    pos, nxt = nxt, pos
        w = np.empty((m, P, C), np.float32)
        pre.gather(frames, keep, k, pos, m, shift, inv, w)
        if prep.dominant != 0 and tabs.sides[0] >= 0 and tabs.sides[1] >= 0:
            left, right = pre.hand_motions(sums, tabs.part_bounds, tabs.sides)
            if (left > right) if prep.dominant == 1 else (right > left):
                pre.mirror(w, m, centre, tabs.mirror, np.empty((P, C), np.float32))
                flags |= FLAG_MIRRORED
        if aug is not None:
            tmp = np.empty((P, C), np.float32)
            for r in range(aug.n_temporal, aug.ops.shape[0]):
                k0 = stream_key(aug.seed, aug.epoch, sid, aug.ops[r, 1], 0)
                if uniform(k0, 0) < aug.params[r, 0]:
                    augk.apply_spatial(aug.ops[r, 0], w, m, aug.params[r, 1:], aug.seed, aug.epoch, sid,
                                       aug.ops[r, 1], centre, tabs, tmp)
        length = collate.resample_out(w, m, prep.T, prep.resample, x, mask, np.empty((4, P)))
    else:
        flags |= FLAG_EMPTY
        x[:] = 0.0
        mask[:] = 0.0
    part_any = np.empty(nparts, np.bool_)
    collate.mask_options(x, mask, length, tabs.part_ids, nparts, prep.mask, prep.mask_level, part_any)
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
    out.length[b] = length
    out.flags[b] = flags


@nb.njit(cache=True)
def _serial(src, prep, tabs, aug, out):
    """The batch on the calling thread: no threading layer, safe from any thread."""
    for b in range(src.indices.shape[0]):
        _sample(b, src, prep, tabs, aug, out)


@nb.njit(cache=True, parallel=True)
def _parallel(src, prep, tabs, aug, out):
    """The batch on Numba's threads (numba.get_num_threads() of the calling thread)."""
    for b in nb.prange(src.indices.shape[0]):
        # An int64 sample index: prange's own index is unsigned, which would compile _sample a second time.
        _sample(np.int64(b), src, prep, tabs, aug, out)


def layout_tables(layout: Layout) -> LayoutTables:
    """The layout facts the kernels need (LayoutTables)."""
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
    sources = [p.source for p in layout.parts]
    sides = np.array([sources.index(h) if h in sources else -1 for h in ("left_hand", "right_hand")], np.int64)
    return LayoutTables(bounds, part_ids, hand_points, hand_parts, mirror, partner, sides)
