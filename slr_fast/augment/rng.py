"""Counter-based randomness: every draw is a pure function of (seed, epoch, sample id, op id, stream, draw number).

No generator state exists anywhere, so a batch comes out the same whatever the thread count or the batch
composition, and a run resumed at epoch e reproduces epoch e. The mixing function is splitmix64's finalizer
(Steele, Lea & Flood, "Fast splittable pseudorandom number generators", 2014): a bijection on 64-bit words with
good avalanche, cheap enough (two multiplies) to call once per coordinate.

Each function exists twice: a Numba version used inside compiled kernels and a NumPy version used by the per-sample
references; tests check that they agree bit for bit.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: the Weyl increment of splitmix64
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB

# Numba sees module globals as compile-time constants; typed uint64 so no arithmetic falls back to float.
_U_GOLDEN = np.uint64(_GOLDEN)
_U_M1 = np.uint64(_M1)
_U_M2 = np.uint64(_M2)
_U30, _U27, _U31, _U11, _U16, _U32, _U48 = (np.uint64(s) for s in (30, 27, 31, 11, 16, 32, 48))
_U_FFFF = np.uint64(0xFFFF)
_INV_2_53 = 1.0 / 9007199254740992.0
_INV_2_16 = 1.0 / 65536.0
_SQRT3 = 1.7320508075688772


# --------------------------------------------------------------------------------------------------- Numba side
@nb.njit(cache=True, inline="always")
def mix64(z):
    """splitmix64 finalizer on a uint64."""
    z = (z ^ (z >> _U30)) * _U_M1
    z = (z ^ (z >> _U27)) * _U_M2
    return z ^ (z >> _U31)


@nb.njit(cache=True, inline="always")
def stream_key(seed, epoch, sample, op, stream):
    """Key of one random stream: all five integers are non-negative."""
    k = mix64(np.uint64(seed) + _U_GOLDEN)
    k = mix64(k ^ (np.uint64(epoch) + _U_GOLDEN))
    k = mix64(k ^ (np.uint64(sample) + _U_GOLDEN))
    k = mix64(k ^ (np.uint64(op) + _U_GOLDEN))
    return mix64(k ^ (np.uint64(stream) + _U_GOLDEN))


@nb.njit(cache=True, inline="always")
def draw_u64(key, i):
    """The i-th 64-bit word of stream `key`."""
    return mix64(np.uint64(key) + (np.uint64(i) + np.uint64(1)) * _U_GOLDEN)


@nb.njit(cache=True, inline="always")
def uniform(key, i):
    """The i-th uniform float64 in [0, 1) of stream `key` (53 random bits)."""
    return np.float64(draw_u64(key, i) >> _U11) * _INV_2_53


@nb.njit(cache=True, inline="always")
def normal(key, i):
    """The i-th approximately standard-normal draw of stream `key`.

    Irwin-Hall with four 16-bit uniforms from one word: variance 1, tails cut at +-3.46 sigma. Exact Gaussians
    (Box-Muller: log, sqrt, sin) cost ~5x more per coordinate, and augmentation noise does not need the far tails.
    """
    u = draw_u64(key, i)
    s = (
        np.float64(u & _U_FFFF)
        + np.float64((u >> _U16) & _U_FFFF)
        + np.float64((u >> _U32) & _U_FFFF)
        + np.float64(u >> _U48)
    )
    return (s * _INV_2_16 - 2.0) * _SQRT3


# --------------------------------------------------------------------------------------------------- NumPy side
def _mix64_int(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def stream_key_np(seed: int, epoch: int, sample: int, op: int, stream: int) -> int:
    """Python-int twin of `stream_key`."""
    k = _mix64_int(int(seed) + _GOLDEN)
    for v in (epoch, sample, op, stream):
        k = _mix64_int(k ^ ((int(v) + _GOLDEN) & _MASK))
    return k


def _mix64_arr(z: np.ndarray) -> np.ndarray:
    # uint64 array arithmetic wraps modulo 2^64 without warnings (scalars would warn), as the Numba side does.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def draw_u64_np(key: int, idx) -> np.ndarray:
    """Vectorised `draw_u64` for an array of draw numbers."""
    i = np.asarray(idx, dtype=np.uint64)
    return _mix64_arr(np.uint64(key) + (i + np.uint64(1)) * np.uint64(_GOLDEN))


def uniform_np(key: int, idx) -> np.ndarray:
    """Vectorised `uniform`."""
    return (draw_u64_np(key, idx) >> np.uint64(11)).astype(np.float64) * _INV_2_53


def uniform1_np(key: int, i: int) -> float:
    """One uniform draw as a Python float."""
    return float(uniform_np(key, np.array([i]))[0])


def normal_np(key: int, idx) -> np.ndarray:
    """Vectorised `normal`."""
    u = draw_u64_np(key, idx)
    f = np.uint64(0xFFFF)
    s = (
        (u & f).astype(np.float64)
        + ((u >> np.uint64(16)) & f).astype(np.float64)
        + ((u >> np.uint64(32)) & f).astype(np.float64)
        + (u >> np.uint64(48)).astype(np.float64)
    )
    return (s * _INV_2_16 - 2.0) * _SQRT3
