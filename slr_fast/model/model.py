"""SignModel: the hierarchical keypoint transformer, read top to bottom.

    keypoints (B, T, P, C), presence (B, T, P), length (B,)
      -> PartEmbedding: a network per part + cross-modal attention among part tokens -> (B, T, D)
      -> local stage:  TransformerBlocks attending within +-window frames      -> level 1
      -> conv stage:   depthwise-separable temporal convolution blocks          -> level 2
      -> global stage: TransformerBlocks with full (or dilated) attention       -> level 3 (final)
      -> MultiScalePooling of the final level (+ mean/max of earlier levels)    -> main classifier -> logits
      -> mean/max of each earlier level                                         -> auxiliary classifiers
      (-> mean/max of each part's own tokens over its seen frames -> per-part classifiers, with part_heads)

Every attention / RMSNorm / SwiGLU goes through the model's one KernelOps (layers.py), bound from its KernelConfig
per device inside the model, so the same parameters run on the PyTorch, native or Triton backends. The blocks
come from layers.py and the pooling from pooling.py; this file holds the rest, in the order the data flows.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from kernels.registry import KernelConfig
from slr_fast.model.config import ModelConfig
from slr_fast.model.layers import KernelOps, Ops, RMSNorm, TemporalConvBlock, TransformerBlock, init_linear
from slr_fast.model.pooling import MultiScalePooling, masked_mean_max


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
    """(B, T, P, C) keypoints + (B, T, P) presence -> (B, T, dim) frame vectors: each body part (from the store's
    layout) embedded by its own network, then cross-modal attention among the part tokens of a frame, then fused.

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

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> frame vectors (B, T, dim), the part tokens before cross-modal attention (B, T, parts, part_dim) and
        which parts are seen in each frame (B, T, parts): a token there depends on its own part's points only."""
        B, T, P, C = x.shape
        x = x * mask.unsqueeze(-1)  # undetected points carry no coordinates, whatever the loader filled in
        motion = frame_motion(x, mask) if self.use_motion else None
        tokens, seen, start = [], [], 0
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
            seen.append(present.squeeze(-1))
        tok = own = torch.stack(tokens, dim=2)  # (B, T, parts, part_dim)
        if len(self.cross):
            parts, pd = tok.shape[2], tok.shape[3]
            seq = tok.reshape(B * T, parts, pd)  # (B*T, parts, part_dim): each frame's parts attend to each other
            for block in self.cross:
                seq = block(seq)
            tok = seq.view(B, T, parts, pd)  # (B, T, parts, part_dim)
        frame = tok.flatten(2)  # (B, T, parts*part_dim)
        return self.dropout(self.fuse(self.fuse_norm(frame))), own, torch.stack(seen, dim=2)


class AuxHead(nn.Module):
    """Pooled features of one intermediate level (B, F) -> logits (B, K): RMSNorm -> dropout -> Linear.

    Deep supervision: a classifier on an intermediate level, whose loss pushes earlier stages to be discriminative
    by themselves.
    """

    def __init__(self, ops: KernelOps, in_dim: int, num_classes: int, dropout: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.norm = RMSNorm(ops, in_dim, eps)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.norm(feats)))


class PartHeads(nn.Module):
    """One AuxHead per body part on the mean and max of that part's own tokens over the frames it is seen in
    -> part logits (B, parts, K), and which parts were seen at all (B, parts) bool.

    The tokens are taken before cross-modal attention, so each prediction rests on one part's points alone (after
    it, a part could agree with the others by copying them). Trained by the cross-modal consistency loss
    (slr_fast.train.losses.part_losses); built only with ModelConfig.part_heads.
    """

    def __init__(self, ops: KernelOps, num_parts: int, part_dim: int, num_classes: int, dropout: float = 0.0,
                 eps: float = 1e-6):
        super().__init__()
        self.heads = nn.ModuleList(AuxHead(ops, 2 * part_dim, num_classes, dropout, eps) for _ in range(num_parts))

    def forward(self, tokens: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = []
        for i, head in enumerate(self.heads):
            mean, mx = masked_mean_max(tokens[:, :, i], seen[:, :, i])  # (B, part_dim) each
            logits.append(head(torch.cat([mean, mx], dim=-1)))  # (B, K)
        return torch.stack(logits, dim=1), seen.any(dim=1)  # (B, parts, K), (B, parts)


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


class ModelOutput(NamedTuple):
    """Main logits (B, K) and one (B, K) per auxiliary head (earliest level first; empty without aux heads)."""

    logits: torch.Tensor
    aux_logits: list[torch.Tensor]
    part_logits: torch.Tensor | None = None  # (B, parts, K) with ModelConfig.part_heads, else None
    part_seen: torch.Tensor | None = None  # (B, parts) bool: the part was seen in a valid frame


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
            TransformerBlock(ops, cfg.dim, cfg.heads, cfg.mlp_hidden, window=None, dilation=cfg.global_dilation,
                             drop_path=next(rates), **block_args)
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
        self.part_heads = (PartHeads(ops, len(cfg.part_names), cfg.part_dim, cfg.num_classes, cfg.dropout,
                                     cfg.norm_eps) if cfg.part_heads else None)
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

        h, part_tokens, part_seen = self.embed(x, mask)  # (B, T, D), (B, T, parts, part_dim), (B, T, parts)
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
        if self.part_heads is None:
            return ModelOutput(logits, aux_logits)
        part_logits, seen = self.part_heads(part_tokens, (part_seen > 0) & valid.unsqueeze(-1))
        return ModelOutput(logits, aux_logits, part_logits, seen)

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
