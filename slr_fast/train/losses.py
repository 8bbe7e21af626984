"""Losses: focal loss with label smoothing on soft targets, and the deep-supervision sum over auxiliary heads.

Focal loss (Lin et al.) down-weights easy examples: for a target distribution q and predicted p = softmax(z),
    L = -Σ_c q_c · (1 - p_c)^γ · log p_c
With one-hot q this is the usual -(1 - p_y)^γ log p_y. Label smoothing mixes q with the uniform distribution,
q ← (1 - ε)·q + ε/K. Because the loss takes a distribution, MixUp's convex combinations of one-hot targets work
unchanged. γ = 0 and ε = 0 give plain cross-entropy.

Below them, the terms of the anti-overfitting remedies (put together per run by slr_fast.train.remedies): the
curriculum of γ, the pairwise margin against the most confused classes, self-distillation and the per-part losses
of the cross-modal consistency. Each takes ids or MixUp probabilities as its target, like the focal loss.
"""

from __future__ import annotations

import math

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


# ---- the anti-overfitting remedies (slr_fast.train.remedies puts them together; each is off by default) ---------
def _wide(t: torch.Tensor) -> torch.Tensor:
    """float32 at least (fp16/bf16 logits under autocast are widened; float64 stays, for gradient checks)."""
    return t if t.dtype == torch.float64 else t.float()


def target_distribution(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) class ids or (B, K) probabilities (MixUp) -> (B, K) float32 distributions, label smoothing applied."""
    if target.dim() == 1:
        return soft_targets(target, num_classes, smoothing)
    q = target.float()
    return q * (1.0 - smoothing) + smoothing / num_classes if smoothing else q


def curriculum_gamma(progress: float, start: float, end: float, ramp: float = 1.0, shape: str = "linear") -> float:
    """Focal γ of the curriculum at `progress` (fraction of the stage's steps done, 0..1): from `start` to `end`
    over the first `ramp` of the stage, then `end`. `shape` "linear" or "cosine" (half a cosine: slow at both ends).

    Why γ grows: early in a stage nearly every sample is badly classified, so (1 - p)^γ ≈ 1 and focusing changes
    little except to slow the first, easy progress; late in a stage, when the train samples are fitted, γ is what
    stops the already-correct ones from pushing their logits ever further (the over-confidence that opens the
    train-validation gap: focal loss bounds it like an entropy bonus). So plain cross-entropy first, full
    focusing by the time the model fits the training set.
    """
    if not ramp > 0:
        raise ValueError(f"curriculum ramp must be > 0, got {ramp}")
    t = min(max(progress / ramp, 0.0), 1.0)
    if shape == "cosine":
        t = 0.5 - 0.5 * math.cos(math.pi * t)
    elif shape != "linear":
        raise ValueError(f"curriculum shape must be linear or cosine, got {shape!r}")
    return start + (end - start) * t


def pairwise_margin_loss(logits: torch.Tensor, target: torch.Tensor, rivals: torch.Tensor,
                         margin: float) -> torch.Tensor:
    """Hinge between each target class's logit and those of its rivals: mean over samples and rival slots of
        q_i · max(0, margin - (z_i - z_j)),  j in rivals[i]
    `target` (B,) ids or (B, K) probabilities *before* label smoothing (smoothing would give every class a share
    and turn the margin into one against all classes); `rivals` (K, k) long class ids, -1 for an empty slot. A
    rival that the target itself holds (MixUp's other class) is not pushed against.
    """
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    z = _wide(logits)
    B, K = z.shape
    k = rivals.shape[1]
    q = target_distribution(target, K)  # (B, K)
    r = rivals.clamp_min(0)  # (K, k)
    gap = z.unsqueeze(-1) - z[:, r]  # (B, K, k): z_i - z_j for each class i and its rival j
    weight = q.unsqueeze(-1) * (rivals >= 0) * (q[:, r] == 0)  # (B, K, k)
    return (weight * F.relu(margin - gap)).sum() / (B * k)


def rivals_from_confusion(confusion: torch.Tensor, k: int) -> torch.Tensor:
    """(K, K) confusion (row: true class, column: probability mass given to it) -> (K, k) long: each class's k
    most confused other classes, -1 where fewer than k were ever confused with it."""
    c = confusion.float().clone()
    c.fill_diagonal_(0.0)
    k = min(k, c.shape[1])
    values, idx = c.topk(k, dim=1)
    return torch.where(values > 0, idx, torch.full_like(idx, -1))


def confusion_update(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A batch's (K, K) confusion counts: for each sample, its target's weight on class i times the predicted
    probability of every class j the target does not hold. Soft, so MixUp batches count too, and the mixed-in
    class (which the prediction rightly holds) is never a confusion."""
    p = F.softmax(_wide(logits.detach()), dim=-1)  # (B, K)
    q = target_distribution(target, p.shape[1])  # (B, K)
    return q.t() @ (p * (q == 0))  # (K, K)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) || softmax(student/T)), mean over samples (Hinton et al.: T² keeps the gradient's
    size independent of T). The teacher's distribution is the target as it is: no label smoothing on top."""
    if not temperature > 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    logq = F.log_softmax(_wide(teacher.detach()) / temperature, dim=-1)
    logp = F.log_softmax(_wide(student) / temperature, dim=-1)
    return (logq.exp() * (logq - logp)).sum(-1).mean() * temperature**2


# Added to the log-probabilities of a part not seen in a sample: its share of the parts' mean is exp(-1e4) = 0,
# while everything stays finite (a sample with no part seen gives zeros and zero gradients, not NaN).
_UNSEEN = -1e4


def part_losses(part_logits: torch.Tensor, seen: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-part cross-entropy, cross-modal consistency) of part logits (B, M, K) over the parts `seen` (B, M).

    The cross-entropy (label smoothing and MixUp targets as the main loss) makes each part's head predict the sign;
    without it the heads could agree trivially on a uniform guess. The consistency is the generalized
    Jensen-Shannon divergence of the seen parts' predictions p_m: mean over m of KL(p_m || p̄), p̄ their mean,
    averaged over the samples with at least two parts seen. It is zero exactly when the parts agree, symmetric in
    them, and bounded by log M, so a weak part (the lips, for most signs) pulling a confident hand towards a flat
    guess costs at most log M — where the symmetric KL(p̄ || p_m) term would explode on the classes a part gives
    almost no probability.
    """
    B, M, K = part_logits.shape
    logp = F.log_softmax(_wide(part_logits), dim=-1)  # (B, M, K)
    w = seen.to(logp.dtype)  # (B, M)
    q = target_distribution(target, K, smoothing)  # (B, K)
    ce = -(q.unsqueeze(1) * logp).sum(-1)  # (B, M)
    part_ce = (ce * w).sum() / w.sum().clamp_min(1.0)
    n = w.sum(1)  # (B,)
    unseen = (1.0 - w).unsqueeze(-1) * _UNSEEN  # (B, M, 1)
    log_mean = torch.logsumexp(logp + unseen, dim=1) - n.clamp_min(1.0).log().unsqueeze(-1)  # (B, K): log p̄
    kl = (logp.exp() * (logp - log_mean.unsqueeze(1))).sum(-1)  # (B, M)
    per_sample = (kl * w).sum(1) / n.clamp_min(1.0)  # (B,)
    pairs = (n >= 2).to(logp.dtype)
    consistency = (per_sample * pairs).sum() / pairs.sum().clamp_min(1.0)
    return part_ce, consistency
