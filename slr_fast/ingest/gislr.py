"""GISLR parquet ingest: one columnar pyarrow read per file, no pandas, many files in parallel.

Format facts (../shared/KEYPOINTS.md, slr_fast.ingest.gislr_format): 543 rows per frame in a fixed order, NaN rows
for undetected landmarks, frame numbers that need not start at 0, `train.csv` with paths relative to its folder.

Why it is fast: `pyarrow.parquet.ParquetFile.read` of just the needed columns (the `pq.read_table` dataset path
costs twice as much per small file, and pandas adds a DataFrame on top), `type` read as a dictionary so the row
check compares integer indices instead of strings, and one compiled pass (Numba, GIL released) that checks every
row and gathers the layout's points. Both pyarrow and that pass release the GIL, so reader threads scale.
"""

from __future__ import annotations

import csv
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
from slr_fast.layout import DEFAULT_LAYOUT, GISLR_ROWS_PER_FRAME, Layout

# Source split names accepted in an optional `split` column of train.csv (codes as in the store).
_SPLIT_CODES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


@numba.njit(nogil=True, cache=True)
def _check_and_gather(frame, type_idx, landmark, expected_type, expected_landmark, verify, rows, x, y, z, out):
    """One pass over a file's rows: check them, gather the layout's points into `out` (T, P, C) in file order.

    Returns (status, row): 0 ok; 1 a frame block mixes frame numbers at `row`; 2 `row` breaks the fixed
    type/landmark order; 3 every gathered value is NaN. nogil: reader threads run this truly in parallel.
    """
    t, p, c = out.shape
    seen = False
    for f in range(t):
        base = f * 543
        number = frame[base]
        for r in range(543):
            if frame[base + r] != number:
                return 1, base + r
        if verify:
            for r in range(543):
                if type_idx[base + r] != expected_type[r] or landmark[base + r] != expected_landmark[r]:
                    return 2, base + r
        for k in range(p):
            src = base + rows[k]
            out[f, k, 0] = x[src]
            out[f, k, 1] = y[src]
            if c == 3:
                out[f, k, 2] = z[src]
            seen = seen or x[src] == x[src] or y[src] == y[src]
    return (0 if seen else 3), 0


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


def _type_indices(path: str | os.PathLike, table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The `type` column as dictionary indices, the index each of the 543 rows must have, and the dictionary."""
    types = _column(table, "type")
    if not pa.types.is_dictionary(types.type):  # read_dictionary only applies to string columns
        raise IngestError(path, f"column 'type' has type {types.type}, expected strings")
    if types.null_count:
        raise IngestError(path, "column 'type' has missing values")
    names = types.dictionary.to_pylist()
    unknown = sorted(set(names) - set(GISLR_TYPES))
    if unknown:
        raise IngestError(path, f"column 'type' has unknown values {unknown}; valid: {list(GISLR_TYPES)}")
    # Compare dictionary indices with those the fixed order implies: no per-row string work.
    position = np.array([names.index(n) if n in names else -1 for n in GISLR_TYPES], np.int64)
    return types.indices.to_numpy(), position[ROW_TYPE_CODE], names


def read_gislr_file(path: str | os.PathLike, layout: Layout = DEFAULT_LAYOUT, *, verify: bool = True) -> np.ndarray:
    """One GISLR parquet file as (T, P, C) float32 in `layout`'s point order, frames sorted by frame number.

    `verify` checks every row's type/landmark_index against the fixed 543-row order; it reads two more
    columns, about 30% more CPU time per file.
    """
    coords = list(layout.channels)
    wanted = ["frame"] + (["type", "landmark_index"] if verify else []) + coords
    try:
        # memory_map: decoders read the page cache directly instead of copying each file (~5% per file).
        pf = pq.ParquetFile(path, read_dictionary=["type"] if verify else None, memory_map=True)
    except FileNotFoundError as e:
        raise IngestError(path, "file not found") from e
    except (OSError, pa.ArrowException) as e:
        raise IngestError(path, f"unreadable parquet file: {e}") from e
    names = pf.schema_arrow.names
    missing = [c for c in wanted if c not in names]
    if missing:
        raise IngestError(path, f"missing column(s) {missing}; found {names} (layout {layout.name!r} needs "
                                f"frame, type, landmark_index, {', '.join(coords)})")
    n = pf.metadata.num_rows
    if n == 0:
        raise IngestError(path, "empty sequence: no rows")
    if n % GISLR_ROWS_PER_FRAME:
        raise IngestError(path, f"{n} rows is not a multiple of {GISLR_ROWS_PER_FRAME} (rows per GISLR frame)")
    t = n // GISLR_ROWS_PER_FRAME
    try:
        table = pf.read(columns=wanted, use_threads=False)  # parallelism is across files, not within one
    except (OSError, pa.ArrowException) as e:
        raise IngestError(path, f"unreadable parquet file: {e}") from e
    frame = _numpy_column(path, table, "frame", "int")
    if verify:
        type_idx, expected_type, type_names = _type_indices(path, table)
        landmark = _numpy_column(path, table, "landmark_index", "int")
    else:
        type_idx, expected_type, type_names, landmark = frame, ROW_LANDMARK_INDEX, [], frame
    x, y = (_numpy_column(path, table, c, "float") for c in coords[:2])
    z = _numpy_column(path, table, "z", "float") if len(coords) == 3 else x
    out = np.empty((t, layout.num_points, len(coords)), np.float32)
    status, row = _check_and_gather(frame, type_idx, landmark, expected_type, ROW_LANDMARK_INDEX, verify,
                                    layout.gislr_rows(), x, y, z, out)
    if status == 1:
        f = row // GISLR_ROWS_PER_FRAME
        raise IngestError(path, f"rows {f * 543}..{f * 543 + 542} mix frame numbers "
                                f"{sorted(set(frame[f * 543:(f + 1) * 543].tolist()))}: each block of 543 rows "
                                f"must be one frame")
    if status == 2:
        r = row % GISLR_ROWS_PER_FRAME
        raise IngestError(path, f"rows are not in the GISLR order (face 0-467, left_hand, pose, right_hand): row "
                                f"{row} is {type_names[type_idx[row]]} {landmark[row]}, expected "
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
                 limit: int | None = None, verify: bool = True, overwrite: bool = False,
                 progress: bool = True) -> IngestReport:
    """Ingest a GISLR corpus (folder with train.csv, or the csv) into a keypoint store at `out`.

    Classes: the csv's signs sorted by name, or a sign map (JSON {sign: id} as GISLR's
    sign_to_prediction_index_map.json, JSON list, or text one per line). Signer = participant_id, seq id =
    sequence_id. Splits: the csv's `split` column if present, else a signer-independent split seeded by
    `split_by_signer`, else none. Files are read on `workers` threads and written in csv order.
    """
    from slr_fast.store import signer_split

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
        "verify_rows": verify,
    }
    return write_entries(out, entries, lambda e: read_gislr_file(e.path, layout, verify=verify), layout=layout,
                         classes=class_names, provenance=provenance, workers=workers, skip_bad=skip_bad,
                         overwrite=overwrite, progress=progress)
