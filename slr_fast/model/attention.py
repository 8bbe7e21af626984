"""Multi-head self-attention with RoPE positions, through the registry's fused `attention` op."""

from __future__ import annotations

import torch
from torch import nn

from slr_fast.model.ops import KernelOps


class SelfAttention(nn.Module):
    """QKV projection -> attention op (RoPE, key padding from lengths, optional +-window) -> output projection.

    The op masks keys j >= lengths[b], limits a local block to |i - j| <= window, and returns zeros for query
    rows beyond a sequence's length, so padded frames never reach valid ones through attention.
    """

    def __init__(self, ops: KernelOps, dim: int, heads: int, window: int | None = None, rope_base: float = 10000.0,
                 dropout: float = 0.0):
        super().__init__()
        self.ops = ops
        self.heads = heads
        self.head_dim = dim // heads
        self.window = window
        self.rope_base = rope_base
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        # The fused op has no attention-probability dropout; regularize the projected output instead.
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, self.head_dim)  # (B, T, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, Dh)
        y = self.ops.attention(q, k, v, lengths, self.window, self.rope_base)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.dropout(self.proj(y))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, window={self.window}"
