"""Numba versions of the augmentation ops, per sample, in place or into caller-provided buffers.

Called from the kernels of `slr_fast.engine.kernels`; each equals its NumPy twin in `reference.py` and uses the same
draws (see that module's docstring for the stream layout). No fastmath: NaN marks missing points and must survive.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from slr_fast.augment.ops import (
    DETECTOR_NOISE,
    DROPOUT,
    MIRROR,
    NOISE,
    PART_DISTORT,
    ROTATE,
    SCALE,
    SLOTS,
    TEMPORAL_CROP,
    TIME_WARP,
)
from slr_fast.augment.rng import normal, stream_key, uniform
from slr_fast.preprocess.compiled import mirror

_DEG = math.pi / 180.0
# Each op's parameter slots in `prm` (ops.SLOTS); reference.py reads the same names.
_CROP, _WARP, _SPEED = SLOTS["temporal_crop"], SLOTS["time_warp"], SLOTS["speed_change"]
_SCALE, _ROTATE, _DISTORT = SLOTS["scale"], SLOTS["rotate"], SLOTS["part_distort"]
_NOISE, _DROPOUT, _DETECTOR = SLOTS["noise"], SLOTS["dropout"], SLOTS["detector_noise"]


@nb.njit(cache=True, inline="always")
def interp_position(pos, L, s):
    """pos[:L] linearly interpolated at fractional index s."""
    i0 = min(int(math.floor(s)), L - 1)
    if i0 >= L - 1:
        return pos[L - 1]
    t = s - i0
    return (1.0 - t) * pos[i0] + t * pos[i0 + 1]


# ------------------------------------------------------------------------------------------------ temporal ops
@nb.njit(cache=True)
def temporal_crop(pos, L, out, prm, k0):
    """out[:M] = a random window of pos[:L]; returns M."""
    frac = prm[_CROP.min_frac] + uniform(k0, 1) * (1.0 - prm[_CROP.min_frac])
    M = min(max(1, int(math.floor(frac * L + 0.5))), L)
    start = min(int(math.floor(uniform(k0, 2) * (L - M + 1))), L - M)
    for j in range(M):
        out[j] = pos[start + j]
    return M


@nb.njit(cache=True)
def time_warp(pos, L, out, prm, k0):
    """out[:M] = pos[:L] replayed at a random constant speed; returns M."""
    if L < 2:
        out[0] = pos[0]
        return L
    lo, hi = math.log(prm[_WARP.min_speed]), math.log(prm[_WARP.max_speed])
    speed = math.exp(lo + uniform(k0, 1) * (hi - lo))
    M = max(1, int(math.floor((L - 1) / speed + 0.5)) + 1)
    if M == 1:
        out[0] = pos[0]
        return 1
    step = (L - 1) / (M - 1)
    for j in range(M):
        out[j] = interp_position(pos, L, j * step)
    return M


@nb.njit(cache=True)
def speed_change(pos, L, out, prm, k0):
    """out[:L] = pos[:L] under a random monotone piecewise-linear warp; returns L."""
    if L < 3:
        for j in range(L):
            out[j] = pos[j]
        return L
    K = min(int(prm[_SPEED.knots]), L - 1)
    val = np.empty(K + 1)
    val[0] = 0.0
    for k in range(K):
        val[k + 1] = val[k] + math.exp(prm[_SPEED.strength] * (2.0 * uniform(k0, k + 1) - 1.0))
    total = val[K]
    for k in range(K + 1):
        val[k] = val[k] / total * (L - 1)
    for j in range(L):
        u = j * K / (L - 1)
        seg = min(int(math.floor(u)), K - 1)
        t = u - seg
        out[j] = interp_position(pos, L, (1.0 - t) * val[seg] + t * val[seg + 1])
    return L


# ------------------------------------------------------------------------------------------------- spatial ops
@nb.njit(cache=True)
def _about(w, m, centre, mat):
    """w[:m] = centre + mat @ (v - centre) per point (z = 0 when C == 2); w C-contiguous, channels written out."""
    P = w.shape[1]
    c0, c1, c2 = centre[0], centre[1], centre[2]
    if w.shape[2] == 2:  # one flat loop over all points with literal channel offsets: it vectorizes (4x faster)
        a00, a01, a10, a11 = mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1]
        wf = w.reshape(w.size)
        for i in range(m * P):
            d0 = np.float64(wf[2 * i]) - c0
            d1 = np.float64(wf[2 * i + 1]) - c1
            wf[2 * i] = np.float32((a00 * d0 + a01 * d1) + c0)
            wf[2 * i + 1] = np.float32((a10 * d0 + a11 * d1) + c1)
        return
    for j in range(m):
        for p in range(P):
            d0 = np.float64(w[j, p, 0]) - c0
            d1 = np.float64(w[j, p, 1]) - c1
            d2 = np.float64(w[j, p, 2]) - c2
            w[j, p, 0] = np.float32((mat[0, 0] * d0 + mat[0, 1] * d1 + mat[0, 2] * d2) + c0)
            w[j, p, 1] = np.float32((mat[1, 0] * d0 + mat[1, 1] * d1 + mat[1, 2] * d2) + c1)
            w[j, p, 2] = np.float32((mat[2, 0] * d0 + mat[2, 1] * d1 + mat[2, 2] * d2) + c2)


@nb.njit(cache=True)
def scale(w, m, prm, k0, centre):
    """Random (an)isotropic scale about centre."""
    lo, hi = math.log(prm[_SCALE.min_scale]), math.log(prm[_SCALE.max_scale])
    s = math.exp(lo + uniform(k0, 1) * (hi - lo))
    r = math.exp(prm[_SCALE.aspect] * (2.0 * uniform(k0, 2) - 1.0))
    mat = np.zeros((3, 3))
    mat[0, 0], mat[1, 1], mat[2, 2] = s * r, s / r, s
    _about(w, m, centre, mat)


@nb.njit(cache=True)
def rotate(w, m, prm, k0, centre):
    """Random 3D rotation about centre, orthographic projection when there is no z."""
    roll = (2.0 * uniform(k0, 1) - 1.0) * prm[_ROTATE.roll_deg] * _DEG
    yaw = (2.0 * uniform(k0, 2) - 1.0) * prm[_ROTATE.yaw_deg] * _DEG
    pitch = (2.0 * uniform(k0, 3) - 1.0) * prm[_ROTATE.pitch_deg] * _DEG
    cr, sr, cy, sy = math.cos(roll), math.sin(roll), math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    mat = np.empty((3, 3))
    mat[0, 0], mat[0, 1], mat[0, 2] = cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp
    mat[1, 0], mat[1, 1], mat[1, 2] = sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp
    mat[2, 0], mat[2, 1], mat[2, 2] = -sy, cy * sp, cy * cp
    _about(w, m, centre, mat)


@nb.njit(cache=True)
def part_distort(w, m, prm, k0, part_bounds):
    """Per-part random similarity transform about each part's centroid."""
    for k in range(part_bounds.shape[0] - 1):
        lo, hi = part_bounds[k], part_bounds[k + 1]
        s = math.exp(prm[_DISTORT.scale] * (2.0 * uniform(k0, 1 + 4 * k) - 1.0))
        th = (2.0 * uniform(k0, 2 + 4 * k) - 1.0) * prm[_DISTORT.rotate_deg] * _DEG
        dx = (2.0 * uniform(k0, 3 + 4 * k) - 1.0) * prm[_DISTORT.shift]
        dy = (2.0 * uniform(k0, 4 + 4 * k) - 1.0) * prm[_DISTORT.shift]
        cx, cy, cnt = 0.0, 0.0, 0
        for j in range(m):
            for p in range(lo, hi):
                if math.isfinite(w[j, p, 0]):
                    cx += w[j, p, 0]
                    cy += w[j, p, 1]
                    cnt += 1
        if cnt == 0:
            continue
        cx, cy = cx / cnt, cy / cnt
        a, b = s * math.cos(th), s * math.sin(th)
        for j in range(m):
            for p in range(lo, hi):
                ddx, ddy = np.float64(w[j, p, 0]) - cx, np.float64(w[j, p, 1]) - cy
                w[j, p, 0] = np.float32(cx + (a * ddx - b * ddy) + dx)
                w[j, p, 1] = np.float32(cy + (b * ddx + a * ddy) + dy)


