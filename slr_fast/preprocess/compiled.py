"""Numba versions of the preprocessing steps, per sample, writing into caller-provided buffers.

They are inlined into the one batch kernel of `slr_fast.engine` (a `prange` over samples), so a sample costs no
Python at all. Each equals its twin in `reference.py`; intermediate maths is float64, stored as float32 at the same
points. A point is present when all its channels are finite; after `gather` a missing point is NaN in every
channel, so later steps test channel 0 only.
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
_ZERO = np.float32(0.0)


@nb.njit(cache=True)
def point_ok(frames, f, p):
    """True when every channel of point p in frame f is finite."""
    for c in range(frames.shape[2]):
        if not math.isfinite(frames[f, p, c]):
            return False
    return True


@nb.njit(cache=True)
def handed_frames(frames, start, n, hand_points, keep):
    """Fill keep[:k] with the frame numbers (start-based) showing a hand; returns (k, no_hand_flag)."""
    k = 0
    for i in range(n):
        for h in hand_points:
            if point_ok(frames, start + i, h):
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


@nb.njit(cache=True)
def gather(frames, keep, k, pos, m, shift, inv, w):
    """w[:m] = frames[keep[:k]] at fractional positions pos[:m], normalized; see reference.gather."""
    P, C = frames.shape[1], frames.shape[2]
    for j in range(m):
        s = pos[j]
        i0 = min(max(int(math.floor(s)), 0), k - 1)
        i1 = min(i0 + 1, k - 1)
        t = s - i0
        f0, f1 = keep[i0], keep[i1]
        if t == 0.0:  # integer position (no temporal op, or a cropped frame): a plain copy
            for p in range(P):
                ok = True
                for c in range(C):
                    ok = ok and math.isfinite(frames[f0, p, c])
                if ok:
                    for c in range(C):
                        w[j, p, c] = np.float32((np.float64(frames[f0, p, c]) - shift[p, c]) * inv[p])
                else:
                    for c in range(C):
                        w[j, p, c] = np.nan
            continue
        for p in range(P):
            ok0 = True
            ok1 = True
            for c in range(C):
                ok0 = ok0 and math.isfinite(frames[f0, p, c])
                ok1 = ok1 and math.isfinite(frames[f1, p, c])
            if ok0 and ok1:
                for c in range(C):
                    v = (1.0 - t) * np.float64(frames[f0, p, c]) + t * np.float64(frames[f1, p, c])
                    w[j, p, c] = np.float32((v - shift[p, c]) * inv[p])
            elif (t < 0.5 and ok0) or (t >= 0.5 and ok1):
                f = f0 if t < 0.5 else f1
                for c in range(C):
                    w[j, p, c] = np.float32((np.float64(frames[f, p, c]) - shift[p, c]) * inv[p])
            else:
                for c in range(C):
                    w[j, p, c] = np.nan


@nb.njit(cache=True)
def _stats(frames, keep, k, lo, hi, centre):
    """Centre (into `centre`) and RMS x/y spread of present points of frames[keep[:k], lo:hi]; empty -> (0, 1)."""
    C = frames.shape[2]
    cnt = 0
    for c in range(C):
        centre[c] = 0.0
    for i in range(k):
        f = keep[i]
        for p in range(lo, hi):
            ok = True
            for c in range(C):
                ok = ok and math.isfinite(frames[f, p, c])
            if ok:
                cnt += 1
                for c in range(C):
                    centre[c] += frames[f, p, c]
    if cnt == 0:
        return 1.0
    for c in range(C):
        centre[c] /= cnt
    ss = 0.0
    for i in range(k):
        f = keep[i]
        for p in range(lo, hi):
            ok = True
            for c in range(C):
                ok = ok and math.isfinite(frames[f, p, c])
            if ok:
                for c in range(2):
                    d = np.float64(frames[f, p, c]) - centre[c]
                    ss += d * d
    scale = math.sqrt(ss / (2 * cnt))
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
def _emit(x, mask, t, p, C, v0, v1, v2, ok):
    """Write one output point: finite -> values and mask 1, else zeros and mask 0."""
    ok = ok and math.isfinite(v0) and math.isfinite(v1) and math.isfinite(v2)
    if ok:
        x[t, p, 0] = v0
        x[t, p, 1] = v1
        if C == 3:
            x[t, p, 2] = v2
        mask[t, p] = 1.0
    else:
        for c in range(C):
            x[t, p, c] = 0.0
        mask[t, p] = 0.0


@nb.njit(cache=True)
def resample_out(w, m, T, mode, x, mask):
    """Resample w[:m] to T frames straight into x (T, P, >=C) and mask (T, P); returns the valid frame count.

    Fuses reference.resample and the NaN -> 0 / mask part of reference.finalize: one pass over the output.
    """
    P, C = w.shape[1], w.shape[2]
    if m == 0:
        x[:] = 0.0
        mask[:] = 0.0
        return 0
    length = min(m, T) if mode == RS_PAD else T
    for t in range(T):
        if t >= length:
            for p in range(P):
                _emit(x, mask, t, p, C, _ZERO, _ZERO, _ZERO, False)
            continue
        if mode == RS_MEAN and m > T:
            lo, hi = (t * m) // T, ((t + 1) * m) // T
            for p in range(P):
                cnt = 0
                a0, a1, a2 = 0.0, 0.0, 0.0
                for j in range(lo, hi):
                    if math.isfinite(w[j, p, 0]):
                        cnt += 1
                        a0 += w[j, p, 0]
                        a1 += w[j, p, 1]
                        if C == 3:
                            a2 += w[j, p, 2]
                if cnt > 0:
                    _emit(x, mask, t, p, C, np.float32(a0 / cnt), np.float32(a1 / cnt), np.float32(a2 / cnt), True)
                else:
                    _emit(x, mask, t, p, C, _ZERO, _ZERO, _ZERO, False)
            continue
        if mode == RS_LINEAR:
            s = t * ((m - 1) / (T - 1)) if T > 1 else (m - 1) / 2.0
            i0 = min(int(math.floor(s)), m - 1)
            i1 = min(i0 + 1, m - 1)
            u = s - i0
        else:  # mean with m <= T (repeat frames) or pad: one source frame
            i0 = (t * m) // T if mode == RS_MEAN else t
            i1 = i0
            u = 0.0
        for p in range(P):
            ok0 = math.isfinite(w[i0, p, 0])
            ok1 = math.isfinite(w[i1, p, 0])
            if u == 0.0 or not (ok0 and ok1):  # a copy of the nearer frame (missing if it is)
                j, okj = (i0, ok0) if u < 0.5 else (i1, ok1)
                _emit(x, mask, t, p, C, w[j, p, 0], w[j, p, 1], w[j, p, 2] if C == 3 else _ZERO, okj)
            else:
                v0 = np.float32((1.0 - u) * np.float64(w[i0, p, 0]) + u * np.float64(w[i1, p, 0]))
                v1 = np.float32((1.0 - u) * np.float64(w[i0, p, 1]) + u * np.float64(w[i1, p, 1]))
                v2 = _ZERO
                if C == 3:
                    v2 = np.float32((1.0 - u) * np.float64(w[i0, p, 2]) + u * np.float64(w[i1, p, 2]))
                _emit(x, mask, t, p, C, v0, v1, v2, True)
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
