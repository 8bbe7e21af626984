"""SignModel: the hierarchical keypoint transformer, read top to bottom.

    keypoints (B, T, P, C), presence (B, T, P), length (B,)
      -> PartEmbedding: a network per part + cross-modal attention among part tokens -> (B, T, D)
      -> local stage:  TransformerBlocks attending within +-window frames      -> level 1
      -> conv stage:   depthwise-separable temporal convolution blocks          -> level 2
      -> global stage: TransformerBlocks with full attention                    -> level 3 (final)
      -> MultiScalePooling of the final level (+ mean/max of earlier levels)    -> main classifier -> logits
      -> mean/max of each earlier level                                         -> auxiliary classifiers

Every attention / RMSNorm / SwiGLU goes through the ops bound from the model's KernelConfig (ops.py), chosen per
device inside the model, so the same parameters run on the PyTorch, native or Triton backends.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from kernels.registry import KernelConfig
from slr_fast.model.config import ModelConfig
from slr_fast.model.embedding import PartEmbedding
from slr_fast.model.heads import AuxHead, ClassifierHead
from slr_fast.model.layers import RMSNorm, init_linear, masked_mean_max
from slr_fast.model.ops import KernelOps, Ops
from slr_fast.model.pooling import MultiScalePooling
from slr_fast.model.temporal_conv import TemporalConvBlock
from slr_fast.model.transformer import TransformerBlock


class ModelOutput(NamedTuple):
    """Main logits (B, K) and one (B, K) per auxiliary head (earliest level first; empty without aux heads)."""

    logits: torch.Tensor
    aux_logits: list[torch.Tensor]


def lengths_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, T, P) presence -> (B,) int32: index of the last frame with any point detected, plus one."""
    seen = mask.amax(dim=-1) > 0  # (B, T)
    frame_no = torch.arange(1, mask.shape[1] + 1, device=mask.device)  # (T,)
    return (frame_no * seen).amax(dim=-1).to(torch.int32)  # (B,)


