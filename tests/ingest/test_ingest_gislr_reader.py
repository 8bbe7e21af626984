"""read_gislr_file: values, frame order and every kind of bad input."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from ingest_testing import permute_frames, reference_read, rewrite

from slr_fast.ingest import IngestError, read_gislr_file, synthetic_gislr_frames, write_gislr_file
from slr_fast.ingest.gislr_format import GISLR_COLUMNS
from slr_fast.layout import GISLR_OFFSETS, get_layout


def _files(csv_path):
    with open(csv_path) as f:
        return [csv_path.parent / r["path"] for r in csv.DictReader(f)]


@pytest.mark.parametrize("name", ["default", "arm", "default_z", "arm_z"])
def test_matches_reference_for_every_layout(gislr_corpus, name):
    layout = get_layout(name)
    for path in _files(gislr_corpus):
        got = read_gislr_file(path, layout)
        want = reference_read(path, layout.gislr_rows(), layout.num_channels)
        assert got.dtype == np.float32 and got.shape == (len(want), layout.num_points, layout.num_channels)
        np.testing.assert_array_equal(got, want)  # exact: same float64 values cast once


def test_written_format_has_the_gislr_columns_and_dtypes(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    write_gislr_file(path, synthetic_gislr_frames(np.random.default_rng(0), 4), frame_start=17)
    table = pq.read_table(path)
    assert tuple(table.column_names) == GISLR_COLUMNS
    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["frame"] == pa.int16() and types["landmark_index"] == pa.int16()
    assert types["x"] == types["y"] == types["z"] == pa.float64()
    assert table.column("row_id")[0].as_py() == "17-face-0"
    assert table.column("row_id")[543 + 468].as_py() == "18-left_hand-0"
    assert table.num_rows == 4 * 543


def test_frames_sorted_by_number_and_offset_start(tmp_path):
    rng = np.random.default_rng(1)
    frames = synthetic_gislr_frames(rng, 9)
    src = tmp_path / "in_order.parquet"
    write_gislr_file(src, frames, frame_start=40)
    shuffled = rewrite(src, tmp_path / "shuffled.parquet", lambda t: permute_frames(t, rng.permutation(9)))
    layout = get_layout("default_z")
    want = frames[:, layout.gislr_rows()].astype(np.float32)
    np.testing.assert_array_equal(read_gislr_file(src, layout), want)
    np.testing.assert_array_equal(read_gislr_file(shuffled, layout), want)


def test_nan_rows_stay_nan_and_nulls_become_nan(tmp_path):
    frames = synthetic_gislr_frames(np.random.default_rng(2), 6, p_no_hand=1.0)  # no hand in any frame
    src = tmp_path / "a.parquet"
    write_gislr_file(src, frames)
    layout = get_layout("default")
    got = read_gislr_file(src, layout)
    hands = np.concatenate([np.arange(s.start, s.stop) for n, s in layout.part_slices().items() if "hand" in n])
    assert np.isnan(got[:, hands]).all() and not np.isnan(np.delete(got, hands, axis=1)).any()

    first_lip_row = layout.gislr_rows()[0]  # face point 61

    def null_one_x(t):  # a writer that stores "not detected" as null instead of NaN
        x = t.column("x").to_numpy().copy()
        return t.set_column(4, "x", pa.array(x, mask=np.arange(len(x)) == first_lip_row))

    nulled = read_gislr_file(rewrite(src, tmp_path / "null.parquet", null_one_x), layout)
    assert np.isnan(nulled[0, 0, 0]) and not np.isnan(nulled[0, 0, 1])
    np.testing.assert_array_equal(nulled[1:], got[1:])


def _broken(tmp_path, edit, name="broken.parquet"):
    src = tmp_path / "src.parquet"
    write_gislr_file(src, synthetic_gislr_frames(np.random.default_rng(3), 5, p_no_hand=0.0), frame_start=3)
    return rewrite(src, tmp_path / name, edit)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.drop_columns(["x"]), r"missing column\(s\) \['x'\]"),
    (lambda t: t.drop_columns(["type"]), r"missing column\(s\) \['type'\]"),
    (lambda t: t.slice(0, t.num_rows - 1), "2714 rows is not a multiple of 543"),
    (lambda t: t.slice(0, 0), "empty sequence"),
    (lambda t: permute_frames(t, np.array([0, 1, 1, 2, 3])), "frame number 4 appears more than once"),
    (lambda t: t.set_column(0, "frame", pc.cast(pa.array(np.r_[np.full(600, 3), np.full(2115, 4)]), pa.int16())),
     "mix frame numbers"),
    (lambda t: t.set_column(2, "type", pa.array(np.where(np.arange(t.num_rows) == 543 + 470, "right_hand",
                                                         t.column("type").to_numpy(zero_copy_only=False)))),
     "row 1013 is right_hand 2, expected left_hand 2"),
    (lambda t: t.set_column(3, "landmark_index", pc.cast(pa.array(np.tile(np.arange(543), 5)), pa.int16())),
     "row 468 is left_hand 468, expected left_hand 0"),
    (lambda t: t.set_column(2, "type", pa.array(np.full(t.num_rows, "hand"))), r"unknown values \['hand'\]"),
    (lambda t: t.set_column(2, "type", pa.array(np.zeros(t.num_rows, np.int8))), "column 'type' has type"),
    (lambda t: t.set_column(4, "x", pa.array(np.full(t.num_rows, "0.5"))), "column 'x' has type string"),
])
def test_bad_files_name_file_and_problem(tmp_path, edit, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(IngestError, match=message) as info:
        read_gislr_file(path)
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_swapped_hands_caught_only_with_verify(tmp_path):
    def swap_hand_labels(t):
        types = t.column("type").to_numpy(zero_copy_only=False)
        swapped = np.where(types == "left_hand", "right_hand", np.where(types == "right_hand", "left_hand", types))
        return t.set_column(2, "type", pa.array(swapped))

    path = _broken(tmp_path, swap_hand_labels)
    with pytest.raises(IngestError, match="is right_hand 0, expected left_hand 0"):
        read_gislr_file(path)
    # verify=False trusts the fixed order: it reads the file, taking rows by position.
    assert read_gislr_file(path, verify=False).shape == (5, 87, 2)


def test_z_layout_needs_z_and_all_nan_is_rejected(tmp_path):
    no_z = _broken(tmp_path, lambda t: t.drop_columns(["z"]), "no_z.parquet")
    assert read_gislr_file(no_z, get_layout("default")).shape == (5, 87, 2)  # x/y layouts never read z
    with pytest.raises(IngestError, match=r"missing column\(s\) \['z'\].*default_z"):
        read_gislr_file(no_z, get_layout("default_z"))
    frames = np.full((4, 543, 3), np.nan)
    frames[:, GISLR_OFFSETS["face"] + 1] = 0.5  # face point 1 is not part of the default layout
    path = tmp_path / "blind.parquet"
    write_gislr_file(path, frames)
    with pytest.raises(IngestError, match="all-NaN sequence"):
        read_gislr_file(path)


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not a parquet file at all")
    with pytest.raises(IngestError, match="unreadable parquet file") as info:
        read_gislr_file(junk)
    assert str(junk) in str(info.value)
    with pytest.raises(IngestError, match="file not found"):
        read_gislr_file(tmp_path / "absent.parquet")


def test_order_columns_are_decoded_once_per_distinct_chunk(tmp_path, monkeypatch):
    """`type`/`landmark_index` chunks byte-identical to ones already checked are not decoded again; any other
    chunk (hands swapped, a different writer) is decoded and checked, and a bad one is still refused."""
    import pyarrow.parquet as pq

    from slr_fast.ingest import gislr

    monkeypatch.setattr(gislr, "_VERIFIED", {})
    rng = np.random.default_rng(11)
    paths = []
    for i in range(3):  # same length, other coordinates and frame numbers: the order chunks are the same bytes
        paths.append(tmp_path / f"f{i}.parquet")
        write_gislr_file(paths[-1], synthetic_gislr_frames(rng, 7), frame_start=10 * i)
    reads = []
    original = pq.ParquetFile.read
    monkeypatch.setattr(pq.ParquetFile, "read", lambda self, columns=None, **k: reads.append(columns) or
                        original(self, columns=columns, **k))
    layout = get_layout("default")
    for p in paths:
        np.testing.assert_array_equal(read_gislr_file(p, layout), reference_read(p, layout.gislr_rows(), 2))
    assert reads == [["frame", "type", "landmark_index", "x", "y"]] + [["frame", "x", "y"]] * 2

    def swap_hand_labels(t):
        types = t.column("type").to_numpy(zero_copy_only=False)
        swapped = np.where(types == "left_hand", "right_hand", np.where(types == "right_hand", "left_hand", types))
        return t.set_column(2, "type", pa.array(swapped))

    bad = rewrite(paths[0], tmp_path / "swapped.parquet", swap_hand_labels)
    with pytest.raises(IngestError, match="is right_hand 0, expected left_hand 0"):
        read_gislr_file(bad, layout)
    assert reads[-1] == ["frame", "type", "landmark_index", "x", "y"]  # its bytes differ: decoded and checked
    other = tmp_path / "zstd.parquet"  # the same rows written with another codec: other bytes, decoded again
    pq.write_table(pq.read_table(paths[1]), other, compression="zstd")
    np.testing.assert_array_equal(read_gislr_file(other, layout), read_gislr_file(paths[1], layout))
    assert reads[-2] == ["frame", "type", "landmark_index", "x", "y"] and reads[-1] == ["frame", "x", "y"]
