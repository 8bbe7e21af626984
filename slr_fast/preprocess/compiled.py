"""Numba versions of the preprocessing steps, per sample, writing into caller-provided buffers.

They are called from the per-sample kernel of `slr_fast.engine.kernels` (run over a batch), so a sample costs no
Python at all. Each equals its twin in `reference.py` (exactly, or within 1e-6 where float64 sums run in another
order); intermediate maths is float64, stored as float32 at the same points. A point is present when all its
channels are finite; after `gather` a missing point is NaN in every channel, so later steps test channel 0 only.

Speed notes (measured, see benchmarks/test_engine.py):
- every step has a branch for 2-channel layouts that works on 1-D slices of a flattened array, one frame each
  (`_row`), with literal channel offsets: Numba indexes an n-d array through its runtime shape, which keeps LLVM
  from vectorizing the point loop; a 1-D slice indexed 2p, 2p+1 vectorizes (2x faster per row). Arrays are
  flattened once per sample: a reshape costs ~70 ns, a slice little. The generic branch serves layouts with z;
- sums are kept per point (independent accumulators the compiler can vectorize) instead of one running float64
  sum, whose add latency bounded the old loop;
- helpers called per row are `inline="always"`: a Numba call that passes arrays costs refcount updates.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from slr_fast.preprocess.reference import MIN_SCALE

NORM_SEQUENCE, NORM_PART, NORM_NONE = 0, 1, 2
RS_MEAN, RS_LINEAR, RS_PAD = 0, 1, 2
MASK_SEPARATE, MASK_CHANNEL = 0, 1
LEVEL_POINT, LEVEL_PART = 0, 1
NSUMS = 5  # rows of the per-point sums: x, y, z offsets from the reference point, x^2 + y^2 of them, count
_NAN = np.float32(np.nan)
_ZERO = np.float32(0.0)
# A 2-channel float32 point as one uint64 word, x and y its halves (both are tested, so byte order does not matter).
_EXP_LO = np.uint64(0x7F800000)  # exponent bits of the low half; all ones = inf or NaN
_EXP_HI = np.uint64(0x7F800000 << 32)
_NAN2 = np.uint64(0x7FC000007FC00000)  # (NaN, NaN)


@nb.njit(cache=True, inline="always")
def _flat(a):
    """A C-contiguous array as a 1-D view."""
    return a.reshape(a.size)


@nb.njit(cache=True, inline="always")
def _row(flat, i, n):
    """Row i (n values) of a flattened array (see the module docstring)."""
    return flat[i * n:(i + 1) * n]


@nb.njit(cache=True, inline="always")
def _ok(frames, f, p, three):
    """All channels of frames[f, p] finite (layouts have 2 or 3 channels; written out so it compiles branch-free)."""
    ok = math.isfinite(frames[f, p, 0]) & math.isfinite(frames[f, p, 1])
    if three:
        ok = ok & math.isfinite(frames[f, p, 2])
    return ok


# ---------------------------------------------------------------- frame selection + statistics, one sweep
@nb.njit(cache=True, inline="always")
def _accumulate(frames, ff, f, ref, sums, s0, s1, q, cnt):
    """Add frame f's present points to the per-point sums (offsets from ref); ff = frames flat, s0.. rows of sums."""
    P, C = frames.shape[1], frames.shape[2]
    r0, r1, r2 = ref[0], ref[1], ref[2]
    if C == 2:
        src = _row(ff, f, 2 * P)
        for p in range(P):
            v0, v1 = np.float64(src[2 * p]), np.float64(src[2 * p + 1])
            ok = math.isfinite(v0) & math.isfinite(v1)
            d0 = v0 - r0 if ok else 0.0
            d1 = v1 - r1 if ok else 0.0
            s0[p] += d0
            s1[p] += d1
            q[p] += d0 * d0 + d1 * d1
            cnt[p] += 1.0 if ok else 0.0
        return
    for p in range(P):
        v0, v1, v2 = np.float64(frames[f, p, 0]), np.float64(frames[f, p, 1]), np.float64(frames[f, p, 2])
        ok = math.isfinite(v0) & math.isfinite(v1) & math.isfinite(v2)
        d0 = v0 - r0 if ok else 0.0
        d1 = v1 - r1 if ok else 0.0
        sums[0, p] += d0
        sums[1, p] += d1
        sums[2, p] += v2 - r2 if ok else 0.0
        sums[3, p] += d0 * d0 + d1 * d1
        sums[4, p] += ok


