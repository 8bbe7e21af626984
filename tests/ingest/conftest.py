"""Fixtures for ingest tests: a small generated GISLR corpus (helpers live in ingest_testing.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slr_fast.ingest import write_gislr_dataset


@pytest.fixture(scope="session")
def gislr_corpus(tmp_path_factory) -> Path:
    """12 sequences of 3-25 frames by 4 signers over 5 signs; returns the train.csv path. Treat as read-only."""
    root = tmp_path_factory.mktemp("gislr")
    return write_gislr_dataset(root, 12, min_frames=3, max_frames=25, num_signs=5, num_signers=4, seed=7)
