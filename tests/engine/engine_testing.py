"""Shared check for the engine tests: the compiled batch equals the NumPy per-sample reference."""

from __future__ import annotations

import numpy as np

TOL = 1e-6  # float sums run in a different order in NumPy (pairwise) and the kernel (sequential)


def assert_matches_reference(bp, frames, offsets, epoch=0, check_flags=True):
    """Run `bp` on every sequence and compare with `bp.reference_process`; returns the compiled batch."""
    idx = np.arange(len(offsets) - 1)
    got = bp.process(frames, offsets, idx, epoch, bp.alloc(len(idx)))
    want = bp.reference_process(frames, offsets, idx, epoch)
    np.testing.assert_allclose(got["x"], want["x"], rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(got["mask"], want["mask"])
    np.testing.assert_array_equal(got["length"], want["length"])
    if check_flags:
        np.testing.assert_array_equal(got["flags"], want["flags"])
    assert np.isfinite(got["x"]).all()
    return got
