"""Keypoint layouts: which MediaPipe Holistic points a store holds, in which order.

A layout is data. Stores record theirs in the group attributes and every consumer (ingest, preprocessing,
augmentation, the model's part embeddings) reads it from there, so other layouts (with z, more pose points, the
GISLR-notebook arm preset) work without code changes. Numbers are the public conventions in ../shared/KEYPOINTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slr_fast.errors import UserInputError

# Sources: MediaPipe Holistic components, with their point counts.
SOURCE_SIZES = {"face": 468, "left_hand": 21, "pose": 33, "right_hand": 21}

# GISLR parquet: 543 rows per frame in this order (face 0-467, left_hand 468-488, pose 489-521, right_hand 522-542).
GISLR_ROWS_PER_FRAME = 543
GISLR_OFFSETS = {"face": 0, "left_hand": 468, "pose": 489, "right_hand": 522}

# Lips: the 40 face-mesh indices used across the GISLR competition notebooks
# (e.g. "gislr-tf-data-processing-transformer-training"): outer upper, outer lower, inner upper, inner lower.
LIPS = (
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    291, 146, 91, 181, 84, 17, 314, 405, 321, 375,
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
)  # fmt: skip

# Left/right mirror pairs within a source (index -> index); unlisted points are their own mirror.
# Face: the lip points of the canonical face mesh are symmetric about the midline (0, 17, 13, 14 lie on it).
_FACE_PAIRS = (
    (61, 291), (185, 409), (40, 270), (39, 269), (37, 267),
    (146, 375), (91, 321), (181, 405), (84, 314),
    (78, 308), (191, 415), (80, 310), (81, 311), (82, 312),
    (95, 324), (88, 318), (178, 402), (87, 317),
)  # fmt: skip
# Pose: MediaPipe pose landmark pairs (eyes, ears, mouth corners, shoulders, elbows, wrists, fingers, hips, legs).
_POSE_PAIRS = (
    (1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20), (21, 22),
    (23, 24), (25, 26), (27, 28), (29, 30), (31, 32),
)  # fmt: skip
_SOURCE_MIRROR = {"face": _FACE_PAIRS, "pose": _POSE_PAIRS}
# The hands swap sources: left hand point i mirrors to right hand point i.
_SOURCE_SWAP = {"left_hand": "right_hand", "right_hand": "left_hand"}

POSE_PRESETS = {
    "upper_body": (0, 11, 12, 13, 14),  # nose, left/right shoulder, left/right elbow (default)
    "arm": (13, 15, 17, 19, 21),  # one arm, as the GISLR notebooks: elbow, wrist, pinky, index, thumb
}


@dataclass(frozen=True)
class Part:
    """A contiguous block of points taken from one MediaPipe source."""

    name: str  # e.g. "lips", "left_hand"
    source: str  # one of SOURCE_SIZES
    indices: tuple[int, ...]  # indices into the source component

    def __post_init__(self):
        if self.source not in SOURCE_SIZES:
            raise ValueError(f"part {self.name!r}: unknown source {self.source!r}; valid: {sorted(SOURCE_SIZES)}")
        bad = [i for i in self.indices if not 0 <= i < SOURCE_SIZES[self.source]]
        if bad:
            raise ValueError(f"part {self.name!r}: indices {bad} outside source {self.source!r} "
                             f"(0..{SOURCE_SIZES[self.source] - 1})")
        if not self.indices:
            raise ValueError(f"part {self.name!r} has no points")

    @property
    def size(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Layout:
    """Ordered parts plus coordinate channels; point p of a frame is parts' points concatenated."""

    parts: tuple[Part, ...]
    channels: tuple[str, ...] = ("x", "y")
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"layout has duplicate part names: {names}")
        if not self.parts:
            raise ValueError("layout has no parts")
        if tuple(self.channels) not in (("x", "y"), ("x", "y", "z")):
            raise ValueError(f"layout channels must be ('x','y') or ('x','y','z'), got {self.channels}")

    @property
    def num_points(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    @property
    def part_sizes(self) -> tuple[int, ...]:
        return tuple(p.size for p in self.parts)

    def part_slices(self) -> dict[str, slice]:
        """Point range of each part in a frame."""
        out, start = {}, 0
        for p in self.parts:
            out[p.name] = slice(start, start + p.size)
            start += p.size
        return out

    def point_name(self, point: int) -> str:
        """Point `point` of a frame in words, for messages: e.g. "left_hand 3 (left_hand landmark 3)"."""
        start = 0
        for p in self.parts:
            if point < start + p.size:
                return f"{p.name} {point - start} ({p.source} landmark {p.indices[point - start]})"
            start += p.size
        raise IndexError(f"point {point} outside the layout's {self.num_points} points")

    def part_ids(self) -> np.ndarray:
        """(P,) int32: the part number of every point."""
        return np.concatenate([np.full(p.size, i, np.int32) for i, p in enumerate(self.parts)])

    def part_of_source(self, source: str) -> list[int]:
        """Part numbers whose points come from `source`."""
        return [i for i, p in enumerate(self.parts) if p.source == source]

    def hand_parts(self) -> list[int]:
        return [i for i, p in enumerate(self.parts) if p.source in ("left_hand", "right_hand")]

    def gislr_rows(self) -> np.ndarray:
        """(P,) int64: for each point, its row within one GISLR frame of 543 rows."""
        return np.concatenate([GISLR_OFFSETS[p.source] + np.asarray(p.indices, np.int64) for p in self.parts])

    def mirror_index(self) -> np.ndarray:
        """(P,) int64: the point that point p becomes under a left/right mirror (hands swap, lips/pose pairs).

        A point whose counterpart is not in the layout maps to itself, so the map is always an involution.
        """
        where = {}  # (source, source_index) -> point
        point = 0
        for p in self.parts:
            for i in p.indices:
                where[(p.source, i)] = point
                point += 1
        out = np.arange(self.num_points, dtype=np.int64)
        for (source, i), pt in where.items():
            if source in _SOURCE_SWAP:
                target = (_SOURCE_SWAP[source], i)
            else:
                pairs = dict(_SOURCE_MIRROR.get(source, ()))
                pairs.update({b: a for a, b in _SOURCE_MIRROR.get(source, ())})
                target = (source, pairs.get(i, i))
            out[pt] = where.get(target, pt)
        # Keep it an involution even for partial layouts (a counterpart present only one way).
        bad = out[out] != np.arange(self.num_points)
        out[bad] = np.arange(self.num_points)[bad]
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "channels": list(self.channels),
            "parts": [{"name": p.name, "source": p.source, "indices": list(p.indices)} for p in self.parts],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        try:
            parts = tuple(Part(q["name"], q["source"], tuple(int(i) for i in q["indices"])) for q in d["parts"])
            return cls(parts=parts, channels=tuple(d.get("channels", ("x", "y"))), name=d.get("name", "custom"))
        except (KeyError, TypeError) as e:
            raise UserInputError(f"malformed layout description {d!r}: {e}") from e


def make_layout(pose: str | tuple[int, ...] = "upper_body", with_z: bool = False) -> Layout:
    """The default 87-point layout: lips 40, left hand 21, right hand 21, pose 5 (preset name or indices)."""
    if isinstance(pose, str) and pose not in POSE_PRESETS:
        raise UserInputError(f"unknown pose preset {pose!r}; valid: {sorted(POSE_PRESETS)}")
    pose_idx = POSE_PRESETS[pose] if isinstance(pose, str) else tuple(pose)
    name = "default" if pose == "upper_body" else (pose if isinstance(pose, str) else "custom")
    return Layout(
        parts=(
            Part("lips", "face", LIPS),
            Part("left_hand", "left_hand", tuple(range(21))),
            Part("right_hand", "right_hand", tuple(range(21))),
            Part("pose", "pose", pose_idx),
        ),
        channels=("x", "y", "z") if with_z else ("x", "y"),
        name=name + ("_z" if with_z else ""),
    )


def make_hands_layout(with_z: bool = False) -> Layout:
    """Hands only, 42 points: left hand 21, right hand 21 (sources that hold no face or body, e.g. Slovo's
    released MediaPipe Hands keypoints)."""
    return Layout(
        parts=(Part("left_hand", "left_hand", tuple(range(21))), Part("right_hand", "right_hand", tuple(range(21)))),
        channels=("x", "y", "z") if with_z else ("x", "y"),
        name="hands_z" if with_z else "hands",
    )


# What get_layout knows (the CLI's --layout choices).
LAYOUT_NAMES = ("default", "arm", "default_z", "arm_z", "hands", "hands_z")


def get_layout(name: str) -> Layout:
    """Named layouts: default, arm, hands (hands only), and each with z (default_z, arm_z, hands_z)."""
    if name not in LAYOUT_NAMES:
        raise UserInputError(f"unknown layout {name!r}; valid: {', '.join(LAYOUT_NAMES)}")
    base, _, z = name.partition("_")
    if base == "hands":
        return make_hands_layout(with_z=bool(z))
    return make_layout({"default": "upper_body", "arm": "arm"}[base], with_z=bool(z))


DEFAULT_LAYOUT = make_layout()
