"""The compiled Parquet reader (slr_fast.ingest.parquet_fast) against pyarrow as the truth.

Small tables written by `pyarrow.parquet.write_table` in many variants (codecs, dictionary or PLAIN, data pages v1
and v2, several pages and row groups, REQUIRED and OPTIONAL columns, nulls), read at dense and sparse rows into
every output dtype; then what the reader must refuse (`Unsupported` / `ValueError`), corrupt files (it must never
crash or read outside its buffers), threads, and wide dictionary indices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_testing import varint

from slr_fast.ingest.parquet_fast import BYTE_ARRAY, DOUBLE, FLOAT, INT32, INT64, ParquetFile, Unsupported

N = 1500  # rows of the variant tables
STRINGS = ("pose", "face", "", "ü-naïve")  # looked-up strings: "fac" (a prefix of "face") and the hands are absent
VOCAB = ["face", "left_hand", "pose", "right_hand", "", "ü-naïve", "fac"]
PAGES = {"data_page_size": 256, "write_batch_size": 64}  # pages of 64 rows
STRING_DICT = {"use_dictionary": ["s", "s_req"]}  # numbers PLAIN, strings dictionary-encoded
VARIANTS = {
    "default": {},  # snappy, dictionary, data page v1
    "uncompressed": {"compression": None},
    "plain": {"use_dictionary": False},  # PLAIN strings: Unsupported
    "plain_numbers": STRING_DICT,
    "v2": {"data_page_version": "2.0"},
    "v2_uncompressed": {"data_page_version": "2.0", "compression": None},
    "small_pages": PAGES,
    "small_row_groups": {"row_group_size": 400},
    "pages_row_groups_v2": {**PAGES, "row_group_size": 400, "data_page_version": "2.0"},
    "pages_row_groups_plain_uncompressed": {**PAGES, "row_group_size": 400, "compression": None, **STRING_DICT},
    "v2_pages_plain": {**PAGES, "row_group_size": 333, "data_page_version": "2.0", **STRING_DICT},
    # The dictionary outgrows 512 bytes: the chunk goes on with PLAIN pages after dictionary-encoded ones.
    "dictionary_overflow": {**PAGES, "dictionary_pagesize_limit": 512},
    "dictionary_overflow_v2_uncompressed": {**PAGES, "dictionary_pagesize_limit": 512, "data_page_version": "2.0",
                                            "compression": None, "row_group_size": 700},
}
INT_DTYPES = (np.int64, np.int32, np.int16, np.int8)
DTYPES = (np.float64, np.float32, *INT_DTYPES)
# Which int output dtypes each integer column's values fit: all of them, or none of them (no partial fits).
FITS = {"i32": INT_DTYPES, "i32_req": (np.int64, np.int32, np.int16), "i64": (np.int64,),
        "i64_req": (np.int64, np.int32)}
COLUMNS = ("i32", "i32_req", "i64", "i64_req", "f32", "f32_req", "f64", "f64_req", "s", "s_req")


def _table(n: int = N, seed: int = 0) -> pa.Table:
    """Every supported type, OPTIONAL with nulls (none in the last third, so some pages have none) and REQUIRED."""
    rng = np.random.default_rng(seed)
    nulls = (rng.random(n) < 0.15) & (np.arange(n) < 2 * n // 3)
    sign = rng.choice([-1, 1], n)
    cols = {
        "i32": (pa.int32(), rng.integers(-100, 101, n)),  # fits int8
        "i32_req": (pa.int32(), sign * rng.integers(1000, 30001, n)),  # fits int16, never int8
        "i64": (pa.int64(), sign * rng.integers(1 << 33, 1 << 50, n)),  # fits int64 only, exact as float64
        "i64_req": (pa.int64(), sign * rng.integers(1 << 16, 1 << 31, n)),  # fits int32, never int16
        "f32": (pa.float32(), np.round(rng.normal(size=n), 2)),  # repeating values
        "f32_req": (pa.float32(), rng.normal(size=n)),
        "f64": (pa.float64(), rng.normal(size=n)),  # distinct values
        "f64_req": (pa.float64(), np.round(rng.uniform(0, 1, n), 3)),
        "s": (pa.string(), rng.choice(VOCAB, n)),
        "s_req": (pa.string(), rng.choice(VOCAB, n)),
    }
    fields, arrays = [], []
    for name, (typ, values) in cols.items():
        required = name.endswith("_req")
        if typ == pa.string():
            arrays.append(pa.array([None if m and not required else v for v, m in zip(values, nulls, strict=True)],
                                   typ))
        else:
            arrays.append(pa.array(values, typ, mask=None if required else nulls))
        fields.append(pa.field(name, typ, nullable=not required))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory):
    """name -> (path, {column: pyarrow's values}); written once per module."""
    root = tmp_path_factory.mktemp("parquet_fast")
    table = _table()
    files = {}
    for name, options in VARIANTS.items():
        path = root / f"{name}.parquet"
        pq.write_table(table, path, **options)
        truth = pq.read_table(path)
        files[name] = path, {c: truth.column(c).to_numpy(zero_copy_only=False) for c in COLUMNS}
    return files


def _row_sets(n: int = N) -> dict[str, np.ndarray | None]:
    rng = np.random.default_rng(1)
    edges = np.unique(np.r_[np.arange(0, n + 1, 64), np.arange(0, n + 1, 400), np.arange(0, n + 1, 333),
                            np.arange(0, n + 1, 700)])
    boundary = np.unique(np.clip(np.r_[edges - 1, edges, edges + 1], 0, n - 1))
    return {
        "dense": None,
        "empty": np.empty(0, np.int64),
        "first": np.array([0]),
        "last": np.array([n - 1]),
        "first_and_last": np.array([0, n - 1]),
        "random_with_duplicates": np.sort(rng.integers(0, n, 300)),
        "page_and_row_group_boundaries": boundary,
        "every_row_explicit": np.arange(n),
        "one_row_repeated": np.full(50, 7),
        "every_7th": np.arange(3, n, 7),
        "tail_run": np.arange(n - 70, n),
    }


ROW_SETS = _row_sets()


def _expected_floats(column: str, values: np.ndarray) -> np.ndarray:
    """pyarrow's values as float64, nulls NaN; strings as their index in STRINGS (-1 absent)."""
    if column.startswith("s"):
        return np.array([np.nan if v is None else (STRINGS.index(v) if v in STRINGS else -1) for v in values],
                        np.float64)
    return values.astype(np.float64)


def _check_read(pf: ParquetFile, column: str, values: np.ndarray, rows: np.ndarray | None, dtype,
                strings_unsupported: bool) -> None:
    """One read of `column` at `rows` as `dtype` against pyarrow's `values` (the reader's documented contract)."""
    want = _expected_floats(column, values)
    if rows is not None:
        want = want[rows]
    nonempty = want.size > 0
    if strings_unsupported and column.startswith("s") and nonempty:
        # A null read as an integer may be reported first: Unsupported either way.
        null_as_int = np.dtype(dtype).kind == "i" and np.isnan(want).any()
        with pytest.raises(Unsupported, match="null|encoding" if null_as_int else "encoding"):
            pf.column(column, rows, dtype, strings=STRINGS)
        return
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        got = pf.column(column, rows, dtype, strings=STRINGS)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want.astype(dtype))  # NaN where null
        return
    if np.isnan(want).any():  # a null read as an integer
        with pytest.raises(Unsupported):
            pf.column(column, rows, dtype, strings=STRINGS)
        return
    if column.startswith("f") or (column.startswith("i") and dtype not in FITS[column]):
        if nonempty:  # floats as integers, or values that do not fit
            with pytest.raises(Unsupported):
                pf.column(column, rows, dtype, strings=STRINGS)
        return
    got = pf.column(column, rows, dtype, strings=STRINGS)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want.astype(np.int64))


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_pyarrow(variant_files, variant, column):
    path, truth = variant_files[variant]
    strings_unsupported = VARIANTS[variant].get("use_dictionary", True) is False
    with ParquetFile(path) as pf:
        assert pf.num_rows == N
        for rows in ROW_SETS.values():
            for dtype in DTYPES:
                _check_read(pf, column, truth[column], rows, dtype, strings_unsupported)


