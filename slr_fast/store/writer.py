"""Streaming, crash-safe writing of keypoint stores.

Frames are buffered only up to `flush_frames` and written in whole chunks, so an ingest of any size holds a few
megabytes of frames at a time; the per-sequence index (8 + 4 + 4 + 1 bytes and an id per sequence) is kept in
memory and written at the end.

Crash safety: a local store is built in a hidden sibling folder and renamed into place only once it is complete
(see `publish`), so a killed or failed ingest leaves any previous store untouched and nothing half-written at the
path. A failure removes the folder on the way out (after zarr's own write tasks have finished: see `zarrio`), and
a full disk is one line naming the filesystem and the store. Object storage has no atomic rename: there the group
is marked `complete: false` from the start and flipped to true as the last write, and `KeypointStore.open`
refuses an incomplete store with a message to re-run the ingest.

Integrity: the frames chunks' checksums are taken from the values written (see `integrity`), on the writer thread.
"""

from __future__ import annotations

import atexit
import json
import threading
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from slr_fast.fileio import is_no_space, no_space_error
from slr_fast.layout import DEFAULT_LAYOUT, Layout
from slr_fast.store.integrity import ALGORITHM, chunk_crcs, crc32c
from slr_fast.store.location import StorePath, describe, is_url, zarr_store
from slr_fast.store.publish import TMP_TAG, clean_stale, local_state, publish, recover, remove_tree, sibling
from slr_fast.store.schema import (
    ATTRS_KEY,
    CHECKSUMS_KEY,
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_COMPRESSION,
    FRAMES_CRC,
    META_CHUNK,
    SCHEMA_VERSION,
    UNKNOWN_SIGNER,
    WRITE_CONFIG,
    StoreError,
    get_compression,
    index_codecs,
    split_code,
)
from slr_fast.store.zarrio import settle

# Writers not yet closed or aborted: at interpreter exit their temporary folders are removed (a writer used without
# `with` whose caller died of an exception would otherwise leave one until the next ingest to that path).
_OPEN_WRITERS: weakref.WeakSet = weakref.WeakSet()
_EXIT_HOOK = threading.Lock()
_exit_hook_registered = False


def _abort_open_writers() -> None:
    for writer in list(_OPEN_WRITERS):
        writer.abort()


def _track(writer: StoreWriter) -> None:
    global _exit_hook_registered
    with _EXIT_HOOK:
        if not _exit_hook_registered:
            # Registered after zarr is imported, so it runs before zarr's own exit hook stops its event loop.
            atexit.register(_abort_open_writers)
            _exit_hook_registered = True
    _OPEN_WRITERS.add(writer)


