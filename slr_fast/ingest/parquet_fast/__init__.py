"""A small Parquet column reader compiled with Numba: the GISLR ingest's hot path.

    with ParquetFile("1000035562.parquet") as pf:        # raises Unsupported for what it does not handle
        x = pf.column("x", rows, np.float64)              # the sorted rows wanted, NaN for nulls

Why not pyarrow here: a GISLR file is one small sequence (tens of thousands of rows) and the ingest needs only
87 of every 543 coordinate rows. pyarrow decodes every row of each column it reads into Arrow arrays and builds
a Table; at this size that work and its fixed per-file costs dominate. This reader reads the footer and the
wanted column chunks into per-thread buffers, parses the page headers itself and unpacks dictionary indices only
at the wanted rows, all in nogil Numba code, so reader threads run in parallel.

Handled (what pyarrow and pandas write by default, and the common variants): flat schemas of REQUIRED or OPTIONAL
columns, several row groups and pages, data pages v1 and v2, PLAIN and dictionary encodings, INT32/INT64/FLOAT/
DOUBLE values and dictionary-encoded BYTE_ARRAY strings, UNCOMPRESSED or SNAPPY pages. Anything else (other
codecs or encodings, nesting, encryption, a malformed file) raises `Unsupported`; callers then read the file
with pyarrow, which handles everything and words the errors. Every read is bounds-checked.

Format references: Apache Parquet's parquet.thrift and encodings documentation; the Snappy block format.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from slr_fast.ingest.parquet_fast.pages import BYTE_ARRAY, DOUBLE, FLOAT, INT32, INT64, read_column
from slr_fast.ingest.parquet_fast.thrift import read_footer

__all__ = ["BYTE_ARRAY", "DOUBLE", "FLOAT", "INT32", "INT64", "ParquetFile", "Unsupported", "encode_strings",
           "read_column", "scratch", "thread_buffer"]


class Unsupported(Exception):
    """The file uses a Parquet feature this reader does not handle, or is malformed: read it with pyarrow."""


_local = threading.local()
_NO_ROWS = np.empty(0, np.int64)
# Output dtypes: narrow integers keep verification columns small (a value that does not fit is an error).
_DTYPES = tuple(np.dtype(t) for t in (np.float64, np.float32, np.int64, np.int32, np.int16, np.int8))
_GAP = 1 << 16  # read_chunks reads two chunks this close together in one read
_TAIL = 1 << 13  # the first read of a file: its last 8 KiB, which hold the footer of a GISLR file (~1.5 KiB)


def scratch(usize: int) -> np.ndarray:
    """This thread's page buffer for `read_column`, for chunks of up to `usize` uncompressed bytes."""
    return thread_buffer("pages", usize + 64)  # + the 8-byte alignment of each page


def thread_buffer(name: str, size: int, dtype: type = np.uint8) -> np.ndarray:
    """This thread's array `name` of at least `size` elements, grown when needed: reused from file to file, so its
    memory stays mapped (fresh arrays of this size cost a page fault per 4 KiB on every file). Callers slice it;
    one name holds one dtype."""
    buf = getattr(_local, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1 << 16), dtype)
        setattr(_local, name, buf)
    return buf


