"""Prefetching loader: keypoint store + BatchProcessor -> torch batches, sharded, resumable, in memory or streamed."""

from slr_fast.loader.config import LoaderConfig
from slr_fast.loader.loader import KeypointLoader
from slr_fast.loader.sampler import chunk_aware_order, epoch_order, num_batches, shard_size
from slr_fast.loader.selection import Selection, select

__all__ = ["KeypointLoader", "LoaderConfig", "Selection", "chunk_aware_order", "epoch_order", "num_batches",
           "select", "shard_size"]
