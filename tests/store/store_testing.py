"""Small realistic keypoint sequences for store tests: smooth trajectories with NaN where a hand is not seen."""

from __future__ import annotations

import numpy as np

from slr_fast.layout import DEFAULT_LAYOUT, Layout


def smooth_sequences(n: int, layout: Layout = DEFAULT_LAYOUT, seed: int = 0, max_len: int = 60,
                     lengths: list[int] | None = None) -> list[np.ndarray]:
    """n sequences (T, P, C) float32: a random walk per point, hands missing in some frames."""
    rng = np.random.default_rng(seed)
    lens = lengths if lengths is not None else rng.integers(1, max_len, n).tolist()
    p, c = layout.num_points, layout.num_channels
    hands = [layout.part_slices()[layout.parts[k].name] for k in layout.hand_parts()]
    out = []
    for t in lens:
        base = rng.uniform(0.3, 0.7, (1, p, c))
        walk = np.cumsum(rng.normal(0, 0.004, (t, p, c)), axis=0)
        seq = (base + walk).astype(np.float32)
        for sl in hands:
            seq[rng.random(t) < 0.3, sl] = np.nan
        out.append(seq)
    return out
