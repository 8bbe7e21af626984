"""Numba resampling to T frames and the collate: NaN -> 0, presence mask, written into the caller's batch rows.

Called from the kernels of `slr_fast.engine.kernels` after `compiled.gather` and the spatial augmentations; equals
`reference.resample` + `reference.finalize`. The speed notes of `compiled` hold here too (flat rows, one function
per resample mode).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from slr_fast.preprocess.compiled import _ZERO, LEVEL_PART, MASK_CHANNEL, RS_LINEAR, RS_MEAN, RS_PAD, _flat, _row


@nb.njit(cache=True, inline="always")
def _put_copy(w, wf, i, x, xf, mask, t):
    """x[t] = w[i] with missing points (any non-finite channel) 0, mask[t] = their presence (wf, xf: flat)."""
    P, C = w.shape[1], w.shape[2]
    if C == 2 and x.shape[2] == 2:
        src, dst, mk = _row(wf, i, 2 * P), _row(xf, t, 2 * P), mask[t]
        for p in range(P):
            v0, v1 = src[2 * p], src[2 * p + 1]
            ok = math.isfinite(v0) & math.isfinite(v1)
            dst[2 * p] = v0 if ok else _ZERO
            dst[2 * p + 1] = v1 if ok else _ZERO
            mk[p] = np.float32(ok)
        return
    for p in range(P):
        ok = True
        for c in range(C):
            ok &= math.isfinite(w[i, p, c])
        for c in range(C):
            x[t, p, c] = w[i, p, c] if ok else _ZERO
        mask[t, p] = np.float32(ok)


@nb.njit(cache=True, inline="always")
def _put_window(w, wf, lo, hi, x, xf, mask, t, s0, s1, s2, cnt):
    """x[t] = mean over frames lo..hi-1 of each point's present values (float64 sums), mask[t] = any present.

    s0, s1, s2, cnt: (P,) float64 scratch for the sums of x, y, z and the count of present frames. Frames outer,
    points inner: contiguous reads and an independent sum per point.
    """
    P, C = w.shape[1], w.shape[2]
    for p in range(P):  # an explicit loop: slice assignment costs ~200 ns in Numba
        s0[p] = s1[p] = s2[p] = cnt[p] = 0.0
    for j in range(lo, hi):
        if C == 2:
            src = _row(wf, j, 2 * P)
            for p in range(P):
                v0, v1 = np.float64(src[2 * p]), np.float64(src[2 * p + 1])
                ok = math.isfinite(v0)
                cnt[p] += 1.0 if ok else 0.0
                s0[p] += v0 if ok else 0.0
                s1[p] += v1 if ok else 0.0
            continue
        for p in range(P):
            ok = math.isfinite(w[j, p, 0])
            cnt[p] += 1.0 if ok else 0.0
            s0[p] += np.float64(w[j, p, 0]) if ok else 0.0
            s1[p] += np.float64(w[j, p, 1]) if ok else 0.0
            s2[p] += np.float64(w[j, p, 2]) if ok else 0.0
    mk = mask[t]
    if C == 2 and x.shape[2] == 2:
        dst = _row(xf, t, 2 * P)
        for p in range(P):
            n = cnt[p]
            v0, v1 = np.float32(s0[p] / n), np.float32(s1[p] / n)  # n == 0 gives NaN: error_model="numpy"
            ok = (n > 0) & math.isfinite(v0) & math.isfinite(v1)
            dst[2 * p] = v0 if ok else _ZERO
            dst[2 * p + 1] = v1 if ok else _ZERO
            mk[p] = np.float32(ok)
        return
    for p in range(P):
        n = cnt[p]
        v0 = np.float32(s0[p] / n) if n > 0 else _ZERO
        v1 = np.float32(s1[p] / n) if n > 0 else _ZERO
        v2 = np.float32(s2[p] / n) if n > 0 else _ZERO
        ok = (n > 0) & math.isfinite(v0) & math.isfinite(v1) & math.isfinite(v2)
        x[t, p, 0] = v0 if ok else _ZERO
        x[t, p, 1] = v1 if ok else _ZERO
        if C == 3:
            x[t, p, 2] = v2 if ok else _ZERO
        mk[p] = np.float32(ok)


@nb.njit(cache=True, inline="always")
def _put_lerp(w, i0, i1, u, x, mask, t):
    """x[t] = w linearly interpolated between frames i0 and i1 (weight u of i1) where a point is present in both,
    else the nearer frame's point; mask[t] = presence."""
    P, C = w.shape[1], w.shape[2]
    near = u < 0.5
    j = i0 if near else i1
    for p in range(P):
        ok0 = math.isfinite(w[i0, p, 0])
        ok1 = math.isfinite(w[i1, p, 0])
        both = ok0 & ok1
        v0 = np.float32((1.0 - u) * np.float64(w[i0, p, 0]) + u * np.float64(w[i1, p, 0])) if both else w[j, p, 0]
        v1 = np.float32((1.0 - u) * np.float64(w[i0, p, 1]) + u * np.float64(w[i1, p, 1])) if both else w[j, p, 1]
        v2 = _ZERO
        if C == 3:
            v2 = np.float32((1.0 - u) * np.float64(w[i0, p, 2]) + u * np.float64(w[i1, p, 2])) if both else \
                w[j, p, 2]
        ok = (both | (ok0 if near else ok1)) & math.isfinite(v0) & math.isfinite(v1) & math.isfinite(v2)
        x[t, p, 0] = v0 if ok else _ZERO
        x[t, p, 1] = v1 if ok else _ZERO
        if C == 3:
            x[t, p, 2] = v2 if ok else _ZERO
        mask[t, p] = np.float32(ok)


