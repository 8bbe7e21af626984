"""Linear probes of a dataset's difficulty: a classifier on the mean frame against one that sees temporal order.

Both probes use the same per-sequence normalization (centre between the shoulders, scale by their distance,
mirror left-dominant sequences), the same NaN-aware averaging and the same closed-form ridge classifier; they
differ only in whether time is averaged away (one bin) or kept coarsely (several bins in order). On a dataset
whose classes differ by the order of events the first must fall well short of the second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slr_fast.layout import Layout


def _scale_and_center(frames: np.ndarray, layout: Layout) -> np.ndarray:
    """Frames shifted to the shoulders' midpoint and scaled by the shoulder distance (whole-sequence estimates)."""
    where = {(p.source, i): k for k, (p, i) in enumerate((p, i) for p in layout.parts for i in p.indices)}
    xy = frames[..., :2].astype(np.float64)
    if ("pose", 11) in where and ("pose", 12) in where:
        left, right = xy[:, where[("pose", 11)]], xy[:, where[("pose", 12)]]
        center = np.nanmean(0.5 * (left + right), axis=0) if np.isfinite(left + right).any() else np.zeros(2)
        scale = np.nanmean(np.linalg.norm(left - right, axis=1)) if np.isfinite(left + right).any() else 1.0
    else:  # layouts without both shoulders: the spread of all detected points
        center = np.nanmean(xy.reshape(-1, 2), axis=0) if np.isfinite(xy).any() else np.zeros(2)
        scale = np.nanstd(xy) if np.isfinite(xy).any() else 1.0
    scale = scale if np.isfinite(scale) and scale > 1e-6 else 1.0
    center = np.where(np.isfinite(center), center, 0.0)
    return (xy - center) / scale


def normalize_sequence(frames: np.ndarray, layout: Layout) -> np.ndarray:
    """(T,P,2) body-relative x/y with the more often detected hand made the right hand (mirroring if needed)."""
    xy = _scale_and_center(np.asarray(frames), layout)
    hands = {layout.parts[i].source: layout.part_slices()[layout.parts[i].name] for i in layout.hand_parts()}
    if "left_hand" in hands and "right_hand" in hands:
        seen_left = np.isfinite(xy[:, hands["left_hand"], 0]).any(axis=1).sum()
        seen_right = np.isfinite(xy[:, hands["right_hand"], 0]).any(axis=1).sum()
        if seen_left > seen_right:  # a left-dominant signer: mirror so every sign reads right-handed
            xy = xy[:, layout.mirror_index()]
            xy[..., 0] *= -1.0
    return xy


def binned_features(frames: np.ndarray, layout: Layout, bins: int = 1) -> np.ndarray:
    """(bins * P * 3,) features: NaN-aware mean x, y and detection rate of every point over `bins` equal spans."""
    xy = normalize_sequence(frames, layout)
    T = xy.shape[0]
    edges = np.linspace(0, T, bins + 1)
    out = []
    for b in range(bins):
        lo = int(np.floor(edges[b]))
        hi = max(int(np.ceil(edges[b + 1])), lo + 1)
        chunk = xy[lo:min(hi, T)] if T else np.full((1, xy.shape[1], 2), np.nan)
        seen = np.isfinite(chunk[..., 0])
        count = seen.sum(axis=0)
        mean = np.where(seen[..., None], chunk, 0.0).sum(axis=0) / np.maximum(count, 1)[:, None]
        out.append(np.concatenate([mean.reshape(-1), count / max(chunk.shape[0], 1)]))
    return np.concatenate(out)


def ridge_fit(X: np.ndarray, y: np.ndarray, num_classes: int, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge regression onto one-hot labels on standardized features; returns (weights, stats)."""
    mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-6
    Z = np.concatenate([(X - mu) / sd, np.ones((X.shape[0], 1))], axis=1)
    Y = np.eye(num_classes)[y]
    W = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ Y)
    return W, np.stack([mu, sd])


def ridge_predict(W: np.ndarray, stats: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Predicted class of each row of X under a ridge_fit model."""
    Z = np.concatenate([(X - stats[0]) / stats[1], np.ones((X.shape[0], 1))], axis=1)
    return np.argmax(Z @ W, axis=1)


def probe_accuracy(sequences: Sequence[np.ndarray], labels: np.ndarray, train: np.ndarray, layout: Layout,
                   num_classes: int, bins: int = 1, alpha: float = 10.0) -> float:
    """Held-out accuracy of a ridge classifier on binned features (bins=1: the mean frame); `train` is a mask."""
    X = np.stack([binned_features(s, layout, bins) for s in sequences])
    labels = np.asarray(labels)
    train = np.asarray(train, dtype=bool)
    if train.all() or not train.any():
        raise ValueError("probe_accuracy needs both training and held-out sequences")
    W, stats = ridge_fit(X[train], labels[train], num_classes, alpha)
    return float(np.mean(ridge_predict(W, stats, X[~train]) == labels[~train]))
