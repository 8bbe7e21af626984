"""Batch-level MixUp: x ← λ·x + (1-λ)·x[perm], targets mixed the same way (Zhang et al. 2018)."""

from __future__ import annotations

import numpy as np
import torch


def mixup_batch(x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, num_classes: int, alpha: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix a batch with a shuffled copy of itself; returns (x, mask, soft targets (B, K), λ).

    The presence mask is the union of both samples' masks, since a mixed point carries information when either
    source had the point. λ ~ Beta(α, α), drawn from `generator` so a resumed run draws the same values.
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    # torch's Beta has no generator argument; a numpy draw seeded from `generator` keeps global RNGs untouched.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    q = torch.nn.functional.one_hot(labels.long(), num_classes).float()
    x_mix = lam * x + (1.0 - lam) * x[perm]
    mask_mix = torch.maximum(mask, mask[perm])
    q_mix = lam * q + (1.0 - lam) * q[perm]
    return x_mix, mask_mix, q_mix, lam
