"""Classifier heads: the main classifier over features of several backbone levels, and auxiliary classifiers on
intermediate levels for deep supervision (their losses push earlier stages to be discriminative by themselves).
"""

from __future__ import annotations

import torch
from torch import nn

from slr_fast.model.layers import RMSNorm
from slr_fast.model.ops import KernelOps


class AuxHead(nn.Module):
    """Pooled features of one intermediate level (B, F) -> logits (B, K): RMSNorm -> dropout -> Linear."""

    def __init__(self, ops: KernelOps, in_dim: int, num_classes: int, dropout: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.norm = RMSNorm(ops, in_dim, eps)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.norm(feats)))


class ClassifierHead(nn.Module):
    """Concatenated multi-level features (B, F) -> logits (B, K): RMSNorm -> Linear -> SiLU -> dropout -> Linear."""

    def __init__(self, ops: KernelOps, in_dim: int, hidden: int, num_classes: int, dropout: float = 0.0,
                 eps: float = 1e-6):
        super().__init__()
        self.norm = RMSNorm(ops, in_dim, eps)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(self.norm(feats)))))
