"""ModelConfig: every size and switch of the sign model in one dataclass, with the `tiny` and `base` presets.

The config records the data it was built for (part names and sizes from the store's layout, coordinate channels,
number of classes), so a checkpoint carrying `config.to_dict()` rebuilds its model without the store.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from slr_fast.layout import DEFAULT_LAYOUT, Layout

POOL_KINDS = ("avg", "max", "adaptive", "attention")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and switches of SignModel; `ModelConfig.preset(name, num_classes=K, layout=...)` for the presets."""

    # --- what the input looks like (from the store's layout, never hard-coded) ---
    num_classes: int = 250
    part_names: tuple[str, ...] = DEFAULT_LAYOUT.part_names
    part_sizes: tuple[int, ...] = DEFAULT_LAYOUT.part_sizes
    channels: int = 2  # x, y (3 with z)

    # --- part embedding: one small network per part, then cross-modal attention among the part tokens ---
    part_dim: int = 64  # width of a part token; 4 parts x 64 is fused into one frame vector of `dim`
    part_hidden: int = 128  # hidden width of each part's MLP (a hand has 21 x (2 coords + 1 mask + 2 motion) inputs)
    use_motion: bool = True  # frame-to-frame displacement as extra input: signs are movements, not poses
    cross_layers: int = 1  # transformer blocks over the part tokens of a frame (0 = concatenate the parts only)
    cross_heads: int = 2  # part_dim / cross_heads must be even (RoPE) and >= 16 (Triton tl.dot minimum)

    # --- backbone: local blocks -> temporal convolution -> global blocks ---
    dim: int = 192  # model width
    heads: int = 6  # dim / heads = 32: a head size every attention backend handles
    mlp_ratio: float = 8 / 3  # SwiGLU hidden = ratio x dim keeps the parameter count of a 4x GELU MLP
    local_layers: int = 2  # blocks attending within +-local_window frames: hand shapes change over a few frames
    local_window: int = 8  # frames on each side; ~0.3 s at 25 fps
    conv_layers: int = 1  # depthwise-separable temporal convolution blocks between the local and global stages
    conv_kernel: int = 9  # odd, so the output stays aligned with the input frames
    global_layers: int = 2  # blocks with full attention over the sequence: the order of sign components
    rope_base: float = 10000.0  # RoPE frequency base; sequences are short (<= a few hundred frames)
    residual_init: float = 1.0  # initial value of the learnable per-channel residual scales (1 = plain residual)
    norm_eps: float = 1e-6

    # --- pooling and classifier ---
    pooling: tuple[str, ...] = POOL_KINDS  # any subset of POOL_KINDS, concatenated
    pool_scales: tuple[int, ...] = (1, 2, 4, 8)  # adaptive average pooling: segments of the valid frames
    pool_queries: int = 4  # learned queries of the attention pooling (each picks the frames it finds important)
    multi_level: bool = True  # the main classifier also sees the pooled output of every earlier backbone stage
    aux_heads: bool = True  # deep supervision: a classifier on every stage before the last
    head_hidden: int = 0  # hidden width of the main classifier; 0 = dim

    # --- regularization ---
    dropout: float = 0.1  # on the embedding, every residual branch and the classifier's hidden layer
    drop_path: float = 0.1  # stochastic depth of the backbone's residual branches, rising linearly to this value
    layerdrop: float = 0.0  # probability of skipping a whole backbone transformer block in training (eval: never)

    # Layout name for the record only (the parts above are what the model uses).
    layout_name: str = field(default="default", compare=False)

    def __post_init__(self):
        errors = []
        if self.num_classes < 1:
            errors.append(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.part_names) != len(self.part_sizes) or not self.part_names:
            errors.append(f"part_names {self.part_names} and part_sizes {self.part_sizes} must be non-empty and match")
        if any(s < 1 for s in self.part_sizes):
            errors.append(f"part_sizes must be >= 1, got {self.part_sizes}")
        if self.channels not in (2, 3):
            errors.append(f"channels must be 2 (x, y) or 3 (x, y, z), got {self.channels}")
        for name, width, heads in (("dim", self.dim, self.heads), ("part_dim", self.part_dim, self.cross_heads)):
            if heads < 1 or width % heads or (width // heads) % 2:
                errors.append(f"{name}={width} must split into {heads} heads of an even size (RoPE rotates pairs)")
        if self.local_layers + self.conv_layers + self.global_layers < 1:
            errors.append("the backbone needs at least one layer (local_layers + conv_layers + global_layers)")
        if min(self.local_layers, self.conv_layers, self.global_layers, self.cross_layers) < 0:
            errors.append("layer counts must be >= 0")
        if self.local_window < 1:
            errors.append(f"local_window must be >= 1 frame, got {self.local_window}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            errors.append(f"conv_kernel must be odd (keeps frames aligned), got {self.conv_kernel}")
        unknown = [p for p in self.pooling if p not in POOL_KINDS]
        if unknown or not self.pooling:
            errors.append(f"pooling {self.pooling}: unknown {unknown}; choose from {POOL_KINDS}")
        if not self.pool_scales or min(self.pool_scales) < 1:
            errors.append(f"pool_scales must be positive, got {self.pool_scales}")
        if self.pool_queries < 1:
            errors.append(f"pool_queries must be >= 1, got {self.pool_queries}")
        for name in ("dropout", "drop_path", "layerdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                errors.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if errors:
            raise ValueError("invalid ModelConfig: " + "; ".join(errors))

    # --- derived sizes ---
    @property
    def num_points(self) -> int:
        """Points per frame (sum of part sizes)."""
        return sum(self.part_sizes)

    @property
    def mlp_hidden(self) -> int:
        """SwiGLU hidden width, rounded up to a multiple of 16 for friendly kernel tiles."""
        return 16 * math.ceil(self.mlp_ratio * self.dim / 16)

    @property
    def classifier_hidden(self) -> int:
        """Hidden width of the main classifier."""
        return self.head_hidden or self.dim

    # --- presets ---
    @classmethod
    def preset(cls, name: str, num_classes: int, layout: Layout = DEFAULT_LAYOUT, **overrides) -> ModelConfig:
        """The `tiny` (CPU tests, demo) or `base` (P100-scale, 500-1001 classes) model for `layout`."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; valid: {sorted(PRESETS)}")
        data = dict(
            num_classes=num_classes,
            part_names=layout.part_names,
            part_sizes=layout.part_sizes,
            channels=layout.num_channels,
            layout_name=layout.name,
        )
        data.update(PRESETS[name])
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            valid = sorted(f.name for f in fields(cls))
            raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}; valid: {valid}")
        data.update(overrides)
        return cls(**data)

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # --- serialization (checkpoints, run records) ---
    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of to_dict; unknown keys are an error naming them."""
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"model config has unknown fields {unknown}; valid: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    # --- reporting ---
    def num_parameters(self) -> int:
        """Trainable parameters of the model this config builds (counted on the meta device: no memory used)."""
        import torch

        from slr_fast.model.model import SignModel

        with torch.device("meta"):
            model = SignModel(self)
        return sum(p.numel() for p in model.parameters())

    def summary(self) -> str:
        """One line per group of settings, ending with the parameter count."""
        parts = ", ".join(f"{n}:{s}" for n, s in zip(self.part_names, self.part_sizes, strict=True))
        return "\n".join(
            [
                f"SignModel  classes={self.num_classes}  layout={self.layout_name} [{parts}] x {self.channels} ch",
                f"  parts:    part_dim={self.part_dim} hidden={self.part_hidden} motion={self.use_motion} "
                f"cross_layers={self.cross_layers} (heads {self.cross_heads})",
                f"  backbone: dim={self.dim} heads={self.heads} mlp={self.mlp_hidden} "
                f"local={self.local_layers} (window +-{self.local_window}) conv={self.conv_layers} "
                f"(kernel {self.conv_kernel}) global={self.global_layers}",
                f"  pooling:  {'+'.join(self.pooling)} scales={list(self.pool_scales)} queries={self.pool_queries}; "
                f"multi_level={self.multi_level} aux_heads={self.aux_heads}",
                f"  regularization: dropout={self.dropout} drop_path={self.drop_path} layerdrop={self.layerdrop}",
                f"  parameters: {self.num_parameters():,}",
            ]
        )

    def __str__(self) -> str:
        return self.summary()


# Preset sizes. Fields not named take the dataclass defaults above.
PRESETS: dict[str, dict] = {
    # CPU tests and the demo: an epoch of ~1000 sequences of 32-64 frames takes seconds on 2 cores.
    # Head sizes of 16 are the smallest the Triton kernels tile (tl.dot needs K >= 16).
    "tiny": dict(
        part_dim=32, part_hidden=64, cross_layers=1, cross_heads=2,
        dim=64, heads=4, local_layers=1, local_window=4, conv_layers=1, conv_kernel=5, global_layers=1,
        pool_queries=2, dropout=0.1, drop_path=0.05, layerdrop=0.0,
    ),
    # The P100-scale model (16 GB, batch 32) for 500-1001 classes.
    "base": dict(
        part_dim=64, part_hidden=128, cross_layers=1, cross_heads=2,
        dim=256, heads=8, local_layers=3, local_window=8, conv_layers=2, conv_kernel=9, global_layers=3,
        pool_queries=4, dropout=0.2, drop_path=0.1, layerdrop=0.1,
    ),
}  # fmt: skip