@nb.njit(cache=True)
def noise(w, m, prm, k1):
    """Gaussian noise of std `std` on every coordinate (NaN stays NaN); draw i is flat element i."""
    flat = w.reshape(w.size)  # (m, P, C) C-order: flat index (j * P + p) * C + c, as in the reference
    std = prm[_NOISE.std]
    for i in range(m * w.shape[1] * w.shape[2]):
        flat[i] = np.float32(np.float64(flat[i]) + std * normal(k1, i))


@nb.njit(cache=True)
def dropout(w, m, prm, k1, k2, part_ids, nparts):
    """Points missing with prob `rate`, whole parts of a frame with prob `part_rate`."""
    P, C = w.shape[1], w.shape[2]
    rate, part_rate = prm[_DROPOUT.rate], prm[_DROPOUT.part_rate]
    for j in range(m):
        for p in range(P):
            drop = uniform(k1, j * P + p) < rate
            if not drop and part_rate > 0.0:
                drop = uniform(k2, j * nparts + part_ids[p]) < part_rate
            if drop:
                for c in range(C):
                    w[j, p, c] = np.nan


@nb.njit(cache=True, inline="always")
def _start_run(left, u_start, u_len, rate, max_len):
    """New run length at a frame (see reference._runs); returns remaining frames including this one."""
    if left == 0 and u_start < rate:
        left = min(1 + int(math.floor(u_len * max_len)), max_len)
    return left


