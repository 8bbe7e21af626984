"""Plain NumPy reference of every augmentation op, one sample at a time (the truth `compiled.py` is tested against).

Temporal ops map a float64 array of source-frame positions to a new one (the frames are fetched once, by
`slr_fast.preprocess.reference.gather`); spatial ops map a (m, P, C) float32 array with NaN = missing to a new one.
`key(stream)` gives the counter-based stream of this (seed, epoch, sample, op); draw 0 of stream 0 decides whether
the op applies, draws 1.. of stream 0 are its scalar parameters, other streams hold per-frame/point draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from slr_fast.augment.ops import SLOTS
from slr_fast.augment.rng import normal_np, uniform1_np, uniform_np

# Each op's parameter slots in `prm` (ops.SLOTS), the names compiled.py reads.
_CROP, _WARP, _SPEED = SLOTS["temporal_crop"], SLOTS["time_warp"], SLOTS["speed_change"]
_SCALE, _ROTATE, _DISTORT = SLOTS["scale"], SLOTS["rotate"], SLOTS["part_distort"]
_NOISE, _DROPOUT, _DETECTOR = SLOTS["noise"], SLOTS["dropout"], SLOTS["detector_noise"]


def interp_positions(pos: np.ndarray, s: np.ndarray) -> np.ndarray:
    """pos linearly interpolated at fractional indices s (s within 0..len(pos)-1)."""
    L = len(pos)
    i0 = np.minimum(np.floor(s).astype(np.int64), L - 1)
    i1 = np.minimum(i0 + 1, L - 1)
    t = s - i0
    return np.where(i0 >= L - 1, pos[L - 1], (1.0 - t) * pos[i0] + t * pos[i1])


def temporal_crop(pos, prm, key):
    L = len(pos)
    k0 = key(0)
    frac = prm[_CROP.min_frac] + uniform1_np(k0, 1) * (1.0 - prm[_CROP.min_frac])
    M = min(max(1, int(math.floor(frac * L + 0.5))), L)
    start = min(int(math.floor(uniform1_np(k0, 2) * (L - M + 1))), L - M)
    return pos[start:start + M].copy()


def time_warp(pos, prm, key):
    L = len(pos)
    if L < 2:
        return pos.copy()
    lo, hi = math.log(prm[_WARP.min_speed]), math.log(prm[_WARP.max_speed])
    speed = math.exp(lo + uniform1_np(key(0), 1) * (hi - lo))
    M = max(1, int(math.floor((L - 1) / speed + 0.5)) + 1)
    if M == 1:
        return pos[:1].copy()
    return interp_positions(pos, np.arange(M) * ((L - 1) / (M - 1)))


def speed_change(pos, prm, key):
    L = len(pos)
    if L < 3:
        return pos.copy()
    strength, K = prm[_SPEED.strength], min(int(prm[_SPEED.knots]), L - 1)
    w = np.exp(strength * (2.0 * uniform_np(key(0), np.arange(1, K + 1)) - 1.0))
    cum = np.concatenate([[0.0], np.cumsum(w)])
    val = cum / cum[K] * (L - 1)
    u = np.arange(L) * K / (L - 1)
    seg = np.minimum(np.floor(u).astype(np.int64), K - 1)
    t = u - seg
    return interp_positions(pos, (1.0 - t) * val[seg] + t * val[seg + 1])


def _about(w: np.ndarray, centre: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """centre + mat @ (v - centre) for every point, float64 in, float32 out (z taken as 0 when C == 2)."""
    C = w.shape[-1]
    d = w.astype(np.float64) - centre
    out = np.empty_like(d)
    for r in range(C):
        acc = mat[r, 0] * d[..., 0] + mat[r, 1] * d[..., 1]
        if C == 3:
            acc = acc + mat[r, 2] * d[..., 2]
        out[..., r] = acc + centre[r]
    with np.errstate(over="ignore"):  # as in the kernel, a float32 overflow becomes inf (a missing point later)
        return out.astype(np.float32)


def rotation(roll: float, yaw: float, pitch: float) -> np.ndarray:
    """Rz(roll) @ Ry(yaw) @ Rx(pitch), written out as the kernel computes it."""
    cr, sr, cy, sy = math.cos(roll), math.sin(roll), math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    return np.array([
        [cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp],
        [sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp],
        [-sy, cy * sp, cy * cp],
    ])


def scale(w, m, prm, key, centre, ctx):
    k0 = key(0)
    lo, hi = math.log(prm[_SCALE.min_scale]), math.log(prm[_SCALE.max_scale])
    s = math.exp(lo + uniform1_np(k0, 1) * (hi - lo))
    r = math.exp(prm[_SCALE.aspect] * (2.0 * uniform1_np(k0, 2) - 1.0))
    return _about(w, centre, np.diag([s * r, s / r, s]))


def rotate(w, m, prm, key, centre, ctx):
    k0 = key(0)
    deg = math.pi / 180.0
    roll, yaw, pitch = ((2.0 * uniform1_np(k0, i + 1) - 1.0) * prm[slot] * deg
                        for i, slot in enumerate((_ROTATE.roll_deg, _ROTATE.yaw_deg, _ROTATE.pitch_deg)))
    return _about(w, centre, rotation(roll, yaw, pitch))


def mirror(w, m, prm, key, centre, ctx):
    out = w[:, ctx.mirror].copy()
    out[..., 0] = (2.0 * centre[0] - out[..., 0].astype(np.float64)).astype(np.float32)
    return out


def part_distort(w, m, prm, key, centre, ctx):
    k0, out, bounds = key(0), w.copy(), ctx.part_bounds
    deg = math.pi / 180.0
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        u = uniform_np(k0, 1 + 4 * k + np.arange(4))
        s = math.exp(prm[_DISTORT.scale] * (2.0 * u[0] - 1.0))
        th = (2.0 * u[1] - 1.0) * prm[_DISTORT.rotate_deg] * deg
        dx, dy = (2.0 * u[2] - 1.0) * prm[_DISTORT.shift], (2.0 * u[3] - 1.0) * prm[_DISTORT.shift]
        part = w[:, lo:hi].astype(np.float64)
        ok = np.isfinite(part[..., 0])
        if not ok.any():
            continue
        cx, cy = part[..., 0][ok].mean(), part[..., 1][ok].mean()
        a, b = s * math.cos(th), s * math.sin(th)
        ddx, ddy = part[..., 0] - cx, part[..., 1] - cy
        out[:, lo:hi, 0] = (cx + (a * ddx - b * ddy) + dx).astype(np.float32)
        out[:, lo:hi, 1] = (cy + (b * ddx + a * ddy) + dy).astype(np.float32)
    return out


def noise(w, m, prm, key, centre, ctx):
    n = normal_np(key(1), np.arange(w.size)).reshape(w.shape)
    return (w.astype(np.float64) + prm[_NOISE.std] * n).astype(np.float32)


def dropout(w, m, prm, key, centre, ctx):
    L, P, _ = w.shape
    bounds = ctx.part_bounds
    nparts = len(bounds) - 1
    drop = uniform_np(key(1), np.arange(L * P)).reshape(L, P) < prm[_DROPOUT.rate]
    part_drop = uniform_np(key(2), np.arange(L * nparts)).reshape(L, nparts) < prm[_DROPOUT.part_rate]
    drop |= part_drop[:, ctx.part_ids]
    out = w.copy()
    out[drop] = np.nan
    return out


def _runs(u_start: np.ndarray, u_len: np.ndarray, rate: float, max_len: int) -> np.ndarray:
    """(L,) bool: frames inside an error run; a run starts where none is active and u_start < rate."""
    active, left = np.zeros(len(u_start), bool), 0
    for j in range(len(u_start)):
        if left == 0 and u_start[j] < rate:
            left = min(1 + int(math.floor(u_len[j] * max_len)), max_len)
        if left > 0:
            active[j] = True
            left -= 1
    return active


def detector_noise(w, m, prm, key, centre, ctx):
    L, P, C = w.shape
    sigma, rho = prm[_DETECTOR.jitter_std], prm[_DETECTOR.jitter_corr]
    miss_rate, miss_len = prm[_DETECTOR.miss_rate], int(prm[_DETECTOR.miss_max_len])
    swap_rate, swap_len = prm[_DETECTOR.swap_rate], int(prm[_DETECTOR.swap_max_len])
    out = w.astype(np.float64)
    z = normal_np(key(1), np.arange(L * P * C)).reshape(L, P, C)
    innov = math.sqrt(1.0 - rho * rho) * sigma
    e = np.zeros((P, C))
    for j in range(L):
        e = z[j] * sigma if j == 0 else rho * e + innov * z[j]
        out[j] = out[j] + e
    out = out.astype(np.float32)
    swap = _runs(uniform_np(key(4), np.arange(L)), uniform_np(key(5), np.arange(L)), swap_rate, swap_len)
    partner = ctx.partner
    a = np.flatnonzero(partner > np.arange(P))
    if a.size:
        b = partner[a]
        rows = np.flatnonzero(swap)[:, None]
        left, right = out[rows, a[None, :]], out[rows, b[None, :]]  # fancy indexing copies
        out[rows, a[None, :]], out[rows, b[None, :]] = right, left
    hands, bounds = ctx.hand_parts, ctx.part_bounds
    nh = len(hands)
    if nh:
        us = uniform_np(key(2), np.arange(L * nh)).reshape(L, nh)
        ul = uniform_np(key(3), np.arange(L * nh)).reshape(L, nh)
        for hi, h in enumerate(hands):
            lost = _runs(us[:, hi], ul[:, hi], miss_rate, miss_len)
            out[lost, bounds[h]:bounds[h + 1]] = np.nan
    return out


TEMPORAL_REFS: dict[str, Callable] = {"temporal_crop": temporal_crop, "time_warp": time_warp,
                                      "speed_change": speed_change}
SPATIAL_REFS: dict[str, Callable] = {"scale": scale, "rotate": rotate, "mirror": mirror, "part_distort": part_distort,
                                     "noise": noise, "dropout": dropout, "detector_noise": detector_noise}
