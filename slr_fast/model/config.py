"""ModelConfig: every size and switch of the sign model in one dataclass, with the `tiny` and `base` presets.

The config records the data it was built for (part names and sizes from the store's layout, coordinate channels,
number of classes), so a checkpoint carrying `config.to_dict()` rebuilds its model without the store.
"""

from __future__ import annotations

import math
import re
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
    # The global blocks' attention pattern: "dense" (every frame), or "dilated:K" (K in [2, 256]): query frame i sees
    # only frames j with (i - j) % K == 0, every K-th frame counted from itself. The local blocks have already mixed
    # each frame with its neighbours, so a dilated view still reaches all of them; it costs 1/K of dense attention.
    global_pattern: str = "dense"
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
    part_heads: bool = False  # a classifier per body part on its own tokens (the cross-modal consistency loss)

    # --- regularization ---
    dropout: float = 0.1  # on the embedding, every residual branch and the classifier's hidden layer
    drop_path: float = 0.1  # stochastic depth of the backbone's residual branches, rising linearly to this value
    layerdrop: float = 0.0  # probability of skipping a whole backbone transformer block in training (eval: never)

    # Layout name for the record only (the parts above are what the model uses).
    layout_name: str = field(default="default", compare=False)

    def __post_init__(self):
        for name in _TUPLES:  # JSON and --set give lists; the config holds tuples (hashable, comparable)
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        errors = _type_and_bound_errors(self)
        if errors:  # the rules below compare and divide: only meaningful on values of the right type
            raise ValueError("invalid ModelConfig: " + "; ".join(errors))
        if len(self.part_names) != len(self.part_sizes):
            errors.append(f"part_names {self.part_names} and part_sizes {self.part_sizes} must be non-empty and match")
        if len(set(self.part_names)) != len(self.part_names):
            errors.append(f"part_names {self.part_names} must be unique")
        if self.channels not in (2, 3):
            errors.append(f"channels must be 2 (x, y) or 3 (x, y, z), got {self.channels}")
        for name, width, heads in (("dim", self.dim, self.heads), ("part_dim", self.part_dim, self.cross_heads)):
            if width % heads or (width // heads) % 2:
                errors.append(f"{name}={width} must split into {heads} heads of an even size (RoPE rotates pairs)")
        if self.local_layers + self.conv_layers + self.global_layers < 1:
            errors.append("the backbone needs at least one layer (local_layers + conv_layers + global_layers)")
        if self.conv_kernel % 2 == 0:
            errors.append(f"conv_kernel must be odd (keeps frames aligned), got {self.conv_kernel}")
        if (problem := _global_pattern_error(self.global_pattern)) is not None:
            errors.append(problem)
        unknown = [p for p in self.pooling if p not in POOL_KINDS]
        if unknown or not self.pooling or len(set(self.pooling)) != len(self.pooling):
            errors.append(f"pooling {self.pooling}: unknown {unknown}; choose from {POOL_KINDS}, each at most once")
        if errors:
            raise ValueError("invalid ModelConfig: " + "; ".join(errors))

    # --- derived sizes ---
    @property
    def num_points(self) -> int:
        """Points per frame (sum of part sizes)."""
        return sum(self.part_sizes)

    @property
    def global_dilation(self) -> int:
        """The dilation K of the global blocks' attention (1 = dense), from `global_pattern`."""
        return 1 if self.global_pattern == "dense" else int(self.global_pattern.partition(":")[2])

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
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a mapping of field names to values, got {type(d).__name__}")
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(names), key=str)
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

    def check_size(self, limit: int | None = None) -> int:
        """The parameter count, after refusing a model over `limit` (default MAX_PARAMETERS) or one whose part
        names cannot name modules; counted on the meta device, so nothing is allocated before the refusal."""
        from torch import nn

        limit = MAX_PARAMETERS if limit is None else limit
        clash = [n for n in self.part_names if hasattr(nn.ModuleDict, n)]
        if clash:
            raise ValueError(f"invalid ModelConfig: part_names {clash} clash with attributes of the part encoders")
        n = self.num_parameters()
        if n > limit:
            raise ValueError(f"the model this config describes has {n:,} parameters, over the limit of {limit:,} "
                             f"(slr_fast.model.config.MAX_PARAMETERS: {4 * limit / 2**30:.1f} GiB of fp32 weights, "
                             f"4x that to train with AdamW)")
        return n

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
                f"(kernel {self.conv_kernel}) global={self.global_layers} ({self.global_pattern})",
                f"  pooling:  {'+'.join(self.pooling)} scales={list(self.pool_scales)} queries={self.pool_queries}; "
                f"multi_level={self.multi_level} aux_heads={self.aux_heads}",
                f"  regularization: dropout={self.dropout} drop_path={self.drop_path} layerdrop={self.layerdrop}",
                f"  parameters: {self.num_parameters():,}",
            ]
        )

    def __str__(self) -> str:
        return self.summary()


# The largest model anything in slr_fast builds: 1e9 parameters are 3.7 GiB of fp32 weights and ~15 GiB with the
# gradients and AdamW's two moments, a whole 16 GB P100 (the smallest card the project targets) before a single
# activation. `base` has ~7.8e6. A checkpoint's model_config is untrusted: this bounds what it can make us allocate.
MAX_PARAMETERS = 1_000_000_000

