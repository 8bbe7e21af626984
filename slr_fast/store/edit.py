"""Changing a published store in place: only the split assignment, the one column a user decides after ingest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from slr_fast.store.integrity import crc32c
from slr_fast.store.location import StorePath, zarr_store
from slr_fast.store.reader import KeypointStore
from slr_fast.store.schema import ATTRS_KEY, CHECKSUMS_KEY, WRITE_CONFIG, split_code
from slr_fast.store.split import signer_split


def write_splits(path: StorePath, splits: Sequence[str | int | None] | np.ndarray, *,
                 method: dict[str, Any] | None = None, storage_options: dict[str, Any] | None = None) -> KeypointStore:
    """Replace the `split` column of a valid store (names, codes or None per sequence) and reopen it.

    `method` (e.g. {"kind": "signer", "seed": 0}) is recorded in the provenance under "split". The split array
    is a single chunk up to a million sequences, and zarr replaces a chunk object whole, so a reader sees either
    the old or the new assignment. Its checksum is updated after it; a kill in between leaves a store that `open`
    refuses (split does not match its checksum), and running this again repairs it: the split column is the one
    thing it does not check first, since it replaces it.
    """
    import zarr

    store = KeypointStore._open(path, storage_options=storage_options, unchecked=("split",))
    values = np.asarray(splits)
    if values.dtype.kind in "iu":
        codes = np.array([split_code(int(s)) for s in values], np.int8)
    else:
        codes = np.array([split_code(s) for s in values], np.int8)
    if codes.shape != (len(store),):
        raise ValueError(f"{store.where}: {codes.size} split entries given for {len(store)} sequences")
    group = zarr.open_group(zarr_store(path, read_only=False, storage_options=storage_options), mode="r+")
    if len(codes):
        # Written even if all codes equal the fill value (zarr would delete the chunk): a store with checksums
        # has every chunk, so a missing one is always damage.
        group["split"].with_config(WRITE_CONFIG)[:] = codes
    meta = dict(group.attrs[ATTRS_KEY])
    meta["provenance"] = {**meta.get("provenance", {}), "split": method or {"kind": "explicit"}}
    if isinstance(meta.get(CHECKSUMS_KEY), dict):
        meta[CHECKSUMS_KEY] = {**meta[CHECKSUMS_KEY], "split": crc32c(codes)}
    group.attrs[ATTRS_KEY] = meta
    return KeypointStore.open(path, storage_options=storage_options)


def write_signer_split(path: StorePath, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                       unknown: str = "error", storage_options: dict[str, Any] | None = None) -> KeypointStore:
    """Give a store without splits a deterministic signer-independent train/val/test split (see signer_split)."""
    store = KeypointStore.open(path, storage_options=storage_options)
    codes = signer_split(store.signers, fractions=fractions, seed=seed, unknown=unknown)
    method = {"kind": "signer", "fractions": [float(f) for f in fractions], "seed": int(seed), "unknown": unknown}
    return write_splits(path, codes, method=method, storage_options=storage_options)
