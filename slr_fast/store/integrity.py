"""Checksums bound to position, and the deep check (`KeypointStore.verify`) that uses them.

zarr's crc32c codec (last in every array's codec chain) catches a changed byte inside a chunk, but not a chunk
file deleted (zarr reads the fill value), swapped with another, or copied over from an older store: each of those
is a valid chunk. So the writer records, from the data it writes, a crc32c of every index array's values (group
attribute "checksums") and of every frames chunk's decoded values (array `frames_crc32c`). `open` checks the index
arrays, which it reads whole anyway; `verify` checks that every chunk of every array exists and that every frames
chunk matches its record; reading whole chunks from disk (`frames_array`, `load`, block reads) checks them too.
The checksum is google_crc32c (zarr's own dependency), never a hand-written one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from slr_fast.store.schema import ARRAYS, CHECKSUMMED, CHECKSUMS_KEY, FRAMES_CRC, StoreError

ALGORITHM = "crc32c"


def crc32c(values: np.ndarray | list[str]) -> int:
    """crc32c of an array's values: numbers as little-endian bytes, strings as UTF-8 joined by NUL."""
    import google_crc32c

    if isinstance(values, list) or values.dtype.kind in "TUO":
        ids = values if isinstance(values, list) else values.tolist()
        return int(google_crc32c.value("\0".join(ids).encode("utf-8", "surrogatepass")))
    arr = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return int(google_crc32c.value(arr.reshape(-1).view(np.uint8)))


def chunk_crcs(frames: np.ndarray, chunk: int) -> list[int]:
    """crc32c of each `chunk` frames of a block that starts on a chunk boundary (the last one may be partial)."""
    return [crc32c(frames[k:k + chunk]) for k in range(0, len(frames), chunk)]


def recorded_checksums(where: str, meta: Mapping) -> dict[str, int] | None:
    """The "checksums" attribute, checked for form; None for a store written before checksums."""
    rec = meta.get(CHECKSUMS_KEY)
    if rec is None:
        return None
    ok = isinstance(rec, Mapping) and rec.get("algorithm") == ALGORITHM and all(
        type(rec.get(name)) is int and 0 <= rec[name] < 1 << 32 for name in CHECKSUMMED)
    if not ok:
        raise StoreError(f"{where}: attribute {CHECKSUMS_KEY!r} is damaged: expected {ALGORITHM} values (32-bit "
                         f"integers) for {', '.join(CHECKSUMMED)}")
    return {name: rec[name] for name in CHECKSUMMED}


def check_checksum(where: str, name: str, values: np.ndarray | list[str], recorded: Mapping[str, int]) -> None:
    """Fail if an array's values do not match the checksum recorded when it was written."""
    if crc32c(values) != recorded[name]:
        hint = "; if `slr-fast split` was interrupted, run it again" if name == "split" else ""
        raise StoreError(f"{where}: array {name!r} does not match the checksum recorded when the store was written "
                         f"(a chunk file deleted, replaced or edited, or the group's zarr.json changed){hint}")


def frames_chunk(store: Any, k: int) -> str:
    """'frames chunk c/3/0/0 (frames 1536..2047, sequences 40..52)' for chunk k of a store's frames."""
    c, n = store.chunk_size, store.num_frames
    a, b = k * c, min((k + 1) * c, n) - 1
    key = f"c/{k}/0/0"
    if not store.in_memory:
        key = store._frames.metadata.encode_chunk_key((k, 0, 0))
    if b < a:  # beyond the frames (a damaged shape): no sequences to name
        return f"frames chunk {key} (frames from {a})"
    first, last = (int(np.searchsorted(store.offsets, f, side="right")) - 1 for f in (a, b))
    seqs = f"sequence {first}" if first == last else f"sequences {first}..{last}"
    return f"frames chunk {key} (frames {a}..{b}, {seqs})"


def check_chunks(store: Any, start: int, frames: np.ndarray, crcs: np.ndarray) -> int:
    """Compare every whole chunk inside frames [start, start + len) with its recorded crc; returns how many."""
    c, n = store.chunk_size, store.num_frames
    stop = start + len(frames)
    first = -(-start // c)
    checked = 0
    for k in range(first, len(crcs)):
        a, b = k * c, min((k + 1) * c, n)
        if b > stop:
            break
        if crc32c(frames[a - start:b - start]) != crcs[k]:
            raise StoreError(f"{store.where}: {frames_chunk(store, k)} does not match the checksum recorded when it "
                             f"was written (the chunk file was swapped, copied over or rewritten)")
        checked += 1
    return checked


def missing_chunks(store: Any, group: Any, legacy: bool) -> tuple[int, list[str]]:
    """List the store to check that every chunk of every array is there; returns (chunks expected, absent ones).

    In a store with checksums every chunk was written, so an absent one raises. A store written before them left
    out chunks holding only the fill value (all-NaN frames, all-zero labels), so there an absent chunk may be
    legitimate and is only reported."""
    from zarr.core.sync import collect_aiterator

    names = list(ARRAYS) + ([] if legacy else [FRAMES_CRC])
    total, absent = 0, []
    for name in names:
        arr = group[name]
        stored = set(collect_aiterator(group.store.list_prefix(f"{arr.path}/")))
        grid = itertools.product(*(range(s) for s in arr.cdata_shape))
        missing = [coords for coords in grid if f"{arr.path}/{arr.metadata.encode_chunk_key(coords)}" not in stored]
        total += int(np.prod(arr.cdata_shape))
        what = [frames_chunk(store, c[0]) if name == "frames" else f"{name!r} chunk {arr.metadata.encode_chunk_key(c)}"
                for c in missing]
        if what and not legacy:
            more = f" ({len(what) - 1} more {name} chunks missing too)" if len(what) > 1 else ""
            raise StoreError(f"{store.where}: {what[0]} is missing{more}")
        absent += what
    return total, absent


def verify(store: Any, block_chunks: int = 64) -> dict[str, Any]:
    """The deep check behind `KeypointStore.verify`; see there."""
    crcs = store.chunk_checksums()
    legacy = crcs is None
    chunks, absent = 0, []
    if not store.in_memory:
        chunks, absent = missing_chunks(store, store._group, legacy)
    step = max(1, store.chunk_size * block_chunks)
    nan = empty = checked = 0
    for start in range(0, store.num_frames, step):
        stop = min(start + step, store.num_frames)
        block = store._read_range(start, stop)
        if crcs is not None:
            checked += check_chunks(store, start, block, crcs)
        inf = np.isinf(block)
        if inf.any():
            frame = start + int(np.argwhere(inf)[0][0])
            seq = int(np.searchsorted(store.offsets, frame, side="right") - 1)
            raise StoreError(f"{store.where}: infinite value in frame {frame} (sequence {seq}, id "
                             f"{str(store.seq_ids[seq])!r}); undetected points must be NaN")
        missing = np.isnan(block)
        nan += int(missing.sum())
        empty += int(missing.reshape(len(block), -1).all(axis=1).sum())
    values = store.num_frames * store.layout.num_points * store.layout.num_channels
    return {"sequences": len(store), "frames": store.num_frames, "frames_chunks": -(-store.num_frames //
            store.chunk_size) if store.num_frames else 0, "chunks": chunks, "absent": absent, "checksums": not legacy,
            "chunks_checked": checked, "nan_fraction": nan / values if values else 0.0, "empty_frames": empty}