@nb.njit(cache=True)
def _sweep(frames, start, n, drop_handless, hand_points, keep, sums, ref):
    P = frames.shape[1]
    three = frames.shape[2] == 3
    sums[:] = 0.0
    ref[:] = 0.0
    ff, s0, s1, q, cnt = _flat(frames), sums[0], sums[1], sums[3], sums[4]
    have_ref = False
    k = 0
    for i in range(n):
        f = start + i
        if drop_handless:
            has = False
            for h in hand_points:
                if _ok(frames, f, h, three):
                    has = True
                    break
            if not has:
                continue
        keep[k] = f
        k += 1
        if not have_ref:
            # Sums are taken relative to the first present point, which keeps the variance formula
            # E[d^2] - E[d]^2 free of cancellation (d is small next to the coordinates' magnitude).
            for p in range(P):
                if _ok(frames, f, p, three):
                    ref[0], ref[1] = frames[f, p, 0], frames[f, p, 1]
                    ref[2] = frames[f, p, 2] if three else 0.0
                    have_ref = True
                    break
            if not have_ref:
                continue  # no present point in this frame: it adds nothing
        _accumulate(frames, ff, f, ref, sums, s0, s1, q, cnt)
    return k


@nb.njit(cache=True)
def scan(frames, start, n, drop_handless, hand_points, keep, sums, ref):
    """One sweep over frames[start:start+n]: keep[:k] = frames to use (those showing a hand when drop_handless;
    all if none does) and per-point sums of their present points into sums (NSUMS, P), relative to ref (3,).

    Returns (k, no_hand). Equals reference.handed_frames followed by the sums of reference._stats.
    """
    k = _sweep(frames, start, n, drop_handless, hand_points, keep, sums, ref)
    if drop_handless and k == 0 and n > 0:
        # np.int64(0), not False: a literal argument would compile a second specialization of _sweep
        return _sweep(frames, start, n, np.int64(0), hand_points, keep, sums, ref), True
    return k, False


@nb.njit(cache=True)
def _group(sums, ref, lo, hi, C, centre):
    """Centre (into centre) and RMS x/y spread of the points lo..hi-1 from the per-point sums; empty -> (0, 1)."""
    cnt = s0 = s1 = s2 = q = 0.0
    for p in range(lo, hi):
        s0 += sums[0, p]
        s1 += sums[1, p]
        s2 += sums[2, p]
        q += sums[3, p]
        cnt += sums[4, p]
    centre[:] = 0.0
    if cnt == 0:
        return 1.0
    m0, m1 = s0 / cnt, s1 / cnt
    centre[0], centre[1] = ref[0] + m0, ref[1] + m1
    if C == 3:
        centre[2] = ref[2] + s2 / cnt
    var = q / cnt - (m0 * m0 + m1 * m1)
    scale = math.sqrt(max(var, 0.0) / 2.0)
    if not math.isfinite(scale) or scale < MIN_SCALE:
        scale = 1.0
    return scale


@nb.njit(cache=True)
def norm_params(sums, ref, mode, part_bounds, shift, inv, centre):
    """Fill shift (P, C), inv (P,) and the augmentation centre (C,) from scan's sums; see reference.norm_params."""
    P, C = shift.shape[0], shift.shape[1]
    shift[:] = 0.0
    inv[:] = 1.0
    if mode == NORM_NONE:
        _group(sums, ref, np.int64(0), P, C, centre)  # a typed 0: a literal would compile _group twice
        return
    ngroups = 1 if mode == NORM_SEQUENCE else part_bounds.shape[0] - 1
    for g in range(ngroups):
        lo = 0 if mode == NORM_SEQUENCE else part_bounds[g]
        hi = P if mode == NORM_SEQUENCE else part_bounds[g + 1]
        scale = _group(sums, ref, lo, hi, C, centre)
        for p in range(lo, hi):
            for c in range(C):
                shift[p, c] = centre[c]
            inv[p] = 1.0 / scale
    centre[:] = 0.0


# ------------------------------------------------------------------------------------------------ handedness
@nb.njit(cache=True)
def hand_motions(sums, part_bounds, sides):
    """reference.hand_motion of the left and of the right hand (parts sides[0], sides[1]), from scan's per-point
    sums: no second pass over the frames."""
    out = np.zeros(2)
    for h in range(2):
        for p in range(part_bounds[sides[h]], part_bounds[sides[h] + 1]):
            n = sums[4, p]
            if n > 0:
                out[h] += max(sums[3, p] - (sums[0, p] * sums[0, p] + sums[1, p] * sums[1, p]) / n, 0.0)
    return out[0], out[1]


@nb.njit(cache=True)
def mirror(w, m, centre, mirror_idx, tmp):
    """Left/right mirror of w[:m] in place: x -> 2 centre_x - x, every point to its mirror (mirror_idx); tmp is
    (P, C) float32 scratch. Used by dominant_hand and by the mirror augmentation."""
    P, C = w.shape[1], w.shape[2]
    cx2 = 2.0 * centre[0]
    for j in range(m):
        for p in range(P):
            q = mirror_idx[p]
            tmp[p, 0] = np.float32(cx2 - np.float64(w[j, q, 0]))
            tmp[p, 1] = w[j, q, 1]
            if C == 3:
                tmp[p, 2] = w[j, q, 2]
        for p in range(P):
            w[j, p, 0] = tmp[p, 0]
            w[j, p, 1] = tmp[p, 1]
            if C == 3:
                w[j, p, 2] = tmp[p, 2]


