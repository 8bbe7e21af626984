"""GISLR parquet ingest: pyarrow reads the columns a layout needs, NumPy checks every row and places the points.

Format facts (../shared/KEYPOINTS.md, slr_fast.ingest.gislr_format): 543 rows per frame in a fixed order, NaN rows
for undetected landmarks, frame numbers that need not start at 0, `train.csv` with paths relative to its folder.

A parquet file is untrusted input, and pyarrow is its only reader: the project parses no Parquet itself. Before
pyarrow allocates anything, the row count the footer declares is checked against the file's size and a frame
limit (a 50 kB file claiming 2^40 rows is refused, not decoded). After reading, the rows pyarrow returned must be
the rows the footer declared, every column must have the type GISLR uses (floating-point coordinates, integer
frame and landmark numbers, string types), and with `verify` every row's frame, type and landmark index must
follow the fixed order. Pages written with checksums are verified. Anything else is an IngestError naming the file.

Speed: `ParquetFile.read` of only the needed columns (`pq.read_table` costs twice as much per small file, pandas
more), the `type` strings read as a dictionary (compared by index, not per row), Arrow buffers viewed as NumPy
without a copy, and files read on a thread pool (pyarrow releases the GIL). Nothing here imports Numba, pandas
or pyarrow.compute, whose imports alone cost more than reading hundreds of files.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slr_fast.fileio import regular_file_problem
from slr_fast.ingest.common import (
    IngestError,
    IngestReport,
    SourceEntry,
    assign_signer_split,
    check_frames,
    check_unique_ids,
    resolve_classes,
    signer_problem,
    write_entries,
)
from slr_fast.ingest.gislr_format import CSV_COLUMNS, GISLR_TYPES, ROW_LANDMARK_INDEX, ROW_TYPE_CODE
from slr_fast.layout import DEFAULT_LAYOUT, GISLR_ROWS_PER_FRAME, Layout

# Source split names accepted in an optional `split` column of train.csv (codes as in the store).
_SPLIT_CODES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
# Longest sequence read by default: GISLR clips are at most a few hundred frames; 20,000 frames (11 minutes at
# 30 fps) is 10.9M rows, which pyarrow decodes in ~260 MB. `max_frames` raises it.
DEFAULT_MAX_FRAMES = 20_000
# Declared rows per byte of file, at most. The most compressible GISLR-like file pyarrow writes (every frame the
# same single point, no row_id, zstd) holds 3.8 rows per byte; 64 leaves a wide margin for other writers while a
# file can never make pyarrow allocate more than ~1.5 kB per byte it has.
_MAX_ROWS_PER_BYTE = 64
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Arrow types read as NumPy views, by kind; any other type of a column is an error naming it.
_INTEGERS = {pa.int8(): np.dtype(np.int8), pa.int16(): np.dtype(np.int16), pa.int32(): np.dtype(np.int32),
             pa.int64(): np.dtype(np.int64), pa.uint8(): np.dtype(np.uint8), pa.uint16(): np.dtype(np.uint16),
             pa.uint32(): np.dtype(np.uint32), pa.uint64(): np.dtype(np.uint64)}
_FLOATS = {pa.float16(): np.dtype(np.float16), pa.float32(): np.dtype(np.float32), pa.float64(): np.dtype(np.float64)}
# The columns whose every row the fixed order determines (the same bytes in every file of T frames from one writer).
_ORDER_COLUMNS = ("type", "landmark_index")


_ROWS: dict[int, tuple[Layout, np.ndarray]] = {}


def _layout_rows(layout: Layout) -> np.ndarray:
    """(P,) the row within a 543-row frame of each layout point, computed once per layout object (keyed by
    identity: hashing a layout costs more per file than the lookup saves)."""
    known = _ROWS.get(id(layout))
    if known is None or known[0] is not layout:
        rows = layout.gislr_rows()
        rows.flags.writeable = False
        known = _ROWS[id(layout)] = (layout, rows)
    return known[1]


def _as_numpy(path: str | os.PathLike, arr: pa.Array, name: str, kind: str) -> np.ndarray:
    """A checked column as NumPy: kind "int" (integers, no nulls) or "float" (floating point; nulls become NaN).

    The values buffer is viewed, not converted (pyarrow's own conversion imports pandas when it is installed,
    which costs more than reading a corpus); nulls are applied from the validity bitmap.
    """
    dtype = (_INTEGERS if kind == "int" else _FLOATS).get(arr.type)
    if dtype is None:
        expected = "integers" if kind == "int" else "floating-point coordinates"
        raise IngestError(path, f"column {name!r} has type {arr.type}, expected {expected}")
    validity, data = arr.buffers()
    values = np.frombuffer(data, dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
    if arr.null_count:
        if kind == "int":
            raise IngestError(path, f"column {name!r} has {arr.null_count} missing value(s)")
        bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")[arr.offset:arr.offset + len(arr)]
        values = np.where(bits.astype(bool), values, np.nan)
    return values


def _type_matches(path: str | os.PathLike, types: pa.Array, t: int) -> np.ndarray:
    """(t, 543) bool: does each row's `type` equal the fixed order's? Compared as dictionary indices, no strings."""
    if not pa.types.is_dictionary(types.type):  # read_dictionary applies to string columns only
        raise IngestError(path, f"column 'type' has type {types.type}, expected strings")
    if types.null_count:
        raise IngestError(path, f"column 'type' has {types.null_count} missing value(s)")
    names = types.dictionary.to_pylist()
    unknown = sorted(set(names) - set(GISLR_TYPES))
    if unknown:
        raise IngestError(path, f"column 'type' has unknown values {unknown}; valid: {list(GISLR_TYPES)}")
    index = _as_numpy(path, types.indices, "type", "int").reshape(t, GISLR_ROWS_PER_FRAME)
    code_of = np.array([GISLR_TYPES.index(n) for n in names], np.int64)  # dictionary index -> type code
    return code_of[index] == ROW_TYPE_CODE


# Column chunks of `type` and `landmark_index` whose every row was decoded and found in the fixed order, by what
# decides their decoding (name, row count, physical and logical types, codec, encodings, Arrow type, size): a
# chunk with the same identity and the same bytes decodes to the same values, so it needs no decoding again.
# GISLR writers produce one such chunk per sequence length, so after the first file of each length only `frame`
# and the coordinates are decoded. Shared by reader threads: dict operations are atomic, a race only repeats work.
_VERIFIED: dict[tuple, list[bytes]] = {}
_VERIFIED_LIMIT = 4096


def _order_chunks(pf: pq.ParquetFile, source: pa.OSFile, size: int) -> dict[str, tuple[tuple, bytes]]:
    """(identity, bytes) of the `type` and `landmark_index` column chunks of a one-row-group flat file; empty
    when the file is anything else (then the columns are decoded and checked row by row).

    The identity holds what decides how the bytes decode and is not in them: the row count, physical type,
    codec, definition levels, logical and Arrow types (encodings are in each page's header, so in the bytes)."""
    meta, arrow = pf.metadata, pf.schema_arrow
    if meta.num_row_groups != 1 or meta.num_columns != len(arrow.names):
        return {}
    group, schema = meta.row_group(0), meta.schema
    out = {}
    for name in _ORDER_COLUMNS:
        i = arrow.names.index(name)
        col, leaf = group.column(i), schema.column(i)
        start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
        length = col.total_compressed_size
        if start is None or not 0 <= start < start + length <= size:
            return {}
        identity = (name, col.num_values, col.physical_type, col.compression, leaf.max_definition_level,
                    str(leaf.logical_type), str(arrow.field(i).type), length)
        out[name] = (identity, source.read_at(length, start))
    return out


def _remember(chunks: dict[str, tuple[tuple, bytes]]) -> None:
    """Record chunks whose rows were all checked, for later files with the same bytes."""
    if len(_VERIFIED) >= _VERIFIED_LIMIT:
        _VERIFIED.clear()
    for identity, data in chunks.values():
        known = _VERIFIED.setdefault(identity, [])
        if data not in known and len(known) < 4:
            known.append(data)


def _read_columns(path: str | os.PathLike, layout: Layout, verify: bool,
                  max_frames: int) -> tuple[dict[str, pa.Array], int, dict]:
    """The columns a layout needs as single Arrow arrays by name, read and checked against what the footer
    declares: (arrays, frames, order chunks still to verify).

    The footer's row counts are checked against the file's size and `max_frames` before pyarrow reads (and
    allocates for) anything, and the rows read against the rows declared. With `verify`, `type` and
    `landmark_index` are read unless their chunks are byte for byte ones already checked (`_VERIFIED`).
    """
    problem = regular_file_problem(path)  # a FIFO or a device would block or never end
    if problem:
        raise IngestError(path, problem)
    coords = list(layout.channels)
    try:
        with pa.OSFile(os.fspath(path)) as source:
            size = source.size()
            try:
                pf = pq.ParquetFile(source, read_dictionary=["type"] if verify else None,
                                    page_checksum_verification=True)
            except KeyError:  # no `type` column to read as a dictionary: opened plainly, the check below names it
                pf = pq.ParquetFile(source, page_checksum_verification=True)
            meta = pf.metadata
            n = meta.num_rows
            declared = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
            if declared != n:
                raise IngestError(path, f"corrupt footer: it declares {n} rows but its row groups {declared}")
            if n == 0:
                raise IngestError(path, "empty sequence: no rows")
            if n < 0 or n % GISLR_ROWS_PER_FRAME:
                raise IngestError(path, f"{n} rows is not a multiple of {GISLR_ROWS_PER_FRAME} (rows per GISLR "
                                        f"frame)")
            if n > _MAX_ROWS_PER_BYTE * size:
                raise IngestError(path, f"declares {n} rows in a file of {size} bytes, more than a GISLR file can "
                                        f"hold (corrupt or crafted footer); nothing was read")
            if n // GISLR_ROWS_PER_FRAME > max_frames:
                raise IngestError(path, f"{n // GISLR_ROWS_PER_FRAME} frames, more than the limit of {max_frames} "
                                        f"(raise it with --max-frames if the file is genuine)")
            names = pf.schema_arrow.names
            wanted = ["frame", *(_ORDER_COLUMNS if verify else ()), *coords]
            missing = [c for c in wanted if c not in names]
            if missing:
                raise IngestError(path, f"missing column(s) {missing}; found {names} (layout {layout.name!r} "
                                        f"needs frame, type, landmark_index, {', '.join(coords)})")
            twice = sorted({c for c in wanted if names.count(c) > 1})
            if twice:
                raise IngestError(path, f"column(s) {twice} appear more than once; which one holds the data is "
                                        f"ambiguous")
            pending = _order_chunks(pf, source, size) if verify else {}
            if pending and all(data in _VERIFIED.get(identity, ()) for identity, data in pending.values()):
                wanted, pending = ["frame", *coords], {}  # the order columns are proven: their bytes were checked
            table = pf.read(columns=wanted, use_threads=False)  # parallelism is across files, not within one
    except IngestError:
        raise
    except Exception as e:  # pyarrow raises assorted types on corrupt input; every one means a bad file
        raise IngestError(path, f"unreadable parquet file: {e}") from e
    if table.num_rows != n:
        raise IngestError(path, f"corrupt file: its footer declares {n} rows but {table.num_rows} could be read")
    if "type" in wanted and table.column("type").num_chunks > 1:
        table = table.unify_dictionaries()  # row groups have their own dictionaries; one, so indices compare
    arrays = {name: c.chunk(0) if c.num_chunks == 1 else c.combine_chunks()
              for name, c in zip(wanted, table.columns, strict=True)}
    return arrays, n // GISLR_ROWS_PER_FRAME, pending


def _check_order(path: str | os.PathLike, arrays: dict[str, pa.Array], t: int) -> None:
    """Every row's type and landmark_index must be the fixed order's; the first that is not is named."""
    landmark = _as_numpy(path, arrays["landmark_index"], "landmark_index", "int").reshape(t, GISLR_ROWS_PER_FRAME)
    ok = (landmark == ROW_LANDMARK_INDEX) & _type_matches(path, arrays["type"], t)
    if not ok.all():
        row = int(np.flatnonzero(~ok.ravel())[0])
        r = row % GISLR_ROWS_PER_FRAME
        raise IngestError(path, f"rows are not in the GISLR order (face 0-467, left_hand, pose, right_hand): row "
                                f"{row} is {arrays['type'][row].as_py()} {landmark.ravel()[row]}, expected "
                                f"{GISLR_TYPES[ROW_TYPE_CODE[r]]} {ROW_LANDMARK_INDEX[r]}")


def read_gislr_file(path: str | os.PathLike, layout: Layout = DEFAULT_LAYOUT, *, verify: bool = True,
                    max_frames: int = DEFAULT_MAX_FRAMES) -> np.ndarray:
    """One GISLR parquet file as (T, P, C) float32 in `layout`'s point order, frames sorted by frame number.

    `verify` checks every row's type and landmark_index against the fixed 543-row order (without it, rows are
    taken by position). Files declaring more than `max_frames` frames are refused before they are read.
    """
    arrays, t, pending = _read_columns(path, layout, verify, max_frames)
    frame = _as_numpy(path, arrays["frame"], "frame", "int").reshape(t, GISLR_ROWS_PER_FRAME)
    first = frame[:, 0]
    if not (frame == first[:, None]).all():
        f = int(np.flatnonzero((frame != first[:, None]).any(axis=1))[0])
        raise IngestError(path, f"rows {f * 543}..{f * 543 + 542} mix frame numbers "
                                f"{sorted(set(frame[f].tolist()))}: each block of 543 rows must be one frame")
    if "type" in arrays:
        _check_order(path, arrays, t)
        _remember(pending)
    rows = _layout_rows(layout)
    out = np.empty((t, len(rows), len(layout.channels)), np.float32)
    sources = []
    with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf here, and is reported below
        for k, c in enumerate(layout.channels):
            sources.append(_as_numpy(path, arrays[c], c, "float").reshape(t, GISLR_ROWS_PER_FRAME))
            out[:, :, k] = sources[-1][:, rows]
    if np.isinf(out).any():
        f, p, k = (int(i) for i in np.argwhere(np.isinf(out))[0])
        raise IngestError(path, f"coordinate {layout.channels[k]}={sources[k][f, rows[p]]} at frame {f}, point {p} "
                                f"({layout.point_name(p)}) is not a finite float32 (undetected points are NaN)")
    if t > 1 and not (first[1:] > first[:-1]).all():
        order = np.argsort(first, kind="stable")
        dup = first[order][1:][np.diff(first[order]) == 0]
        if dup.size:
            raise IngestError(path, f"frame number {int(dup[0])} appears more than once")
        out = out[order]
    return check_frames(path, out, layout)


def read_gislr_csv(csv_path: str | os.PathLike) -> list[SourceEntry]:
    """Parse train.csv (`path, participant_id, sequence_id, sign`, optional `split`); paths relative to its folder.

    A row whose participant_id or split is unusable makes its file a bad file (`SourceEntry.problem`), reported
    by name like an unreadable one; a csv that cannot be parsed at all is an error naming the csv.
    """
    csv_path = Path(csv_path)
    problem = regular_file_problem(csv_path)
    if problem:
        raise IngestError(csv_path, problem)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise IngestError(csv_path, f"missing column(s) {missing}; found {header}")
            entries = []
            for line, row in enumerate(reader, start=2):
                if not row["path"] or row["sign"] in (None, ""):
                    raise IngestError(csv_path, f"line {line}: empty path or sign")
                where = f"line {line} of {csv_path.name}"
                signer, problem = signer_problem(row["participant_id"], f"participant_id on {where}")
                split = -1
                if row.get("split") not in (None, ""):
                    split = _SPLIT_CODES.get(row["split"].strip().lower(), -1)
                    if split < 0:
                        problem = problem or (f"unknown split {row['split']!r} on {where}; valid: "
                                              f"{sorted(_SPLIT_CODES)}")
                entries.append(SourceEntry(csv_path.parent / row["path"], row["sign"], signer,
                                           str(row["sequence_id"]), split, problem))
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
    problem = regular_file_problem(source)
    if problem == "file not found":
        raise IngestError(source, "not found (expected a GISLR folder holding train.csv, or a csv path)")
    if problem:
        raise IngestError(source, problem)
    return source


def ingest_gislr(source: str | os.PathLike, out: str | os.PathLike, *, layout: Layout = DEFAULT_LAYOUT,
                 classes: str | os.PathLike | list[str] | None = None, workers: int | None = None,
                 skip_bad: bool = False, split_by_signer: int | None = None,
                 split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), unknown_signers: str = "error",
                 limit: int | None = None, verify: bool = True, max_frames: int = DEFAULT_MAX_FRAMES,
                 overwrite: bool = False, progress: bool = True, compression: str | None = None) -> IngestReport:
    """Ingest a GISLR corpus (folder with train.csv, or the csv) into a keypoint store at `out`.

    Classes: the csv's signs sorted by name, or a sign map (JSON {sign: id} as GISLR's
    sign_to_prediction_index_map.json, JSON list, or text one per line). Signer = participant_id, seq id =
    sequence_id. Splits: the csv's `split` column if present, else a signer-independent split seeded by
    `split_by_signer`, else none. Files are read on `workers` threads and written in csv order.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (the number of csv rows to ingest), got {limit}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    csv_path = find_gislr_csv(source)
    entries = read_gislr_csv(csv_path)
    # Classes and signer splits come from the whole csv, so `limit` gives the same ids and splits as a full run.
    class_names = resolve_classes((e.sign for e in entries), classes)
    split_rule = "csv split column" if any(e.split >= 0 for e in entries) else "none"
    if split_by_signer is not None:
        # Over the csv's signers (not only the readable files), so skipping never moves a signer.
        entries, split_rule = assign_signer_split(csv_path, entries, split_rule, split_by_signer, split_fractions,
                                                  unknown_signers)
    entries = entries[:limit]
    provenance = {
        "source_format": "gislr", "source": str(csv_path), "layout_name": layout.name,
        "class_order": "class map" if classes is not None else "sorted by name", "split": split_rule,
        "verify_rows": verify, "reader": f"pyarrow {pa.__version__}",
    }

    def read(entry: SourceEntry) -> np.ndarray:
        return read_gislr_file(entry.path, layout, verify=verify, max_frames=max_frames)

    return write_entries(out, entries, read, layout=layout, classes=class_names, provenance=provenance,
                         workers=workers, skip_bad=skip_bad, overwrite=overwrite, progress=progress,
                         compression=compression)
