"""KeypointLoader: a keypoint store plus a BatchProcessor as an iterable of torch batches.

One background thread makes batches ahead of the training loop, with `engine_threads` Numba threads for the engine
(LoaderConfig); the consumer only dequeues ready tensors. The processor is compiled (or loaded from Numba's cache) in
the constructor, so the first epoch measures making batches, not compiling. Order, sharding and resume are pure
functions of (seed, epoch, position), see sampler.py, so a restored loader yields exactly the batches an
uninterrupted one would have.

Buffers: the processor writes straight into the batch's torch tensors (NumPy views of them), so there is no collate
copy. By default each batch gets fresh tensors the consumer owns outright: after the first few batches the
allocator hands back the same memory (glibc for pageable memory; PyTorch's caching host allocator for pinned memory,
which also waits for pending non_blocking copies before reusing a block), so this costs ~0.2 ms per 256-sample batch.
`reuse_buffers=True` recycles a fixed ring instead; see LoaderConfig for the lifetime that gives a batch.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slr_fast.loader.config import LoaderConfig
from slr_fast.loader.prefetch import Prefetcher
from slr_fast.loader.sampler import batch_slices, block_ids, chunk_aware_order, epoch_order, num_batches, shard_size
from slr_fast.loader.selection import select
from slr_fast.loader.sources import ChunkedSource, InMemorySource

STATE_VERSION = 1
# Processor outputs every batch has (the contract); other per-sample buffers alloc() offers (BatchProcessor's
# `flags`) are passed through as well.
BATCH_KEYS = ("x", "mask", "length")
FALLBACK_CHUNK_FRAMES = 1024
CHUNKS_PER_BLOCK = 8  # per-read overhead of Zarr is ~ms: blocks must span several chunks to stream fast


def _dist_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return (dist.get_rank() if rank is None else int(rank),
                dist.get_world_size() if world_size is None else int(world_size))
    return (0 if rank is None else int(rank)), (1 if world_size is None else int(world_size))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _set_engine_threads(n: int) -> None:
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30  # platforms without sysconf: assume a modest workstation


def _store_chunk_frames(store) -> int:
    # Blocks are whole storage chunks so no chunk is decoded twice per epoch; a loaded store has no chunks.
    value = getattr(store, "chunk_frames", None)
    return int(value) if value else FALLBACK_CHUNK_FRAMES


class KeypointLoader:
    """Iterable of dict batches: x (B,T,P,C) float32, mask (B,T,P) float32, length (B,) int32, label, index int64."""

    def __init__(self, store, processor, config: LoaderConfig | None = None):
        if isinstance(store, (str, Path)):
            from slr_fast.store import KeypointStore

            store = KeypointStore.open(store)
        self.store = store
        self.processor = processor
        self.config = config = config if config is not None else LoaderConfig()
        self.rank, self.world_size = _dist_defaults(config.rank, config.world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} / world_size {self.world_size}: need 0 <= rank < world_size")

        sel = select(store, split=config.split, classes=config.classes, signers=config.signers)
        self.indices = sel.indices  # selected global indices, ascending
        self.classes = sel.class_names  # names after the subset, in label order
        self._label_lut = sel.label_lut  # store label -> loader label (-1 = not selected)
        self._store_labels = np.asarray(store.labels, dtype=np.int64)

        proc_layout = getattr(processor, "layout", None)
        if proc_layout is not None and proc_layout != store.layout:
            raise ValueError(f"processor layout {proc_layout.name!r} ({proc_layout.num_points} points) differs from "
                             f"the store's {store.layout.name!r} ({store.layout.num_points} points) at "
                             f"{getattr(store, 'where', store)}; build the processor with store.layout")
        self.pin_memory = torch.cuda.is_available() if config.pin_memory == "auto" else bool(config.pin_memory)
        self.engine_threads = config.engine_threads or (usable_cores() if torch.cuda.is_available() else 1)
        if self.pin_memory and not torch.cuda.is_available():
            raise ValueError("pin_memory=True needs CUDA (page-locked memory is for host-to-GPU copies); "
                             "use pin_memory='auto' or False on this machine")
        self._spec = {k: (tuple(v.shape[1:]), torch.from_numpy(v[:0]).dtype) for k, v in processor.alloc(1).items()}
        missing = [k for k in BATCH_KEYS if k not in self._spec]
        if missing:
            raise ValueError(f"processor.alloc() returned no buffer for {missing}; the loader needs {BATCH_KEYS}")
        clash = sorted({"label", "index"} & set(self._spec))
        if clash:
            raise ValueError(f"processor.alloc() returns buffers named {clash}, which the loader sets itself")

        # Last: decoding a whole store takes seconds, so every cheap check above fails first.
        self.in_memory = self._decide_in_memory()
        self._frames_per_block = config.block_frames or CHUNKS_PER_BLOCK * _store_chunk_frames(store)
        self._source = InMemorySource(store) if self.in_memory else ChunkedSource(
            store, self._frames_per_block, config.readahead)
        if not self.in_memory:
            self._blocks = block_ids(store.offsets, self.indices, self._frames_per_block)
        self.epoch = 0
        self.position = 0  # batches of `epoch` already handed to the consumer
        self._active: Prefetcher | None = None
        self._closed = False
        self._resume_pending = False  # a restored position not yet iterated from
        warmup = getattr(processor, "warmup", None)
        if warmup is not None:
            # Numba compiles (or loads from its cache) here, once, before any epoch is timed: the batches' first
            # epoch then measures making batches, not compiling (the engine says when it compiles).
            warmup(batch_size=config.batch_size, threads=self.engine_threads)

    # ---- sizes and order ---------------------------------------------------------------------------------------
    def _decide_in_memory(self) -> bool:
        if self.config.in_memory != "auto":
            return bool(self.config.in_memory)
        layout = self.store.layout
        need = int(self.store.offsets[-1]) * layout.num_points * layout.num_channels * 4
        budget = (self.config.memory_budget_gb * (1 << 30) if self.config.memory_budget_gb is not None
                  else _physical_memory() / 4)
        return need <= budget

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (after padding or dropping to equal shards)."""
        return shard_size(len(self.indices), self.world_size, self.config.pad_to_equal)

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.config.batch_size, self.config.drop_last)

    def epoch_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's global indices for an epoch, in the order batches are made."""
        c = self.config
        epoch = self.epoch if epoch is None else int(epoch)
        if self.in_memory:
            return epoch_order(self.indices, seed=c.seed, epoch=epoch, shuffle=c.shuffle, rank=self.rank,
                               world_size=self.world_size, pad=c.pad_to_equal)
        return chunk_aware_order(self.indices, self._blocks, seed=c.seed, epoch=epoch, shuffle=c.shuffle,
                                 window=c.shuffle_window, rank=self.rank, world_size=self.world_size,
                                 pad=c.pad_to_equal)

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` at its first batch, except right after load_state_dict for that same epoch (resume)."""
        if self._resume_pending and int(epoch) == self.epoch:
            return  # `load_state_dict(s); for e in range(s_epoch, E): set_epoch(e)` continues mid-epoch
        self._stop_active()
        self._resume_pending = False
        self.epoch, self.position = int(epoch), 0

    # ---- resume ------------------------------------------------------------------------------------------------
    def _essentials(self) -> dict[str, Any]:
        c = self.config
        return {
            "batch_size": c.batch_size, "shuffle": c.shuffle, "drop_last": c.drop_last, "seed": c.seed,
            "world_size": self.world_size, "pad_to_equal": c.pad_to_equal,
            "mode": "memory" if self.in_memory else f"chunked/{self._frames_per_block}/{c.shuffle_window}",
            "num_selected": len(self.indices),
            "selection_crc": zlib.crc32(self.indices.tobytes()),
            "processor_seed": getattr(self.processor, "seed", None),
        }

    def state_dict(self) -> dict[str, Any]:
        """{epoch, position, ...}: enough to continue with exactly the batches an uninterrupted run would yield."""
        return {"version": STATE_VERSION, "epoch": self.epoch, "position": self.position, **self._essentials()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved state; fails naming every setting that differs from the one saved."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')!r} not supported (expected {STATE_VERSION})")
        mine = self._essentials()
        diff = [f"{k}: saved {state.get(k)!r}, now {v!r}" for k, v in mine.items() if state.get(k) != v]
        if diff:
            raise ValueError("loader state does not match this loader (the resumed order would differ): "
                             + "; ".join(diff))
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"loader state position {position} outside 0..{len(self)} batches per epoch")
        self._stop_active()
        self.epoch, self.position = int(state["epoch"]), position
        self._resume_pending = True

    # ---- iteration ---------------------------------------------------------------------------------------------
    def _alloc(self, n: int, ring: list | None, slot: int) -> dict[str, torch.Tensor]:
        if ring is not None:
            return {k: t[:n] for k, t in ring[slot].items()}
        return {k: torch.empty((n, *shape), dtype=dtype, pin_memory=self.pin_memory)
                for k, (shape, dtype) in self._spec.items()}

    def _produce(self, epoch: int, start: int) -> Iterator[dict[str, torch.Tensor]]:
        c, source = self.config, self._source
        order = self.epoch_indices(epoch)
        slices = batch_slices(len(order), c.batch_size, c.drop_last, start)
        batches = [order[s] for s in slices]
        ring = None
        if c.reuse_buffers:
            # prefetch + 2 slots: the thread starts batch k + prefetch + 2 (slot of batch k) only after the
            # consumer has taken batch k + 1, so a batch is intact until the next one is requested.
            ring = [self._alloc(c.batch_size, None, 0) for _ in range(c.prefetch + 2)]
        _set_engine_threads(self.engine_threads)  # this thread's own Numba setting (Numba's is per thread)
        for b, (frames, offsets, rows) in enumerate(source.batches(batches)):
            idx = batches[b]
            out = self._alloc(len(idx), ring, b % (c.prefetch + 2))
            views = {k: t.numpy() for k, t in out.items()}  # the processor writes straight into the tensors
            self.processor.process(frames, offsets, rows, epoch, views, sample_ids=idx)
            batch = dict(out)
            batch["label"] = torch.from_numpy(self._label_lut[self._store_labels[idx]])
            batch["index"] = torch.from_numpy(idx.astype(np.int64, copy=True))
            if self.pin_memory:
                batch["label"], batch["index"] = batch["label"].pin_memory(), batch["index"].pin_memory()
            yield batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self._closed:
            raise RuntimeError("KeypointLoader is closed")
        self._stop_active()  # one live iteration per loader; without set_epoch a new `for` continues the epoch
        self._resume_pending = False
        epoch, start = self.epoch, self.position
        prefetcher = Prefetcher(lambda: self._produce(epoch, start), self.config.prefetch,
                                name=f"slr-fast-loader-r{self.rank}")
        self._active = prefetcher
        return self._consume(prefetcher)

    def _consume(self, prefetcher: Prefetcher) -> Iterator[dict[str, torch.Tensor]]:
        try:
            for batch in prefetcher:
                self.position += 1  # counted when handed over: a state saved now resumes after this batch
                yield batch
            if self._active is prefetcher:
                self.epoch, self.position = self.epoch + 1, 0
        finally:
            prefetcher.close()
            if self._active is prefetcher:
                self._active = None

    def _stop_active(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None

    def close(self) -> None:
        """Stop the prefetch thread (if any) and release the decoded store."""
        self._stop_active()
        self._closed = True
        self._source = None

    def __enter__(self) -> KeypointLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        active = getattr(self, "_active", None)
        if active is not None:
            active.close()

    def __repr__(self) -> str:
        mode = "in-memory" if self.in_memory else f"chunked({self._frames_per_block} frames/block)"
        return (f"KeypointLoader({len(self.indices)} samples, {len(self.classes)} classes, batch "
                f"{self.config.batch_size}, rank {self.rank}/{self.world_size}, {mode}, epoch {self.epoch} "
                f"position {self.position}/{len(self)})")