# ---------------------------------------------------------------------------------------------------- gather
@nb.njit(cache=True, inline="always")
def _frame_at(s, k):
    """(i0, i1, t): the kept-frame neighbours of fractional position s and the weight of i1."""
    i0 = min(max(int(math.floor(s)), 0), k - 1)
    return i0, min(i0 + 1, k - 1), s - i0


@nb.njit(cache=True, inline="always")
def _copy_row2(fa, ua, dst, dst64, sh, inv2, P):
    """dst = normalized fa, missing points NaN (2 channels; flat rows, ua/dst64 the same rows as uint64 points).

    Two loops that each vectorize: the values over the flat row, then presence per point as one 64-bit word
    (x, y) whose exponents must not be all ones (inf, NaN): 1.5x faster than testing interleaved floats."""
    for i in range(2 * P):
        dst[i] = np.float32((np.float64(fa[i]) - sh[i]) * inv2[i])
    for p in range(P):
        u = ua[p]
        dst64[p] = dst64[p] if ((u & _EXP_LO) != _EXP_LO) & ((u & _EXP_HI) != _EXP_HI) else _NAN2


@nb.njit(cache=True)
def _lerp_row2(fa, fb, t, dst, sh, inv, P):
    """dst = normalized fa..fb at weight t where a point is present in both, else the nearer frame's point."""
    near = t < 0.5
    for p in range(P):
        a0, a1 = np.float64(fa[2 * p]), np.float64(fa[2 * p + 1])
        b0, b1 = np.float64(fb[2 * p]), np.float64(fb[2 * p + 1])
        ok0 = math.isfinite(a0) & math.isfinite(a1)
        ok1 = math.isfinite(b0) & math.isfinite(b1)
        both = ok0 & ok1
        v0 = (1.0 - t) * a0 + t * b0 if both else (a0 if near else b0)
        v1 = (1.0 - t) * a1 + t * b1 if both else (a1 if near else b1)
        ok = both | (ok0 if near else ok1)
        sc = inv[p]
        a = np.float32((v0 - sh[2 * p]) * sc)
        b = np.float32((v1 - sh[2 * p + 1]) * sc)
        dst[2 * p] = a if ok else _NAN
        dst[2 * p + 1] = b if ok else _NAN


@nb.njit(cache=True)
def _gather2(frames, keep, k, pos, m, shift, inv, w):
    """gather for 2-channel layouts on flat rows; one function per kind of row (see collate.resample_out for why)."""
    P = frames.shape[1]
    n = 2 * P
    sh, ff, wf = _flat(shift), _flat(frames), _flat(w)
    inv2 = np.empty(n)  # inv per value, for loops over the flat row
    for p in range(P):
        inv2[2 * p] = inv2[2 * p + 1] = inv[p]
    f64, w64 = ff.view(np.uint64), wf.view(np.uint64)
    for j in range(m):
        i0, i1, t = _frame_at(pos[j], k)
        if t == 0.0:  # integer position (no temporal op, or a cropped frame): a normalized copy
            f = keep[i0]
            _copy_row2(_row(ff, f, n), _row(f64, f, P), _row(wf, j, n), _row(w64, j, P), sh, inv2, P)
        else:
            _lerp_row2(_row(ff, keep[i0], n), _row(ff, keep[i1], n), t, _row(wf, j, n), sh, inv, P)


@nb.njit(cache=True)
def gather(frames, keep, k, pos, m, shift, inv, w):
    """w[:m] = frames[keep[:k]] at fractional positions pos[:m], normalized; see reference.gather."""
    P, C = frames.shape[1], frames.shape[2]
    if C == 2:
        _gather2(frames, keep, k, pos, m, shift, inv, w)
        return
    for j in range(m):
        i0, i1, t = _frame_at(pos[j], k)
        f0, f1 = keep[i0], keep[i1]
        for p in range(P):
            ok0 = ok1 = True
            for c in range(C):
                ok0 &= math.isfinite(frames[f0, p, c])
                ok1 &= math.isfinite(frames[f1, p, c])
            both = ok0 & ok1 & (t != 0.0)
            f = f0 if t < 0.5 else f1
            ok = both | (ok0 if t < 0.5 else ok1)
            sc = inv[p]
            for c in range(C):
                v = (1.0 - t) * np.float64(frames[f0, p, c]) + t * np.float64(frames[f1, p, c]) if both else \
                    np.float64(frames[f, p, c])
                w[j, p, c] = np.float32((v - shift[p, c]) * sc) if ok else _NAN
