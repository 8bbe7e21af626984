"""Reading keypoint stores: validation on open, sequence access, batched reads, selection, in-memory load."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from slr_fast.layout import Layout
from slr_fast.store.location import StorePath, describe, zarr_store
from slr_fast.store.schema import (
    ARRAYS,
    ATTRS_KEY,
    SPLITS,
    StoreError,
    check_array_meta,
    check_attrs,
    check_index,
    split_code,
)
from slr_fast.store.split import ClassSubset, class_subset


def _read(where: str, what: str, fn):
    """Run a zarr read; a failure (missing or corrupt chunk, lost connection) names the store and what was read."""
    try:
        return fn()
    except (StoreError, IndexError):
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
                 provenance: dict[str, Any], attrs: dict[str, Any], where: str):
        for arr in (offsets, labels, signers, seq_ids, splits):
            arr.flags.writeable = False  # shared by every view of the store (load() shares them too)
        if isinstance(frames, np.ndarray):
            # In-memory frames are handed out as views (get_many, read_frames): an in-place edit by a caller would
            # silently change the data for every later reader, so it fails instead.
            frames.flags.writeable = False
        self._frames = frames  # zarr.Array, or np.ndarray once loaded
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

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path_or_url: StorePath, storage_options: dict[str, Any] | None = None) -> KeypointStore:
        """Open and validate a store (local path or fsspec URL); fails with a message naming the problem."""
        import zarr

        where = describe(path_or_url)
        try:
            group = zarr.open_group(zarr_store(path_or_url, read_only=True, storage_options=storage_options),
                                    mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as e:
            raise StoreError(f"{where}: no keypoint store there ({type(e).__name__}: {e})") from e
        if group.metadata.zarr_format != 3:
            raise StoreError(f"{where}: zarr format {group.metadata.zarr_format}; keypoint stores are zarr v3")
        meta = group.attrs.asdict().get(ATTRS_KEY)
        layout, classes, provenance = check_attrs(where, meta)
        arrays = {}
        for name in ARRAYS:
            try:
                arr = group[name]
            except KeyError:
                raise StoreError(f"{where}: array {name!r} is missing") from None
            if not isinstance(arr, zarr.Array):
                raise StoreError(f"{where}: {name!r} is a group, expected an array")
            check_array_meta(where, name, arr, layout)
            arrays[name] = arr
        frames = arrays.pop("frames")
        index = {name: _read(where, name, lambda a=arr: a[...]) for name, arr in arrays.items()}
        check_index(where, index["offsets"], index["label"], index["signer"], index["seq_id"], index["split"],
                    num_frames=frames.shape[0], num_classes=len(classes))
        expected = meta.get("num_sequences")
        if expected is not None and expected != len(index["label"]):
            raise StoreError(f"{where}: attributes record {expected} sequences but the arrays hold "
                             f"{len(index['label'])}")
        return cls(frames=frames, offsets=index["offsets"], labels=index["label"], signers=index["signer"],
                   seq_ids=index["seq_id"], splits=index["split"], layout=layout, classes=classes,
                   provenance=provenance, attrs=dict(meta), where=where)

    def load(self) -> KeypointStore:
        """The whole store in memory (NumPy frames), with the same API; a no-op if already loaded."""
        if self.in_memory:
            return self
        return KeypointStore(frames=self.frames_array(), offsets=self.offsets, labels=self.labels,
                             signers=self.signers, seq_ids=self.seq_ids, splits=self.splits, layout=self.layout,
                             classes=self.classes, provenance=self.provenance, attrs=self.attrs, where=self.where)

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
        return self.num_frames if self.in_memory else int(self._frames.chunks[0])

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
        """Frames [start, stop) of the flat (ΣT, P, C) array."""
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"{self.where}: frame range [{start}, {stop}) outside 0..{self.num_frames}")
        if self.in_memory:
            return self._frames[start:stop]
        return _read(self.where, f"frames [{start}, {stop})", lambda: np.asarray(self._frames[start:stop]))

    def frames_array(self) -> np.ndarray:
        """All frames as one (ΣT, P, C) float32 array (read from disk unless loaded; read-only if loaded)."""
        if self.in_memory:
            return self._frames
        return _read(self.where, "frames", lambda: np.asarray(self._frames[...]))

    def get_many(self, indices: Iterable[int]) -> list[np.ndarray]:
        """Frames of several sequences, in the order given; on disk each needed chunk is read and decoded once.

        From disk the whole batch is one zarr read (an integer frame selection), so zarr fetches and decodes all
        the chunks it touches concurrently instead of one read per sequence. Results are views into one
        (ΣT_batch, P, C) block (on disk) or into the loaded frames (in memory).
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
                      lambda: np.asarray(self._frames.get_orthogonal_selection((frames,))))
        out: list[np.ndarray | None] = [None] * len(idx)
        for k, a, b in zip(order, ends - lens, ends, strict=True):
            out[k] = block[a:b]
        return out  # type: ignore[return-value]

    def verify(self, block_chunks: int = 64) -> dict[str, Any]:
        """Read every frame once (block by block) and check it: chunks decode, no infinite values.

        `open` checks only the index; this is the deep check for a store copied or downloaded from elsewhere.
        Returns {"frames", "nan_fraction", "empty_frames"} (frames where no point was detected).
        """
        step = max(1, self.chunk_frames * block_chunks)
        nan = empty = 0
        for start in range(0, self.num_frames, step):
            stop = min(start + step, self.num_frames)
            block = self.read_frames(start, stop)
            inf = np.isinf(block)
            if inf.any():
                frame = start + int(np.argwhere(inf)[0][0])
                seq = int(np.searchsorted(self.offsets, frame, side="right") - 1)
                raise StoreError(f"{self.where}: infinite value in frame {frame} (sequence {seq}, id "
                                 f"{str(self.seq_ids[seq])!r}); undetected points must be NaN")
            missing = np.isnan(block)
            nan += int(missing.sum())
            empty += int(missing.reshape(len(block), -1).all(axis=1).sum())
        values = self.num_frames * self.layout.num_points * self.layout.num_channels
        return {"frames": self.num_frames, "nan_fraction": nan / values if values else 0.0, "empty_frames": empty}

    # ---------------------------------------------------------------- selection
    def class_ids(self, classes: Iterable[str | int]) -> np.ndarray:
        """Class names or ids -> int32 ids (in the order given); unknown ones fail listing examples."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        out = []
        for c in classes:
            if isinstance(c, str):
                if c not in lookup:
                    raise ValueError(f"{self.where}: unknown class {c!r}; the store has {len(self.classes)} "
                                     f"classes, e.g. {self.classes[:5]}")
                out.append(lookup[c])
            else:
                if not 0 <= int(c) < len(self.classes):
                    raise ValueError(f"{self.where}: class id {c} outside 0..{len(self.classes) - 1}")
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