def default_provenance(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """Provenance with the source format, tool version and creation time filled in."""
    import zarr

    from slr_fast import __version__

    out = {"source_format": "unknown"}
    out.update(provenance or {})
    out.setdefault("tool", "slr_fast")
    out.setdefault("tool_version", __version__)
    out.setdefault("zarr_version", zarr.__version__)
    out.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:
        json.dumps(out)
    except TypeError as e:
        raise ValueError(f"provenance must be JSON-serialisable: {e}") from e
    return out


class StoreWriter:
    """Append sequences one at a time; `close()` (or leaving the `with` block) publishes the store."""

    def __init__(self, path: StorePath, *, layout: Layout = DEFAULT_LAYOUT, classes: Sequence[str],
                 provenance: dict[str, Any] | None = None, overwrite: bool = False, total: int | None = None,
                 progress: bool = True, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
                 compression: str = DEFAULT_COMPRESSION, flush_frames: int | None = None,
                 storage_options: dict[str, Any] | None = None):
        import zarr

        if not isinstance(layout, Layout):
            raise TypeError(f"layout must be a slr_fast.layout.Layout, got {type(layout).__name__}")
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("classes must name at least one class")
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate class names: {sorted({c for c in classes if classes.count(c) > 1})[:10]}")
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        codecs = get_compression(compression)
        self.layout, self.classes, self._class_ids = layout, classes, {c: i for i, c in enumerate(classes)}
        self.where = describe(path)
        self._url = is_url(path)
        self._closed = self._aborted = False
        self._overwrite = overwrite
        self._chunk = int(chunk_frames)
        # Flush whole chunks only (no chunk is ever rewritten); ~16 chunks keeps the buffer at ~10 MB for 87x2.
        self._flush_at = max(self._chunk, int(flush_frames or 16 * self._chunk))
        self._tmp: Path | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._bar = None
        self._inflight: Future | None = None

        if self._url:
            self._final = path
            self._check_existing_url(path, overwrite, storage_options)
        else:
            self._final = Path(path).absolute()
            recover(self._final, self.where)  # a store set aside by a writer killed while replacing it
            clean_stale(self._final)
            state = local_state(self._final)
            if state == "complete" and not overwrite:
                raise StoreError(f"{self.where}: a complete store already exists; pass overwrite=True "
                                 "(--overwrite on the command line) to replace it")
            if state == "foreign":
                raise StoreError(f"{self.where}: exists and is not an slr_fast store; refusing to replace it "
                                 f"(remove it or choose another path)")
            self._final.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = sibling(self._final, TMP_TAG)

        try:
            store = zarr_store(self._tmp if self._tmp is not None else path, read_only=False,
                               storage_options=None if self._tmp is not None else storage_options)
            self._group = zarr.open_group(store, mode="w", zarr_format=3)
            self._meta = {
                "schema_version": SCHEMA_VERSION,
                "complete": False,
                "layout": layout.to_dict(),
                "classes": classes,
                "provenance": default_provenance(provenance),
                "chunk_frames": self._chunk,
                "compression": compression,
            }
            self._group.attrs[ATTRS_KEY] = self._meta
            p, c = self._point_shape = (layout.num_points, layout.num_channels)
            self._frames = self._group.create_array(
                "frames", shape=(0, p, c), chunks=(self._chunk, p, c), dtype="float32", **codecs,
                fill_value=np.nan, config=WRITE_CONFIG)
            self._written = 0  # frames handed to the array (written, or being written by the writer thread)
            self._crcs: list[int] = []  # crc32c of each frames chunk written, in order (by the writer thread)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slr-store-writer")
            self._pending: list[np.ndarray] = []
            self._pending_frames = 0
            self._lengths: list[int] = []
            self._labels: list[int] = []
            self._signers: list[int] = []
            self._splits: list[int] = []
            self._ids: list[str] = []
            self._id_set: set[str] = set()
            from tqdm.auto import tqdm

            # disable=None: tqdm hides itself when stderr is not a terminal (CI logs, piped output).
            self._bar = tqdm(total=total, unit="seq", desc=f"writing {Path(str(self.where)).name}",
                             disable=None if progress else True)
            _track(self)
        except BaseException as e:
            self.abort()  # nothing was published; leave no half-made temp folder either
            self._raise_no_space(e)
            raise

    def _check_existing_url(self, url: str, overwrite: bool, storage_options: dict[str, Any] | None) -> None:
        import zarr

        try:
            group = zarr.open_group(zarr_store(url, read_only=True, storage_options=storage_options), mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
            return
        ours = group.attrs.get(ATTRS_KEY)
        if not isinstance(ours, dict):
            raise StoreError(f"{url}: a zarr group that is not an slr_fast store exists there; refusing to replace it")
        if ours.get("complete") is True and not overwrite:
            raise StoreError(f"{url}: a complete store already exists; pass overwrite=True (--overwrite on the "
                             "command line) to replace it")

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance dict written at close; add facts known only at the end (e.g. skipped files) here."""
        return self._meta["provenance"]

    def append(self, frames: np.ndarray, label: int | str, signer: int = UNKNOWN_SIGNER, seq_id: str | None = None,
               split: str | int | None = None) -> int:
        """Add one sequence (T, P, C); returns its index. NaN marks undetected points; inf is rejected."""
        if self._closed:
            raise RuntimeError(f"{self.where}: writer is closed")
        i = len(self._labels)
        name = f"sequence {i}" + (f" ({seq_id!r})" if seq_id is not None else "")
        arr = np.asarray(frames)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{name}: frames must be numeric, got dtype {arr.dtype}")
        want = self._point_shape
        if arr.ndim != 3 or arr.shape[1:] != want:
            raise ValueError(f"{name}: frames have shape {arr.shape}, expected (T, {want[0]}, {want[1]}) "
                             f"for layout {self.layout.name!r}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if np.isinf(arr).any():
            raise ValueError(f"{name}: frames contain infinite values (use NaN for undetected points)")
        if isinstance(label, str):
            if label not in self._class_ids:
                raise ValueError(f"{name}: unknown class {label!r} (not among the {len(self.classes)} classes)")
            label = self._class_ids[label]
        label = int(label)
        if not 0 <= label < len(self.classes):
            raise ValueError(f"{name}: label {label} outside 0..{len(self.classes) - 1}")
        signer = int(signer)
        if signer < UNKNOWN_SIGNER:
            raise ValueError(f"{name}: signer {signer} invalid (ids are >= 0, -1 = unknown)")
        sid = str(i) if seq_id is None else str(seq_id)
        if sid in self._id_set:
            raise ValueError(f"{name}: duplicate sequence id {sid!r}")
        code = split_code(split)

        self._pending.append(arr)
        self._pending_frames += arr.shape[0]
        self._lengths.append(arr.shape[0])
        self._labels.append(label)
        self._signers.append(signer)
        self._splits.append(code)
        self._ids.append(sid)
        self._id_set.add(sid)
        if self._pending_frames >= self._flush_at:
            self._flush(final=False)
        self._bar.update(1)
        return i

    def _flush(self, final: bool) -> None:
        n = self._pending_frames if final else (self._pending_frames // self._chunk) * self._chunk
        if n:
            block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
            start, self._written = self._written, self._written + n
            # At most one block in flight: memory stays bounded (two blocks) and blocks land in order.
            self._wait()
            self._inflight = self._pool.submit(self._write_block, start, block[:n])
            rest = block[n:]
            self._pending = [rest.copy()] if len(rest) else []
            self._pending_frames = len(rest)
        if final:
            self._wait()

    def _write_block(self, start: int, data: np.ndarray) -> None:
        # Runs on the writer thread: compression (blosc releases the GIL) overlaps the caller reading sources.
        # Blocks start on chunk boundaries and all but the last are whole chunks, so each chunk's checksum is taken
        # from exactly the values that go into it.
        self._frames.resize((start + len(data), *data.shape[1:]))
        self._frames[start:start + len(data)] = data
        self._crcs.extend(chunk_crcs(data, self._chunk))

    def _wait(self) -> None:
        """Finish the block in flight; a failed write aborts the writer and re-raises in the caller's thread."""
        if self._inflight is not None:
            future, self._inflight = self._inflight, None
            try:
                future.result()
            except BaseException as e:
                # A block is lost, so the store can never be completed: remove it now, not at a later run.
                self.abort()
                self._raise_no_space(e)
                raise

    def _raise_no_space(self, e: BaseException) -> None:
        """A write that failed for lack of space becomes one line: "no space left on DEVICE writing PATH"."""
        if not self._url and is_no_space(e):
            raise no_space_error(self._final) from e

    def close(self) -> None:
        """Write the remaining frames and the index, mark the store complete and publish it."""
        if self._aborted:
            raise RuntimeError(f"{self.where}: nothing was published: the writer was aborted after an error")
        if self._closed:
            return
        try:
            self._flush(final=True)
            checksums = self._write_index()
            self._meta.update(complete=True, num_sequences=len(self._labels), num_frames=self._written)
            self._meta[CHECKSUMS_KEY] = checksums
            self._group.attrs[ATTRS_KEY] = self._meta
            if not self._url:
                publish(self._tmp, self._final, overwrite=self._overwrite, where=self.where)
        except BaseException as e:
            self.abort()
            self._raise_no_space(e)
            raise
        self._closed = True
        _OPEN_WRITERS.discard(self)
        self._pool.shutdown(wait=True)
        self._bar.close()

    def _write_index(self) -> dict[str, Any]:
        """Write the per-sequence arrays and the frames chunks' checksums; returns the checksums attribute."""
        n = len(self._labels)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.asarray(self._lengths, np.int64), out=offsets[1:])
        columns = {
            "offsets": offsets,
            "label": np.asarray(self._labels, np.int32),
            "signer": np.asarray(self._signers, np.int32),
            "split": np.asarray(self._splits, np.int8),
            "seq_id": np.asarray(self._ids, dtype=np.dtypes.StringDType()),
            FRAMES_CRC: np.asarray(self._crcs, np.uint32),
        }
        if len(self._crcs) != -(-self._written // self._chunk):  # a writer-thread bug, never a user's input
            raise RuntimeError(f"{self.where}: {len(self._crcs)} frames checksums for {self._written} frames")
        for name, values in columns.items():
            arr = self._group.create_array(name, shape=values.shape, chunks=(max(1, min(META_CHUNK, len(values))),),
                                           dtype=str if name == "seq_id" else values.dtype, **index_codecs(),
                                           config=WRITE_CONFIG)
            if len(values):
                arr[:] = values
        checksums: dict[str, Any] = {"algorithm": ALGORITHM}
        checksums.update({name: crc32c(self._ids if name == "seq_id" else values) for name, values in columns.items()})
        return checksums

    def abort(self) -> None:
        """Discard what was written (a local temp folder is removed; a URL store stays marked incomplete)."""
        if self._aborted:
            return
        self._closed = self._aborted = True
        _OPEN_WRITERS.discard(self)
        future, self._inflight = self._inflight, None
        try:
            # The writer thread, then zarr's tasks it started, must be idle before the temp folder goes, or they
            # would recreate files (and the folders above them) in it.
            if future is not None:
                wait_futures([future])
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            settle()
        finally:
            if self._bar is not None:
                self._bar.close()
            if self._tmp is not None:
                remove_tree(self._tmp)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_store(path: StorePath, sequences: Iterable[np.ndarray], labels: Sequence[int] | Sequence[str],
                signers: Sequence[int] | None = None, classes: Sequence[str] | None = None,
                layout: Layout = DEFAULT_LAYOUT, seq_ids: Sequence[str] | None = None,
                splits: Sequence[str | int | None] | None = None, provenance: dict[str, Any] | None = None,
                overwrite: bool = False, **writer_options: Any):
    """Write sequences (an iterable, consumed once) with their labels to a new store and open it."""
    from slr_fast.store.reader import KeypointStore

    labels = list(labels)
    n = len(labels)
    if classes is None:
        if all(isinstance(x, str) for x in labels):
            classes = sorted(set(labels))
        elif all(isinstance(x, int | np.integer) for x in labels):
            classes = [str(i) for i in range(int(max(labels, default=-1)) + 1)] or ["0"]
        else:
            raise ValueError("labels must be all class names or all integer ids")
    for name, col in (("signers", signers), ("seq_ids", seq_ids), ("splits", splits)):
        if col is not None and len(col) != n:
            raise ValueError(f"{name} has {len(col)} entries but labels has {n}")
    writer_options.setdefault("progress", False)
    with StoreWriter(path, layout=layout, classes=classes, provenance=provenance, overwrite=overwrite, total=n,
                     **writer_options) as w:
        count = 0
        for i, seq in enumerate(sequences):
            if i >= n:
                raise ValueError(f"more sequences than the {n} labels given")
            w.append(seq, labels[i], signer=UNKNOWN_SIGNER if signers is None else signers[i],
                     seq_id=None if seq_ids is None else seq_ids[i], split=None if splits is None else splits[i])
            count += 1
        if count != n:
            raise ValueError(f"{count} sequences given but {n} labels")
    return KeypointStore.open(path, storage_options=writer_options.get("storage_options"))
