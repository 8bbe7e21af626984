"""On-disk schema of a keypoint store: array names, attribute keys, codecs, and the checks `open` runs.

A store is a Zarr v3 group:

    frames   (ΣT, P, C) float32   all sequences' frames back to back; NaN = keypoint not detected
    offsets  (N+1,)     int64     sequence i is frames[offsets[i]:offsets[i+1]]
    label    (N,)       int32     index into attrs["slr_fast"]["classes"]
    signer   (N,)       int32     -1 = unknown
    seq_id   (N,)       string    stable id (source file stem, GISLR sequence_id, ...), unique
    split    (N,)       int8      -1 none, 0 train, 1 val, 2 test (SPLITS)

Group attributes live under one key, "slr_fast", so other tools' attributes never collide with ours. Only
numeric arrays and zarr's native variable-length UTF-8 strings are used: no pickle or object codecs.

Integrity (stores written since checksums were added; older ones still open): every array's codec chain ends in
zarr's crc32c codec, so a changed byte fails to decode instead of being read; every chunk is written, even one
holding only fill values, so a missing chunk is damage, never an all-NaN or all-zero chunk left out; and the
attributes record a crc32c of each index array's values under "checksums", with a crc32c of each frames chunk's
decoded values in the array `frames_crc32c`, binding data to its position (a deleted or swapped chunk file passes
the codec's check but not these).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.layout import Layout

SCHEMA_VERSION = 1
ATTRS_KEY = "slr_fast"
SPLITS = ("train", "val", "test")
NO_SPLIT = -1
UNKNOWN_SIGNER = -1

# name -> (dtype, ndim); the order is the order checks report problems in.
ARRAYS: dict[str, tuple[str, int]] = {
    "frames": ("float32", 3),
    "offsets": ("int64", 1),
    "label": ("int32", 1),
    "signer": ("int32", 1),
    "seq_id": ("str", 1),
    "split": ("int8", 1),
}
# crc32c of each frames chunk's decoded float32 values (little-endian bytes), chunk k = frames [k*chunk, (k+1)*chunk).
FRAMES_CRC = "frames_crc32c"
# Attribute (inside "slr_fast") holding {"algorithm": "crc32c", array name: crc32c of its values} for the index
# arrays and FRAMES_CRC; absent in stores written before checksums.
CHECKSUMS_KEY = "checksums"
CHECKSUMMED = ("offsets", "label", "signer", "split", "seq_id", FRAMES_CRC)

# Chosen from benchmarks/test_store.py (table in the README). Compression: stored time-major ((T, P, C) chunks
# transposed to (P, C, T) before compression, so each coordinate's trajectory and each run of NaN for an unseen
# hand is contiguous) with blosc+zstd level 3 and byte shuffle. On real MediaPipe keypoints that is 3.16x smaller
# than raw float32 (same codec frame-major 2.19x, plain zstd 2.56x, blosc-lz4 2.75x), lossless with NaN intact, and
# decodes at ~300 MB/s per core; level 5 gains 3% for slower writes.
# Chunks of 512 frames (~350 kB raw at 87x2): random batches from disk decode ~1/chunk of what they touch, so 512
# read them ~3x faster than 2048 and close to 256, while whole-store loads were no slower than with 2048 and 256
# doubles the object count (bad for object storage).
DEFAULT_CHUNK_FRAMES = 512
DEFAULT_COMPRESSION = "blosc-zstd3-shuffle+time"
# Metadata arrays are tiny (4-8 bytes per sequence): one chunk up to a million sequences.
META_CHUNK = 1 << 20

_BLOSC = {
    "blosc-lz4-shuffle": ("lz4", 5, "shuffle"),
    "blosc-lz4-bitshuffle": ("lz4", 5, "bitshuffle"),
    "blosc-zstd1-shuffle": ("zstd", 1, "shuffle"),
    "blosc-zstd3-shuffle": ("zstd", 3, "shuffle"),
    "blosc-zstd5-shuffle": ("zstd", 5, "shuffle"),
    "blosc-zstd1-bitshuffle": ("zstd", 1, "bitshuffle"),
    "blosc-zstd3-bitshuffle": ("zstd", 3, "bitshuffle"),
}


def compression_names() -> list[str]:
    """The preset names `compression_presets` offers, without importing zarr (for command-line choices)."""
    base = ["none", "zstd1", "zstd3", *_BLOSC]
    return [*base, *(f"{name}+time" for name in base)]


def compression_presets() -> dict[str, dict[str, list]]:
    """Named codec chains for `frames` as zarr `create_array` keywords (filters, compressors).

    A "+time" suffix stores chunks time-major (a transpose codec in front of the compressor). All are lossless:
    lossy float codecs (bit rounding, quantisation) can turn NaN into inf and are deliberately not offered. Every
    chain ends in crc32c (4 bytes per chunk), checked whenever a chunk is decoded.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec, TransposeCodec, ZstdCodec

    base: dict[str, list] = {"none": [], "zstd1": [ZstdCodec(level=1)], "zstd3": [ZstdCodec(level=3)]}
    base.update({name: [BloscCodec(cname=cname, clevel=level, shuffle=shuffle)]
                 for name, (cname, level, shuffle) in _BLOSC.items()})
    out = {}
    for name, compressors in base.items():
        checked = [*compressors, Crc32cCodec()]
        out[name] = {"filters": [], "compressors": checked}
        out[f"{name}+time"] = {"filters": [TransposeCodec(order=(1, 2, 0))], "compressors": checked}
    return out


