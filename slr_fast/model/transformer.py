"""Pre-norm transformer block with adaptive (learnable, per-channel) residual scales.

    h   = x + a_attn * Attention(RMSNorm(x))        } one `residual_rmsnorm` op: the residual add and the
    y   = RMSNorm(h)                                 } feed-forward's pre-norm in one pass over the activations
    out = h + a_ffn * SwiGLU(y)

The same block serves the local stage (attention within +-window frames), the global stage (full attention) and
the cross-modal attention among the part tokens of a frame (see embedding.py).
"""

from __future__ import annotations

import torch
from torch import nn

from slr_fast.model.attention import SelfAttention
from slr_fast.model.layers import DropPath, RMSNorm, SwiGLUFeedForward
from slr_fast.model.ops import KernelOps


class TransformerBlock(nn.Module):
    """Attention + SwiGLU feed-forward, pre-norm RMSNorm, learnable residual scales, stochastic depth."""

    def __init__(self, ops: KernelOps, dim: int, heads: int, mlp_hidden: int, *, window: int | None = None,
                 rope_base: float = 10000.0, dropout: float = 0.0, drop_path: float = 0.0,
                 residual_init: float = 1.0, eps: float = 1e-6):
        super().__init__()
        self.ops = ops
        self.attn_norm = RMSNorm(ops, dim, eps)
        self.attn = SelfAttention(ops, dim, heads, window=window, rope_base=rope_base, dropout=dropout)
        # Per-channel residual scales: each branch learns how much it adds to the stream.
        self.attn_scale = nn.Parameter(torch.full((dim,), float(residual_init)))
        self.ffn_norm = RMSNorm(ops, dim, eps)
        self.ffn = SwiGLUFeedForward(ops, dim, mlp_hidden, dropout)
        self.ffn_scale = nn.Parameter(torch.full((dim,), float(residual_init)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        a = self.drop_path(self.attn(self.attn_norm(x), lengths))  # (B, T, D)
        h, y = self.ops.residual_rmsnorm(x, a, self.attn_scale, self.ffn_norm.weight, self.ffn_norm.eps)
        f = self.drop_path(self.ffn(y))  # (B, T, D)
        return h + self.ffn_scale * f