class SignModel(nn.Module):
    """Keypoint sequence classifier; `forward(x, mask, length=None) -> ModelOutput(logits, aux_logits)`."""

    def __init__(self, config: ModelConfig, kernels: KernelConfig | None = None):
        super().__init__()
        self.config = cfg = config
        # One KernelOps for every module that calls a kernel: ops bound per device on first use there.
        self.ops = ops = KernelOps(kernels if kernels is not None else KernelConfig())

        self.embed = PartEmbedding(cfg, ops)

        # Stochastic depth rises linearly over the backbone's residual blocks: early features are kept more often.
        n_blocks = cfg.local_layers + cfg.conv_layers + cfg.global_layers
        rates = iter([cfg.drop_path * i / max(n_blocks - 1, 1) for i in range(n_blocks)])
        block_args = dict(rope_base=cfg.rope_base, dropout=cfg.dropout, residual_init=cfg.residual_init,
                          eps=cfg.norm_eps)
        self.local_blocks = nn.ModuleList(
            TransformerBlock(ops, cfg.dim, cfg.heads, cfg.mlp_hidden, window=cfg.local_window, drop_path=next(rates),
                             **block_args)
            for _ in range(cfg.local_layers)
        )
        self.conv_blocks = nn.ModuleList(
            TemporalConvBlock(ops, cfg.dim, cfg.conv_kernel, dropout=cfg.dropout, drop_path=next(rates),
                              residual_init=cfg.residual_init, eps=cfg.norm_eps)
            for _ in range(cfg.conv_layers)
        )
        self.global_blocks = nn.ModuleList(
            TransformerBlock(ops, cfg.dim, cfg.heads, cfg.mlp_hidden, window=None, drop_path=next(rates), **block_args)
            for _ in range(cfg.global_layers)
        )
        self.stages = [name for name, n in (("local", cfg.local_layers), ("conv", cfg.conv_layers),
                                            ("global", cfg.global_layers)) if n]

        # Levels: the output of every stage. The last is pooled at several scales; earlier ones by mean and max.
        n_earlier = len(self.stages) - 1
        self.norm = RMSNorm(ops, cfg.dim, cfg.norm_eps)
        self.level_norms = nn.ModuleList(RMSNorm(ops, cfg.dim, cfg.norm_eps) for _ in range(n_earlier))
        self.pool = MultiScalePooling(cfg.dim, cfg.pooling, cfg.pool_scales, cfg.pool_queries)
        head_in = self.pool.out_dim + (n_earlier * 2 * cfg.dim if cfg.multi_level else 0)
        self.head = ClassifierHead(ops, head_in, cfg.classifier_hidden, cfg.num_classes, cfg.dropout, cfg.norm_eps)
        n_aux = n_earlier if cfg.aux_heads else 0
        self.aux_heads = nn.ModuleList(
            AuxHead(ops, 2 * cfg.dim, cfg.num_classes, cfg.dropout, cfg.norm_eps) for _ in range(n_aux)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-style init: truncated normal (std 0.02) Linears, small random part and absent tokens."""
        init_linear(self)
        nn.init.normal_(self.embed.part_type, std=0.02)
        nn.init.normal_(self.embed.absent, std=0.02)

    # --- kernels ---
    @property
    def kernels(self) -> KernelConfig:
        """The KernelConfig every kernel call of this model follows."""
        return self.ops.config

    @property
    def _ops(self) -> dict[torch.device, Ops]:
        # The ops bound so far, per device (empty in a copy or an unpickled model: rebound on first use).
        return self.ops.bound

    def set_kernels(self, kernels: KernelConfig) -> None:
        """Switch backends; parameters are unchanged (every backend computes the same math)."""
        self.ops.use(kernels)

    def kernel_report(self) -> dict[str, str]:
        """{op: backend actually used} on the device the parameters live on."""
        return dict(self.ops.on(next(self.parameters()).device).backends)

    # --- forward ---
    def _check_inputs(self, x: torch.Tensor, mask: torch.Tensor, length: torch.Tensor | None) -> None:
        cfg = self.config
        if x.dim() != 4 or tuple(x.shape[2:]) != (cfg.num_points, cfg.channels):
            raise ValueError(f"x must be (B, T, {cfg.num_points}, {cfg.channels}) for parts "
                             f"{dict(zip(cfg.part_names, cfg.part_sizes, strict=True))}, got {tuple(x.shape)}")
        if tuple(mask.shape) != tuple(x.shape[:3]):
            raise ValueError(f"mask must be (B, T, P) = {tuple(x.shape[:3])}, got {tuple(mask.shape)}")
        if length is not None and tuple(length.shape) != (x.shape[0],):
            raise ValueError(f"length must be (B,) = ({x.shape[0]},), got {tuple(length.shape)}")

    def forward(self, x: torch.Tensor, mask: torch.Tensor, length: torch.Tensor | None = None) -> ModelOutput:
        """x (B, T, P, C) float32 (undetected = 0), mask (B, T, P) presence, length (B,) valid frames.

        Without `length`, a sequence ends at its last frame with any point detected.
        """
        self._check_inputs(x, mask, length)
        B, T = x.shape[:2]
        mask = mask.to(x.dtype)
        lengths = lengths_from_mask(mask) if length is None else length.to(x.device, torch.int32).clamp(0, T)
        valid = torch.arange(T, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T) frame t < length

        h = self.embed(x, mask)  # (B, T, D)
        levels = []
        if len(self.local_blocks):
            h = self._transformer_stage(self.local_blocks, h, lengths)
            levels.append(h)
        if len(self.conv_blocks):
            for block in self.conv_blocks:
                h = block(h, valid)
            levels.append(h)
        if len(self.global_blocks):
            h = self._transformer_stage(self.global_blocks, h, lengths)
            levels.append(h)

        final = self.norm(levels[-1])  # (B, T, D)
        earlier = []
        for norm, level in zip(self.level_norms, levels[:-1], strict=True):
            mean, mx = masked_mean_max(norm(level), valid)  # (B, D) each
            earlier.append(torch.cat([mean, mx], dim=-1))  # (B, 2D)
        feats = self.pool(final, valid, lengths)  # (B, pool.out_dim)
        if self.config.multi_level and earlier:
            feats = torch.cat([feats, *earlier], dim=-1)  # (B, head_in)
        logits = self.head(feats)
        aux_logits = [head(f) for head, f in zip(self.aux_heads, earlier, strict=False)]
        return ModelOutput(logits, aux_logits)

    def _transformer_stage(self, blocks: nn.ModuleList, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        p = self.config.layerdrop
        for block in blocks:
            if not (self.training and p > 0):
                h = block(h, lengths)
            elif torch.compiler.is_compiling():
                # Same distribution without a data-dependent branch, so the compiled graph has no break (the
                # block is computed and its output discarded: compiled training trades LayerDrop's saving away).
                keep = torch.rand((), device=h.device) >= p
                h = torch.where(keep, block(h, lengths), h)
            elif float(torch.rand(())) >= p:
                # LayerDrop: the whole block is skipped with probability p, one draw per batch (seeded by torch).
                h = block(h, lengths)
        return h

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
