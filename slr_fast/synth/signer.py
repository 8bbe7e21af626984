"""Signers: body, framing, handedness, tempo and personal style, and their assignment to train/val/test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slr_fast.synth.config import SynthConfig
from slr_fast.synth.vocab import BASE_LOCATIONS, LOCATIONS

ALL_LOCATIONS = {**LOCATIONS, **BASE_LOCATIONS}
LOCATION_ROW = {name: i for i, name in enumerate(ALL_LOCATIONS)}


@dataclass(frozen=True)
class Signer:
    """One person in front of one camera."""

    id: int
    split: int  # 0 train, 1 val, 2 test
    left_handed: bool  # mirrors every sign: the dominant hand becomes the left hand
    center_x: float  # image x of the point between the shoulders
    shoulder_y: float  # image y of the shoulders
    unit: float  # half the shoulder width as a fraction of image height (body size and camera distance)
    aspect: float  # image width / height
    shoulder_width: float  # factor on the body's width
    upper_arm: float  # body units
    forearm: float
    palm: float  # wrist to middle-finger knuckle, body units
    fingers: np.ndarray  # (4,) finger length factors
    tempo: float  # factor on sequence length (> 1 signs slowly)
    amplitude: float  # factor on movement size
    place_offsets: np.ndarray  # (len(ALL_LOCATIONS), 3) personal shift of every place, body units
    laxness: float  # 0 crisp handshapes .. 1 very lax
    miss_factor: float  # factor on the detector's hand miss rate (lighting, skin tone, camera)
    jitter_factor: float


def assign_splits(num_signers: int, shares: tuple[float, float, float], seed: int) -> np.ndarray:
    """(num_signers,) int8 split codes, whole signers per split, every split with a positive share non-empty."""
    shares_arr = np.asarray(shares, dtype=np.float64) / float(sum(shares))
    counts = np.floor(shares_arr * num_signers).astype(int)
    wanted = [i for i in range(3) if shares_arr[i] > 0]
    # Hand out the rounding remainder, first to empty splits that were asked for, then by largest fraction.
    for i in sorted(wanted, key=lambda i: (counts[i] > 0, -(shares_arr[i] * num_signers - counts[i]))):
        if counts.sum() >= num_signers:
            break
        counts[i] += 1
    while counts.sum() > num_signers:
        counts[int(np.argmax(counts))] -= 1
    for i in wanted:  # a split that was asked for but rounded to nothing takes a signer from the largest
        if counts[i] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    order = np.random.default_rng([seed, 3]).permutation(num_signers)
    codes = np.empty(num_signers, dtype=np.int8)
    codes[order] = np.repeat(np.arange(3, dtype=np.int8), counts)
    return codes


def make_signers(config: SynthConfig) -> list[Signer]:
    """The config's signers; each depends only on (seed, signer id) and the split assignment."""
    splits = assign_splits(config.signers, config.split, config.seed)
    # Left-handers are spread over the splits in proportion, so every split meets mirrored signing when any does.
    lefty = np.zeros(config.signers, dtype=bool)
    pick = np.random.default_rng([config.seed, 4])
    for code in range(3):
        members = np.flatnonzero(splits == code)
        n = int(round(config.left_handed * members.size))
        if n:
            lefty[pick.choice(members, size=n, replace=False)] = True
    out = []
    for s in range(config.signers):
        rng = np.random.default_rng([config.seed, 1, s])
        aspect = float(rng.choice(config.aspects))
        unit = float(rng.uniform(0.085, 0.13))
        out.append(Signer(
            id=s, split=int(splits[s]), left_handed=bool(lefty[s]),
            center_x=float(rng.uniform(0.42, 0.58)),
            # Keep the forehead (1.5 units above the shoulders) inside the image.
            shoulder_y=float(rng.uniform(max(0.45, 1.7 * unit + 0.05), 0.66)),
            unit=unit, aspect=aspect,
            shoulder_width=float(rng.uniform(0.9, 1.1)),
            upper_arm=1.45 * float(rng.uniform(0.94, 1.06)),
            forearm=1.25 * float(rng.uniform(0.94, 1.06)),
            palm=0.47 * float(rng.uniform(0.92, 1.08)),
            fingers=rng.uniform(0.95, 1.05, size=4),
            tempo=float(np.exp(rng.normal(0.0, 0.2))),
            amplitude=float(rng.uniform(0.8, 1.2)),
            place_offsets=rng.normal(0.0, 0.07, size=(len(ALL_LOCATIONS), 3)),
            laxness=float(rng.uniform(0.0, 0.6)),
            miss_factor=float(rng.uniform(0.6, 1.4)),
            jitter_factor=float(rng.uniform(0.7, 1.3)),
        ))
    return out
