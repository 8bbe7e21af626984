"""Small building blocks shared by the model's blocks: RMSNorm, SwiGLU feed-forward, stochastic depth."""

from __future__ import annotations

import torch
from torch import nn

from slr_fast.model.ops import KernelOps


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension through the registry's `rmsnorm` op; holds only the weight."""

    def __init__(self, ops: KernelOps, dim: int, eps: float = 1e-6):
        super().__init__()
        self.ops = ops
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.rmsnorm(x, self.weight, self.eps)


class SwiGLUFeedForward(nn.Module):
    """silu(x W_a) * (x W_b) then W_out: one packed input projection so the gate runs as one `swiglu_packed` op."""

    def __init__(self, ops: KernelOps, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.ops = ops
        self.w_in = nn.Linear(dim, 2 * hidden, bias=False)  # [W_a | W_b] packed along the output
        self.w_out = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w_out(self.ops.swiglu_packed(self.w_in(x))))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero the whole residual branch of random samples (dim 0) with probability p, rescaling the rest by 1/(1-p)."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class DropPath(nn.Module):
    """Stochastic depth of one residual branch (a no-op in eval)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


def masked_mean_max(h: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max of h (B, T, D) over the valid frames (B, T) bool; both zeros for a sequence of no frames."""
    w = valid.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    count = w.sum(1).clamp_min(1.0)  # (B, 1)
    mean = (h * w).sum(1) / count  # (B, D)
    # The dtype's lowest value, not -inf, so an empty sequence gives finite values (then 0) and finite gradients.
    lowest = torch.finfo(h.dtype).min
    mx = h.masked_fill(~valid.unsqueeze(-1), lowest).amax(1)  # (B, D)
    mx = torch.where(valid.any(1, keepdim=True), mx, torch.zeros_like(mx))
    return mean, mx


def init_linear(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal weights and zero biases for every Linear under `module` (a GPT-style init)."""
    # Depthwise convolutions keep PyTorch's fan-in init: their fan-in is the kernel size, not the width.
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

