"""Larger-than-memory mode: each block read once per epoch, few blocks held at a time."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
from loader_testing import RecordingProcessor

from slr_fast.loader import KeypointLoader, LoaderConfig


class CountingStore:
    """Wraps a store; counts frame-range reads and how many of the returned blocks are alive at once."""

    def __init__(self, store):
        self._store = store
        self.reads: list[tuple[int, int]] = []
        self.live = 0
        self.max_live = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def __len__(self):
        return len(self._store)

    def _freed(self):
        self.live -= 1

    def read_frames(self, start, stop):
        block = np.array(self._store.read_frames(start, stop))
        self.reads.append((start, stop))
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        weakref.finalize(block, self._freed)
        return block


@pytest.mark.parametrize("window,readahead", [(1, 0), (2, 1), (3, 2)])
def test_blocks_are_read_once_and_released(store_factory, window, readahead):
    store = CountingStore(store_factory())
    cfg = LoaderConfig(batch_size=16, in_memory=False, block_frames=100, shuffle_window=window, readahead=readahead,
                       pad_to_equal=False, prefetch=1)
    with KeypointLoader(store, RecordingProcessor(), cfg) as loader:
        order = loader.epoch_indices()
        seen = np.concatenate([b["index"].numpy() for b in loader])
    np.testing.assert_array_equal(seen, order)
    np.testing.assert_array_equal(np.sort(seen), np.arange(len(store)))
    starts = [a for a, _ in store.reads]
    assert len(starts) == len(set(starts))  # no block read twice in an epoch
    block = store.offsets[:-1] // 100
    assert len(store.reads) == len(np.unique(block))
    # Held at once: the blocks the batch being made needs (a block shared with an earlier batch is one of them, as
    # windows are contiguous in the order) plus the read-ahead.
    needed = max(len(np.unique(block[order[s:s + 16]])) for s in range(0, len(order), 16))
    assert store.max_live <= needed + readahead, (store.max_live, needed)
    assert store.live == 0  # everything released at the end of the epoch
