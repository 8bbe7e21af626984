"""Counter-based randomness: the Numba and NumPy twins agree bit for bit, and the draws look like their laws."""

from __future__ import annotations

import numba
import numpy as np

from slr_fast.augment import rng


@numba.njit(cache=True)
def _draws(seed, epoch, sample, op, n):
    k = rng.stream_key(seed, epoch, sample, op, 1)
    u, z = np.empty(n), np.empty(n)
    for i in range(n):
        u[i] = rng.uniform(k, i)
        z[i] = rng.normal(k, i)
    return u, z


def test_numba_and_numpy_agree_and_distributions():
    n = 200_000
    u, z = _draws(3, 2, 2**40 + 7, 5, n)
    key = rng.stream_key_np(3, 2, 2**40 + 7, 5, 1)
    np.testing.assert_array_equal(u, rng.uniform_np(key, np.arange(n)))
    np.testing.assert_array_equal(z, rng.normal_np(key, np.arange(n)))
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.003  # sigma of the mean: 0.00065
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01 and np.abs(z).max() <= 2 * np.sqrt(3)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # consecutive counters are not correlated


def test_keys_differ_in_every_component():
    base = (1, 2, 3, 4, 5)
    keys = {rng.stream_key_np(*base)}
    for i in range(5):
        changed = list(base)
        changed[i] += 1
        keys.add(rng.stream_key_np(*changed))
    assert len(keys) == 6
