"""Augmentation operations as data: one frozen dataclass per op with its probability and parameters.

An op's dataclass only describes it; the maths lives twice, compiled in `compiled.py` (run by the batch kernel of
`slr_fast.engine`) and as a NumPy per-sample reference in `reference.py`. Temporal ops act on the frame time axis of
the raw sequence (after hand-less frames are dropped, before normalization); spatial ops act on normalized
coordinates, before resampling to T. Every parameter is validated here with a message naming the op and the value.

Both implementations name what they read: an op by its code constant (TIME_WARP, ...), a parameter by its slot in
the kernel's parameter row, `prm[SLOTS["time_warp"].min_speed]`; the slots follow the dataclass fields after `p`,
the order `Op.params()` writes the row in.
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass, fields

TEMPORAL, SPATIAL = "temporal", "spatial"
MAX_PARAMS = 8  # width of the float64 parameter row handed to the kernel (p + up to 7 op parameters)
# Kernel dispatch codes (`Op.code`); temporal ops have the lowest. compiled.py dispatches on these names.
TEMPORAL_CROP, TIME_WARP, SPEED_CHANGE = 0, 1, 2
SCALE, ROTATE, MIRROR, PART_DISTORT, NOISE, DROPOUT, DETECTOR_NOISE = 3, 4, 5, 6, 7, 8, 9


def _check(cond: bool, op: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"augment op {op!r}: {msg}")


@dataclass(frozen=True)
class Op:
    """Base of all ops: `p` is the per-sample probability of applying it."""

    p: float = 1.0

    name = "op"  # registry name, set by each subclass
    code = -1  # kernel dispatch code
    stage = SPATIAL

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            _check(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), self.name,
                   f"{f.name}={v!r} must be a finite number")
        _check(0.0 <= self.p <= 1.0, self.name, f"p={self.p} must lie in [0, 1]")
        self.validate()

    def validate(self) -> None:
        """Op-specific parameter checks (raise ValueError naming the op)."""

    def params(self) -> list[float]:
        """Parameters after p, in the order the kernel reads them."""
        return [float(getattr(self, f.name)) for f in fields(self) if f.name != "p"]

    def growth(self) -> float:
        """Upper bound of output length / input length (temporal ops); sizes the kernel's scratch buffers."""
        return 1.0

    def to_config(self) -> dict:
        """{"op": name, **params}; inverse of `AugmentPipeline.from_config` for one op."""
        return {"op": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}


# ------------------------------------------------------------------------------------------------ temporal ops
@dataclass(frozen=True)
class TemporalCrop(Op):
    """Keep a random contiguous window of frac * n frames, frac ~ U(min_frac, 1), at a uniform random start."""

    min_frac: float = 0.8
    name, code, stage = "temporal_crop", TEMPORAL_CROP, TEMPORAL

    def validate(self):
        _check(0.0 < self.min_frac <= 1.0, self.name, f"min_frac={self.min_frac} must lie in (0, 1]")


@dataclass(frozen=True)
class TimeWarp(Op):
    """Play the sign slower or faster: speed log-uniform in [min_speed, max_speed], frames linearly interpolated.

    The first and last frames are kept; n frames become round((n - 1) / speed) + 1.
    """

    min_speed: float = 0.7
    max_speed: float = 1.3
    name, code, stage = "time_warp", TIME_WARP, TEMPORAL

    def validate(self):
        _check(0.1 <= self.min_speed <= self.max_speed <= 10.0, self.name,
               f"need 0.1 <= min_speed <= max_speed <= 10, got {self.min_speed}, {self.max_speed}")

    def growth(self):
        return 1.0 / self.min_speed


@dataclass(frozen=True)
class SpeedChange(Op):
    """Non-linear speed change: a random monotone time warp, piecewise linear over `knots` equal segments.

    Segment k lasts the same output time but covers source time proportional to exp(strength * u_k), u_k ~ U(-1, 1):
    the signer speeds up and slows down within the sign. Length, first and last frames are kept.
    """

    strength: float = 0.5
    knots: int = 4
    name, code, stage = "speed_change", SPEED_CHANGE, TEMPORAL

    def validate(self):
        _check(0.0 <= self.strength <= 3.0, self.name, f"strength={self.strength} must lie in [0, 3]")
        _check(float(self.knots).is_integer() and 1 <= self.knots <= 64, self.name,
               f"knots={self.knots} must be an integer in 1..64")


# ------------------------------------------------------------------------------------------------- spatial ops
@dataclass(frozen=True)
class Scale(Op):
    """Scale about the centre: s log-uniform in [min_scale, max_scale]; x, y get s * r and s / r, r = exp(U(-a, a))."""

    min_scale: float = 0.8
    max_scale: float = 1.2
    aspect: float = 0.1
    name, code = "scale", SCALE

    def validate(self):
        _check(0.0 < self.min_scale <= self.max_scale <= 100.0, self.name,
               f"need 0 < min_scale <= max_scale <= 100, got {self.min_scale}, {self.max_scale}")
        _check(0.0 <= self.aspect <= 1.0, self.name, f"aspect={self.aspect} must lie in [0, 1]")


