"""Hostile and broken GISLR parquet input: never a signal, a hang or a runaway allocation; never values that
pyarrow does not hold; every refusal one line naming the file. Files are generated here, never vendored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_testing import REPO, assert_one_line_error, call_cli, run_cli
from ingest_testing import edit_footer, reference_read, rewrite, row_count_field

from slr_fast.ingest import IngestError, ingest_gislr, read_gislr_file, synthetic_gislr_frames, write_gislr_file
from slr_fast.layout import get_layout

HERE = Path(__file__).parent


@pytest.fixture
def six(tmp_path) -> Path:
    """A 6-frame GISLR file as the competition's writer makes it."""
    path = tmp_path / "six.parquet"
    write_gislr_file(path, synthetic_gislr_frames(np.random.default_rng(5), 6, p_no_hand=0.3), frame_start=3)
    return path


@pytest.mark.timeout(180)
def test_seeded_corruptions_fail_cleanly_or_read_what_pyarrow_reads(tmp_path):
    """~520 truncations, byte and bit flips and footer row-count edits of two files (one with page checksums),
    read in a child process whose address space is capped at 4 GiB."""
    done = subprocess.run([sys.executable, str(HERE / "hostile_run.py"), "parquet", str(tmp_path), "0", "200"],
                          capture_output=True, text=True, timeout=170, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"child died (signal {-done.returncode})\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    records = [json.loads(line) for line in done.stdout.splitlines()]
    summary, cases = records[-1], records[:-1]
    assert len(cases) > 500
    for c in cases:
        if c["ok"]:  # read: exactly what pyarrow reads from the same bytes, never other values
            assert c["same_as_pyarrow"], c
            if c["base"] == "crc":  # with page checksums, a corruption never changes the values silently
                assert c["same_as_original"], c
        else:
            assert c["message"].startswith(c["path"] + ": ") and "\n" not in c["message"], c
    # Every count in the footer raised alike to 2^20..2^40 frames: consistent, so only the file's size tells.
    huge = {f"footer rows {543 * 2**k} (all)" for k in (20, 30, 40)}
    refused_unread = [c for c in cases if c["base"] == "plain" and c["case"] in huge]
    assert len(refused_unread) == 3 and all("nothing was read" in c["message"] for c in refused_unread)
    # Reading ~100 kB files never needs more than a small process (a 2^30-row claim would take gigabytes).
    assert summary["maxrss_kb"] < 600_000, summary


def test_huge_declared_row_count_is_refused_before_pyarrow_reads(six, tmp_path, monkeypatch):
    """A footer claiming 2^40 rows (a metadata-only file) must not reach pyarrow's read, which would allocate."""
    path = tmp_path / "huge.parquet"
    path.write_bytes(edit_footer(six.read_bytes(), row_count_field(6 * 543), row_count_field(543 * 2**31)))
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("pyarrow asked to read"))
    with pytest.raises(IngestError, match=rf"declares {543 * 2**31} rows in a file of \d+ bytes.*nothing was read"):
        read_gislr_file(path)


def test_footer_and_data_disagreeing_is_an_error(six, tmp_path):
    data = six.read_bytes()
    fewer = tmp_path / "fewer.parquet"  # footer says 1 frame, row group and pages hold 6
    fewer.write_bytes(edit_footer(data, row_count_field(6 * 543), row_count_field(543), "first"))
    with pytest.raises(IngestError, match="corrupt footer: it declares 543 rows but its row groups 3258"):
        read_gislr_file(fewer)
    more = tmp_path / "more.parquet"  # every count says 7 frames, the pages hold 6
    more.write_bytes(edit_footer(data, row_count_field(6 * 543), row_count_field(7 * 543)))
    with pytest.raises(IngestError, match="footer declares 3801 rows but 3258 could be read"):
        read_gislr_file(more)


def test_frame_limit(six):
    with pytest.raises(IngestError, match="6 frames, more than the limit of 5"):
        read_gislr_file(six, max_frames=5)
    assert read_gislr_file(six, max_frames=6).shape == (6, 87, 2)


def _with_x(six: Path, out: Path, column: pa.Array) -> Path:
    return rewrite(six, out, lambda t: t.set_column(t.column_names.index("x"), "x", column))


