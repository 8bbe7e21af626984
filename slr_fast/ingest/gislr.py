"""GISLR parquet ingest: a compiled Parquet reader that decodes only the rows a layout needs, many files in parallel.

Format facts (../shared/KEYPOINTS.md, slr_fast.ingest.gislr_format): 543 rows per frame in a fixed order, NaN rows
for undetected landmarks, frame numbers that need not start at 0, `train.csv` with paths relative to its folder.

Why it is fast: a layout needs 87 of every 543 coordinate rows. `slr_fast.ingest.parquet_fast` reads a file's
footer and pages itself and unpacks the dictionary-encoded coordinates only at those rows, then one compiled pass
checks every row's frame number, type and landmark index and places the points. All of it is Numba code that
releases the GIL, so reader threads scale. Files that reader does not handle (other codecs, nesting, malformed
files) go through pyarrow (`ParquetFile.read` of the needed columns; `pq.read_table` costs twice as much per small
file, pandas more), which also words every error message, so a bad file reads the same whichever engine met it.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slr_fast.ingest.common import (
    IngestError,
    IngestReport,
    SourceEntry,
    check_unique_ids,
    resolve_classes,
    write_entries,
)
from slr_fast.ingest.gislr_format import CSV_COLUMNS, GISLR_TYPES, ROW_LANDMARK_INDEX, ROW_TYPE_CODE
from slr_fast.ingest.parquet_fast import (
    BYTE_ARRAY,
    DOUBLE,
    FLOAT,
    INT32,
    INT64,
    ParquetFile,
    Unsupported,
    encode_strings,
    read_column,
    scratch,
    thread_buffer,
)
from slr_fast.layout import DEFAULT_LAYOUT, GISLR_ROWS_PER_FRAME, Layout

# Source split names accepted in an optional `split` column of train.csv (codes as in the store).
ENGINES = ("auto", "pyarrow")  # readers of read_gislr_file / ingest_gislr: see read_gislr_file
_SPLIT_CODES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
_EXPECTED_TYPE = ROW_TYPE_CODE.astype(np.int8)
_EXPECTED_LANDMARK = ROW_LANDMARK_INDEX.astype(np.int16)


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


@numba.njit(nogil=True, cache=True)
def _check_and_place(frame, type_code, landmark, expected_type, expected_landmark, verify, values, order, out):
    """Check every row of a file and place the layout's values: -> (status, row).

    status 0 ok; 1 a frame block mixes frame numbers at `row`; 2 `row` breaks the fixed type/landmark order;
    3 every value is NaN. values (C, T*P) are at the layout's rows sorted; order[j] is the point sorted row j
    holds. The checks accumulate without branching and look for the first bad row only once a block fails.
    """
    t, p, c = out.shape
    for f in range(t):
        base = f * 543
        number = frame[base]
        bad = False
        for r in range(543):
            bad |= frame[base + r] != number
        if bad:
            for r in range(543):
                if frame[base + r] != number:
                    return 1, base + r
        if verify:
            for r in range(543):
                bad |= (type_code[base + r] != expected_type[r]) | (landmark[base + r] != expected_landmark[r])
            if bad:
                for r in range(543):
                    if type_code[base + r] != expected_type[r] or landmark[base + r] != expected_landmark[r]:
                        return 2, base + r
    flat = out.reshape(t * p * c)  # (T*P*C,): one index computation per value
    seen = False
    for k in range(c):
        src = values[k]
        for f in range(t):
            for j in range(p):
                flat[(f * p + order[j]) * c + k] = src[f * p + j]
        for i in range(src.size):  # a separate pass vectorizes; in the loop above it would not
            seen |= src[i] == src[i]
    return (0, 0) if seen else (3, 0)


@functools.lru_cache(maxsize=1024)
def _file_rows(num_frames: int, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The file rows holding the layout's points, sorted (T*P,), and where each sorted point goes in the layout.

    Cached: GISLR lengths repeat, and this costs more than decoding a small file's coordinates."""
    rows = layout.gislr_rows()
    order = np.argsort(rows, kind="stable")
    wanted = (np.arange(num_frames, dtype=np.int64)[:, None] * GISLR_ROWS_PER_FRAME + rows[order][None, :]).ravel()
    wanted.flags.writeable = order.flags.writeable = False
    return wanted, order


def _int_buffers(n: int) -> list[np.ndarray]:
    """This thread's frame (int16, as in GISLR files), type (int8) and landmark (int16) arrays of n, reused from
    file to file: narrow types keep the verification's memory traffic small (measured: int32 throughout is ~10%
    slower). A frame number beyond int16 makes the fast reader decline the file; pyarrow then reads it."""
    return [thread_buffer(f"gislr_{name}", n, dtype)[:n]
            for name, dtype in (("frame", np.int16), ("type", np.int8), ("landmark", np.int16))]


