"""read_gislr_file's compiled-reader path ("auto") against its pyarrow path, file variant by file variant.

Checks that the fast path gives exactly the pyarrow engine's arrays, is really taken for ordinary files (and not for
files it must hand to pyarrow), and that every error reads the same through both engines.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from ingest_testing import varint

from slr_fast.ingest import IngestError, read_gislr_file, synthetic_gislr_frames, write_gislr_file
from slr_fast.ingest import gislr as gislr_module
from slr_fast.layout import DEFAULT_LAYOUT, GISLR_OFFSETS, GISLR_ROWS_PER_FRAME, get_layout

LAYOUTS = {"default": DEFAULT_LAYOUT, "default_z": get_layout("default_z"), "arm_z": get_layout("arm_z")}
R = GISLR_ROWS_PER_FRAME


def _frames(t: int, seed: int) -> np.ndarray:
    return synthetic_gislr_frames(np.random.default_rng(seed), t)


def _table(frames: np.ndarray, numbers) -> pa.Table:
    """The GISLR table write_gislr_file writes, with frame numbers `numbers` (one per frame, any order)."""
    sink = pa.BufferOutputStream()
    write_gislr_file(sink, frames)
    table = pq.read_table(pa.BufferReader(sink.getvalue()))
    frame = np.repeat(np.asarray(numbers, np.int64), R)
    return table.set_column(0, "frame", pc.cast(pa.array(frame), pa.int16()))


def _nulls_for_nan(table: pa.Table) -> pa.Table:
    """Undetected points as nulls instead of NaN (another writer's convention)."""
    for name in ("x", "y", "z"):
        values = table.column(name).to_numpy()
        table = table.set_column(table.column_names.index(name), name, pa.array(values, mask=np.isnan(values)))
    return table


def _retype(table: pa.Table, **types) -> pa.Table:
    for name, typ in types.items():
        table = table.set_column(table.column_names.index(name), name, pc.cast(table.column(name), typ))
    return table


def _spec(t, seed, numbers=None, edit=None, fast=(True, True), **options):
    """A file variant: t frames numbered `numbers` (default 10, 11, ...), the table passed through `edit`, written
    with pyarrow `options`; `fast`: whether the compiled path takes it with verify (True, False)."""
    return {"t": t, "seed": seed, "numbers": list(range(10, 10 + t)) if numbers is None else list(numbers),
            "edit": edit, "fast": fast, "options": options}


SPECS = {
    "written_2_frames_from_0": _spec(2, 0, numbers=range(2)),
    "written_17_frames_from_5": _spec(17, 1, numbers=range(5, 22)),
    "written_40_frames_from_123": _spec(40, 2, numbers=range(123, 163)),
    "uncompressed": _spec(9, 3, compression=None),
    "page_v2": _spec(9, 4, data_page_version="2.0"),
    "small_row_groups": _spec(12, 5, row_group_size=3 * R + 100),  # row groups end mid-frame
    "small_pages_v2_uncompressed": _spec(12, 6, data_page_size=2048, write_batch_size=100, data_page_version="2.0",
                                         compression=None),
    "plain_numbers": _spec(8, 7, use_dictionary=["type", "row_id"]),
    "nulls_for_nan": _spec(15, 8, edit=_nulls_for_nan),
    "nulls_for_nan_pages_row_groups": _spec(15, 9, edit=_nulls_for_nan, data_page_size=1024, write_batch_size=64,
                                            row_group_size=2 * R),
    "wide_and_narrow_types": _spec(7, 10, edit=lambda t: _retype(t, frame=pa.int64(), landmark_index=pa.int32(),
                                                                 x=pa.float32(), y=pa.float32(), z=pa.float32())),
    "descending_frames": _spec(11, 11, numbers=range(60, 49, -1)),
    "shuffled_frames_from_300": _spec(10, 12, numbers=np.random.default_rng(0).permutation(10) + 300),
    # Handed to pyarrow: frame numbers beyond the reader's int32 frame buffer, PLAIN strings (only read with
    # verify), codecs the reader does not decode.
    "frame_numbers_beyond_int32": _spec(5, 13, edit=lambda t: t.set_column(
        0, "frame", pa.array(t.column("frame").to_numpy().astype(np.int64) + (1 << 40))), fast=(False, False)),
    "plain_strings": _spec(6, 14, use_dictionary=False, fast=(False, True)),
    "zstd": _spec(6, 15, compression="zstd", fast=(False, False)),
    "gzip": _spec(6, 16, compression="gzip", fast=(False, False)),
}


@pytest.fixture(scope="module")
def spec_files(tmp_path_factory):
    """name -> (path, the (T, 543, 3) frames sorted by frame number)."""
    root = tmp_path_factory.mktemp("gislr_fast")
    files = {}
    for name, spec in SPECS.items():
        frames = _frames(spec["t"], spec["seed"])
        table = _table(frames, spec["numbers"])
        if spec["edit"] is not None:
            table = spec["edit"](table)
        path = root / f"{name}.parquet"
        pq.write_table(table, path, **spec["options"])
        files[name] = path, frames[np.argsort(spec["numbers"], kind="stable")]
    return files


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no_verify"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(SPECS))
def test_auto_equals_pyarrow(spec_files, name, layout, verify):
    path, frames = spec_files[name]
    lay = LAYOUTS[layout]
    got = read_gislr_file(path, lay, verify=verify)
    want = read_gislr_file(path, lay, verify=verify, engine="pyarrow")
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # exact, NaN where not detected
    # Both are right: the written values, frames in frame-number order.
    np.testing.assert_array_equal(got, frames[:, lay.gislr_rows(), :lay.num_channels].astype(np.float32))
    # And the comparison means something: the compiled path took the files it should, and only those.
    taken = gislr_module._columns_fast(path, lay, verify) is not None
    assert taken == SPECS[name]["fast"][0 if verify else 1]


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_default_written_files_never_touch_pyarrow(tmp_path, monkeypatch, layout, verify):
    lay = LAYOUTS[layout]
    cases = []
    for i, (t, start) in enumerate([(2, 0), (5, 17), (23, 1000), (40, 3)]):
        frames = _frames(t, 100 + i)
        path = tmp_path / f"{i}.parquet"
        write_gislr_file(path, frames, frame_start=start)
        cases.append((path, frames[:, lay.gislr_rows(), :lay.num_channels].astype(np.float32)))

    def no_pyarrow(*args, **kwargs):
        raise AssertionError("the pyarrow path was taken")

    monkeypatch.setattr(gislr_module, "_columns_arrow", no_pyarrow)
    for path, want in cases:
        np.testing.assert_array_equal(read_gislr_file(path, lay, verify=verify), want)
    with pytest.raises(AssertionError, match="pyarrow path"):  # the patch is live: engine="pyarrow" hits it
        read_gislr_file(cases[0][0], lay, verify=verify, engine="pyarrow")


@pytest.fixture
def arrow_calls(monkeypatch):
    """Count the calls of the pyarrow path (still running it)."""
    calls = []
    original = gislr_module._columns_arrow

    def spy(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(gislr_module, "_columns_arrow", spy)
    return calls


@pytest.mark.parametrize("options, verify, falls_back", [
    ({"compression": "zstd"}, True, True),
    ({"compression": "zstd"}, False, True),
    ({"compression": "gzip"}, True, True),
    ({"use_dictionary": False}, True, True),  # PLAIN `type` strings
    ({"use_dictionary": False}, False, False),  # `type` is not read without verify
    ({"compression": None, "data_page_version": "2.0"}, True, False),
], ids=str)
def test_fallback_taken_only_when_needed(tmp_path, arrow_calls, options, verify, falls_back):
    frames = _frames(7, 20)
    path = tmp_path / "a.parquet"
    pq.write_table(_table(frames, range(7)), path, **options)
    got = read_gislr_file(path, verify=verify)
    assert arrow_calls == ([path] if falls_back else [])
    np.testing.assert_array_equal(got, read_gislr_file(path, verify=verify, engine="pyarrow"))
    np.testing.assert_array_equal(got, frames[:, DEFAULT_LAYOUT.gislr_rows(), :2].astype(np.float32))


def _set(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def _type_with(table: pa.Table, row: int, value: str | None) -> pa.Table:
    types = table.column("type").to_pylist()
    types[row] = value
    return _set(table, "type", pa.array(types, pa.string()))


def _frame_with(table: pa.Table, row: int, value: int | None) -> pa.Table:
    frame = table.column("frame").to_pylist()
    frame[row] = value
    return _set(table, "frame", pa.array(frame, pa.int16()))


def _landmarks_swapped(table: pa.Table, a: int, b: int) -> pa.Table:
    landmark = table.column("landmark_index").to_numpy().copy()
    landmark[[a, b]] = landmark[[b, a]]
    return _set(table, "landmark_index", pa.array(landmark))


def _all_nan(table: pa.Table, nulls: bool) -> pa.Table:
    for name in ("x", "y", "z"):
        values = np.full(table.num_rows, np.nan)
        values[GISLR_OFFSETS["face"] + 1] = 0.5  # face point 1: not in any layout used here
        table = _set(table, name, pa.array(values, mask=np.isnan(values) if nulls else None))
    return table


# (edit of a 5-frame table numbered 3..7, message, whether the compiled path reads the file before the error)
BROKEN = {
    "landmarks_out_of_order": (lambda t: _landmarks_swapped(t, 2 * R + 470, 2 * R + 471),
                               "row 1556 is left_hand 3, expected left_hand 2", True),
    "hands_swapped_in_one_row": (lambda t: _type_with(t, R + 522, "left_hand"),
                                 "row 1065 is left_hand 0, expected right_hand 0", True),
    "mixed_frame_numbers": (lambda t: _frame_with(t, 3 * R + 200, 7), r"rows 1629\.\.2171 mix frame numbers \[6, 7\]",
                            True),
    "duplicate_frame_numbers": (lambda t: _set(t, "frame", pa.array(np.repeat(np.array([3, 4, 9, 4, 5], np.int16), R))),
                                "frame number 4 appears more than once", True),
    "all_nan": (lambda t: _all_nan(t, nulls=False), "all-NaN sequence", True),
    "all_null": (lambda t: _all_nan(t, nulls=True), "all-NaN sequence", True),
    # The compiled path hands these to pyarrow, which names the problem.
    "unknown_type_in_one_row": (lambda t: _type_with(t, 4 * R + 10, "hnad"), r"unknown values \['hnad'\]", False),
    "null_type": (lambda t: _type_with(t, 77, None), "column 'type' has missing values", False),
    "null_frame": (lambda t: _frame_with(t, 1000, None), "column 'frame' has missing values", False),
    "float_frame": (lambda t: _retype(t, frame=pa.float64()), "column 'frame' has type double, expected integers",
                    False),
    "string_x": (lambda t: _retype(t, x=pa.string()), "column 'x' has type string, expected float", False),
    "not_a_multiple_of_543": (lambda t: t.slice(0, 4 * R + 1), "2173 rows is not a multiple of 543", False),
    "landmark_beyond_int16": (lambda t: _set(t, "landmark_index", pa.array(
        np.where(np.arange(t.num_rows) == 5, 1 << 20, t.column("landmark_index").to_numpy().astype(np.int64)))),
        "row 5 is face 1048576, expected face 5", False),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_errors_read_the_same_through_both_engines(tmp_path, arrow_calls, name):
    edit, message, fast = BROKEN[name]
    path = tmp_path / f"{name}.parquet"
    pq.write_table(edit(_table(_frames(5, 30), range(3, 8))), path)
    with pytest.raises(IngestError, match=message) as auto:
        read_gislr_file(path)
    assert arrow_calls == ([] if fast else [path])  # who read the columns
    with pytest.raises(IngestError) as arrow:
        read_gislr_file(path, engine="pyarrow")
    assert str(auto.value) == str(arrow.value) and auto.value.path == arrow.value.path == str(path)


@pytest.mark.parametrize("name", ["hands_swapped_in_one_row", "landmarks_out_of_order", "unknown_type_in_one_row"])
def test_row_checks_only_with_verify(tmp_path, arrow_calls, name):
    """Without verify, type/landmark_index are not read: the compiled path takes even a file with an unknown type,
    and both engines give the rows by position."""
    edit, _, _ = BROKEN[name]
    frames = _frames(5, 31)
    path = tmp_path / "a.parquet"
    pq.write_table(edit(_table(frames, range(3, 8))), path)
    got = read_gislr_file(path, verify=False)
    assert arrow_calls == []
    np.testing.assert_array_equal(got, read_gislr_file(path, verify=False, engine="pyarrow"))
    np.testing.assert_array_equal(got, frames[:, DEFAULT_LAYOUT.gislr_rows(), :2].astype(np.float32))


@pytest.mark.parametrize("numbers", [[9, 8, 7, 6, 5, 4], [100, 50, 75, 0, 25, 60], [2, 1, 3, 0, 4, 5]], ids=str)
def test_frames_out_of_order_sorted_the_same(tmp_path, numbers):
    frames = _frames(len(numbers), 40)
    path = tmp_path / "a.parquet"
    pq.write_table(_table(frames, numbers), path)
    lay = LAYOUTS["default_z"]
    assert gislr_module._columns_fast(path, lay, True) is not None
    got = read_gislr_file(path, lay)
    np.testing.assert_array_equal(got, read_gislr_file(path, lay, engine="pyarrow"))
    np.testing.assert_array_equal(got, frames[np.argsort(numbers)][:, lay.gislr_rows()].astype(np.float32))


@pytest.mark.parametrize("engine", ["bogus", "fast", "", "PYARROW"])
def test_unknown_engine_lists_valid_engines(tmp_path, engine):
    path = tmp_path / "a.parquet"
    write_gislr_file(path, _frames(2, 50))
    with pytest.raises(ValueError, match=r"valid engines are 'auto', 'pyarrow'"):
        read_gislr_file(path, engine=engine)


def _huge_schema_count(data: bytes) -> bytes:
    """The file with its footer's schema list claiming 2**50 elements (a corrupt footer)."""
    length = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - length:-8]
    assert footer[:3] == b"\x15\x04\x19" and footer[3] == 0x8C  # version 2, then the list of 8 schema elements
    footer = footer[:3] + b"\xfc" + varint(1 << 50) + footer[4:]
    return data[:-8 - length] + footer + len(footer).to_bytes(4, "little") + b"PAR1"


@pytest.mark.parametrize("corrupt", ["truncated_to_8", "truncated_half", "truncated_footer", "no_magic",
                                     "huge_schema_count"])
def test_corrupt_files_read_the_same_through_both_engines(tmp_path, corrupt):
    """A corrupt file is an IngestError worded by pyarrow whichever engine met it (never an Unsupported, a
    MemoryError or a crash from the compiled reader)."""
    path = tmp_path / "a.parquet"
    write_gislr_file(path, _frames(4, 60))
    data = path.read_bytes()
    data = {"truncated_to_8": data[:8], "truncated_half": data[:len(data) // 2], "truncated_footer": data[:-20],
            "no_magic": data[:-4], "huge_schema_count": _huge_schema_count(data)}[corrupt]
    path.write_bytes(data)
    with pytest.raises(IngestError) as arrow:
        read_gislr_file(path, engine="pyarrow")
    with pytest.raises(IngestError) as auto:
        read_gislr_file(path)
    assert str(auto.value) == str(arrow.value) and "unreadable parquet file" in str(auto.value)