@pytest.mark.parametrize("make, message", [
    (lambda n: pa.array(np.arange(n, dtype=np.uint32) + 3_000_000_000), "column 'x' has type uint32"),
    (lambda n: pa.array(np.arange(n, dtype=np.int64)), "column 'x' has type int64"),
    (lambda n: pa.array(np.arange(n, dtype=np.int32)).cast(pa.date32()), r"column 'x' has type date32\[day\]"),
    (lambda n: pa.array(["0.5"] * n), "column 'x' has type string"),
    (lambda n: pa.array([[0.5]] * n), "column 'x' has type list<"),
    (lambda n: pa.array(np.full(n, True)), "column 'x' has type bool"),
    (lambda n: pa.array(np.full(n, 1e300)), r"coordinate x=1e\+300 at frame 0, point 0 \(lips 0 \(face landmark 61"),
    (lambda n: pa.array(np.full(n, -np.inf)), "coordinate x=-inf at frame 0, point 0"),
])
def test_coordinates_of_other_types_or_beyond_float32_are_refused(six, tmp_path, make, message):
    path = _with_x(six, tmp_path / "odd.parquet", make(6 * 543))
    with pytest.raises(IngestError, match=message) as info:
        read_gislr_file(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_narrower_float_coordinates_are_read_exactly(six, tmp_path, dtype):
    x = pq.read_table(six).column("x").to_numpy().astype(dtype)
    path = _with_x(six, tmp_path / "narrow.parquet", pa.array(x))
    got = read_gislr_file(path)
    want = reference_read(six, get_layout("default").gislr_rows(), 2)
    np.testing.assert_array_equal(got[..., 0], want[..., 0].astype(dtype).astype(np.float32))
    np.testing.assert_array_equal(got[..., 1], want[..., 1])


def test_duplicate_column_is_ambiguous(six, tmp_path):
    table = pq.read_table(six)
    dup = pa.Table.from_arrays([*table.columns, pa.array(np.zeros(table.num_rows))], names=[*table.column_names, "x"])
    path = tmp_path / "dup.parquet"
    pq.write_table(dup, path)
    with pytest.raises(IngestError, match=r"column\(s\) \['x'\] appear more than once"):
        read_gislr_file(path)


def test_column_names_that_are_not_utf8(six, tmp_path):
    table = pq.read_table(six)
    path = tmp_path / "utf8.parquet"
    pq.write_table(table.rename_columns([c if c != "row_id" else "r\u00f3w" for c in table.column_names]), path)
    path.write_bytes(path.read_bytes().replace("r\u00f3w".encode(), b"r\xc3\x28w"))
    with pytest.raises(IngestError, match="unreadable parquet file") as info:
        read_gislr_file(path)
    assert info.value.path == str(path)


def test_several_row_groups_with_their_own_dictionaries(six, tmp_path):
    path = tmp_path / "groups.parquet"
    pq.write_table(pq.read_table(six), path, row_group_size=543)  # six row groups, six `type` dictionaries
    assert pq.ParquetFile(path).metadata.num_row_groups == 6
    layout = get_layout("default_z")
    np.testing.assert_array_equal(read_gislr_file(path, layout), reference_read(six, layout.gislr_rows(), 3))


@pytest.mark.parametrize("numbers", [[-5, 3, -9, 0, 2**40, 7], [2**62, 2**62 - 1, 0, 1, 2, 3]])
def test_frame_numbers_of_any_size_sort(six, tmp_path, numbers):
    table = pq.read_table(six)
    frame = pa.array(np.repeat(np.asarray(numbers, np.int64), 543))
    path = rewrite(six, tmp_path / "numbers.parquet", lambda t: t.set_column(0, "frame", frame))
    want = reference_read(six, get_layout("default").gislr_rows(), 2)  # in file order (numbers 3..8)
    order = np.argsort(numbers, kind="stable")
    np.testing.assert_array_equal(read_gislr_file(path), want[order])
    assert table.num_rows == 6 * 543


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_only_regular_files_are_read(tmp_path, kind):
    path = tmp_path / f"{kind}.parquet"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")  # endless: reading it would never finish
    with pytest.raises(IngestError, match="not a regular file") as info:
        read_gislr_file(path)
    assert info.value.path == str(path)


@pytest.mark.timeout(120)
def test_cli_skips_a_fifo_and_refuses_a_fifo_csv(tmp_path):
    """In a child process (a hang would be a timeout, a crash a signal): a FIFO among the listed files is a bad
    file that --skip-bad lists; a FIFO as train.csv is one line and exit 2."""
    from slr_fast.ingest import write_gislr_dataset

    csv_path = write_gislr_dataset(tmp_path / "corpus", 4, min_frames=2, max_frames=5, seed=1)
    first = csv_path.parent / csv_path.read_text().splitlines()[1].split(",")[0]
    first.unlink()
    os.mkfifo(first)
    done = run_cli("ingest", "gislr", csv_path.parent, "--out", tmp_path / "s.zarr", "--skip-bad", "--no-progress",
                   timeout=100)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 file(s)" in done.stdout and f"{first}: is a FIFO (named pipe), not a regular file" in done.stdout
    fifo_csv = tmp_path / "train.csv"
    os.mkfifo(fifo_csv)
    done = run_cli("ingest", "gislr", fifo_csv, "--out", tmp_path / "t.zarr", timeout=100)
    assert_one_line_error(done.returncode, done.stderr, str(fifo_csv), "FIFO")


def test_bad_option_values_are_one_line(tmp_path, capsys):
    for argv, named in ([["--limit", "-1"], "--limit"], [["--workers", "0"], "--workers"],
                        [["--max-frames", "0"], "--max-frames"], [["--split-fractions", "nan,0.5,0.5"], "nan"]):
        rc, _, err = call_cli(["ingest", "gislr", tmp_path, "--out", tmp_path / "s.zarr", *argv], capsys)
        assert_one_line_error(rc, err, named)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        ingest_gislr(tmp_path, tmp_path / "s.zarr", limit=-1)