@pytest.mark.parametrize("variant", ["default", "pages_row_groups_v2", "plain_numbers"])
def test_schema_attributes(variant_files, variant):
    path, _ = variant_files[variant]
    types = {"i32": INT32, "i64": INT64, "f32": FLOAT, "f64": DOUBLE, "s": BYTE_ARRAY}
    with ParquetFile(path) as pf:
        assert list(pf.columns) == list(COLUMNS)
        for leaf, name in enumerate(COLUMNS):
            ptype = types[name.removesuffix("_req")]
            assert pf.columns[name] == (leaf, ptype, 0 if name.endswith("_req") else 1)
            assert pf.physical_type(name) == ptype
        assert pf.num_rows == pq.ParquetFile(path).metadata.num_rows


def test_strings_codes_and_absent(variant_files):
    path, truth = variant_files["small_pages"]
    with ParquetFile(path) as pf:
        for strings in (STRINGS, ("right_hand",), ("fac", "face"), ()):
            got = pf.column("s_req", None, np.int64, strings=strings)
            want = [strings.index(v) if v in strings else -1 for v in truth["s_req"]]
            np.testing.assert_array_equal(got, want)
        assert (pf.column("s_req", None, np.int8, strings=()) == -1).all()
        codes = pf.column("s", None, np.float32, strings=("face",))
        assert np.isnan(codes).sum() == sum(v is None for v in truth["s"])
        assert (codes == 0).sum() == sum(v == "face" for v in truth["s"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", ["dense", "random_with_duplicates", "empty"])
def test_out_is_filled_and_returned(variant_files, dtype, rows):
    path, truth = variant_files["pages_row_groups_v2"]
    selection = ROW_SETS[rows]
    size = N if selection is None else selection.size
    block = np.full((3, size), 77, dtype)
    out = block[1]  # a row of a 2-D array, as the GISLR reader passes
    name = "i32_req" if np.dtype(dtype).itemsize > 1 else "s_req"  # values that fit every dtype
    with ParquetFile(path) as pf:
        assert pf.column(name, selection, dtype, strings=STRINGS, out=out) is out
    want = _expected_floats(name, truth[name])
    np.testing.assert_array_equal(block[1], want if selection is None else want[selection])
    assert (block[[0, 2]] == 77).all()  # nothing written outside out


def test_out_returns_the_same_object(variant_files):
    path, truth = variant_files["default"]
    out = np.empty(N)
    with ParquetFile(path) as pf:
        assert pf.column("f64", out=out) is out
    np.testing.assert_array_equal(out, truth["f64"])


@pytest.mark.parametrize("out", [np.empty(N - 1), np.empty(N, np.uint8), np.empty(2 * N)[::2], np.empty((N, 1))])
def test_bad_out_is_value_error(variant_files, out):
    path, _ = variant_files["default"]
    with ParquetFile(path) as pf, pytest.raises(ValueError, match="out"):
        pf.column("f64", out=out)


@pytest.mark.parametrize("rows", [[5, 3], [0, 10, 9], [100, 1400, 2], [0, 3, 800, 799, N - 1], [-1, 4], [0, N],
                                  [N + 5, 0], [0, N + 5, 3]], ids=str)
@pytest.mark.parametrize("variant", ["default", "plain_numbers", "pages_row_groups_v2"])
def test_unsorted_or_out_of_range_rows_are_value_errors(variant_files, variant, rows):
    path, _ = variant_files[variant]
    with ParquetFile(path) as pf:
        for column in ("f64", "i32_req", "s_req"):
            with pytest.raises(ValueError, match="sorted and within"):
                pf.column(column, np.array(rows), strings=STRINGS)


@pytest.mark.parametrize("codec", ["zstd", "gzip", "brotli", "lz4"])
def test_other_codecs_open_but_columns_are_unsupported(tmp_path, codec):
    path = tmp_path / f"{codec}.parquet"
    pq.write_table(_table(300), path, compression=codec)
    with ParquetFile(path) as pf:  # the footer is never compressed: opening works
        assert pf.num_rows == 300 and list(pf.columns) == list(COLUMNS)
        for column in ("f64", "i32_req", "s"):
            for rows in (None, np.array([0, 299])):
                with pytest.raises(Unsupported, match="codec"):
                    pf.column(column, rows, strings=STRINGS)


def test_snappy_only_on_some_columns(tmp_path):
    path = tmp_path / "mixed.parquet"
    table = _table(300)
    pq.write_table(table, path, compression={c: ("zstd" if c.startswith("f") else "snappy") for c in COLUMNS})
    with ParquetFile(path) as pf:
        np.testing.assert_array_equal(pf.column("i64_req", dtype=np.int64), table.column("i64_req").to_numpy())
        with pytest.raises(Unsupported, match="codec"):
            pf.column("f64")


def test_plain_strings_unsupported_but_numbers_read(tmp_path):
    path = tmp_path / "plain.parquet"
    table = _table(300)
    pq.write_table(table, path, use_dictionary=False)
    with ParquetFile(path) as pf:
        with pytest.raises(Unsupported, match="encoding"):
            pf.column("s_req", np.array([0, 5]), np.int64, strings=STRINGS)
        np.testing.assert_array_equal(pf.column("f32_req", dtype=np.float32), table.column("f32_req").to_numpy())


@pytest.mark.parametrize("typ", [pa.list_(pa.int32()), pa.struct([("a", pa.int32()), ("b", pa.float64())]),
                                 pa.map_(pa.string(), pa.int32())], ids=str)
def test_nested_columns_unsupported_at_open(tmp_path, typ):
    path = tmp_path / "nested.parquet"
    values = {"list<item: int32>": [[1, 2], None, [3]], "struct<a: int32, b: double>": [{"a": 1, "b": 2.0}] * 3,
              "map<string, int32>": [[("k", 1)], [], None]}[str(typ)]
    pq.write_table(pa.table({"x": pa.array([1.0, 2.0, 3.0]), "n": pa.array(values, typ)}), path)
    with pytest.raises(Unsupported, match="nested"):
        ParquetFile(path)


def test_null_in_integer_column_and_value_too_wide(tmp_path):
    path = tmp_path / "ints.parquet"
    table = pa.table({"a": pa.array([1, None, 3], pa.int32()), "b": pa.array([1, 300, -5], pa.int32()),
                      "c": pa.array([1, 300, -5], pa.int64())})
    for options in ({}, {"use_dictionary": False}, {"data_page_version": "2.0", "compression": None}):
        pq.write_table(table, path, **options)
        with ParquetFile(path) as pf:
            with pytest.raises(Unsupported, match="null"):
                pf.column("a", None, np.int64)
            np.testing.assert_array_equal(pf.column("a"), [1.0, np.nan, 3.0])
            for column in ("b", "c"):
                with pytest.raises(Unsupported, match="too large"):
                    pf.column(column, None, np.int8)
                with pytest.raises(Unsupported, match="too large"):
                    pf.column(column, np.array([1]), np.int8)
                np.testing.assert_array_equal(pf.column(column, None, np.int16), [1, 300, -5])


def test_floats_are_not_read_as_integers(tmp_path):
    path = tmp_path / "floats.parquet"
    pq.write_table(pa.table({"f": pa.array([1.0, 2.0]), "g": pa.array([1.0, 2.0], pa.float32())}), path)
    with ParquetFile(path) as pf:
        for column in ("f", "g"):
            with pytest.raises(Unsupported, match="float values"):
                pf.column(column, None, np.int64)


def _parquet_bytes(table: pa.Table | None = None, **options) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(_table(300) if table is None else table, sink, **options)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("content", [b"", b"PAR1", b"hello, this is a text file\n" * 10, b"PAR1" + b"\0" * 20,
                                     b"PAR1\x00\x00\x00\x00PAR1"], ids=["empty", "magic", "text", "zeros", "no_footer"])
def test_not_parquet_unsupported(tmp_path, content):
    path = tmp_path / "x.parquet"
    path.write_bytes(content)
    with pytest.raises(Unsupported):
        ParquetFile(path)


@pytest.mark.parametrize("keep", [8, 100, 0.5, 0.9, -9, -8, -1])
def test_truncated_file_unsupported_at_open(tmp_path, keep):
    data = _parquet_bytes()
    path = tmp_path / "t.parquet"
    path.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(Unsupported):
        ParquetFile(path)


def test_encrypted_footer_magic_unsupported(tmp_path):
    path = tmp_path / "e.parquet"
    path.write_bytes(_parquet_bytes()[:-1] + b"E")  # "PARE": an encrypted footer
    with pytest.raises(Unsupported, match="encrypted"):
        ParquetFile(path)


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        ParquetFile(tmp_path / "absent.parquet")


def test_zero_row_table(tmp_path):
    path = tmp_path / "zero.parquet"
    pq.write_table(pa.table({"v": pa.array([], pa.float64())}), path)
    try:
        pf = ParquetFile(path)
    except Unsupported:
        return  # allowed: callers then read it with pyarrow
    with pf:
        assert pf.num_rows == 0 and pf.column("v").shape == (0,)


def test_close_twice_and_context_manager_closes(variant_files):
    path, _ = variant_files["default"]
    with ParquetFile(path) as pf:
        fd = pf._fd
        assert os.fstat(fd).st_size == pf.size == path.stat().st_size
    with pytest.raises(OSError):
        os.fstat(fd)  # closed on leaving the block
    pf.close()  # a second close is harmless


# ---- corrupt files -------------------------------------------------------------------------------------------------

def _read_everything(path) -> int:
    """Open and read every column dense and sparse; -> how many reads returned. Errors other than Unsupported /
    ValueError propagate (and fail the test); a crash kills the process."""
    returned = 0
    try:
        with ParquetFile(path) as pf:
            n = pf.num_rows
            sparse = np.unique(np.clip(np.array([0, 1, 63, 64, 65, 150, 299, n - 2, n - 1]), 0, max(n - 1, 0)))
            for name in pf.columns:
                for rows in (None, sparse if n > 0 else None):
                    for dtype in (np.float64, np.int64):
                        try:
                            got = pf.column(name, rows, dtype, strings=STRINGS)
                        except (Unsupported, ValueError):
                            continue
                        assert got.shape == ((n,) if rows is None else rows.shape) and got.dtype == dtype
                        returned += 1
    except (Unsupported, ValueError):
        pass
    return returned


def test_fuzz_corrupt_files_never_crash(tmp_path):
    """~200 seeded corruptions of a snappy + dictionary file: flipped bytes anywhere, in the page headers and the
    footer, and truncations. Each read raises Unsupported/ValueError or gives arrays of the right shape (flipped
    data bytes may change values); a read out of bounds would crash the process."""
    good = _parquet_bytes(**PAGES, row_group_size=120)
    meta = pq.ParquetFile(pa.BufferReader(good)).metadata
    starts = [min(x for x in (cm.dictionary_page_offset, cm.data_page_offset) if x)
              for cm in (meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(len(COLUMNS)))]
    footer = len(good) - 8 - int.from_bytes(good[-8:-4], "little")
    path = tmp_path / "fuzz.parquet"
    total = returned = 0
    for seed in range(210):
        rng = np.random.default_rng(seed)
        data = bytearray(good)
        kind = seed % 4
        if kind == 3:
            data = data[:int(rng.integers(0, len(good)))]
        else:
            for _ in range(int(rng.integers(1, 5))):
                if kind == 0:  # anywhere
                    at = int(rng.integers(0, len(data)))
                elif kind == 1:  # a page header (the first bytes of a column chunk)
                    at = int(rng.choice(starts)) + int(rng.integers(0, 24))
                else:  # the footer
                    at = int(rng.integers(footer, len(data)))
                data[at] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        returned += _read_everything(path)
        total += 1
    assert total == 210 and returned > 0  # some corruptions leave readable columns


# Corrupt counts written into a page header or the footer: the rewrite keeps every page where it was (the page loses
# as many payload bytes as its header gains), so the reader reaches the bad number.

def _read_varint(b: bytes, p: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        v |= (b[p] & 0x7F) << shift
        shift += 7
        p += 1
        if b[p - 1] < 0x80:
            return v, p


def _skip(b: bytes, p: int, kind: int, in_list: bool = False) -> int:
    """Past one thrift compact value of type `kind` at p (a boolean field carries no bytes, a list's booleans one)."""
    if kind in (1, 2):
        return p + 1 if in_list else p
    if kind == 3:
        return p + 1
    if kind in (4, 5, 6):
        return _read_varint(b, p)[1]
    if kind == 7:
        return p + 8
    if kind == 8:
        length, p = _read_varint(b, p)
        return p + length
    if kind == 12:
        return _fields(b, p)[1]
    if kind in (9, 10):
        size, elem = b[p] >> 4, b[p] & 0x0F
        p += 1
        if size == 15:
            size, p = _read_varint(b, p)
        for _ in range(size):
            p = _skip(b, p, elem, in_list=True)
        return p
    raise AssertionError(f"thrift type {kind} not needed here")


def _fields(b: bytes, p: int) -> tuple[dict[int, tuple[int, int, int]], int]:
    """A thrift compact struct at p -> ({field id: (type, value start, value end)}, end)."""
    fields, fid = {}, 0
    while True:
        byte = b[p]
        p += 1
        kind = byte & 0x0F
        if kind == 0:
            return fields, p
        if byte >> 4:
            fid += byte >> 4
        else:
            z, p = _read_varint(b, p)
            fid = (z >> 1) ^ -(z & 1)
        start, p = p, _skip(b, p, kind)
        fields[fid] = (kind, start, p)


def _set_page_count(data: bytes, header_at: int, count: int) -> bytes:
    """The uncompressed page whose header starts at `header_at`, claiming `count` values; same page end."""
    top, end = _fields(data, header_at)
    sub = 7 if 7 in top else 5  # dictionary page header or data page v1 header
    inner, _ = _fields(data, top[sub][1])
    sizes = {f: _read_varint(data, top[f][1])[0] >> 1 for f in (2, 3)}
    spans = [(top[2][1], top[2][2]), (top[3][1], top[3][2]), (inner[1][1], inner[1][2])]
    delta = 0
    for _ in range(3):  # the sizes shrink by delta, which can change their own varint lengths
        values = [varint(2 * (sizes[2] - delta)), varint(2 * (sizes[3] - delta)), varint(2 * count)]
        delta = sum(len(v) - (e - s) for v, (s, e) in zip(values, spans, strict=True))
    out, at = bytearray(), header_at
    for v, (s, e) in zip(values, spans, strict=True):
        out += data[at:s] + v
        at = e
    out += data[at:end]
    page_end = end + sizes[3]
    return data[:header_at] + bytes(out) + data[end:page_end - delta] + data[page_end:]


def _set_footer(data: bytes, edit) -> bytes:
    """The file with its footer replaced by edit(footer bytes)."""
    length = int.from_bytes(data[-8:-4], "little")
    footer = edit(data[-8 - length:-8])
    return data[:-8 - length] + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def _set_num_rows(footer: bytes, num_rows: int) -> bytes:
    fields, _ = _fields(footer, 0)
    _, start, end = fields[3]  # FileMetaData.num_rows (i64)
    return footer[:start] + varint(2 * num_rows) + footer[end:]


def _nullable_ints(path, n: int = 600) -> bytes:
    rng = np.random.default_rng(0)
    table = pa.table({"a": pa.array(rng.integers(-100, 100, n), pa.int32(), mask=rng.random(n) < 0.1)})
    pq.write_table(table, path, compression=None, **PAGES)
    return path.read_bytes()


def test_page_header_rewrite_helper(tmp_path):
    """The corruption helpers themselves: re-stating a page's true count or the true row count changes nothing; a
    count with a longer varint keeps every page in place and reaches the decoder (pyarrow refuses the file too)."""
    data = _nullable_ints(tmp_path / "a.parquet")
    top, _ = _fields(data, 4)
    count = _read_varint(data, _fields(data, top[7][1])[0][1][1])[0] >> 1  # the dictionary page's value count
    assert 100 < count < 201
    assert _set_page_count(data, 4, count) == data
    assert _set_footer(data, lambda f: _set_num_rows(f, 600)) == data
    path = tmp_path / "b.parquet"
    longer = _set_page_count(data, 4, count + 10_000)  # 3 varint bytes instead of 2: the dictionary loses a byte
    assert len(longer) == len(data) and longer[-300:] == data[-300:]
    path.write_bytes(longer)
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error types vary
        pq.read_table(path)
    with ParquetFile(path) as pf, pytest.raises(Unsupported, match="dictionary larger than its page"):
        pf.column("a")


@pytest.mark.parametrize("case", ["dictionary_page_count", "data_page_count_sparse", "data_page_count_dense",
                                  "schema_list_size", "row_group_list_size"])
def test_huge_counts_are_unsupported(tmp_path, case):
    """A count of 2**50 in a page header or the footer (a corrupt file) is Unsupported, not a MemoryError from
    allocating that many values."""
    data = _nullable_ints(tmp_path / "a.parquet")
    huge = 1 << 50
    top, end = _fields(data, 4)
    data_page = end + (_read_varint(data, top[3][1])[0] >> 1)  # the first data page follows the dictionary page
    rows = np.array([1, 2, 599]) if case == "data_page_count_sparse" else None
    if case == "dictionary_page_count":
        data = _set_page_count(data, 4, huge)
    elif case.startswith("data_page_count"):
        data = _set_page_count(data, data_page, huge)
    else:
        fid = 2 if case == "schema_list_size" else 4  # FileMetaData.schema / row_groups: list<struct>

        def edit(footer):
            _, start, _ = _fields(footer, 0)[0][fid]
            assert footer[start] & 0x0F == 12 and footer[start] >> 4 < 15  # short list header: size in the byte
            return footer[:start] + b"\xfc" + varint(huge) + footer[start + 1:]

        data = _set_footer(data, edit)
    path = tmp_path / "huge.parquet"
    path.write_bytes(data)
    with pytest.raises(Unsupported):
        with ParquetFile(path) as pf:
            pf.column("a", rows)


def test_page_value_count_overflow_never_reads_out_of_bounds(tmp_path):
    """A PLAIN page claiming 2**61 int64 values (count * 8 overflows int64) in a file whose footer claims 2**50
    rows: reading row 2**45 must raise Unsupported, not load 2**48 bytes past the page. Run in a child process so a
    crash fails this test instead of killing the test session."""
    path = tmp_path / "a.parquet"
    table = pa.table({"v": np.arange(1000, dtype=np.int64)}, schema=pa.schema([pa.field("v", pa.int64(), False)]))
    pq.write_table(table, path, compression=None, use_dictionary=False)
    data = _set_page_count(path.read_bytes(), 4, 1 << 61)
    path.write_bytes(_set_footer(data, lambda f: _set_num_rows(f, 1 << 50)))
    code = textwrap.dedent(f"""
        import numpy as np
        from slr_fast.ingest.parquet_fast import ParquetFile, Unsupported
        with ParquetFile({str(path)!r}) as pf:
            assert pf.num_rows == 1 << 50
            for rows in ([1, 999], [1, 1 << 20], [1, 1 << 45]):
                try:
                    pf.column("v", np.array(rows), np.int64)
                    print("returned")
                except (Unsupported, ValueError) as e:
                    print("refused", e)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"child exited with {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.count("refused") == 3, done.stdout


# ---- threads and wide dictionary indices ---------------------------------------------------------------------------

def test_two_threads_match_single_threaded(tmp_path):
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    pq.write_table(_table(N, seed=1), paths[0], **PAGES, row_group_size=500)
    pq.write_table(_table(3 * N, seed=2), paths[1], data_page_version="2.0", compression=None)
    rows = [np.sort(np.random.default_rng(3).integers(0, n, 400)) for n in (N, 3 * N)]

    def read_all(path, sel):
        with ParquetFile(path) as pf:
            return [pf.column(c, r, np.float64, strings=STRINGS) for c in COLUMNS for r in (None, sel)]

    want = [read_all(p, r) for p, r in zip(paths, rows, strict=True)]
    # The single-threaded read is itself right: the float columns against pyarrow.
    np.testing.assert_array_equal(want[1][2 * COLUMNS.index("f64")], pq.read_table(paths[1]).column("f64").to_numpy())
    results, errors = [[], []], []
    barrier = threading.Barrier(2)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(20):
                results[i].append(read_all(paths[i], rows[i]))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(2):
        assert len(results[i]) == 20
        for got in results[i]:
            for g, w in zip(got, want[i], strict=True):
                np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("distinct, dtype, options", [
    (20_000, pa.float64(), {}),  # 15-bit indices, one data page
    (20_000, pa.float64(), {"data_page_size": 4096, "write_batch_size": 500}),  # 15 bits, many pages
    (40_000, pa.float32(), {"compression": None}),  # 16 bits
    (70_000, pa.float64(), {"data_page_version": "2.0"}),  # 17 bits
    (70_000, pa.float64(), {"data_page_size": 8192, "write_batch_size": 1000, "row_group_size": 30_000}),
])
def test_wide_dictionary_indices(tmp_path, distinct, dtype, options):
    """A large dictionary (every value distinct): bit-packed indices of 15-17 bits, read sparse (as GISLR
    coordinates are) up to the very last index of each page and of the stream."""
    rng = np.random.default_rng(distinct)
    values = rng.permutation(rng.random(distinct))
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"x": pa.array(values, dtype)}), path, **options)
    meta = pq.ParquetFile(path).metadata
    assert all(meta.row_group(g).column(0).dictionary_page_offset is not None for g in range(meta.num_row_groups))
    truth = pq.read_table(path).column("x").to_numpy()
    n = truth.size
    page_rows = options.get("write_batch_size", n)
    ends = np.r_[np.arange(page_rows, n + 1, page_rows), np.arange(30_000, n + 1, 30_000), n]
    near_ends = np.unique(np.clip((ends[:, None] + np.arange(-9, 2)).ravel(), 0, n - 1))
    selections = [None, np.arange(0, n, 87), np.arange(n - 9, n), np.array([n - 1]), near_ends,
                  np.sort(rng.choice(n, 500, replace=False))]
    with ParquetFile(path) as pf:
        for rows in selections:
            want = truth if rows is None else truth[rows]
            for out_dtype in (np.float64, np.float32):
                np.testing.assert_array_equal(pf.column("x", rows, out_dtype), want.astype(out_dtype))
