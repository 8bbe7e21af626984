"""Numba versions of the preprocessing steps, per sample, writing into caller-provided buffers.

They are called from the one batch kernel of `slr_fast.engine` (a `prange` over samples), so a sample costs no
Python at all. Each equals its twin in `reference.py`; intermediate maths is float64, stored as float32 at the same
points. A point is present when all its channels are finite; after `gather` a missing point is NaN in every
channel, so later steps test channel 0 only.

Helpers called per point are `inline="always"`: a Numba call that passes arrays costs refcount updates (~40 ns),
more than the work of one point.
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
_NAN = np.float32(np.nan)
_ZERO = np.float32(0.0)


@nb.njit(cache=True)
def handed_frames(frames, start, n, hand_points, keep):
    """Fill keep[:k] with the frame numbers (start-based) showing a hand; returns (k, no_hand_flag)."""
    k = 0
    three = frames.shape[2] == 3
    for i in range(n):
        for h in hand_points:
            if _ok(frames, start + i, h, three):
                keep[k] = start + i
                k += 1
                break
    if k == 0:
        for i in range(n):
            keep[i] = start + i
        return n, n > 0
    return k, False


@nb.njit(cache=True)
def all_frames(start, n, keep):
    """keep[:n] = start .. start+n-1 (drop_handless off)."""
    for i in range(n):
        keep[i] = start + i
    return n


@nb.njit(cache=True, inline="always")
def _ok(frames, f, p, three):
    """All channels of frames[f, p] finite (layouts have 2 or 3 channels; written out so it compiles branch-free)."""
    ok = math.isfinite(frames[f, p, 0]) & math.isfinite(frames[f, p, 1])
    if three:
        ok = ok & math.isfinite(frames[f, p, 2])
    return ok


@nb.njit(cache=True)
def gather(frames, keep, k, pos, m, shift, inv, w):
    """w[:m] = frames[keep[:k]] at fractional positions pos[:m], normalized; see reference.gather."""
    P, C = frames.shape[1], frames.shape[2]
    three = C == 3
    for j in range(m):
        s = pos[j]
        i0 = min(max(int(math.floor(s)), 0), k - 1)
        i1 = min(i0 + 1, k - 1)
        t = s - i0
        f0, f1 = keep[i0], keep[i1]
        if t == 0.0:  # integer position (no temporal op, or a cropped frame): a copy, branch-free per point
            for p in range(P):
                v0, v1 = np.float64(frames[f0, p, 0]), np.float64(frames[f0, p, 1])
                ok = math.isfinite(v0) & math.isfinite(v1)
                if three:
                    ok = ok & math.isfinite(frames[f0, p, 2])
                sc = inv[p]
                a = np.float32((v0 - shift[p, 0]) * sc)
                b = np.float32((v1 - shift[p, 1]) * sc)
                w[j, p, 0] = a if ok else _NAN
                w[j, p, 1] = b if ok else _NAN
                if three:
                    c = np.float32((np.float64(frames[f0, p, 2]) - shift[p, 2]) * sc)
                    w[j, p, 2] = c if ok else _NAN
            continue
        for p in range(P):
            ok0 = math.isfinite(frames[f0, p, 0]) and math.isfinite(frames[f0, p, 1])
            ok1 = math.isfinite(frames[f1, p, 0]) and math.isfinite(frames[f1, p, 1])
            if three:
                ok0 = ok0 and math.isfinite(frames[f0, p, 2])
                ok1 = ok1 and math.isfinite(frames[f1, p, 2])
            sc = inv[p]
            if t != 0.0 and ok0 and ok1:
                a = (1.0 - t) * np.float64(frames[f0, p, 0]) + t * np.float64(frames[f1, p, 0])
                b = (1.0 - t) * np.float64(frames[f0, p, 1]) + t * np.float64(frames[f1, p, 1])
                w[j, p, 0] = np.float32((a - shift[p, 0]) * sc)
                w[j, p, 1] = np.float32((b - shift[p, 1]) * sc)
                if three:
                    c = (1.0 - t) * np.float64(frames[f0, p, 2]) + t * np.float64(frames[f1, p, 2])
                    w[j, p, 2] = np.float32((c - shift[p, 2]) * sc)
                continue
            # integer position (a plain copy) or a point missing on one side: the nearer frame
            f = f0 if t < 0.5 else f1
            if (ok0 if t < 0.5 else ok1):
                w[j, p, 0] = np.float32((np.float64(frames[f, p, 0]) - shift[p, 0]) * sc)
                w[j, p, 1] = np.float32((np.float64(frames[f, p, 1]) - shift[p, 1]) * sc)
                if three:
                    w[j, p, 2] = np.float32((np.float64(frames[f, p, 2]) - shift[p, 2]) * sc)
            else:
                w[j, p, 0] = np.nan
                w[j, p, 1] = np.nan
                if three:
                    w[j, p, 2] = np.nan


@nb.njit(cache=True)
def _stats(frames, keep, k, lo, hi, centre):
    """Centre (into `centre`) and RMS x/y spread of present points of frames[keep[:k], lo:hi]; empty -> (0, 1).

    One pass: sums are taken relative to the first present point, which keeps the variance formula
    E[d^2] - E[d]^2 free of cancellation (d is small next to the coordinates' magnitude).
    """
    C = frames.shape[2]
    three = C == 3
    cnt = 0
    r0 = r1 = r2 = 0.0  # reference point
    s0 = s1 = s2 = q = 0.0
    # Reference point: the first present one (searched once, then the sums below run without branches).
    for i in range(k):
        f = keep[i]
        for p in range(lo, hi):
            if cnt == 0 and _ok(frames, f, p, three):
                r0, r1 = np.float64(frames[f, p, 0]), np.float64(frames[f, p, 1])
                r2 = np.float64(frames[f, p, 2]) if three else 0.0
                cnt = 1
        if cnt:
            break
    cnt = 0
    for i in range(k):
        f = keep[i]
        for p in range(lo, hi):
            v0, v1 = np.float64(frames[f, p, 0]), np.float64(frames[f, p, 1])
            ok = math.isfinite(v0) & math.isfinite(v1)
            if three:
                ok = ok & math.isfinite(frames[f, p, 2])
            d0 = v0 - r0 if ok else 0.0  # adding 0.0 is exact: the sums equal the branchy ones
            d1 = v1 - r1 if ok else 0.0
            cnt += ok
            s0 += d0
            s1 += d1
            q += d0 * d0 + d1 * d1
            if three:
                s2 += np.float64(frames[f, p, 2]) - r2 if ok else 0.0
    centre[:] = 0.0
    if cnt == 0:
        return 1.0
    m0, m1 = s0 / cnt, s1 / cnt
    centre[0], centre[1] = r0 + m0, r1 + m1
    if three:
        centre[2] = r2 + s2 / cnt
    var = q / cnt - (m0 * m0 + m1 * m1)
    scale = math.sqrt(max(var, 0.0) / 2.0)
    if not math.isfinite(scale) or scale < MIN_SCALE:
        scale = 1.0
    return scale


@nb.njit(cache=True)
def norm_params(frames, keep, k, mode, part_bounds, shift, inv, centre):
    """Fill shift (P, C), inv (P,) and the augmentation centre (C,) from frames[keep[:k]]; see reference."""
    P, C = frames.shape[1], frames.shape[2]
    shift[:] = 0.0
    inv[:] = 1.0
    if mode == NORM_NONE:
        _stats(frames, keep, k, 0, P, centre)
        return
    ngroups = 1 if mode == NORM_SEQUENCE else part_bounds.shape[0] - 1
    for g in range(ngroups):
        lo = 0 if mode == NORM_SEQUENCE else part_bounds[g]
        hi = P if mode == NORM_SEQUENCE else part_bounds[g + 1]
        scale = _stats(frames, keep, k, lo, hi, centre)
        for p in range(lo, hi):
            for c in range(C):
                shift[p, c] = centre[c]
            inv[p] = 1.0 / scale
    centre[:] = 0.0


@nb.njit(cache=True)
def resample_out(w, m, T, mode, x, mask):
    """Resample w[:m] to T frames straight into x (T, P, >=C) and mask (T, P); returns the valid frame count.

    Fuses reference.resample and the NaN -> 0 / mask part of reference.finalize: one pass over the output. Written
    out per channel without helper calls: this loop writes every output value and dominates the kernel's time.
    """
    P, C = w.shape[1], w.shape[2]
    three = C == 3
    if m == 0:
        x[:] = 0.0
        mask[:] = 0.0
        return 0
    length = min(m, T) if mode == RS_PAD else T
    prev = -1
    acc = np.empty((P, 4))  # window sums of x, y, z and the count of present frames
    for t in range(T):
        window = mode == RS_MEAN and m > T
        lo, hi = (t * m) // T, ((t + 1) * m) // T
        u = 0.0
        if mode == RS_LINEAR:
            s = t * ((m - 1) / (T - 1)) if T > 1 else (m - 1) / 2.0
            i0 = min(int(math.floor(s)), m - 1)
            u = s - i0
        elif mode == RS_MEAN:
            i0 = lo
        else:
            i0 = min(t, m - 1)
        i1 = min(i0 + 1, m - 1)
        if t > 0 and t < length and not window and u == 0.0 and i0 == prev:
            for p in range(P):  # stretching repeats a frame: copy the finished row
                for c in range(x.shape[2]):
                    x[t, p, c] = x[t - 1, p, c]
                mask[t, p] = mask[t - 1, p]
            continue
        prev = i0 if (not window and u == 0.0) else -1
        if window:  # mean over frames lo..hi-1: frames outer, points inner (contiguous), sums in float64
            acc[:] = 0.0
            for j in range(lo, hi):
                for p in range(P):
                    ok = math.isfinite(w[j, p, 0])
                    acc[p, 3] += ok
                    acc[p, 0] += w[j, p, 0] if ok else 0.0
                    acc[p, 1] += w[j, p, 1] if ok else 0.0
                    if three:
                        acc[p, 2] += w[j, p, 2] if ok else 0.0
            for p in range(P):
                cnt = acc[p, 3]
                v0 = np.float32(acc[p, 0] / cnt) if cnt > 0 else _ZERO
                v1 = np.float32(acc[p, 1] / cnt) if cnt > 0 else _ZERO
                v2 = np.float32(acc[p, 2] / cnt) if cnt > 0 else _ZERO
                ok = (cnt > 0) & math.isfinite(v0) & math.isfinite(v1) & math.isfinite(v2)
                x[t, p, 0] = v0 if ok else _ZERO
                x[t, p, 1] = v1 if ok else _ZERO
                if three:
                    x[t, p, 2] = v2 if ok else _ZERO
                mask[t, p] = np.float32(ok)
            continue
        if t < length and u == 0.0:  # a copy of frame i0, branch-free per point
            for p in range(P):
                v0, v1 = w[i0, p, 0], w[i0, p, 1]
                ok = math.isfinite(v0) & math.isfinite(v1)
                if three:
                    ok = ok & math.isfinite(w[i0, p, 2])
                    x[t, p, 2] = w[i0, p, 2] if ok else _ZERO
                x[t, p, 0] = v0 if ok else _ZERO
                x[t, p, 1] = v1 if ok else _ZERO
                mask[t, p] = np.float32(ok)
            continue
        for p in range(P):
            v0, v1, v2 = np.float32(0.0), np.float32(0.0), np.float32(0.0)
            if t >= length:
                ok = False
            else:
                ok0 = math.isfinite(w[i0, p, 0])
                ok1 = math.isfinite(w[i1, p, 0])
                if u != 0.0 and ok0 and ok1:
                    ok = True
                    v0 = np.float32((1.0 - u) * np.float64(w[i0, p, 0]) + u * np.float64(w[i1, p, 0]))
                    v1 = np.float32((1.0 - u) * np.float64(w[i0, p, 1]) + u * np.float64(w[i1, p, 1]))
                    if three:
                        v2 = np.float32((1.0 - u) * np.float64(w[i0, p, 2]) + u * np.float64(w[i1, p, 2]))
                else:  # a copy of the nearer frame (missing if it is)
                    j = i0 if u < 0.5 else i1
                    ok = ok0 if u < 0.5 else ok1
                    v0, v1 = w[j, p, 0], w[j, p, 1]
                    if three:
                        v2 = w[j, p, 2]
            ok = ok and math.isfinite(v0) and math.isfinite(v1) and math.isfinite(v2)
            x[t, p, 0] = v0 if ok else np.float32(0.0)
            x[t, p, 1] = v1 if ok else np.float32(0.0)
            if three:
                x[t, p, 2] = v2 if ok else np.float32(0.0)
            mask[t, p] = 1.0 if ok else 0.0
    return length


@nb.njit(cache=True)
def mask_options(x, mask, length, part_ids, nparts, mask_mode, mask_level, part_any):
    """Part-level mask (a part present in a frame marks all its points) and the mask as an extra x channel."""
    T, P = mask.shape[0], mask.shape[1]
    C = x.shape[2] - 1 if mask_mode == MASK_CHANNEL else x.shape[2]
    if mask_level == LEVEL_PART:
        for t in range(T):
            part_any[:] = False
            for p in range(P):
                if mask[t, p] > 0.0:
                    part_any[part_ids[p]] = True
            for p in range(P):
                mask[t, p] = 1.0 if part_any[part_ids[p]] else 0.0
    if mask_mode == MASK_CHANNEL:
        for t in range(T):
            for p in range(P):
                x[t, p, C] = mask[t, p]
