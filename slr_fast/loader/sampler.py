"""Epoch orders, distributed shards and batch boundaries: pure index logic, no I/O and no threads.

Two orders, both a pure function of (seed, epoch), so every rank computes the same permutation without talking:

- ``epoch_order`` (in-memory mode): a uniform permutation drawn exactly as ``torch.utils.data.DistributedSampler``
  draws it (``torch.randperm`` on a generator seeded ``seed + epoch``), then padded or trimmed and taken strided per
  rank, so a shard equals DistributedSampler's shard of the selected samples.
- ``chunk_aware_order`` (larger-than-memory mode): samples are grouped into blocks of neighbours on disk; the block
  order is shuffled, consecutive blocks form windows of ``window`` blocks, and the samples inside a window are
  shuffled together. Reads stay sequential-ish (a window touches ``window`` contiguous ranges), at the price of a
  weaker shuffle: two samples from blocks more than ``window`` apart in the block order never share a batch.
  Ranks take contiguous slices of this order so each reads only its own ~1/world_size of the blocks.
"""

from __future__ import annotations

import math

import numpy as np


def _as_index_array(selected: np.ndarray) -> np.ndarray:
    selected = np.asarray(selected)
    if selected.ndim != 1 or not np.issubdtype(selected.dtype, np.integer):
        raise ValueError(f"selected indices must be a 1-D integer array, got {selected.dtype} shape {selected.shape}")
    return selected.astype(np.int64, copy=False)


def shard_size(n: int, world_size: int, pad: bool) -> int:
    """Samples per rank: ceil(n / world) when padding to equal length, floor(n / world) when dropping the tail."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return math.ceil(n / world_size) if pad else n // world_size


def _pad_or_trim(order: np.ndarray, total: int) -> np.ndarray:
    # DistributedSampler semantics: repeat indices from the start (cycling when the order is shorter than the padding).
    if total <= len(order):
        return order[:total]
    if len(order) == 0:
        raise ValueError("cannot pad an empty selection to a positive length")
    reps = math.ceil(total / len(order))
    return np.tile(order, reps)[:total]


def epoch_order(selected: np.ndarray, *, seed: int, epoch: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                pad: bool = True) -> np.ndarray:
    """This rank's samples (global indices) for an epoch, in DistributedSampler order over `selected`."""
    selected = _as_index_array(selected)
    _check_rank(rank, world_size)
    n = len(selected)
    if shuffle:
        import torch  # the reference permutation is torch's, so shards match DistributedSampler exactly

        g = torch.Generator()
        g.manual_seed(int(seed) + int(epoch))
        perm = torch.randperm(n, generator=g).numpy()
    else:
        perm = np.arange(n, dtype=np.int64)
    per_rank = shard_size(n, world_size, pad)
    positions = _pad_or_trim(perm, per_rank * world_size)
    return selected[positions[rank::world_size]]


def block_ids(offsets: np.ndarray, selected: np.ndarray, frames_per_block: int) -> np.ndarray:
    """Block of each selected sample: the storage chunk (of `frames_per_block` frames) holding its first frame."""
    if frames_per_block < 1:
        raise ValueError(f"frames_per_block must be >= 1, got {frames_per_block}")
    selected = _as_index_array(selected)
    return np.asarray(offsets, dtype=np.int64)[selected] // int(frames_per_block)


def chunk_aware_order(selected: np.ndarray, blocks: np.ndarray, *, seed: int, epoch: int, shuffle: bool,
                      window: int, rank: int = 0, world_size: int = 1, pad: bool = True) -> np.ndarray:
    """This rank's samples for an epoch in the chunk-aware order (shuffled blocks, shuffled within windows)."""
    selected = _as_index_array(selected)
    blocks = np.asarray(blocks)
    if blocks.shape != selected.shape:
        raise ValueError(f"blocks {blocks.shape} must give one block id per selected sample {selected.shape}")
    if window < 1:
        raise ValueError(f"shuffle window must be >= 1 block, got {window}")
    _check_rank(rank, world_size)
    # Stable sort keeps store order inside a block, so the unshuffled order is the on-disk order.
    by_block = np.argsort(blocks, kind="stable")
    uniq, starts = np.unique(blocks[by_block], return_index=True)
    bounds = np.append(starts, len(selected))
    if shuffle:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch)])))
        block_perm = rng.permutation(len(uniq))
    else:
        rng, block_perm = None, np.arange(len(uniq))
    parts = []
    for w in range(0, len(block_perm), window):
        members = np.concatenate([by_block[bounds[b]:bounds[b + 1]] for b in block_perm[w:w + window]])
        parts.append(rng.permutation(members) if shuffle else members)
    positions = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    per_rank = shard_size(len(selected), world_size, pad)
    positions = _pad_or_trim(positions, per_rank * world_size)
    # Contiguous slices, not strided: a rank then reads only the blocks of its own windows.
    return selected[positions[rank * per_rank:(rank + 1) * per_rank]]


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches in an epoch of `n` samples."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batch_slices(n: int, batch_size: int, drop_last: bool, start: int = 0) -> list[slice]:
    """Slices of an epoch order for batches `start`, `start + 1`, ... (the resume point is a batch count)."""
    total = num_batches(n, batch_size, drop_last)
    if not 0 <= start <= total:
        raise ValueError(f"resume position {start} outside the epoch's {total} batches")
    return [slice(b * batch_size, min((b + 1) * batch_size, n)) for b in range(start, total)]


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1} for world_size {world_size}")
