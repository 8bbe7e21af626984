"""Plain NumPy reference of every preprocessing step, one sample at a time.

The compiled kernels in `compiled.py` must equal these (exactly, or within 1e-6 where a float sum runs in a different
order); the tests compare them on random and awkward inputs. Arrays are (n, P, C) float32 with NaN = missing.
Intermediate arithmetic is float64 and results are rounded to float32 at the same places as in the kernels.
"""

from __future__ import annotations

import numpy as np

MIN_SCALE = 1e-6  # below this RMS spread the points are one location: dividing would blow noise up to O(1)


def point_valid(seq: np.ndarray) -> np.ndarray:
    """(n, P) bool: a point is present when all of its channels are finite (inf counts as missing)."""
    # One isfinite per channel, ANDed: `np.isfinite(seq).all(axis=-1)` reduces over a length-2 axis, which NumPy
    # does element by element (~10 ns per point); this keeps the baseline of the engine benchmark a fair one.
    ok = np.isfinite(seq[..., 0])
    for c in range(1, seq.shape[-1]):
        ok &= np.isfinite(seq[..., c])
    return ok


def handed_frames(seq: np.ndarray, hand_points: np.ndarray) -> tuple[np.ndarray, bool]:
    """Indices of frames with at least one present hand point, and whether no frame had one (then all frames)."""
    has = point_valid(seq)[:, hand_points].any(axis=1) if hand_points.size else np.zeros(len(seq), bool)
    keep = np.flatnonzero(has)
    if keep.size == 0:
        return np.arange(len(seq), dtype=np.int64), len(seq) > 0
    return keep.astype(np.int64), False


def hand_motion(seq: np.ndarray, keep: np.ndarray, lo: int, hi: int) -> float:
    """How much the hand in points lo:hi moves over the frames seq[keep] (PreprocessConfig.dominant_hand): the sum
    over its points of the squared x/y distances of each present observation from that point's mean position (n
    times its variance; a point seen once adds 0)."""
    sub = seq[keep, lo:hi, :2].astype(np.float64)
    ok = point_valid(seq[keep, lo:hi])
    n = ok.sum(axis=0)
    mean = np.where(ok[..., None], sub, 0.0).sum(axis=0) / np.maximum(n, 1)[:, None]
    return float(np.where(ok[..., None], (sub - mean) ** 2, 0.0).sum())


def gather(seq: np.ndarray, keep: np.ndarray, pos: np.ndarray, shift: np.ndarray | None = None,
           inv: np.ndarray | None = None) -> np.ndarray:
    """Frames of seq[keep] at fractional positions `pos` (in 0..len(keep)-1), normalized, missing points NaN.

    Between two frames a point is linearly interpolated when present in both, else it takes the nearer frame's value
    (so a point is never invented from one side only, and an integer position is an exact copy). Normalization,
    (v - shift[p]) * inv[p], is applied to the float64 result before the single rounding to float32.
    """
    sub = seq[keep]
    sub = np.where(point_valid(sub)[..., None], sub, np.float32(np.nan)).astype(np.float32)
    m = len(keep)
    i0 = np.floor(pos).astype(np.int64)
    i0 = np.clip(i0, 0, m - 1)
    i1 = np.minimum(i0 + 1, m - 1)
    w = (pos - i0)[:, None, None]
    a, b = sub[i0].astype(np.float64), sub[i1].astype(np.float64)
    both = np.isfinite(a[..., :1]) & np.isfinite(b[..., :1])
    lerp = np.where(w == 0.0, a, (1.0 - w) * a + w * b)
    out = np.where(both, lerp, np.where(w < 0.5, a, b))
    if shift is not None:
        out = (out - shift) * inv[:, None]
    return out.astype(np.float32)


def _stats(pts: np.ndarray, C: int) -> tuple[np.ndarray, float]:
    """Centre (C,) and RMS x/y spread of the present points pts (k, C) (float64); empty -> (0, 1)."""
    if len(pts) == 0:
        return np.zeros(C), 1.0
    centre = pts.mean(axis=0)
    d = pts[:, :2] - centre[:2]
    scale = float(np.sqrt((d * d).sum() / (2 * len(pts))))
    if not np.isfinite(scale) or scale < MIN_SCALE:
        scale = 1.0
    return centre, scale


def norm_params(seq: np.ndarray, keep: np.ndarray, mode: str,
                part_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-point shift (P, C), inverse scale (P,) and the augmentation centre (C,), from the frames seq[keep].

    Statistics come from the kept raw frames, before temporal augmentation: a crop or warp changes timing, not
    where the signer stands or how big they are. The centre spatial augmentations act about is 0 after
    normalization, the centroid of the points with "none".
    """
    P, C = seq.shape[1], seq.shape[2]
    w64 = seq[keep].astype(np.float64)
    ok = point_valid(w64)
    shift, inv = np.zeros((P, C)), np.ones(P)
    if mode == "none":
        return shift, inv, _stats(w64[ok], C)[0]
    groups = [(0, P)] if mode == "sequence" else list(zip(part_bounds[:-1], part_bounds[1:], strict=True))
    for lo, hi in groups:
        centre, scale = _stats(w64[:, lo:hi][ok[:, lo:hi]], C)
        shift[lo:hi], inv[lo:hi] = centre, 1.0 / scale
    return shift, inv, np.zeros(C)


def resample(w: np.ndarray, T: int, mode: str) -> tuple[np.ndarray, int]:
    """(T, P, C) float32 with NaN for missing, and the number of valid frames."""
    m, P, C = w.shape
    out = np.full((T, P, C), np.nan, np.float32)
    if m == 0:
        return out, 0
    if mode == "pad":
        k = min(m, T)
        out[:k] = w[:k]
        return out, k
    if mode == "linear":
        pos = np.arange(T) * ((m - 1) / (T - 1)) if T > 1 else np.array([(m - 1) / 2.0])
        return gather(w, np.arange(m), pos), T
    t = np.arange(T)
    if m <= T:  # stretch: output frame t repeats source frame floor(t*m/T)
        return w[(t * m) // T].copy(), T
    lo, hi = (t * m) // T, ((t + 1) * m) // T
    w64 = w.astype(np.float64)
    for i in range(T):
        win = w64[lo[i]:hi[i]]
        ok = np.isfinite(win[..., :1])
        cnt = ok.sum(axis=0)
        s = np.where(ok, win, 0.0).sum(axis=0)
        out[i] = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan).astype(np.float32)
    return out, T


def finalize(y: np.ndarray, length: int, part_ids: np.ndarray, mask_mode: str,
             mask_level: str) -> tuple[np.ndarray, np.ndarray]:
    """NaN/inf -> 0 and the presence mask: x (T, P, C or C+1), mask (T, P) float32."""
    T, P, C = y.shape
    ok = point_valid(y)
    ok[length:] = False
    if mask_level == "part":
        nparts = int(part_ids.max()) + 1
        per_part = np.zeros((T, nparts), bool)
        for k in range(nparts):
            per_part[:, k] = ok[:, part_ids == k].any(axis=1)
        mask = per_part[:, part_ids].astype(np.float32)
    else:
        mask = ok.astype(np.float32)
    x = np.where(ok[..., None], y, 0.0).astype(np.float32)
    if mask_mode == "channel":
        x = np.concatenate([x, mask[..., None]], axis=-1)
    return x, mask
