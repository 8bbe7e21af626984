"""Zarr v3 keypoint stores: ragged sequences as flat frames + offsets, validated on open, written crash-safely.

    from slr_fast.store import StoreWriter, KeypointStore
    with StoreWriter("data/train.zarr", layout=layout, classes=names) as w:
        w.append(frames, label, signer=3, seq_id="clip-001", split="train")
    store = KeypointStore.open("data/train.zarr")          # or "s3://bucket/train.zarr" with the remote extra
    frames, label = store[0]
    batch = store.get_many(store.select(split="train", classes=range(500))[:32])
"""

from slr_fast.store.edit import write_signer_split, write_splits
from slr_fast.store.reader import KeypointStore
from slr_fast.store.schema import (
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_COMPRESSION,
    SCHEMA_VERSION,
    SPLITS,
    StoreError,
    compression_presets,
    split_code,
)
from slr_fast.store.split import ClassSubset, class_subset, signer_split
from slr_fast.store.writer import StoreWriter, write_store

__all__ = [
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_COMPRESSION",
    "SCHEMA_VERSION",
    "SPLITS",
    "ClassSubset",
    "KeypointStore",
    "StoreError",
    "StoreWriter",
    "class_subset",
    "compression_presets",
    "signer_split",
    "split_code",
    "write_signer_split",
    "write_splits",
    "write_store",
]
