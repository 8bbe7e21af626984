"""Preprocessing options: from a raw variable-length sequence (n, P, C) to a fixed (T, P, C) sample plus mask."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

NORMALIZE_MODES = ("sequence", "part", "none")
RESAMPLE_MODES = ("mean", "linear", "pad")
MASK_MODES = ("separate", "channel")
MASK_LEVELS = ("point", "part")
DOMINANT_MODES = ("keep", "right", "left")

# Bits of out["flags"]: what happened to a sample that a user may want to count or filter.
FLAG_EMPTY = 1  # the sequence had 0 frames: x and mask are all zero, length 0
FLAG_NO_HAND = 2  # no frame shows a hand: drop_handless kept every frame instead of none
FLAG_NO_POINTS = 4  # not a single finite point: x and mask all zero (length as the mode says)
FLAG_MIRRORED = 8  # dominant_hand mirrored the sequence left/right


@dataclass(frozen=True)
class PreprocessConfig:
    """Options of `slr_fast.preprocess`; every default is what the GISLR-style pipeline of the project uses."""

    # Output length. 64 covers the median GISLR sign (~18-40 frames) without loss and compresses long ones 2-5x.
    T: int = 64
    # Remove frames in which neither hand has a single finite point: the detector lost the hands, so the frame
    # carries no handshape and only dilutes the sequence. If no frame has a hand, all frames are kept and
    # out["flags"] gets FLAG_NO_HAND (dropping everything would leave nothing to classify).
    drop_handless: bool = True
    # "sequence": subtract the mean of all finite points of the sequence, divide by their RMS distance to it in
    #   x/y (one scale for every channel, so aspect ratio and rotations stay meaningful);
    # "part": the same per part (lips, each hand, pose) over the whole sequence: handshape detail is kept at the
    #   same scale whatever the hand's position, at the cost of the hands' position relative to the body;
    # "none": raw coordinates.
    normalize: str = "sequence"
    # "mean": n > T is compressed by the mean over T near-equal windows of frames (the GISLR notebooks' way,
    #   smooths detector jitter), n <= T is stretched by repeating frames;
    # "linear": frames sampled at T evenly spaced positions with linear interpolation between neighbours;
    # "pad": the first min(n, T) frames kept, the rest zero with mask 0; out["length"] = min(n, T).
    resample: str = "mean"
    # "separate": presence only in out["mask"]; "channel": also appended to x as a last channel (x is (.., C+1)).
    mask: str = "separate"
    # "point": mask[t, p] = point p is present at frame t; "part": 1 for every point of a part that has any present
    #   point at frame t (missing points of a visible part stay 0 in x).
    mask_level: str = "point"
    # "keep": hands as recorded. "right" (or "left"): a sequence whose other hand moves more is mirrored left/right
    #   (x -> 2 c_x - x about the augmentation centre, every point to its mirror: the hands swap, lips and pose pairs
    #   too, as the mirror augmentation does), so the signing hand is always in the right (left) hand's points,
    #   whichever hand the signer signs with. A hand's motion: over the frames kept, the sum over its points of the
    #   squared x/y distances of the point from its mean position (the hand travelling and the fingers moving); a
    #   hand never seen has none, and ties keep the sequence. Train, evaluation and prediction read the same run
    #   config, so a model trained this way always sees canonical handedness. Mirrored samples carry FLAG_MIRRORED.
    dominant_hand: str = "keep"

    def __post_init__(self):
        if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"PreprocessConfig.T must be a positive integer, got {self.T!r}")
        for name, valid in (("normalize", NORMALIZE_MODES), ("resample", RESAMPLE_MODES), ("mask", MASK_MODES),
                            ("mask_level", MASK_LEVELS), ("dominant_hand", DOMINANT_MODES)):
            value = getattr(self, name)
            if value not in valid:
                raise ValueError(f"PreprocessConfig.{name}={value!r} is not one of {list(valid)}")
        if not isinstance(self.drop_handless, bool):
            raise ValueError(f"PreprocessConfig.drop_handless must be True or False, got {self.drop_handless!r}")

    def to_dict(self) -> dict:
        """Plain dict for saving with a run."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        """Inverse of `to_dict`; unknown keys are rejected with the list of valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown PreprocessConfig keys {unknown}; valid: {valid}")
        return cls(**d)

    # Integer codes handed to the compiled kernel (position in the tuples above).
    def codes(self) -> tuple[int, int, int, int, int]:
        """(normalize, resample, mask, mask_level, dominant_hand) as integer codes for the compiled kernels."""
        return (NORMALIZE_MODES.index(self.normalize), RESAMPLE_MODES.index(self.resample),
                MASK_MODES.index(self.mask), MASK_LEVELS.index(self.mask_level),
                DOMINANT_MODES.index(self.dominant_hand))