@nb.njit(cache=True)
def detector_noise(w, m, prm, seed, epoch, sid, opid, part_bounds, hand_parts, partner):
    """Correlated jitter, then hand-swap runs, then missed-hand bursts (see ops.DetectorNoise)."""
    P, C = w.shape[1], w.shape[2]
    sigma, rho = prm[_DETECTOR.jitter_std], prm[_DETECTOR.jitter_corr]
    miss_rate, miss_len = prm[_DETECTOR.miss_rate], int(prm[_DETECTOR.miss_max_len])
    swap_rate, swap_len = prm[_DETECTOR.swap_rate], int(prm[_DETECTOR.swap_max_len])
    k1 = stream_key(seed, epoch, sid, opid, 1)
    innov = math.sqrt(1.0 - rho * rho) * sigma
    e = np.zeros((P, C))
    for j in range(m):
        for p in range(P):
            base = (j * P + p) * C
            for c in range(C):
                z = normal(k1, base + c)
                e[p, c] = z * sigma if j == 0 else rho * e[p, c] + innov * z
                w[j, p, c] = np.float32(np.float64(w[j, p, c]) + e[p, c])
    k4 = stream_key(seed, epoch, sid, opid, 4)
    k5 = stream_key(seed, epoch, sid, opid, 5)
    left = 0
    for j in range(m):
        left = _start_run(left, uniform(k4, j), uniform(k5, j), swap_rate, swap_len)
        if left > 0:
            left -= 1
            for p in range(P):
                q = partner[p]
                if q > p:
                    for c in range(C):
                        w[j, p, c], w[j, q, c] = w[j, q, c], w[j, p, c]
    nh = hand_parts.shape[0]
    if nh == 0:
        return
    k2 = stream_key(seed, epoch, sid, opid, 2)
    k3 = stream_key(seed, epoch, sid, opid, 3)
    for hi in range(nh):
        h = hand_parts[hi]
        left = 0
        for j in range(m):
            left = _start_run(left, uniform(k2, j * nh + hi), uniform(k3, j * nh + hi), miss_rate, miss_len)
            if left > 0:
                left -= 1
                for p in range(part_bounds[h], part_bounds[h + 1]):
                    for c in range(C):
                        w[j, p, c] = np.nan


@nb.njit(cache=True)
def apply_temporal(code, pos, L, out, prm, k0):
    """Dispatch a temporal op by code (ops.py): out[:M] from pos[:L]; returns M."""
    if code == TEMPORAL_CROP:
        return temporal_crop(pos, L, out, prm, k0)
    if code == TIME_WARP:
        return time_warp(pos, L, out, prm, k0)
    return speed_change(pos, L, out, prm, k0)  # SPEED_CHANGE


@nb.njit(cache=True)
def apply_spatial(code, w, m, prm, seed, epoch, sid, opid, centre, tabs, tmp):
    """Dispatch a spatial op by code (ops.py) on w[:m] in place; tabs: the layout's LayoutTables (engine.py)."""
    k0 = stream_key(seed, epoch, sid, opid, 0)
    if code == SCALE:
        scale(w, m, prm, k0, centre)
    elif code == ROTATE:
        rotate(w, m, prm, k0, centre)
    elif code == MIRROR:
        mirror(w, m, centre, tabs.mirror, tmp)  # the preprocessing's mirror, which dominant_hand also uses
    elif code == PART_DISTORT:
        part_distort(w, m, prm, k0, tabs.part_bounds)
    elif code == NOISE:
        noise(w, m, prm, stream_key(seed, epoch, sid, opid, 1))
    elif code == DROPOUT:
        dropout(w, m, prm, stream_key(seed, epoch, sid, opid, 1), stream_key(seed, epoch, sid, opid, 2),
                tabs.part_ids, tabs.part_bounds.shape[0] - 1)
    elif code == DETECTOR_NOISE:
        detector_noise(w, m, prm, seed, epoch, sid, opid, tabs.part_bounds, tabs.hand_parts, tabs.partner)