@functools.lru_cache(maxsize=64)
def encode_strings(strings: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 byte array and the offsets where each ends (the decoder's form)."""
    encoded = [s.encode() for s in strings]
    return np.frombuffer(b"".join(encoded) or b"\0", np.uint8), np.cumsum([len(e) for e in encoded], dtype=np.int64)


class ParquetFile:
    """A Parquet file with its footer parsed; `column()` reads and decodes one column's chunks. Use as a context
    manager. Reads are positional (pread) into per-thread buffers, not a memory map: page faults on a mapping
    serialize threads on the process's memory map, plain reads scale across reader threads."""

    def __init__(self, path: str | os.PathLike):
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(self._fd).st_size
            if self.size < 12:
                raise Unsupported("parquet: not a parquet file (too short)")
            tail = self._read("tail", self.size - min(self.size, _TAIL), min(self.size, _TAIL))
            if tail[-4:].tobytes() not in (b"PAR1", b"PARE"):
                raise Unsupported("parquet: not a parquet file (magic bytes)")
            need = int.from_bytes(tail[-8:-4].tobytes(), "little") + 8
            if need > tail.size:  # a large footer: read exactly it
                if need > self.size - 4:
                    raise Unsupported("parquet: bad footer length")
                tail = self._read("tail", self.size - need, need)
            schema, self.chunks, self.num_rows, extent = read_footer(tail, self.size)
            self.columns = self._flat_columns(schema, tail)
            self._extent = extent.tolist()  # per leaf: [first byte, end byte, largest uncompressed size]
        except Unsupported:
            self.close()
            raise
        except (ValueError, OSError, MemoryError) as e:
            self.close()
            raise Unsupported(str(e) or type(e).__name__) from e

    def _read(self, buffer: str, offset: int, size: int) -> np.ndarray:
        """`size` bytes of the file at `offset` into this thread's buffer `buffer`."""
        buf = thread_buffer(buffer, size)[:size]
        if os.preadv(self._fd, [buf], offset) != size:
            raise Unsupported(f"parquet: file shorter than its metadata says ({self.size} bytes)")
        return buf

    def read_chunks(self, names: list[str]) -> tuple[np.ndarray, list[int], int]:
        """The chunks of several columns in one buffer, for `read_column` in a caller's compiled code:
        -> (bytes, per column the file offset of bytes[0] as seen by that column (read_column's `base`),
        the largest uncompressed chunk size). Chunks less than 64 KiB apart are read together (fewer reads)."""
        spans = sorted((*self._extent[self.columns[n][0]][:2], i) for i, n in enumerate(names))
        groups: list[list] = []  # [first byte, end byte, member columns]
        for lo, hi, i in spans:
            if groups and lo - groups[-1][1] <= _GAP:
                groups[-1][1] = max(groups[-1][1], hi)
                groups[-1][2].append(i)
            else:
                groups.append([lo, hi, [i]])
        buf = thread_buffer("chunk", sum(hi - lo for lo, hi, _ in groups))  # sized once: growing would drop reads
        bases = [0] * len(names)
        at = 0
        for lo, hi, members in groups:
            if os.preadv(self._fd, [buf[at:at + hi - lo]], lo) != hi - lo:
                raise Unsupported(f"parquet: file shorter than its metadata says ({self.size} bytes)")
            for i in members:
                bases[i] = lo - at
            at += hi - lo
        return buf[:at], bases, max(self._extent[self.columns[n][0]][2] for n in names)

    def _flat_columns(self, schema: np.ndarray, tail: np.ndarray) -> dict[str, tuple[int, int, int]]:
        """name -> (leaf index, physical type, max definition level) for a flat schema; else Unsupported."""
        elements = schema.tolist()
        if len(elements) < 2 or elements[0][2] != len(elements) - 1 or self.chunks.shape[1] != len(elements) - 1:
            raise Unsupported("parquet: nested or empty schema, or row groups that do not match it")
        columns = {}
        for leaf, (ptype, repetition, children, start, length) in enumerate(elements[1:]):
            if children > 0 or repetition not in (0, 1):  # a group, or REPEATED (a missing repetition is invalid)
                raise Unsupported("parquet: nested or repeated column")
            columns[bytes(tail[start:start + length]).decode("utf-8", "replace")] = (leaf, ptype, repetition)
        return columns

    def physical_type(self, name: str) -> int:
        """The Parquet physical type of a column (INT32, INT64, FLOAT, DOUBLE, BYTE_ARRAY, ...)."""
        return self.columns[name][1]

    def column(self, name: str, rows: np.ndarray | None = None, dtype: type = np.float64,
               strings: tuple[str, ...] = (), out: np.ndarray | None = None) -> np.ndarray:
        """Column `name` at the sorted int64 `rows` (None: every row) as `dtype`: float64/float32 (nulls read as
        NaN) or int64/int32/int16/int8 (a null or a value that does not fit makes it Unsupported).

        A string column gives each value's index in `strings`, or -1 for a value not among them. `out`: an array
        of the right size and dtype to fill instead of a new one.
        """
        leaf, _, max_def = self.columns[name]
        dense = rows is None
        if dense:
            rows = _NO_ROWS
        else:
            rows = np.ascontiguousarray(rows, np.int64)  # the decoder checks order and range
        size = self.num_rows if dense else rows.size
        if out is None:
            try:
                out = np.empty(size, dtype)
            except MemoryError as e:  # a row count from a corrupt footer
                raise Unsupported(f"{name}: {size} rows: {e}") from e
        if out.dtype not in _DTYPES or out.shape != (size,) or not out.flags.c_contiguous:
            raise ValueError(f"out: a contiguous ({size},) array of {[str(d) for d in _DTYPES]}, got {out.dtype} "
                             f"{out.shape}")
        buf, (base,), usize = self.read_chunks([name])
        names, ends = encode_strings(strings)
        try:
            read_column(buf, base, self.chunks, leaf, max_def, dense, rows, out, out.dtype.kind == "f", names, ends,
                        scratch(usize))
        except ValueError as e:
            if "rows not sorted" in str(e):
                raise ValueError(f"rows must be sorted and within 0..{self.num_rows - 1}") from None
            raise Unsupported(f"{name}: {e}") from e
        except MemoryError as e:  # sizes from a corrupt footer
            raise Unsupported(f"{name}: {e}") from e
        return out

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ParquetFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
