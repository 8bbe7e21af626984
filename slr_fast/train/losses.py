"""Losses: focal loss with label smoothing on soft targets, and the deep-supervision sum over auxiliary heads.

Focal loss (Lin et al.) down-weights easy examples: for a target distribution q and predicted p = softmax(z),
    L = -Σ_c q_c · (1 - p_c)^γ · log p_c
With one-hot q this is the usual -(1 - p_y)^γ log p_y. Label smoothing mixes q with the uniform distribution,
q ← (1 - ε)·q + ε/K. Because the loss takes a distribution, MixUp's convex combinations of one-hot targets work
unchanged. γ = 0 and ε = 0 give plain cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) int class ids → (B, K) float smoothed one-hot distributions."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    q = F.one_hot(labels.long(), num_classes).float()
    return q * (1.0 - smoothing) + smoothing / num_classes


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, smoothing: float = 0.0) -> torch.Tensor:
    """Mean focal loss; `target` is (B,) class ids or (B, K) probabilities (e.g. from MixUp)."""
    if gamma < 0:
        raise ValueError(f"focal gamma must be ≥ 0, got {gamma}")
    k = logits.shape[-1]
    if target.dim() == 1:
        q = soft_targets(target, k, smoothing)
    else:
        q = target.float()
        if smoothing:
            q = q * (1.0 - smoothing) + smoothing / k
    logp = F.log_softmax(logits.float(), dim=-1)  # fp32 even under autocast: log-probs of 1001 classes need it
    if gamma == 0:
        return -(q * logp).sum(-1).mean()
    weight = (1.0 - logp.exp()).clamp_min(0.0).pow(gamma)
    return -(q * weight * logp).sum(-1).mean()


def deep_supervision_loss(logits: torch.Tensor, aux_logits: list[torch.Tensor], target: torch.Tensor,
                          aux_weights: list[float] | float, gamma: float, smoothing: float
                          ) -> tuple[torch.Tensor, dict[str, float]]:
    """Main loss plus weighted auxiliary-head losses; returns (total, parts for logging)."""
    main = focal_loss(logits, target, gamma, smoothing)
    if isinstance(aux_weights, (int, float)):
        aux_weights = [float(aux_weights)] * len(aux_logits)
    if len(aux_weights) != len(aux_logits):
        raise ValueError(f"{len(aux_weights)} auxiliary loss weights for {len(aux_logits)} auxiliary heads")
    total, parts = main, {"loss_main": float(main.detach())}
    for i, (w, z) in enumerate(zip(aux_weights, aux_logits, strict=True)):
        if w == 0:
            continue
        aux = focal_loss(z, target, gamma, smoothing)
        total = total + w * aux
        parts[f"loss_aux{i}"] = float(aux.detach())
    return total, parts
