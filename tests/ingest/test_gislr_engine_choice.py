"""ingest_gislr's reader choice: the compiled reader by default, pyarrow on request or for files it declines."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from slr_fast.cli.main import main
from slr_fast.ingest import ingest_gislr, read_gislr_csv
from slr_fast.store import KeypointStore


def _copy(corpus, tmp_path):
    shutil.copytree(corpus.parent, tmp_path / "corpus")
    return tmp_path / "corpus" / "train.csv"


def test_engines_write_the_same_store(gislr_corpus, tmp_path):
    reports = {}
    for engine in ("auto", "pyarrow"):
        reports[engine] = ingest_gislr(gislr_corpus, tmp_path / f"{engine}.zarr", engine=engine, progress=False)
    a, b = (KeypointStore.open(tmp_path / f"{e}.zarr") for e in ("auto", "pyarrow"))
    np.testing.assert_array_equal(a.frames_array(), b.frames_array())
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert a.provenance["engine"] == "auto" and b.provenance["engine"] == "pyarrow"
    assert not reports["auto"].notes and not reports["pyarrow"].notes  # pyarrow on request is not a fallback


def test_a_file_the_compiled_reader_declines_is_read_with_pyarrow_and_noted(gislr_corpus, tmp_path):
    csv_path = _copy(gislr_corpus, tmp_path)
    entries = read_gislr_csv(csv_path)
    victim = entries[1].path
    pq.write_table(pq.read_table(victim), victim, compression="zstd")  # a codec the compiled reader does not decode
    report = ingest_gislr(csv_path, tmp_path / "s.zarr", progress=False)
    reference = ingest_gislr(csv_path, tmp_path / "r.zarr", engine="pyarrow", progress=False)
    assert report.written == reference.written == len(entries) and not report.skipped
    np.testing.assert_array_equal(KeypointStore.open(tmp_path / "s.zarr").frames_array(),
                                  KeypointStore.open(tmp_path / "r.zarr").frames_array())
    assert len(report.notes) == 1 and report.notes[0].startswith("1 file(s) read with pyarrow")
    assert str(victim) in report.notes[0] and "codec" in report.notes[0]
    assert "note: 1 file(s) read with pyarrow" in report.summary()


def test_unknown_engine_is_refused_before_any_work(gislr_corpus, tmp_path):
    with pytest.raises(ValueError, match="valid engines are 'auto', 'pyarrow'"):
        ingest_gislr(gislr_corpus, tmp_path / "s.zarr", engine="polars", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_cli_engine_option(gislr_corpus, tmp_path, capsys):
    assert main(["ingest", "gislr", str(gislr_corpus), "--out", str(tmp_path / "s.zarr"), "--engine", "pyarrow",
                 "--no-progress"]) == 0
    assert KeypointStore.open(tmp_path / "s.zarr").provenance["engine"] == "pyarrow"
    with pytest.raises(SystemExit):
        main(["ingest", "gislr", str(gislr_corpus), "--out", str(tmp_path / "t.zarr"), "--engine", "polars"])
    assert "invalid choice: 'polars'" in capsys.readouterr().err
