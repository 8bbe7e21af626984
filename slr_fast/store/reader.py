"""Reading keypoint stores: validation on open, sequence access, batched reads, selection, in-memory load."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.layout import Layout
from slr_fast.store.integrity import check_checksum, check_chunks, frames_chunk, recorded_checksums
from slr_fast.store.location import StorePath, describe, is_url, zarr_store
from slr_fast.store.publish import recover
from slr_fast.store.schema import (
    ARRAYS,
    ATTRS_KEY,
    CHECKSUMS_KEY,
    FRAMES_CRC,
    SPLITS,
    StoreError,
    check_array_meta,
    check_attrs,
    check_index,
    split_code,
)
from slr_fast.store.split import ClassSubset, class_subset
from slr_fast.store.zarrio import checked_store, missing_chunk_in, settle


def problem(e: BaseException) -> str:
    """What went wrong reading one chunk, in words: 'is missing', 'fails its crc32c check ...', ..."""
    if missing_chunk_in(e) is not None:
        return "is missing"
    if isinstance(e, ValueError) and "checksum do not match" in str(e):  # zarr's Crc32cCodec
        return "fails its crc32c check (its bytes changed after it was written: a flipped bit, a truncated file)"
    return f"cannot be decoded ({type(e).__name__}: {e})"


def _read(where: str, what: str, fn: Callable, locate: Callable[[], str | None] | None = None):
    """Run a zarr read; a failure (missing or corrupt chunk, lost connection) is one StoreError naming the store and
    the chunk (`locate` finds it by reading the chunks involved one at a time) or else what was read."""
    try:
        return fn()
    except (StoreError, IndexError):
        raise
    except BaseException as e:
        settle()  # zarr's sibling tasks of the failed read: finished now, not destroyed noisily at exit
        if not isinstance(e, Exception):  # KeyboardInterrupt
            raise
        culprit = locate() if locate is not None else None
        if culprit:
            raise StoreError(f"{where}: {culprit}") from e
        missing = missing_chunk_in(e)
        reason = f"chunk {missing.key} is missing" if missing else f"{type(e).__name__}: {e}"
        raise StoreError(f"{where}: cannot read {what}: {reason}") from e


def _locate(arr: Any, chunk_ids: Iterable[int], name: Callable[[int], str]) -> str | None:
    """Read chunks (along the first axis) one at a time; describe the first that fails, or None if all read."""
    c, n = int(arr.chunks[0]), int(arr.shape[0])
    for k in chunk_ids:
        try:
            arr[k * c:min((k + 1) * c, n)]
        except Exception as e:
            settle()
            return f"{name(k)} {problem(e)}"
    return None


def _locate_index(arr: Any, name: str) -> str | None:
    return _locate(arr, range(arr.cdata_shape[0]), lambda k: f"{name!r} chunk {arr.metadata.encode_chunk_key((k,))}")


def _zarr_meta(where: str, what: str, fn: Callable):
    """Open a zarr node; damaged metadata (garbage, truncated or wrong-schema zarr.json) is one StoreError."""
    try:
        return fn()
    except (StoreError, KeyError):  # KeyError: no such node, for the caller to word
        raise
    except Exception as e:
        raise StoreError(f"{where}: cannot read {what}: {type(e).__name__}: {e}") from e


class KeypointStore:
    """A validated keypoint store; frames stay in Zarr (read on demand) or in memory after `load()`.

    The per-sequence index (offsets, labels, signers, ids, splits) is always in memory: it is small and every
    access needs it.
    """

    def __init__(self, *, frames: Any, offsets: np.ndarray, labels: np.ndarray, signers: np.ndarray,
                 seq_ids: np.ndarray, splits: np.ndarray, layout: Layout, classes: list[str],
                 provenance: dict[str, Any], attrs: dict[str, Any], where: str, group: Any = None,
                 chunk_size: int | None = None, checksums: dict[str, int] | None = None,
                 chunk_crcs: np.ndarray | None = None):
        for arr in (offsets, labels, signers, seq_ids, splits):
            arr.flags.writeable = False  # shared by every view of the store (load() shares them too)
        if isinstance(frames, np.ndarray):
            # In-memory frames are handed out as views (get_many, read_frames): an in-place edit by a caller would
            # silently change the data for every later reader, so it fails instead.
            frames.flags.writeable = False
        self._frames = frames  # zarr.Array, or np.ndarray once loaded
        self._group = group  # the zarr group (on disk), for verify's listing of chunks
        self.offsets = offsets
        self.labels = labels
        self.signers = signers
        self.seq_ids = seq_ids
        self.splits = splits
        self.layout = layout
        self.classes = classes
        self.provenance = provenance
        self.attrs = attrs
        self.where = where
        self.lengths = np.diff(offsets)
        # Frames per stored chunk, the unit of the frames checksums (kept after load()).
        self.chunk_size = int(chunk_size if chunk_size is not None else frames.chunks[0])
        self._checksums = checksums  # recorded crc32c per array; None for a store written before checksums
        self._chunk_crcs = chunk_crcs  # frames_crc32c, read on first need

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path_or_url: StorePath, storage_options: dict[str, Any] | None = None) -> KeypointStore:
        """Open and validate a store (local path or fsspec URL); fails with a message naming the problem.

        A local path with no store but the previous one set aside by a writer killed while replacing it (see
        `slr_fast.store.publish`) gets that store back, with a warning on the "slr_fast.store" logger.
        """
        return cls._open(path_or_url, storage_options)

    @classmethod
    def _open(cls, path_or_url: StorePath, storage_options: dict[str, Any] | None = None, *,
              unchecked: tuple[str, ...] = ()) -> KeypointStore:
        """`open`, without comparing the arrays named in `unchecked` with their checksums (for write_splits)."""
        import zarr

        where = describe(path_or_url)
        if not is_url(path_or_url):
            recover(Path(path_or_url).absolute(), where)  # a store set aside by a writer killed while replacing it
        zstore = checked_store(zarr_store(path_or_url, read_only=True, storage_options=storage_options),
                               (*ARRAYS, FRAMES_CRC))
        try:
            group = zarr.open_group(zstore, mode="r")
        except FileNotFoundError as e:
            absent = not is_url(path_or_url) and not Path(path_or_url).exists()
            why = "nothing at that path" if absent else "no zarr.json"
            raise StoreError(f"{where}: no keypoint store there ({why})") from e
        except (zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError,
                zarr.errors.ContainsArrayError) as e:
            raise StoreError(f"{where}: no keypoint store there (no zarr.json describing a zarr v3 group: "
                             f"{type(e).__name__})") from e
        except Exception as e:  # garbage, truncated or wrong-schema zarr.json
            raise StoreError(f"{where}: cannot read the group's metadata (zarr.json): {type(e).__name__}: {e}") from e
        if group.metadata.zarr_format != 3:
            raise StoreError(f"{where}: zarr format {group.metadata.zarr_format}; keypoint stores are zarr v3")
        meta = group.attrs.asdict().get(ATTRS_KEY)
        layout, classes, provenance = check_attrs(where, meta)
        checksums = recorded_checksums(where, meta)
        zstore.strict = checksums is not None  # every chunk was written: a missing one is damage
        arrays = {}
        for name in ARRAYS:
            try:
                arr = _zarr_meta(where, f"array {name!r} (its metadata {name}/zarr.json)", lambda n=name: group[n])
            except KeyError:
                raise StoreError(f"{where}: array {name!r} is missing (no {name}/zarr.json with zarr v3 metadata)") \
                    from None
            if not isinstance(arr, zarr.Array):
                raise StoreError(f"{where}: {name!r} is a group, expected an array")
            check_array_meta(where, name, arr, layout)
            arrays[name] = arr
        frames = arrays.pop("frames")
        codecs = getattr(frames.metadata, "codecs", ())
        if checksums is None and any(c.to_dict().get("name") == "crc32c" for c in codecs):
            # Only stores written with checksums have the crc32c codec: the attribute was removed, not never there.
            raise StoreError(f"{where}: the frames were written with checksums but the {CHECKSUMS_KEY!r} attribute "
                             f"that records them is gone")
        index = {name: _read(where, repr(name), lambda a=arr: a[...], lambda a=arr, n=name: _locate_index(a, n))
                 for name, arr in arrays.items()}
        ids = index["seq_id"].tolist()
        if checksums is not None:
            for name, values in index.items():
                if name not in unchecked:
                    check_checksum(where, name, ids if name == "seq_id" else values, checksums)
        check_index(where, index["offsets"], index["label"], index["signer"], ids, index["split"],
                    num_frames=frames.shape[0], num_classes=len(classes))
        for key, what, actual in (("num_sequences", "sequences", len(index["label"])),
                                  ("num_frames", "frames", frames.shape[0]),
                                  ("chunk_frames", "frames per chunk", frames.chunks[0])):
            expected = meta.get(key)
            if expected is not None and expected != actual:
                raise StoreError(f"{where}: attributes record {expected!r} {what} but the arrays hold {actual}")
        return cls(frames=frames, offsets=index["offsets"], labels=index["label"], signers=index["signer"],
                   seq_ids=index["seq_id"], splits=index["split"], layout=layout, classes=classes,
                   provenance=provenance, attrs=dict(meta), where=where, group=group, checksums=checksums)

    def load(self) -> KeypointStore:
        """The whole store in memory (NumPy frames), with the same API; a no-op if already loaded."""
        if self.in_memory:
            return self
        frames = self.frames_array()  # checks every chunk against its checksum
        return KeypointStore(frames=frames, offsets=self.offsets, labels=self.labels,
                             signers=self.signers, seq_ids=self.seq_ids, splits=self.splits, layout=self.layout,
                             classes=self.classes, provenance=self.provenance, attrs=self.attrs, where=self.where,
                             chunk_size=self.chunk_size, checksums=self._checksums, chunk_crcs=self._chunk_crcs)

    # ---------------------------------------------------------------- access
    @property
    def in_memory(self) -> bool:
        """True once `load()` has put the frames in a NumPy array."""
        return isinstance(self._frames, np.ndarray)

    @property
    def num_frames(self) -> int:
        """Total frames of all sequences (ΣT)."""
        return int(self.offsets[-1])

    @property
    def chunk_frames(self) -> int:
        """Frames per stored chunk (the decode unit for reads from disk); the whole store once loaded."""
        return self.num_frames if self.in_memory else self.chunk_size

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        mode = "in memory" if self.in_memory else "on disk"
        return (f"KeypointStore({self.where!r}, {len(self)} sequences, {self.num_frames} frames, "
                f"{len(self.classes)} classes, layout {self.layout.name!r}, {mode})")

    def _check_index(self, i: int) -> int:
        n = len(self)
        j = int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError(f"{self.where}: sequence index {i} out of range for {n} sequences")
        return j

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """(frames (T, P, C) float32, label) of sequence i."""
        j = self._check_index(i)
        return self.read_frames(int(self.offsets[j]), int(self.offsets[j + 1])), int(self.labels[j])

    def read_frames(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of the flat (ΣT, P, C) array; from disk, every whole chunk in it is checked."""
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"{self.where}: frame range [{start}, {stop}) outside 0..{self.num_frames}")
        block = self._read_range(start, stop)
        crcs = None if self.in_memory else self.chunk_checksums()
        if crcs is not None:
            check_chunks(self, start, block, crcs)
        return block

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        if self.in_memory:
            return self._frames[start:stop]
        c = self.chunk_size
        return _read(self.where, f"frames [{start}, {stop})", lambda: np.asarray(self._frames[start:stop]),
                     lambda: self._locate_frames(range(start // c, -(-stop // c))))

    def _locate_frames(self, chunk_ids: Iterable[int]) -> str | None:
        return _locate(self._frames, chunk_ids, lambda k: frames_chunk(self, k))

    def frames_array(self) -> np.ndarray:
        """All frames as one (ΣT, P, C) float32 array (read from disk unless loaded; read-only if loaded).

        From disk every chunk is compared with its checksum (a swapped or deleted chunk fails here)."""
        if self.in_memory:
            return self._frames
        return self.read_frames(0, self.num_frames)

    def chunk_checksums(self) -> np.ndarray | None:
        """The recorded crc32c of each frames chunk (uint32), or None for a store written before checksums."""
        if self._checksums is None or self._chunk_crcs is not None:
            return self._chunk_crcs
        arr = None
        if self._group is not None:
            arr = _zarr_meta(self.where, f"array {FRAMES_CRC!r} (its metadata {FRAMES_CRC}/zarr.json)",
                             lambda: self._group.get(FRAMES_CRC))
        if arr is None or not hasattr(arr, "dtype"):
            raise StoreError(f"{self.where}: array {FRAMES_CRC!r} (the frames chunks' checksums) is missing")
        crcs = _read(self.where, repr(FRAMES_CRC), lambda: np.asarray(arr[...]), lambda: _locate_index(arr, FRAMES_CRC))
        check_checksum(self.where, FRAMES_CRC, crcs, self._checksums)
        want = -(-self.num_frames // self.chunk_size)
        if crcs.shape != (want,):
            raise StoreError(f"{self.where}: {FRAMES_CRC!r} has shape {crcs.shape} but frames has {want} chunks")
        self._chunk_crcs = crcs
        return crcs

    def get_many(self, indices: Iterable[int]) -> list[np.ndarray]:
        """Frames of several sequences, in the order given; on disk each needed chunk is read and decoded once.

        From disk the whole batch is one zarr read (an integer frame selection), so zarr fetches and decodes all
        the chunks it touches concurrently instead of one read per sequence. Results are views into one
        (ΣT_batch, P, C) block (on disk) or into the loaded frames (in memory). A changed, truncated or missing
        chunk fails here; a chunk file swapped for another valid one is found only by reads of whole chunks
        (`frames_array`, `load`, `read_frames` of a range covering it, `verify`): checking it here would mean
        materialising whole chunks for every batch, measured at 2x the time of a 32-sequence batch.
        """
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
        if idx.size == 0:
            return []
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"{self.where}: get_many takes a 1-D sequence of integer indices, got {idx.dtype}")
        idx = idx.astype(np.int64)
        bad = (idx < -len(self)) | (idx >= len(self))
        if bad.any():
            raise IndexError(f"{self.where}: sequence index {int(idx[bad][0])} out of range for {len(self)} sequences")
        idx = np.where(idx < 0, idx + len(self), idx)
        starts, stops = self.offsets[idx], self.offsets[idx + 1]
        if self.in_memory:
            return [self._frames[a:b] for a, b in zip(starts, stops, strict=True)]
        order = np.argsort(starts, kind="stable")
        lens = (stops - starts)[order]
        ends = np.cumsum(lens)
        # Frame numbers of the sorted batch, back to back: start of each sequence + position within it.
        frames = np.repeat(starts[order], lens) + (np.arange(ends[-1]) - np.repeat(ends - lens, lens))
        block = _read(self.where, f"frames of sequences {idx[:8].tolist()}{'...' if len(idx) > 8 else ''}",
                      lambda: np.asarray(self._frames.get_orthogonal_selection((frames,))),
                      lambda: self._locate_frames(np.unique(frames // self.chunk_size).tolist()))
        out: list[np.ndarray | None] = [None] * len(idx)
        for k, a, b in zip(order, ends - lens, ends, strict=True):
            out[k] = block[a:b]
        return out  # type: ignore[return-value]

    def verify(self, block_chunks: int = 64) -> dict[str, Any]:
        """The deep check: every chunk of every array present, every frames chunk decoding and matching its
        checksum, no infinite values. `open` checks only the index; this is for a store copied or downloaded from
        elsewhere, or suspected of damage. The first problem raises StoreError naming the chunk and its sequences.

        Returns {"sequences", "frames", "frames_chunks", "chunks" (chunks of all arrays; 0 in memory), "absent"
        (chunks not in a store written before checksums, which read as fill values: such stores left out chunks
        holding only the fill value, so this may not be damage), "checksums" (False: written before checksums, so
        chunks could not be compared), "chunks_checked", "nan_fraction", "empty_frames" (frames with no point)}.
        """
        from slr_fast.store.integrity import verify

        return verify(self, block_chunks)

    # ---------------------------------------------------------------- selection
    def class_ids(self, classes: Iterable[str | int]) -> np.ndarray:
        """Class names or ids -> int32 ids (in the order given); unknown ones fail listing examples."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        out = []
        for c in classes:
            if isinstance(c, str):
                if c not in lookup:
                    raise UserInputError(f"{self.where}: unknown class {c!r}; the store has {len(self.classes)} "
                                         f"classes, e.g. {self.classes[:5]}")
                out.append(lookup[c])
            else:
                if not 0 <= int(c) < len(self.classes):
                    raise UserInputError(f"{self.where}: class id {c} outside 0..{len(self.classes) - 1}")
                out.append(int(c))
        return np.asarray(out, np.int32)

    def select(self, split: str | int | Sequence[str | int] | None = None, signers: Iterable[int] | None = None,
               classes: Iterable[str | int] | None = None) -> np.ndarray:
        """int64 indices of the sequences matching every given filter (None = no filter), in store order.

        `split` is a name ("train"), a code, or a list of them; "none" or -1 selects sequences without a split.
        """
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            wanted = [split] if isinstance(split, str | int | np.integer) else list(split)
            codes = [-1 if s == "none" else split_code(s) for s in wanted]
            keep &= np.isin(self.splits, np.asarray(codes, np.int8))
        if signers is not None:
            keep &= np.isin(self.signers, np.asarray(list(signers), np.int32))
        if classes is not None:
            keep &= np.isin(self.labels, self.class_ids(classes))
        return np.flatnonzero(keep).astype(np.int64)

    def split_counts(self) -> dict[str, int]:
        """Number of sequences per split (and "none")."""
        counts = {name: int((self.splits == i).sum()) for i, name in enumerate(SPLITS)}
        counts["none"] = int((self.splits == -1).sum())
        return counts

    def class_subset(self, classes: Iterable[str | int]) -> ClassSubset:
        """A ClassSubset renumbering the given classes (names or ids) 0..K-1, e.g. for 500-of-1001 training."""
        return class_subset(self.classes, classes)
