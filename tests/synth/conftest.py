"""Shared synthetic datasets for the generator tests (generated once per session; small, so tests stay fast)."""

from __future__ import annotations

import pytest

from slr_fast.synth import SynthConfig, generate


@pytest.fixture(scope="session")
def small_config() -> SynthConfig:
    """12 signs x 24 sequences by 8 signers: enough signers for a held-out split, ~3 s to generate."""
    return SynthConfig(classes=12, per_class=24, signers=8, seed=7)


@pytest.fixture(scope="session")
def small_samples(small_config):
    """All SynthSamples of `small_config`, in store order."""
    return list(generate(small_config))
