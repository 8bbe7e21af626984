"""Fixtures for loader tests: small on-disk stores with many chunks."""

from __future__ import annotations

import numpy as np
import pytest
from loader_testing import make_sequences


@pytest.fixture(scope="session")
def store_factory(tmp_path_factory):
    """write_store with per-sequence labels/signers/splits and a small chunk so blocks are many."""
    from slr_fast.store import write_store

    cache = {}

    def make(n: int = 203, num_classes: int = 7, chunk_frames: int = 64, seed: int = 0):
        key = (n, num_classes, chunk_frames, seed)
        if key not in cache:
            rng = np.random.default_rng(seed + 1)
            path = tmp_path_factory.mktemp("store") / "s.zarr"
            cache[key] = write_store(
                path, make_sequences(n, seed), labels=[int(i % num_classes) for i in range(n)],
                signers=[int(s) for s in rng.integers(0, 5, n)],
                classes=[f"sign{c}" for c in range(num_classes)],
                splits=[("train", "val", "test")[int(s)] for s in rng.choice(3, n, p=[0.6, 0.2, 0.2])],
                chunk_frames=chunk_frames)
        return cache[key]

    return make
