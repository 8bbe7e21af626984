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
def gather(frames, keep, k, pos, m, w):
    """w[:m] = frames[keep[:k]] at fractional positions pos[:m]; missing points NaN (see reference.gather)."""
    P, C = frames.shape[1], frames.shape[2]
    for j in range(m):
        s = pos[j]
        i0 = int(math.floor(s))
        i0 = min(max(i0, 0), k - 1)
        i1 = min(i0 + 1, k - 1)
        t = s - i0
        f0, f1 = keep[i0], keep[i1]
        for p in range(P):
            ok0 = point_ok(frames, f0, p)
            ok1 = point_ok(frames, f1, p)
            if ok0 and ok1:
                for c in range(C):
                    w[j, p, c] = np.float32((1.0 - t) * np.float64(frames[f0, p, c]) + t * np.float64(frames[f1, p, c]))
            elif (t < 0.5 and ok0) or (t >= 0.5 and ok1):
                f = f0 if t < 0.5 else f1
                for c in range(C):
                    w[j, p, c] = frames[f, p, c]
            else:
                for c in range(C):
                    w[j, p, c] = np.nan


@nb.njit(cache=True)
def _stats(w, m, lo, hi, centre):
    """Centre (into `centre`) and RMS x/y spread of present points of w[:m, lo:hi]; empty -> (0, 1)."""
    C = w.shape[2]
    cnt = 0
    for c in range(C):
        centre[c] = 0.0
    for j in range(m):
        for p in range(lo, hi):
            if math.isfinite(w[j, p, 0]):
                cnt += 1
                for c in range(C):
                    centre[c] += w[j, p, c]
    if cnt == 0:
        return 1.0
    for c in range(C):
        centre[c] /= cnt
    ss = 0.0
    for j in range(m):
        for p in range(lo, hi):
            if math.isfinite(w[j, p, 0]):
                for c in range(2):
                    d = np.float64(w[j, p, c]) - centre[c]
                    ss += d * d
    scale = math.sqrt(ss / (2 * cnt))
    if not math.isfinite(scale) or scale < MIN_SCALE:
        scale = 1.0
    return scale


@nb.njit(cache=True)
def normalize(w, m, mode, part_bounds, centre):
    """Normalize w[:m] in place; centre (C,) receives the point spatial augmentations act about."""
    C = w.shape[2]
    if mode == NORM_NONE:
        _stats(w, m, 0, w.shape[1], centre)
        return
    ngroups = 1 if mode == NORM_SEQUENCE else part_bounds.shape[0] - 1
    for g in range(ngroups):
        lo = 0 if mode == NORM_SEQUENCE else part_bounds[g]
        hi = w.shape[1] if mode == NORM_SEQUENCE else part_bounds[g + 1]
        scale = _stats(w, m, lo, hi, centre)
        for j in range(m):
            for p in range(lo, hi):
                for c in range(C):
                    w[j, p, c] = np.float32((np.float64(w[j, p, c]) - centre[c]) / scale)
    for c in range(C):
        centre[c] = 0.0


@nb.njit(cache=True)
def resample(w, m, T, mode, y, ident):
    """y[:T] (T, P, C) from w[:m] per `mode`, NaN where missing; returns the number of valid frames.

    `ident` is scratch of at least m float64 / int64 (frame positions for linear mode).
    """
    P, C = w.shape[1], w.shape[2]
    if m == 0:
        return 0
    if mode == RS_PAD:
        k = min(m, T)
        y[:k] = w[:k]
        return k
    if mode == RS_LINEAR:
        pos = np.empty(T)
        for t in range(T):
            pos[t] = t * ((m - 1) / (T - 1)) if T > 1 else (m - 1) / 2.0
        for i in range(m):
            ident[i] = i
        gather(w, ident, m, pos, T, y)
        return T
    if m <= T:
        for t in range(T):
            y[t] = w[(t * m) // T]
        return T
    for t in range(T):
        lo, hi = (t * m) // T, ((t + 1) * m) // T
        for p in range(P):
            cnt = 0
            for c in range(C):
                acc = 0.0
                for j in range(lo, hi):
                    if math.isfinite(w[j, p, 0]):
                        acc += w[j, p, c]
                        if c == 0:
                            cnt += 1
                y[t, p, c] = np.float32(acc / cnt) if cnt > 0 else np.nan
    return T


@nb.njit(cache=True)
def finalize(y, length, part_ids, nparts, mask_mode, mask_level, x, mask, part_any):
    """x (T, P, C[+1]) and mask (T, P) from y: non-finite -> 0 / mask 0; frames >= length all zero."""
    T, P, C = y.shape[0], y.shape[1], y.shape[2]
    for t in range(T):
        if mask_level == LEVEL_PART:
            for k in range(nparts):
                part_any[k] = False
        for p in range(P):
            ok = t < length
            if ok:
                for c in range(C):
                    if not math.isfinite(y[t, p, c]):
                        ok = False
                        break
            for c in range(C):
                x[t, p, c] = y[t, p, c] if ok else np.float32(0.0)
            mask[t, p] = 1.0 if ok else 0.0
            if ok and mask_level == LEVEL_PART:
                part_any[part_ids[p]] = True
        if mask_level == LEVEL_PART:
            for p in range(P):
                mask[t, p] = 1.0 if part_any[part_ids[p]] else 0.0
        if mask_mode == MASK_CHANNEL:
            for p in range(P):
                x[t, p, C] = mask[t, p]
