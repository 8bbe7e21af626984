"""The sign vocabulary: each class is a short sequence of segments (location, movement, handshapes, palm, lips).

Classes come in families that share every segment and differ only in temporal order: the sign as drawn, the sign
played backwards (movement directions, handshape changes and mouthing reversed), and rotations of its segment
order. Family members have almost the same mean frame, so telling them apart needs the order of events - the
property that keeps a linear classifier on averaged frames well short of a sequence model. Families differ from one
another in their combination of shared parts, so handshapes, places and movements recur across the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slr_fast.synth.hand import HANDSHAPE_NAMES

# Wrist positions (body units, see body.py) of the dominant hand, modelled as the right hand.
LOCATIONS = {
    "neutral": (-0.35, 1.00, -1.30),
    "neutral_high": (-0.30, 0.25, -1.35),
    "chest": (-0.15, 0.80, -0.55),
    "chin": (-0.10, -0.30, -0.78),
    "mouth": (-0.05, -0.45, -0.85),
    "forehead": (-0.15, -0.95, -0.78),
    "temple": (-0.55, -0.85, -0.55),
    "cheek": (-0.40, -0.50, -0.72),
    "shoulder": (0.55, 0.45, -0.45),
    "stomach": (-0.05, 1.55, -0.70),
    "side": (-1.15, 0.90, -0.95),
}
# Two-handed signs with a static base hand: the dominant hand acts on or beside it.
BASE_LOCATIONS = {
    "base_top": (-0.05, 0.70, -1.20),
    "base_near": (-0.35, 0.85, -1.30),
    "base_front": (-0.10, 0.90, -1.60),
}
BASE_HAND_POSITION = (-0.20, 1.00, -1.15)  # the non-dominant hand's wrist in its own (mirrored) frame
SYMMETRIC_LOCATIONS = ("neutral", "neutral_high", "chest", "side", "stomach", "shoulder", "temple")

# Palm orientations as (roll, pitch, yaw) in degrees, see hand.rotation.
ORIENTATIONS = {
    "front": (0, 0, 0),
    "side": (-75, 0, 0),
    "body": (-165, 0, 0),
    "down": (0, 80, 0),
    "up": (180, 80, 0),
    "tilt_in": (0, 0, 40),
    "tilt_out": (-30, 0, -35),
    "forward": (-75, 65, 0),
}
MOVEMENTS = ("hold", "line", "arc", "circle", "tap", "shake", "twist", "wiggle")
# Movement directions in body units (for the right hand; medial is +x).
DIRECTIONS = {
    "up": (0, -1, 0), "down": (0, 1, 0), "medial": (1, 0, 0), "lateral": (-1, 0, 0),
    "forward": (0, 0, -1), "back": (0, 0, 1), "up_medial": (0.7, -0.7, 0), "down_lateral": (-0.7, 0.7, 0),
    "forward_down": (0, 0.6, -0.8),
}  # fmt: skip
LIP_ACTIONS = ("none", "open", "repeat", "round", "wide", "pa")
HAND_MODES = ("one", "sym", "alt", "base")


@dataclass(frozen=True)
class Segment:
    """One phase of a sign: the dominant hand's place, movement, handshape change, palm and mouthing."""

    location: str
    movement: str
    direction: str  # for line/arc/tap/shake; the plane normal's name for circles
    amplitude: float  # body units
    repeats: int  # taps, shakes, circle turns, twists
    shape_start: str
    shape_end: str
    orient_start: str
    orient_end: str
    lips: str
    weight: float  # share of the sign's duration


@dataclass(frozen=True)
class Sign:
    """A class: its segments in order, played forwards or backwards, and how the second hand takes part."""

    name: str
    segments: tuple[Segment, ...]
    reverse: bool
    hands: str  # one of HAND_MODES
    base_shape: str  # the non-dominant hand's shape in "base" signs
    base_orient: str
    family: int