@numba.njit(nogil=True, cache=True)
def _decode(buf, bases, chunks, leaves, max_defs, verify, wanted, frame, type_code, landmark, values, names, ends,
            scratch):
    """Every column a GISLR file needs, decoded in one call (one GIL release per file, not one per column).
    Column order in bases/leaves/max_defs: frame, type, landmark_index, then the layout's channels."""
    every = wanted[:0]
    read_column(buf, bases[0], chunks, leaves[0], max_defs[0], True, every, frame, False, names, ends, scratch)
    if verify:
        read_column(buf, bases[1], chunks, leaves[1], max_defs[1], True, every, type_code, False, names, ends, scratch)
        read_column(buf, bases[2], chunks, leaves[2], max_defs[2], True, every, landmark, False, names, ends, scratch)
    for k in range(values.shape[0]):
        read_column(buf, bases[3 + k], chunks, leaves[3 + k], max_defs[3 + k], False, wanted, values[k], True, names,
                    ends, scratch)


def _columns_fast(path: str | os.PathLike, layout: Layout, verify: bool, why: list[str] | None = None):
    """(frame, type codes, landmark, coords (C, T*P) at the sorted layout rows, order) via the compiled reader, or
    None when the file is anything but a clean, supported one (the reason appended to `why`): then the pyarrow path
    reads it and words any error."""
    coords = layout.channels
    try:
        with ParquetFile(path) as pf:
            names = ("frame", "type", "landmark_index", *coords)
            columns = [pf.columns.get(c) for c in names]  # (leaf, physical type, max definition level) or None
            ints, floats = (INT32, INT64), (INT32, INT64, FLOAT, DOUBLE)
            if (not columns[0] or columns[0][1] not in ints or any(not c or c[1] not in floats for c in columns[3:])
                    or verify and (not columns[1] or columns[1][1] != BYTE_ARRAY or not columns[2]
                                   or columns[2][1] not in ints)):
                raise Unsupported(f"columns or physical types not as GISLR's: {dict(zip(names, columns, strict=True))}")
            n = pf.num_rows
            if n <= 0 or n % GISLR_ROWS_PER_FRAME:
                raise Unsupported(f"{n} rows")
            needed = [i for i in range(len(names)) if verify or i not in (1, 2)]
            buf, got, usize = pf.read_chunks([names[i] for i in needed])
            bases, leaves, max_defs = np.zeros(len(names), np.int64), np.zeros(len(names), np.int64), \
                np.zeros(len(names), np.int64)
            for i, base in zip(needed, got, strict=True):
                bases[i], leaves[i], max_defs[i] = base, columns[i][0], columns[i][2]
            frame, type_code, landmark = _int_buffers(n)
            wanted, order = _file_rows(n // GISLR_ROWS_PER_FRAME, layout)
            values = np.empty((len(coords), wanted.size))
            try:
                _decode(buf, bases, pf.chunks, leaves, max_defs, verify, wanted, frame, type_code, landmark, values,
                        *encode_strings(GISLR_TYPES), scratch(usize))
            except ValueError as e:
                raise Unsupported(str(e)) from e
            if verify and type_code.min() < 0:
                raise Unsupported("an unknown `type` value")  # the pyarrow path names it
    except (Unsupported, OSError, MemoryError) as e:  # MemoryError: a row count from a corrupt footer
        if why is not None:
            why.append(str(e) or type(e).__name__)
        return None
    return frame, type_code, landmark, values, order


def _numpy_column(path: str | os.PathLike, table: pa.Table, name: str, kind: str) -> np.ndarray:
    """A column as a NumPy array, checked: kind "int" (no nulls) or "float" (nulls become NaN: not detected)."""
    col = _column(table, name)
    if kind == "int":
        if not pa.types.is_integer(col.type):
            raise IngestError(path, f"column {name!r} has type {col.type}, expected integers")
        if col.null_count:
            raise IngestError(path, f"column {name!r} has missing values")
        return col.to_numpy()
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        raise IngestError(path, f"column {name!r} has type {col.type}, expected float")
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _type_codes(path: str | os.PathLike, table: pa.Table) -> np.ndarray:
    """The `type` column as int64 codes (indices into GISLR_TYPES), checked."""
    types = _column(table, "type")
    if not pa.types.is_dictionary(types.type):  # read_dictionary only applies to string columns
        raise IngestError(path, f"column 'type' has type {types.type}, expected strings")
    if types.null_count:
        raise IngestError(path, "column 'type' has missing values")
    names = types.dictionary.to_pylist()
    unknown = sorted(set(names) - set(GISLR_TYPES))
    if unknown:
        raise IngestError(path, f"column 'type' has unknown values {unknown}; valid: {list(GISLR_TYPES)}")
    # Map dictionary indices to codes: no per-row string work.
    code = np.array([GISLR_TYPES.index(n) for n in names], np.int64)
    return code[types.indices.to_numpy()]


def _columns_arrow(path: str | os.PathLike, layout: Layout, verify: bool):
    """The same as `_columns_fast` through pyarrow, for every file; raises IngestError naming the problem."""
    coords = list(layout.channels)
    wanted_cols = ["frame"] + (["type", "landmark_index"] if verify else []) + coords
    try:
        pf = pq.ParquetFile(path, read_dictionary=["type"] if verify else None, memory_map=True)
    except FileNotFoundError as e:
        raise IngestError(path, "file not found") from e
    except (OSError, pa.ArrowException) as e:
        raise IngestError(path, f"unreadable parquet file: {e}") from e
    names = pf.schema_arrow.names
    missing = [c for c in wanted_cols if c not in names]
    if missing:
        raise IngestError(path, f"missing column(s) {missing}; found {names} (layout {layout.name!r} needs "
                                f"frame, type, landmark_index, {', '.join(coords)})")
    n = pf.metadata.num_rows
    if n == 0:
        raise IngestError(path, "empty sequence: no rows")
    if n % GISLR_ROWS_PER_FRAME:
        raise IngestError(path, f"{n} rows is not a multiple of {GISLR_ROWS_PER_FRAME} (rows per GISLR frame)")
    try:
        table = pf.read(columns=wanted_cols, use_threads=False)  # parallelism is across files, not within one
    except (OSError, pa.ArrowException) as e:
        raise IngestError(path, f"unreadable parquet file: {e}") from e
    frame = _numpy_column(path, table, "frame", "int").astype(np.int64, copy=False)
    type_code = landmark = frame
    if verify:
        type_code = _type_codes(path, table)
        landmark = _numpy_column(path, table, "landmark_index", "int").astype(np.int64, copy=False)
    wanted, order = _file_rows(n // GISLR_ROWS_PER_FRAME, layout)
    values = np.stack([_numpy_column(path, table, c, "float")[wanted] for c in coords])
    return frame, type_code, landmark, values, order


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: valid engines are {', '.join(map(repr, ENGINES))}")


def read_gislr_file(path: str | os.PathLike, layout: Layout = DEFAULT_LAYOUT, *, verify: bool = True,
                    engine: str = "auto", why: list[str] | None = None) -> np.ndarray:
    """One GISLR parquet file as (T, P, C) float32 in `layout`'s point order, frames sorted by frame number.

    `verify` checks every row's type/landmark_index against the fixed 543-row order. `engine`: "auto" (the
    compiled reader; pyarrow for files it does not handle, and for every error message) or "pyarrow". When "auto"
    falls back to pyarrow, the reason is appended to `why` if given.
    """
    _check_engine(engine)
    cols = _columns_fast(path, layout, verify, why) if engine == "auto" else None
    frame, type_code, landmark, values, order = cols or _columns_arrow(path, layout, verify)
    t = frame.size // GISLR_ROWS_PER_FRAME
    out = np.empty((t, layout.num_points, len(layout.channels)), np.float32)
    status, row = _check_and_place(frame, type_code, landmark, _EXPECTED_TYPE, _EXPECTED_LANDMARK, verify, values,
                                   order, out)
    if status == 1:
        f = row // GISLR_ROWS_PER_FRAME
        raise IngestError(path, f"rows {f * 543}..{f * 543 + 542} mix frame numbers "
                                f"{sorted(set(frame[f * 543:(f + 1) * 543].tolist()))}: each block of 543 rows "
                                f"must be one frame")
    if status == 2:
        r = row % GISLR_ROWS_PER_FRAME
        raise IngestError(path, f"rows are not in the GISLR order (face 0-467, left_hand, pose, right_hand): row "
                                f"{row} is {GISLR_TYPES[type_code[row]]} {landmark[row]}, expected "
                                f"{GISLR_TYPES[ROW_TYPE_CODE[r]]} {ROW_LANDMARK_INDEX[r]}")
    if status == 3:
        raise IngestError(path, f"all-NaN sequence: no point of layout {layout.name!r} is detected in any frame")
    first = frame[::GISLR_ROWS_PER_FRAME]
    if t > 1 and not (first[1:] > first[:-1]).all():
        order = np.argsort(first, kind="stable")
        dup = first[order][1:][np.diff(first[order]) == 0]
        if dup.size:
            raise IngestError(path, f"frame number {int(dup[0])} appears more than once")
        out = out[order]
    return out


def read_gislr_csv(csv_path: str | os.PathLike) -> list[SourceEntry]:
    """Parse train.csv (`path, participant_id, sequence_id, sign`, optional `split`); paths relative to its folder."""
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise IngestError(csv_path, f"missing column(s) {missing}; found {header}")
            entries = []
            for line, row in enumerate(reader, start=2):
                try:
                    signer = int(row["participant_id"])
                except (TypeError, ValueError) as e:
                    raise IngestError(csv_path, f"line {line}: participant_id {row['participant_id']!r} "
                                                f"is not an integer") from e
                split = -1
                if "split" in row and row["split"] not in (None, ""):
                    split = _SPLIT_CODES.get(row["split"].strip().lower(), -2)
                    if split == -2:
                        raise IngestError(csv_path, f"line {line}: unknown split {row['split']!r}; valid: "
                                                    f"{sorted(_SPLIT_CODES)}")
                if not row["path"] or row["sign"] in (None, ""):
                    raise IngestError(csv_path, f"line {line}: empty path or sign")
                entries.append(SourceEntry(csv_path.parent / row["path"], row["sign"], signer,
                                           str(row["sequence_id"]), split))
    except FileNotFoundError as e:
        raise IngestError(csv_path, "file not found") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise IngestError(csv_path, f"unreadable csv: {e}") from e
    if not entries:
        raise IngestError(csv_path, "no rows")
    check_unique_ids(csv_path, entries, "sequence_id")
    return entries


def find_gislr_csv(source: str | os.PathLike) -> Path:
    """The train.csv of a GISLR corpus: `source` itself when it is a file, else `source`/train.csv."""
    source = Path(source)
    if source.is_dir():
        source = source / "train.csv"
    if not source.is_file():
        raise IngestError(source, "not found (expected a GISLR folder holding train.csv, or a csv path)")
    return source


def ingest_gislr(source: str | os.PathLike, out: str | os.PathLike, *, layout: Layout = DEFAULT_LAYOUT,
                 classes: str | os.PathLike | list[str] | None = None, workers: int | None = None,
                 skip_bad: bool = False, split_by_signer: int | None = None,
                 split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), unknown_signers: str = "error",
                 limit: int | None = None, verify: bool = True, engine: str = "auto", overwrite: bool = False,
                 progress: bool = True) -> IngestReport:
    """Ingest a GISLR corpus (folder with train.csv, or the csv) into a keypoint store at `out`.

    Classes: the csv's signs sorted by name, or a sign map (JSON {sign: id} as GISLR's
    sign_to_prediction_index_map.json, JSON list, or text one per line). Signer = participant_id, seq id =
    sequence_id. Splits: the csv's `split` column if present, else a signer-independent split seeded by
    `split_by_signer`, else none. Files are read on `workers` threads and written in csv order. Files the
    compiled reader declines are read with pyarrow; the report's notes count them, with the first reason.
    """
    from slr_fast.store import signer_split

    _check_engine(engine)
    csv_path = find_gislr_csv(source)
    entries = read_gislr_csv(csv_path)
    # Classes and signer splits come from the whole csv, so `limit` gives the same ids and splits as a full run.
    class_names = resolve_classes((e.sign for e in entries), classes)
    split_rule = "csv split column" if any(e.split >= 0 for e in entries) else "none"
    if split_by_signer is not None:
        if split_rule != "none":
            raise IngestError(csv_path, "has a split column; drop --split-by-signer or the column")
        # Splits over the csv's signers (not only the readable files), so skipping never moves a signer.
        codes = signer_split(np.array([e.signer for e in entries]), split_fractions, seed=split_by_signer,
                             unknown=unknown_signers)
        entries = [replace(e, split=int(c)) for e, c in zip(entries, codes, strict=True)]
        split_rule = f"signer_split fractions={list(split_fractions)} seed={split_by_signer}"
    entries = entries[:limit]
    provenance = {
        "source_format": "gislr", "source": str(csv_path), "layout_name": layout.name,
        "class_order": "class map" if classes is not None else "sorted by name", "split": split_rule,
        "verify_rows": verify, "engine": engine,
    }
    fallbacks: list[tuple[str, str]] = []  # (file, why): list.append is atomic, reader threads share it

    def read(entry: SourceEntry) -> np.ndarray:
        why: list[str] = []
        frames = read_gislr_file(entry.path, layout, verify=verify, engine=engine, why=why)
        if why:
            fallbacks.append((str(entry.path), why[0]))
        return frames

    report = write_entries(out, entries, read, layout=layout, classes=class_names, provenance=provenance,
                           workers=workers, skip_bad=skip_bad, overwrite=overwrite, progress=progress)
    if fallbacks:
        path, why = min(fallbacks)
        report.notes.append(f"{len(fallbacks)} file(s) read with pyarrow, which is slower: the compiled reader does "
                            f"not handle them (first: {path}: {why})")
    return report