def index_codecs() -> dict[str, list]:
    """zarr `create_array` keywords for the index arrays and FRAMES_CRC: zarr's default zstd, then crc32c."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {"compressors": [ZstdCodec(level=0), Crc32cCodec()]}


# Every chunk is written, even one holding only the fill value (zarr skips those by default): a chunk missing from
# a store with checksums is then always damage.
WRITE_CONFIG = {"write_empty_chunks": True}


def get_compression(name: str) -> dict[str, list]:
    """zarr codec keywords for a preset name; unknown names fail listing the valid ones."""
    presets = compression_presets()
    if name not in presets:
        raise UserInputError(f"unknown compression {name!r}; valid: {', '.join(presets)}")
    return presets[name]


class StoreError(UserInputError):
    """A store is missing, incomplete, or inconsistent; the message names the store and the problem.

    The message is always one line (a library's multi-line text is folded), so the CLI prints exactly one.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def split_code(split: str | int | None) -> int:
    """Split name / code / None -> int8 code (-1 none, 0 train, 1 val, 2 test)."""
    if split is None:
        return NO_SPLIT
    if isinstance(split, str):
        if split not in SPLITS:
            raise UserInputError(f"unknown split {split!r}; valid: {', '.join(SPLITS)} or None")
        return SPLITS.index(split)
    code = int(split)
    if not NO_SPLIT <= code < len(SPLITS):
        raise UserInputError(f"split code {split!r} out of range; valid: -1 (none), 0 train, 1 val, 2 test")
    return code


def check_attrs(where: str, meta: Any) -> tuple[Layout, list[str], dict]:
    """Validate the "slr_fast" attributes; return (layout, classes, provenance)."""
    if not isinstance(meta, Mapping):
        raise StoreError(f"{where}: not an slr_fast keypoint store (group attribute {ATTRS_KEY!r} missing)")
    if meta.get("complete") is not True:
        raise StoreError(f"{where}: store is incomplete — the ingest that wrote it did not finish "
                         f"(killed or failed); re-run the ingest to rebuild it")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(f"{where}: schema version {version!r} is not supported (this slr_fast reads version "
                         f"{SCHEMA_VERSION}); re-ingest the data with this version")
    try:
        layout = Layout.from_dict(meta["layout"])
    except (KeyError, ValueError, TypeError) as e:
        raise StoreError(f"{where}: invalid layout attribute: {e}") from e
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise StoreError(f"{where}: 'classes' attribute must be a non-empty list of class names, got {classes!r}")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise StoreError(f"{where}: duplicate class names {dup[:10]}")
    provenance = meta.get("provenance", {})
    if not isinstance(provenance, Mapping):
        raise StoreError(f"{where}: 'provenance' attribute must be a mapping, got {type(provenance).__name__}")
    return layout, list(classes), dict(provenance)


def check_array_meta(where: str, name: str, arr: Any, layout: Layout) -> None:
    """Check one array's dtype and rank (and, for frames, its point/channel shape against the layout)."""
    want_dtype, want_ndim = ARRAYS[name]
    dtype = arr.dtype
    if want_dtype == "str":
        ok = dtype.kind in ("T", "U", "O") or "string" in str(dtype).lower()
    else:
        ok = np.dtype(dtype) == np.dtype(want_dtype)
    if not ok:
        raise StoreError(f"{where}: array {name!r} has dtype {dtype}, expected {want_dtype}")
    if len(arr.shape) != want_ndim:
        raise StoreError(f"{where}: array {name!r} has shape {tuple(arr.shape)}, expected {want_ndim} dimension(s)")
    if name == "frames":
        want = (layout.num_points, layout.num_channels)
        if tuple(arr.shape[1:]) != want:
            raise StoreError(f"{where}: frames have {tuple(arr.shape[1:])} (points, channels) per frame but the "
                             f"layout {layout.name!r} says {want}")


def check_index(where: str, offsets: np.ndarray, labels: np.ndarray, signers: np.ndarray,
                seq_ids: np.ndarray | list[str], splits: np.ndarray, num_frames: int, num_classes: int) -> None:
    """Check the per-sequence arrays against each other and against the frame count (`seq_ids` as array or list)."""
    n = len(offsets) - 1
    if n < 0:
        raise StoreError(f"{where}: 'offsets' is empty; it must hold N+1 entries starting at 0")
    for name, arr in (("label", labels), ("signer", signers), ("seq_id", seq_ids), ("split", splits)):
        if len(arr) != n:
            raise StoreError(f"{where}: {name!r} has {len(arr)} entries but offsets describe {n} sequences")
    if offsets[0] != 0:
        raise StoreError(f"{where}: offsets must start at 0, got {int(offsets[0])}")
    steps = np.diff(offsets)
    bad = np.flatnonzero(steps < 0)
    if bad.size:
        raise StoreError(f"{where}: offsets not monotonic at sequence {int(bad[0])} "
                         f"({int(offsets[bad[0]])} -> {int(offsets[bad[0] + 1])})")
    if offsets[-1] != num_frames:
        raise StoreError(f"{where}: offsets end at {int(offsets[-1])} but frames holds {num_frames} frames")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise StoreError(f"{where}: label {int(labels[bad[0]])} of sequence {int(bad[0])} is outside the "
                         f"{num_classes} classes (0..{num_classes - 1})")
    bad = np.flatnonzero(signers < UNKNOWN_SIGNER)
    if bad.size:
        raise StoreError(f"{where}: signer {int(signers[bad[0]])} of sequence {int(bad[0])} is invalid "
                         f"(ids are >= 0, -1 = unknown)")
    bad = np.flatnonzero((splits < NO_SPLIT) | (splits >= len(SPLITS)))
    if bad.size:
        raise StoreError(f"{where}: split code {int(splits[bad[0]])} of sequence {int(bad[0])} is invalid "
                         f"(-1 none, 0 train, 1 val, 2 test)")
    ids = seq_ids if isinstance(seq_ids, list) else seq_ids.tolist()
    if len(set(ids)) != n:  # a set of Python strings: twice as fast as np.unique on a StringDType array
        seen: set[str] = set()
        dup = next(x for x in ids if x in seen or seen.add(x))
        raise StoreError(f"{where}: duplicate sequence ids, e.g. {dup!r}")