# Type and range of every field, checked before the rules that relate fields. The upper bounds are far beyond any
# sensible model and keep a config read from an untrusted checkpoint from describing one that takes minutes to
# even lay out (64 layers per stage, widths to 16k); MAX_PARAMETERS then bounds its memory.
# field: (type, lowest, highest, brackets) with "[]" closed and "[)" / "(]" half-open intervals.
_BOUNDS: dict[str, tuple[type, float, float, str]] = {
    "num_classes": (int, 1, 1_000_000, "[]"),
    "channels": (int, 2, 3, "[]"),
    "part_dim": (int, 2, 4096, "[]"),
    "part_hidden": (int, 1, 65536, "[]"),
    "cross_layers": (int, 0, 64, "[]"),
    "cross_heads": (int, 1, 256, "[]"),
    "dim": (int, 2, 16384, "[]"),
    "heads": (int, 1, 256, "[]"),
    "mlp_ratio": (float, 0.0, 64.0, "(]"),
    "local_layers": (int, 0, 64, "[]"),
    "local_window": (int, 1, 65536, "[]"),
    "conv_layers": (int, 0, 64, "[]"),
    "conv_kernel": (int, 1, 1023, "[]"),
    "global_layers": (int, 0, 64, "[]"),
    "rope_base": (float, 1.0, 1e12, "(]"),
    "residual_init": (float, -1e3, 1e3, "[]"),
    "norm_eps": (float, 0.0, 1.0, "(]"),
    "pool_queries": (int, 1, 1024, "[]"),
    "head_hidden": (int, 0, 65536, "[]"),
    "dropout": (float, 0.0, 1.0, "[)"),
    "drop_path": (float, 0.0, 1.0, "[)"),
    "layerdrop": (float, 0.0, 1.0, "[)"),
}
_BOOLS = ("use_motion", "multi_level", "aux_heads", "part_heads")
_TUPLES = ("part_names", "part_sizes", "pooling", "pool_scales")
_NOUNS = {int: "an integer", float: "a finite number"}


def _bound_error(name: str, value, kind: type, lo: float, hi: float, brackets: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int if kind is int else int | float) or (
            kind is float and not math.isfinite(value)):
        return f"{name} must be {_NOUNS[kind]}, got {value!r}"
    below = value < lo or (brackets[0] == "(" and value == lo)
    above = value > hi or (brackets[1] == ")" and value == hi)
    if brackets != "[]" and (below or above):
        return f"{name} must be in {brackets[0]}{lo:g}, {hi:g}{brackets[1]}, got {value!r}"
    if below:
        return f"{name} must be >= {lo:g}, got {value!r}"
    if above:
        return f"{name} must be <= {hi:g}, got {value!r}"
    return None


def _tuple_error(name: str, value, kind: type, lo: float, hi: float, max_len: int) -> str | None:
    if not isinstance(value, tuple) or not 1 <= len(value) <= max_len:
        return f"{name} must be a list of 1 to {max_len} entries, got {value!r}"
    for v in value:
        if kind is str:
            if not isinstance(v, str) or not _PART_NAME.fullmatch(v):
                return f"{name} entries must be 1 to 64 characters without '.', got {v!r}"
        elif (problem := _bound_error(f"{name} entries", v, kind, lo, hi, "[]")) is not None:
            return problem
    return None


_PART_NAME = re.compile(r"[^.]{1,64}")  # names a module: no dots, not empty
_GLOBAL_PATTERN = re.compile(r"dilated:([0-9]{1,3})")
MAX_DILATION = 256  # far beyond the sequences' 64-256 frames; a bigger K leaves every frame alone with itself


def _global_pattern_error(value) -> str | None:
    """The one rule for ModelConfig.global_pattern: "dense" or "dilated:K" with K in [2, MAX_DILATION]."""
    match = _GLOBAL_PATTERN.fullmatch(value) if isinstance(value, str) else None
    if value == "dense" or (match is not None and 2 <= int(match[1]) <= MAX_DILATION):
        return None
    return f"global_pattern must be 'dense' or 'dilated:K' with K an integer in [2, {MAX_DILATION}], got {value!r}"


def _type_and_bound_errors(cfg: ModelConfig) -> list[str]:
    errors = [e for name, rule in _BOUNDS.items() if (e := _bound_error(name, getattr(cfg, name), *rule))]
    errors += [f"{name} must be true or false, got {getattr(cfg, name)!r}" for name in _BOOLS
               if not isinstance(getattr(cfg, name), bool)]
    errors += [e for e in (_tuple_error("part_names", cfg.part_names, str, 0, 0, 64),
                           _tuple_error("part_sizes", cfg.part_sizes, int, 1, 10_000, 64),
                           _tuple_error("pool_scales", cfg.pool_scales, int, 1, 4096, 16)) if e]
    if not isinstance(cfg.pooling, tuple) or not all(isinstance(p, str) for p in cfg.pooling):
        errors.append(f"pooling must be a list of names from {POOL_KINDS}, got {cfg.pooling!r}")
    if not isinstance(cfg.layout_name, str):
        errors.append(f"layout_name must be a string, got {cfg.layout_name!r}")
    return errors


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