def _segment(rng: np.random.Generator, hands: str, previous: str | None) -> Segment:
    if hands == "base":
        places = list(BASE_LOCATIONS)
    elif hands in ("sym", "alt"):
        places = list(SYMMETRIC_LOCATIONS)
    else:
        places = list(LOCATIONS)
    if previous in places and len(places) > 1:
        places.remove(previous)  # consecutive segments at one place would make order invisible
    movement = str(rng.choice(MOVEMENTS, p=[0.12, 0.16, 0.14, 0.14, 0.14, 0.12, 0.09, 0.09]))
    if movement == "circle":
        direction = str(rng.choice(["frontal", "horizontal", "sagittal"])) + ("_cw" if rng.random() < 0.5 else "_ccw")
    else:
        direction = str(rng.choice(list(DIRECTIONS)))
    shape_start = str(rng.choice(HANDSHAPE_NAMES))
    shape_end = shape_start if rng.random() < 0.45 else str(rng.choice(HANDSHAPE_NAMES))
    orient_start = str(rng.choice(list(ORIENTATIONS)))
    orient_end = orient_start if rng.random() < 0.6 or movement == "twist" else str(rng.choice(list(ORIENTATIONS)))
    amplitude = {"hold": 0.05, "line": 0.75, "arc": 0.7, "circle": 0.32, "tap": 0.2, "shake": 0.22,
                 "twist": 0.0, "wiggle": 0.03}[movement] * float(rng.uniform(0.8, 1.25))
    return Segment(
        location=str(rng.choice(places)), movement=movement, direction=direction, amplitude=amplitude,
        repeats=int(rng.integers(2, 4)) if movement in ("tap", "shake", "twist", "wiggle") else int(rng.integers(1, 3)),
        shape_start=shape_start, shape_end=shape_end, orient_start=orient_start, orient_end=orient_end,
        lips=str(rng.choice(LIP_ACTIONS, p=[0.35, 0.15, 0.15, 0.12, 0.11, 0.12])),
        weight=float(rng.uniform(0.7, 1.3)),
    )


def _signature(segments: tuple[Segment, ...], hands: str) -> tuple:
    return (hands,) + tuple((s.location, s.movement, s.shape_start, s.shape_end) for s in segments)


def family_variants(num_segments: int, family_size: int) -> list[tuple[tuple[int, ...], bool]]:
    """Segment orders and reverse flags of a family's members (all with distinct sequences of places)."""
    order = tuple(range(num_segments))
    rotated = order[1:] + order[:1]
    return [(order, False), (order, True), (rotated, False), (rotated, True)][:family_size]


def make_vocabulary(num_classes: int, seed: int, family_size: int = 2) -> list[Sign]:
    """`num_classes` signs in families of `family_size` (1-4); deterministic, and a prefix of a larger vocabulary."""
    if not 1 <= family_size <= 4:
        raise ValueError(f"family_size must be 1..4, got {family_size}")
    signs: list[Sign] = []
    seen: set[tuple] = set()
    family = 0
    while len(signs) < num_classes:
        rng = np.random.default_rng([seed, 0, family])
        for _attempt in range(100):  # redraw the rare family that repeats an earlier one
            hands = str(rng.choice(HAND_MODES, p=[0.5, 0.2, 0.15, 0.15]))
            # Rotating the order of two segments is the same as reversing them, so larger families need three.
            n_seg = 3 if family_size > 2 else int(rng.choice([2, 3], p=[0.6, 0.4]))
            segs: list[Segment] = []
            for _ in range(n_seg):
                segs.append(_segment(rng, hands, segs[-1].location if segs else None))
            key = _signature(tuple(segs), hands)
            if key not in seen:
                break
        seen.add(key)
        base_shape = str(rng.choice(["flat", "fist", "open", "C", "bent"]))
        base_orient = str(rng.choice(["down", "up", "side"]))
        for order, reverse in family_variants(n_seg, family_size):
            if len(signs) == num_classes:
                break
            signs.append(Sign(name=f"sign_{len(signs):03d}",
                              segments=tuple(segs[i] for i in order), reverse=reverse, hands=hands,
                              base_shape=base_shape, base_orient=base_orient, family=family))
        family += 1
    return signs