@dataclass(frozen=True)
class Rotate(Op):
    """A different camera angle: rotation R = Rz(roll) Ry(yaw) Rx(pitch) about the centre, angles ~ U(-max, max).

    With x, y only the skeleton is taken as planar (z = 0) and projected orthographically after the 3D rotation:
    an in-plane rotation by roll plus the foreshortening of yaw and pitch. With a z channel all three rotate.
    """

    roll_deg: float = 15.0
    yaw_deg: float = 25.0
    pitch_deg: float = 15.0
    name, code = "rotate", ROTATE

    def validate(self):
        for f in ("roll_deg", "yaw_deg", "pitch_deg"):
            v = getattr(self, f)
            _check(0.0 <= v <= 180.0, self.name, f"{f}={v} must lie in [0, 180]")


@dataclass(frozen=True)
class Mirror(Op):
    """Left/right mirror: x -> 2 c_x - x and every point becomes its mirror (hands swap; lips, pose pairs swap)."""

    name, code = "mirror", MIRROR


@dataclass(frozen=True)
class PartDistort(Op):
    """Local per-part distortion: each part gets its own scale exp(U(-scale, scale)), rotation and shift.

    Scale and rotation act about the part's centroid over the sequence (x, y); the same transform holds for every
    frame, so the part's motion is kept and only its shape/placement relative to the others changes.
    """

    scale: float = 0.1
    rotate_deg: float = 10.0
    shift: float = 0.05
    name, code = "part_distort", PART_DISTORT

    def validate(self):
        _check(0.0 <= self.scale <= 2.0, self.name, f"scale={self.scale} must lie in [0, 2]")
        _check(0.0 <= self.rotate_deg <= 180.0, self.name, f"rotate_deg={self.rotate_deg} must lie in [0, 180]")
        _check(0.0 <= self.shift <= 10.0, self.name, f"shift={self.shift} must lie in [0, 10]")


@dataclass(frozen=True)
class Noise(Op):
    """Independent Gaussian noise of standard deviation `std` on every present coordinate (normalized units)."""

    std: float = 0.01
    name, code = "noise", NOISE

    def validate(self):
        _check(0.0 <= self.std <= 10.0, self.name, f"std={self.std} must lie in [0, 10]")


@dataclass(frozen=True)
class Dropout(Op):
    """Coordinate dropout: each point of each frame is made missing with prob `rate`, each part with `part_rate`."""

    rate: float = 0.05
    part_rate: float = 0.0
    name, code = "dropout", DROPOUT

    def validate(self):
        _check(0.0 <= self.rate <= 1.0, self.name, f"rate={self.rate} must lie in [0, 1]")
        _check(0.0 <= self.part_rate <= 1.0, self.name, f"part_rate={self.part_rate} must lie in [0, 1]")


@dataclass(frozen=True)
class DetectorNoise(Op):
    """Errors a keypoint detector really makes, frame to frame.

    - temporally correlated jitter: AR(1) per coordinate, e_t = rho e_(t-1) + sqrt(1 - rho^2) jitter_std z_t;
    - bursts of missed hands: at each frame a hand that is not already lost starts a run of 1..miss_max_len missing
      frames with probability miss_rate;
    - hand-swap errors: with probability swap_rate a run of 1..swap_max_len frames has left and right hand swapped.
    """

    jitter_std: float = 0.01
    jitter_corr: float = 0.8
    miss_rate: float = 0.02
    miss_max_len: int = 6
    swap_rate: float = 0.01
    swap_max_len: int = 3
    name, code = "detector_noise", DETECTOR_NOISE

    def validate(self):
        _check(0.0 <= self.jitter_std <= 10.0, self.name, f"jitter_std={self.jitter_std} must lie in [0, 10]")
        _check(0.0 <= self.jitter_corr < 1.0, self.name, f"jitter_corr={self.jitter_corr} must lie in [0, 1)")
        for f in ("miss_rate", "swap_rate"):
            v = getattr(self, f)
            _check(0.0 <= v <= 1.0, self.name, f"{f}={v} must lie in [0, 1]")
        for f in ("miss_max_len", "swap_max_len"):
            v = getattr(self, f)
            _check(float(v).is_integer() and 1 <= v <= 1000, self.name, f"{f}={v} must be an integer in 1..1000")


OPS: dict[str, type[Op]] = {
    cls.name: cls
    for cls in (TemporalCrop, TimeWarp, SpeedChange, Scale, Rotate, Mirror, PartDistort, Noise, Dropout, DetectorNoise)
}


def _slots(cls: type[Op]) -> tuple:
    names = [f.name for f in fields(cls) if f.name != "p"]
    return namedtuple(f"{cls.__name__}Slots", names)(*range(len(names)))


# op name -> its parameters' positions in the kernel's parameter row `prm` (the row after p): SLOTS["scale"].aspect.
SLOTS: dict[str, tuple] = {name: _slots(cls) for name, cls in OPS.items()}
