"""Epoch orders, shards and batch boundaries (pure index logic)."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from slr_fast.loader.sampler import batch_slices, block_ids, chunk_aware_order, epoch_order, num_batches, shard_size


@pytest.mark.parametrize("n", [1, 2, 7, 10, 37])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("pad", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_epoch_order_is_distributed_sampler(n, world_size, pad, shuffle):
    # A shard must equal torch's DistributedSampler shard over the selected samples, index for index.
    selected = np.arange(n) * 3 + 5  # a non-trivial selection: global ids are not positions
    for epoch in (0, 3):
        for rank in range(world_size):
            if not pad and n < world_size:
                assert len(epoch_order(selected, seed=11, epoch=epoch, shuffle=shuffle, rank=rank,
                                       world_size=world_size, pad=pad)) == 0
                continue
            ref = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=11,
                                     drop_last=not pad)
            ref.set_epoch(epoch)
            ours = epoch_order(selected, seed=11, epoch=epoch, shuffle=shuffle, rank=rank, world_size=world_size,
                               pad=pad)
            np.testing.assert_array_equal(ours, selected[list(ref)])


def test_shards_partition_the_epoch():
    selected = np.arange(1000, 1101)  # 101 samples: 3 ranks need padding by 1 or dropping 2
    shards = [epoch_order(selected, seed=0, epoch=2, shuffle=True, rank=r, world_size=3) for r in range(3)]
    assert {len(s) for s in shards} == {34}
    allv = np.concatenate(shards)
    assert set(allv) == set(selected)
    assert len(allv) - len(set(allv)) == 1  # exactly the one padded repeat
    dropped = [epoch_order(selected, seed=0, epoch=2, shuffle=True, rank=r, world_size=3, pad=False) for r in range(3)]
    assert {len(s) for s in dropped} == {33}
    flat = np.concatenate(dropped)
    assert len(set(flat)) == 99  # disjoint, two samples dropped


def test_epochs_and_seeds_change_the_order():
    sel = np.arange(500)
    a = epoch_order(sel, seed=0, epoch=0, shuffle=True)
    assert not np.array_equal(a, epoch_order(sel, seed=0, epoch=1, shuffle=True))
    assert not np.array_equal(a, epoch_order(sel, seed=1, epoch=0, shuffle=True))
    np.testing.assert_array_equal(a, epoch_order(sel, seed=0, epoch=0, shuffle=True))
    np.testing.assert_array_equal(np.sort(a), sel)


def _blocks(n, seed=0, frames_per_block=50):
    lengths = np.random.default_rng(seed).integers(0, 40, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return offsets, frames_per_block


@pytest.mark.parametrize("window", [1, 3, 100])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_chunk_aware_order_covers_each_sample_once(window, world_size):
    offsets, fpb = _blocks(301)
    selected = np.flatnonzero(np.arange(301) % 4 != 1)  # a sparse selection
    blocks = block_ids(offsets, selected, fpb)
    shards = [chunk_aware_order(selected, blocks, seed=5, epoch=1, shuffle=True, window=window, rank=r,
                                world_size=world_size) for r in range(world_size)]
    assert len({len(s) for s in shards}) == 1
    flat = np.concatenate(shards)
    assert set(flat) == set(selected)
    assert len(flat) - len(selected) == (-len(selected)) % world_size  # only DistributedSampler-style padding
    again = chunk_aware_order(selected, blocks, seed=5, epoch=1, shuffle=True, window=window, rank=0,
                              world_size=world_size)
    np.testing.assert_array_equal(again, shards[0])


def _windows(order, block_of, sizes, window):
    """Split an order into consecutive windows of `window` whole blocks; fails if a window mixes more."""
    out, members, left, start = [], set(), 0, 0
    for k, i in enumerate(order.tolist()):
        b = block_of[i]
        if b not in members:
            members.add(b)
            left += sizes[b]
            assert len(members) <= window, f"window starting at {start} spans more than {window} blocks"
        left -= 1
        if left == 0 and (len(members) == window or k == len(order) - 1):
            out.append(members)
            members, start = set(), k + 1
    assert not members, "order ended inside a window"
    return out


@pytest.mark.parametrize("window", [1, 4])
def test_chunk_aware_order_keeps_windows_together(window):
    # Each window is the union of `window` whole blocks, its samples mixed: reads stay within few chunks.
    offsets, fpb = _blocks(400, seed=1)
    selected = np.arange(400)
    blocks = block_ids(offsets, selected, fpb)
    block_of = dict(zip(selected.tolist(), blocks.tolist(), strict=True))
    sizes = {int(b): int((blocks == b).sum()) for b in np.unique(blocks)}
    order = chunk_aware_order(selected, blocks, seed=3, epoch=0, shuffle=True, window=window)
    wins = _windows(order, block_of, sizes, window)
    assert sum(len(w) for w in wins) == len(sizes)
    if window > 1:  # samples inside a window are shuffled, not left block by block
        assert any(block_of[int(a)] == block_of[int(c)] != block_of[int(b)]  # A B A: blocks interleave
                   for a, b, c in zip(order, order[1:], order[2:], strict=False))
    unshuffled = chunk_aware_order(selected, blocks, seed=3, epoch=0, shuffle=False, window=window)
    np.testing.assert_array_equal(unshuffled, selected)  # no shuffle: the on-disk order
    assert not np.array_equal(order, chunk_aware_order(selected, blocks, seed=3, epoch=1, shuffle=True,
                                                        window=window))


@pytest.mark.parametrize("n,bs,drop,expected", [(10, 3, False, 4), (10, 3, True, 3), (9, 3, True, 3), (0, 4, False, 0),
                                                (2, 5, True, 0), (2, 5, False, 1)])
def test_num_batches_and_slices(n, bs, drop, expected):
    assert num_batches(n, bs, drop) == expected
    slices = batch_slices(n, bs, drop)
    assert len(slices) == expected
    covered = np.concatenate([np.arange(n)[s] for s in slices]) if slices else np.zeros(0)
    assert len(covered) == (n // bs * bs if drop else n)
    if expected:  # resuming after one batch yields the rest, unchanged
        assert batch_slices(n, bs, drop, start=1) == slices[1:]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rank 2 outside 0..1"):
        epoch_order(np.arange(4), seed=0, epoch=0, shuffle=True, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        shard_size(4, 0, True)
    with pytest.raises(ValueError, match="resume position 5"):
        batch_slices(10, 3, False, start=5)
    with pytest.raises(ValueError, match="1-D integer"):
        epoch_order(np.zeros((2, 2)), seed=0, epoch=0, shuffle=True)
    with pytest.raises(ValueError, match="window"):
        chunk_aware_order(np.arange(3), np.zeros(3, int), seed=0, epoch=0, shuffle=True, window=0)
