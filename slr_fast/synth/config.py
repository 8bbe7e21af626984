"""SynthConfig: everything that shapes a synthetic dataset; equal configs give identical data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from slr_fast.errors import UserInputError
from slr_fast.layout import LIPS, Layout, get_layout


@dataclass
class SynthConfig:
    """Size, signers, timing and detector behaviour of a synthetic dataset."""

    # Default size: about 860 sequences, enough for the tiny model to pass 90 % on unseen signers in minutes on
    # 2 CPU cores. Slovo's shape is classes=1001, per_class=20.
    classes: int = 24
    per_class: int = 36  # sequences per class, spread evenly over the signers
    signers: int = 12
    seed: int = 0
    layout: str | Layout = "default"  # a slr_fast.layout name (default, arm, default_z, arm_z) or a Layout
    family_size: int = 2  # classes per family of order-only variants (1-4); larger is harder
    # Lengths: log-normal around the median, times the signer's tempo; a long tail up to max_length.
    length_median: float = 40.0
    length_sigma: float = 0.6
    min_length: int = 3
    max_length: int = 320
    # Detector behaviour. Misses come in bursts; together with hands resting out of view and whole-frame drop-outs
    # these defaults leave about a third of frames without any hand, as in GISLR's MediaPipe data.
    hand_miss_rate: float = 0.3  # chance a raised hand is missed in a frame (signers vary around it)
    rest_miss_rate: float = 0.9  # chance a resting (lowered) hand is missed
    face_miss_rate: float = 0.02  # lips missing (more when a hand covers the mouth)
    frame_miss_rate: float = 0.01  # nothing detected at all (the pose, and so the holistic model, lost)
    jitter: float = 0.025  # detector noise, in shoulder half-widths (~5 mm), temporally correlated
    left_handed: float = 0.15  # share of left-handed signers (they mirror every sign)
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)  # share of signers in train/val/test
    aspects: tuple[float, ...] = (16 / 9, 4 / 3, 1.0, 9 / 16)  # camera width/height ratios signers are filmed at

    def __post_init__(self):
        for name in ("classes", "per_class", "signers", "min_length", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserInputError(f"SynthConfig.{name} must be a positive integer, got {value!r}")
        if self.min_length > self.max_length:
            raise UserInputError(f"SynthConfig.min_length {self.min_length} > max_length {self.max_length}")
        if not 1 <= self.family_size <= 4:
            raise UserInputError(f"SynthConfig.family_size must be 1..4, got {self.family_size}")
        if self.length_median <= 0 or self.length_sigma < 0:
            raise UserInputError(f"SynthConfig: length_median must be > 0 and length_sigma >= 0, got "
                                 f"{self.length_median}, {self.length_sigma}")
        for name in ("hand_miss_rate", "rest_miss_rate", "face_miss_rate", "frame_miss_rate", "left_handed"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UserInputError(f"SynthConfig.{name} must be within [0, 1], got {value}")
        if self.jitter < 0:
            raise UserInputError(f"SynthConfig.jitter must be >= 0, got {self.jitter}")
        if len(self.split) != 3 or min(self.split) < 0 or sum(self.split) <= 0:
            raise UserInputError(f"SynthConfig.split must be three non-negative shares (train, val, test), "
                                 f"got {self.split}")
        if not self.aspects or min(self.aspects) <= 0:
            raise UserInputError(f"SynthConfig.aspects must be positive width/height ratios, got {self.aspects}")
        self.get_layout()  # fail early on a layout the generator cannot draw

    def get_layout(self) -> Layout:
        """The Layout object (resolving a name), checked to hold only points the generator draws."""
        layout = get_layout(self.layout) if isinstance(self.layout, str) else self.layout
        if not isinstance(layout, Layout):
            raise UserInputError(f"SynthConfig.layout must be a layout name or a Layout, got {type(layout).__name__}")
        lips = set(LIPS)
        for part in layout.parts:
            if part.source == "face":
                extra = [i for i in part.indices if i not in lips]
                if extra:
                    raise UserInputError(f"layout part {part.name!r}: the synthetic face has only the 40 lip points "
                                         f"(slr_fast.layout.LIPS); face indices {extra[:8]} cannot be generated")
        return layout

    def to_dict(self) -> dict:
        """Plain-JSON description (the layout as its dict), stored as the dataset's provenance."""
        d = asdict(self)
        d["layout"] = self.get_layout().to_dict()
        d["split"] = list(self.split)
        d["aspects"] = list(self.aspects)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SynthConfig:
        """Inverse of to_dict(): rebuild the config recorded in a store's provenance (to regenerate or extend it)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserInputError(f"unknown SynthConfig field(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("layout"), dict):
            layout = Layout.from_dict(d["layout"])
            # A named layout comes back as its name, so the config compares equal to the one that wrote it.
            try:
                d["layout"] = layout.name if get_layout(layout.name) == layout else layout
            except ValueError:
                d["layout"] = layout
        for key in ("split", "aspects"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
