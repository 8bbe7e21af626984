"""Prefetching loader: keypoint store + BatchProcessor -> torch batches, sharded, resumable, in memory or streamed.

    from slr_fast.loader import KeypointLoader, LoaderConfig
    with KeypointLoader("data/train.zarr", processor, LoaderConfig(batch_size=256, split="train")) as loader:
        for epoch in range(start_epoch, epochs):
            loader.set_epoch(epoch)
            for batch in loader:  # x, mask, length, label, index (+ flags) as torch tensors
                ...
"""

from slr_fast.engine import PARALLEL_LOCK as PROCESS_LOCK  # kept for callers; the engine takes it itself now
from slr_fast.loader.config import LoaderConfig
from slr_fast.loader.loader import KeypointLoader
from slr_fast.loader.sampler import chunk_aware_order, epoch_order, num_batches, shard_size
from slr_fast.loader.selection import Selection, select

__all__ = ["PROCESS_LOCK", "KeypointLoader", "LoaderConfig", "Selection", "chunk_aware_order", "epoch_order",
           "num_batches", "select", "shard_size"]
