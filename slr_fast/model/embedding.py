"""Part embedding: each body part (from the store's layout) embedded by its own network, then cross-modal
attention among the part tokens of a frame, then fused into one frame vector.

Inputs of a part with n points, per frame: its coordinates (n x C, zeroed where undetected), its presence mask
(n) and, optionally, its frame-to-frame motion (n x C, zero unless the point is seen in both frames). A part
that is wholly undetected in a frame (a hand out of view) gets a learned "absent" token instead of the network's
output for all-zero input, so "no left hand" is a distinct, learnable signal.

Cross-modal attention: the part tokens of one frame form a sequence of len(parts) tokens that goes through the
same TransformerBlock as the backbone, so it runs on the registry's `attention` op like every other attention of
the model. That op always applies RoPE; here the positions are the part indices, so RoPE acts as a fixed
relative code of which two parts interact, next to the learned part-type embeddings. We chose this over a plain
SDPA outside the registry so that a KernelConfig switch changes every attention of the model at once.
"""

from __future__ import annotations

import torch
from torch import nn

from slr_fast.model.config import ModelConfig
from slr_fast.model.layers import RMSNorm
from slr_fast.model.ops import KernelOps
from slr_fast.model.transformer import TransformerBlock


def frame_motion(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x[t] - x[t-1] per point where it is seen in both frames, else 0; zero at t = 0. (B, T, P, C) -> same."""
    both = (mask[:, 1:] * mask[:, :-1]).unsqueeze(-1)  # (B, T-1, P, 1)
    diff = (x[:, 1:] - x[:, :-1]) * both  # (B, T-1, P, C)
    # Motion looks only backwards, so a frame's features never depend on frames after it (padding stays inert).
    return torch.cat([torch.zeros_like(x[:, :1]), diff], dim=1)  # (B, T, P, C)


class PartEncoder(nn.Module):
    """One part's points of one frame -> a part token: Linear -> SiLU -> Linear."""

    def __init__(self, in_features: int, hidden: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(feats)))


class PartEmbedding(nn.Module):
    """(B, T, P, C) keypoints + (B, T, P) presence -> (B, T, dim) frame vectors."""

    def __init__(self, cfg: ModelConfig, ops: KernelOps):
        super().__init__()
        self.part_names = cfg.part_names
        self.part_sizes = cfg.part_sizes
        self.use_motion = cfg.use_motion
        per_point = cfg.channels * (2 if cfg.use_motion else 1) + 1  # coords (+ motion) + presence
        self.encoders = nn.ModuleDict(
            {name: PartEncoder(n * per_point, cfg.part_hidden, cfg.part_dim)
             for name, n in zip(cfg.part_names, cfg.part_sizes, strict=True)}
        )
        num_parts = len(cfg.part_names)
        self.part_type = nn.Parameter(torch.zeros(num_parts, cfg.part_dim))  # which part a token is
        self.absent = nn.Parameter(torch.zeros(num_parts, cfg.part_dim))  # the token of an undetected part
        self.cross = nn.ModuleList(
            TransformerBlock(ops, cfg.part_dim, cfg.cross_heads, 2 * cfg.part_dim, rope_base=cfg.rope_base,
                             dropout=cfg.dropout, residual_init=cfg.residual_init, eps=cfg.norm_eps)
            for _ in range(cfg.cross_layers)
        )
        self.fuse_norm = RMSNorm(ops, num_parts * cfg.part_dim, cfg.norm_eps)
        self.fuse = nn.Linear(num_parts * cfg.part_dim, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, P, C = x.shape
        x = x * mask.unsqueeze(-1)  # undetected points carry no coordinates, whatever the loader filled in
        motion = frame_motion(x, mask) if self.use_motion else None
        tokens, start = [], 0
        for i, (name, n) in enumerate(zip(self.part_names, self.part_sizes, strict=True)):
            sl = slice(start, start + n)
            start += n
            feats = [x[:, :, sl].reshape(B, T, n * C), mask[:, :, sl]]  # (B, T, n*C), (B, T, n)
            if motion is not None:
                feats.append(motion[:, :, sl].reshape(B, T, n * C))  # (B, T, n*C)
            tok = self.encoders[name](torch.cat(feats, dim=-1))  # (B, T, part_dim)
            present = mask[:, :, sl].amax(dim=-1, keepdim=True)  # (B, T, 1): any point of the part seen
            tok = present * tok + (1.0 - present) * self.absent[i]
            tokens.append(tok + self.part_type[i])
        tok = torch.stack(tokens, dim=2)  # (B, T, parts, part_dim)
        if len(self.cross):
            parts, pd = tok.shape[2], tok.shape[3]
            seq = tok.reshape(B * T, parts, pd)  # (B*T, parts, part_dim): each frame's parts attend to each other
            for block in self.cross:
                seq = block(seq)
            tok = seq.view(B, T, parts, pd)  # (B, T, parts, part_dim)
        frame = tok.flatten(2)  # (B, T, parts*part_dim)
        return self.dropout(self.fuse(self.fuse_norm(frame)))  # (B, T, dim)
