"""Shared inputs for the engine tests: ragged batches with hand-less frames, missing points and awkward lengths."""

from __future__ import annotations

import numpy as np
import pytest

from slr_fast.layout import DEFAULT_LAYOUT, get_layout


def ragged(lengths, layout=DEFAULT_LAYOUT, seed=0, handless=0.33, missing=0.1):
    """(frames (sum, P, C) float32, offsets) with ~`handless` frames lacking both hands and `missing` NaN points."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    F, P, C = int(offsets[-1]), layout.num_points, layout.num_channels
    # A smooth random walk per point so time ops have structure to move around.
    base = rng.random((1, P, C)).astype(np.float32)
    frames = (base + np.cumsum(rng.normal(0, 0.01, (F, P, C)), axis=0)).astype(np.float32)
    frames[rng.random((F, P)) < missing] = np.nan
    hand_pts = np.concatenate([np.arange(s.start, s.stop) for n, s in layout.part_slices().items() if "hand" in n])
    no_hand = rng.random(F) < handless
    frames[np.ix_(no_hand, hand_pts)] = np.nan
    return frames, offsets


@pytest.fixture(scope="session")
def make_ragged():
    """The `ragged` input factory, for tests that need their own lengths or layout."""
    return ragged


@pytest.fixture(scope="session")
def batch():
    """30 sequences with lengths 0..200, including 1, 2 and exactly 64 frames."""
    lengths = [0, 1, 2, 3, 5, 17, 37, 63, 64, 65, 100, 128, 200] + list(np.random.default_rng(1).integers(4, 150, 17))
    return ragged(lengths)


@pytest.fixture(scope="session")
def z_layout():
    return get_layout("default_z")
