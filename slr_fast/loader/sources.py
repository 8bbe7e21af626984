"""Where a batch's frames come from: the whole store in memory, or blocks of chunks streamed from disk.

A source turns a batch of global sequence indices into the processor's inputs: a (F, P, C) frames array, offsets
into it, and the row of each batch sample in those offsets. The in-memory source hands out the decoded store itself
(no copy per batch); the streaming source gathers the batch's sequences from the blocks it holds.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from slr_fast.loader.sampler import block_ids

# store object -> weak reference to its decoded frames: the train, validation and test loaders of one store share a
# single decoded copy, which is freed when the last loader holding it is closed.
_DECODED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DECODED_LOCK = threading.Lock()


def decoded_frames(store) -> np.ndarray:
    """The store's (ΣT, P, C) float32 frames in memory, decoded once per store object while any loader holds them."""
    with _DECODED_LOCK:
        ref = _DECODED.get(store)
        frames = ref() if ref is not None else None
        if frames is None:
            frames = np.ascontiguousarray(store.frames_array(), dtype=np.float32)
            _DECODED[store] = weakref.ref(frames)
        return frames


class InMemorySource:
    """The store's frames decoded once into one array; batches index into it directly."""

    def __init__(self, store):
        self.frames = decoded_frames(store)  # (ΣT, P, C)
        # A writable copy: Numba compiles a separate specialization for read-only arrays (the store's index is
        # read-only), and the chunked source's per-batch offsets are writable — one signature for both modes.
        self.offsets = np.array(store.offsets, dtype=np.int64)  # (N+1,)
        if len(self.frames) != self.offsets[-1]:
            raise ValueError(f"{getattr(store, 'where', 'store')}: frames hold {len(self.frames)} frames but offsets "
                             f"end at {self.offsets[-1]}")

    def batches(self, batches: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(frames, offsets, rows) per batch of global indices; rows are the global indices themselves."""
        for idx in batches:
            yield self.frames, self.offsets, idx


class ChunkedSource:
    """Streams blocks (selected sequences starting in one run of frames) via a read-ahead thread, each read once."""

    def __init__(self, store, frames_per_block: int, readahead: int):
        self.store = store
        self.offsets = np.ascontiguousarray(store.offsets, dtype=np.int64)
        self.frames_per_block = int(frames_per_block)
        self.readahead = int(readahead)

    def _read_block(self, start: int, stop: int) -> np.ndarray:
        frames = np.asarray(self.store.read_frames(int(start), int(stop)), dtype=np.float32)
        if len(frames) != stop - start:
            raise ValueError(f"{getattr(self.store, 'where', 'store')}: read of frames [{start}, {stop}) returned "
                             f"{len(frames)} frames")
        return frames

    def batches(self, batches: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(frames, offsets, rows) per batch: the batch's sequences gathered back to back, rows 0..B-1."""
        if not batches:
            return
        flat = np.concatenate(batches)
        blocks = block_ids(self.offsets, flat, self.frames_per_block)
        # Frame range per block: from its first selected sequence's start to its last one's end (a sequence may run
        # into the next chunk; reading a few foreign frames is cheaper than splitting the read).
        uniq, inverse = np.unique(blocks, return_inverse=True)
        starts = np.full(len(uniq), np.iinfo(np.int64).max)
        stops = np.zeros(len(uniq), np.int64)
        np.minimum.at(starts, inverse, self.offsets[flat])
        np.maximum.at(stops, inverse, self.offsets[flat + 1])
        # Blocks in order of first use, and the batch after which each is no longer needed.
        batch_of = np.repeat(np.arange(len(batches)), [len(b) for b in batches])
        first_pos = np.full(len(uniq), len(flat))
        np.minimum.at(first_pos, inverse, np.arange(len(flat)))
        last_batch = np.zeros(len(uniq), np.int64)
        np.maximum.at(last_batch, inverse, batch_of)
        use_order = np.argsort(first_pos, kind="stable")
        sorted_first = first_pos[use_order]

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slr-fast-read")
        loaded: dict[int, Future] = {}
        submitted = 0
        try:
            pos = 0
            for b, idx in enumerate(batches):
                need = inverse[pos:pos + len(idx)]
                pos += len(idx)
                # Every block this batch needs, plus `readahead` more in order of first use, is read or in flight.
                target = min(len(uniq), int(np.searchsorted(sorted_first, pos)) + self.readahead)
                while submitted < target:
                    k = int(use_order[submitted])
                    loaded[k] = pool.submit(self._read_block, starts[k], stops[k])
                    submitted += 1
                need_set = set(need.tolist())
                parts = []
                for i, k in zip(idx.tolist(), need.tolist(), strict=True):
                    block = loaded[k].result()
                    lo = self.offsets[i] - starts[k]
                    parts.append(block[lo:lo + self.offsets[i + 1] - self.offsets[i]])
                lengths = np.fromiter((len(p) for p in parts), np.int64, len(parts))
                local_offsets = np.zeros(len(parts) + 1, np.int64)
                np.cumsum(lengths, out=local_offsets[1:])
                frames = np.concatenate(parts) if parts else np.zeros((0,) + self.store_shape_tail(), np.float32)
                del parts  # views into the blocks: holding them would keep released blocks alive a batch longer
                yield frames, local_offsets, np.arange(len(idx), dtype=np.int64)
                for k in need_set:
                    if last_batch[k] == b:
                        del loaded[k]  # no later batch of this epoch reads it
        finally:
            for fut in loaded.values():
                fut.cancel()
            pool.shutdown(wait=True)

    def store_shape_tail(self) -> tuple[int, int]:
        """(points, channels) of the store's frames."""
        layout = self.store.layout
        return layout.num_points, layout.num_channels
