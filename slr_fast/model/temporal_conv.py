"""Temporal convolution block: a depthwise-separable convolution over frames, between the local and global stages.

    y   = SwiGLU-gated pointwise expansion of RMSNorm(x)       (the gate is the registry's `swiglu_packed` op)
    y   = depthwise Conv1d over time (one filter per channel), padded frames zeroed first
    y   = pointwise projection of SiLU(RMSNorm(y))
    out = x + a * y                                            (learnable per-channel residual scale)

Depthwise + pointwise is the separable convolution: k x D + D x D weights instead of k x D x D. No BatchNorm:
it would mix statistics across sequences and padded frames (RMSNorm is per frame).
"""

from __future__ import annotations

import torch
from torch import nn

from slr_fast.model.layers import DropPath, RMSNorm
from slr_fast.model.ops import KernelOps


class TemporalConvBlock(nn.Module):
    """Pre-norm gated depthwise-separable convolution over time with an adaptive residual."""

    def __init__(self, ops: KernelOps, dim: int, kernel_size: int, *, dropout: float = 0.0, drop_path: float = 0.0,
                 residual_init: float = 1.0, eps: float = 1e-6):
        super().__init__()
        self.ops = ops
        self.norm = RMSNorm(ops, dim, eps)
        self.expand = nn.Linear(dim, 2 * dim, bias=False)  # [gate | value] packed for swiglu_packed
        # "same" padding: frame t sees frames t - k//2 .. t + k//2; zeros beyond the sequence.
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.mid_norm = RMSNorm(ops, dim, eps)
        self.act = nn.SiLU()
        self.pointwise = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.scale = nn.Parameter(torch.full((dim,), float(residual_init)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = self.ops.swiglu_packed(self.expand(self.norm(x)))  # (B, T, D)
        # Padded frames must contribute exactly zero, as the conv's own zero padding does at the sequence ends.
        y = y * valid.unsqueeze(-1).to(y.dtype)  # (B, T, D)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)  # (B, D, T) -> conv -> (B, T, D)
        y = self.pointwise(self.act(self.mid_norm(y)))  # (B, T, D)
        return x + self.scale * self.drop_path(self.dropout(y))