@nb.njit(cache=True)
def _resample_copy(w, m, T, mode, x, mask):
    """Output frames that copy one source frame each: pad (frame t) or stretch (frame floor(t*m/T), m <= T)."""
    wf, xf = _flat(w), _flat(x)
    if mode == RS_PAD:
        length = min(m, T)
        for t in range(length):
            _put_copy(w, wf, t, x, xf, mask, t)
        for t in range(length, T):
            for p in range(w.shape[1]):
                for c in range(w.shape[2]):
                    x[t, p, c] = _ZERO
                mask[t, p] = _ZERO
        return length
    for t in range(T):
        _put_copy(w, wf, (t * m) // T, x, xf, mask, t)
    return T


@nb.njit(cache=True, error_model="numpy")
def _resample_windows(w, m, T, x, mask, acc):
    """Output frame t = mean of source frames floor(t*m/T) .. floor((t+1)*m/T)-1 (m > T).

    error_model="numpy": a mean over no present value is 0/0 = NaN, masked out, instead of a Python-style
    zero-division check per point that keeps the loop from vectorizing.
    """
    wf, xf = _flat(w), _flat(x)
    s0, s1, s2, cnt = acc[0], acc[1], acc[2], acc[3]
    for t in range(T):
        _put_window(w, wf, (t * m) // T, ((t + 1) * m) // T, x, xf, mask, t, s0, s1, s2, cnt)
    return T


@nb.njit(cache=True)
def _resample_linear(w, m, T, x, mask):
    """Output frame t = source position t*(m-1)/(T-1), linearly interpolated."""
    wf, xf = _flat(w), _flat(x)
    for t in range(T):
        s = t * ((m - 1) / (T - 1)) if T > 1 else (m - 1) / 2.0
        i0 = min(int(math.floor(s)), m - 1)
        u = s - i0
        if u == 0.0:
            _put_copy(w, wf, i0, x, xf, mask, t)
        else:
            _put_lerp(w, i0, min(i0 + 1, m - 1), u, x, mask, t)
    return T


@nb.njit(cache=True)
def resample_out(w, m, T, mode, x, mask, acc):
    """Resample w[:m] to T frames straight into x (T, P, >=C) and mask (T, P); returns the valid frame count.

    Fuses reference.resample and the NaN -> 0 / mask part of reference.finalize: one pass over the output. One
    function per mode: with all modes in one function LLVM stopped vectorizing the row copy (measured 2.5x slower).
    acc is (4, P) float64 scratch for window sums.
    """
    if m == 0:
        x[:] = 0.0
        mask[:] = 0.0
        return 0
    if mode == RS_MEAN and m > T:
        return _resample_windows(w, m, T, x, mask, acc)
    if mode == RS_LINEAR:
        return _resample_linear(w, m, T, x, mask)
    return _resample_copy(w, m, T, mode, x, mask)


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
