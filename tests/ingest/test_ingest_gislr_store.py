"""ingest_gislr: a GISLR corpus into a store — contents, class maps, splits, determinism, bad files."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from slr_fast.ingest import IngestError, ingest_gislr, load_classes, read_gislr_csv, read_gislr_file
from slr_fast.layout import get_layout
from slr_fast.store import KeypointStore


def _copy(corpus, tmp_path):
    """A private, editable copy of the session corpus; returns its train.csv."""
    shutil.copytree(corpus.parent, tmp_path / "corpus")
    return tmp_path / "corpus" / "train.csv"


def test_store_holds_every_sequence_in_csv_order(gislr_corpus, tmp_path):
    layout = get_layout("arm_z")
    report = ingest_gislr(gislr_corpus.parent, tmp_path / "s.zarr", layout=layout, workers=3, progress=False)
    entries = read_gislr_csv(gislr_corpus)
    store = KeypointStore.open(tmp_path / "s.zarr")
    signs = sorted({e.sign for e in entries})
    assert report.written == len(store) == len(entries) and not report.skipped
    assert store.classes == signs == report.classes  # classes: distinct signs sorted by name
    assert store.layout.to_dict() == layout.to_dict()
    assert store.seq_ids.tolist() == [e.seq_id for e in entries]
    np.testing.assert_array_equal(store.signers, [e.signer for e in entries])
    np.testing.assert_array_equal(store.labels, [signs.index(e.sign) for e in entries])
    np.testing.assert_array_equal(store.splits, -1)
    for i, e in enumerate(entries):
        np.testing.assert_array_equal(store[i][0], read_gislr_file(e.path, layout))
    assert report.frames == int(store.lengths.sum())
    assert store.provenance["source_format"] == "gislr" and store.provenance["skipped"] == 0


def test_worker_count_does_not_change_the_store(gislr_corpus, tmp_path):
    stores = []
    for w in (1, 4):
        ingest_gislr(gislr_corpus, tmp_path / f"w{w}.zarr", workers=w, split_by_signer=3, progress=False)
        stores.append(KeypointStore.open(tmp_path / f"w{w}.zarr"))
    a, b = stores
    np.testing.assert_array_equal(a.frames_array(), b.frames_array())
    for field in ("offsets", "labels", "signers", "splits"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.seq_ids.tolist() == b.seq_ids.tolist()


def test_limit_keeps_class_ids_and_splits_of_the_full_csv(gislr_corpus, tmp_path):
    ingest_gislr(gislr_corpus, tmp_path / "all.zarr", split_by_signer=2, progress=False)
    ingest_gislr(gislr_corpus, tmp_path / "one.zarr", split_by_signer=2, limit=1, progress=False)
    full, one = KeypointStore.open(tmp_path / "all.zarr"), KeypointStore.open(tmp_path / "one.zarr")
    assert len(one) == 1 and one.classes == full.classes and len(full.classes) > 1
    assert (one.labels[0], one.splits[0], one.seq_ids[0]) == (full.labels[0], full.splits[0], full.seq_ids[0])


def test_split_by_signer_keeps_each_signer_in_one_split(gislr_corpus, tmp_path):
    ingest_gislr(gislr_corpus, tmp_path / "s.zarr", split_by_signer=0, split_fractions=(0.5, 0.25, 0.25),
                 progress=False)
    store = KeypointStore.open(tmp_path / "s.zarr")
    per_signer = {s: set(store.splits[store.signers == s].tolist()) for s in np.unique(store.signers)}
    assert all(len(v) == 1 for v in per_signer.values())
    assert sorted(c for v in per_signer.values() for c in v) == [0, 0, 1, 2]  # 4 signers at 0.5/0.25/0.25
    assert "seed=0" in store.provenance["split"]


def test_csv_split_column_is_used_and_conflicts_with_split_by_signer(gislr_corpus, tmp_path):
    csv_path = _copy(gislr_corpus, tmp_path)
    rows = list(csv.DictReader(open(csv_path)))
    names = ["train", "val", "test"]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, [*rows[0].keys(), "split"])
        w.writeheader()
        w.writerows({**r, "split": names[i % 3]} for i, r in enumerate(rows))
    ingest_gislr(csv_path, tmp_path / "s.zarr", progress=False)
    np.testing.assert_array_equal(KeypointStore.open(tmp_path / "s.zarr").splits, np.arange(len(rows)) % 3)
    with pytest.raises(IngestError, match="has a split column"):
        ingest_gislr(csv_path, tmp_path / "t.zarr", split_by_signer=1, progress=False)


@pytest.mark.parametrize("kind", ["json_map", "json_list", "txt"])
def test_class_map_fixes_ids(gislr_corpus, tmp_path, kind):
    signs = sorted({e.sign for e in read_gislr_csv(gislr_corpus)})
    order = [*reversed(signs), "unused_sign"]  # ids differ from name order; a class with no sequence is kept
    path = tmp_path / ("classes.txt" if kind == "txt" else "classes.json")
    if kind == "json_map":
        path.write_text(json.dumps({s: i for i, s in enumerate(order)}))
    elif kind == "json_list":
        path.write_text(json.dumps(order))
    else:
        path.write_text("\n".join(order) + "\n")
    assert load_classes(path) == order
    ingest_gislr(gislr_corpus, tmp_path / "s.zarr", classes=path, progress=False)
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert store.classes == order
    np.testing.assert_array_equal(store.labels, [order.index(e.sign) for e in read_gislr_csv(gislr_corpus)])


@pytest.mark.parametrize("text, message", [
    ('{"a": 0, "b": 2}', r"class ids must be exactly 0..1"),
    ('{"a": "x"}', "must be integer ids"),
    ("[1, 2]", "must be an object"),
    ("{not json", "not valid JSON"),
    ('["a", "a"]', "more than once"),
])
def test_bad_class_maps(tmp_path, text, message):
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(IngestError, match=message):
        load_classes(path)


def test_first_bad_file_stops_the_ingest_and_publishes_nothing(gislr_corpus, tmp_path):
    csv_path = _copy(gislr_corpus, tmp_path)
    bad = read_gislr_csv(csv_path)[5].path
    bad.write_bytes(b"garbage")
    with pytest.raises(IngestError, match="unreadable parquet file") as info:
        ingest_gislr(csv_path, tmp_path / "s.zarr", workers=2, progress=False)
    assert info.value.path == str(bad)
    assert not (tmp_path / "s.zarr").exists()


def test_skip_bad_reports_every_skipped_file_with_its_reason(gislr_corpus, tmp_path):
    csv_path = _copy(gislr_corpus, tmp_path)
    entries = read_gislr_csv(csv_path)
    entries[2].path.write_bytes(b"garbage")
    entries[7].path.unlink()
    # Leave out of the class map a sign that the two broken files do not have (the sign is checked first).
    dropped = next(e.sign for e in entries if e.sign not in (entries[2].sign, entries[7].sign))
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(sorted({e.sign for e in entries} - {dropped})))
    unknown_rows = [i for i, e in enumerate(entries) if e.sign == dropped]
    assert unknown_rows
    report = ingest_gislr(csv_path, tmp_path / "s.zarr", classes=classes, skip_bad=True, workers=2, progress=False)
    skipped = dict(report.skipped)
    assert "unreadable parquet file" in skipped[str(entries[2].path)]
    assert skipped[str(entries[7].path)] == "file not found"
    for i in unknown_rows:
        assert skipped[str(entries[i].path)].startswith(f"unknown sign {dropped!r}")
    assert len(report.skipped) == 2 + len(unknown_rows)
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert len(store) == report.written == len(entries) - len(report.skipped)
    assert store.provenance["skipped"] == len(report.skipped)
    summary = report.summary()
    assert f"skipped {len(report.skipped)} file(s)" in summary and str(entries[7].path) in summary


def test_all_files_bad_is_an_error(gislr_corpus, tmp_path):
    csv_path = _copy(gislr_corpus, tmp_path)
    for e in read_gislr_csv(csv_path):
        e.path.write_bytes(b"x")
    with pytest.raises(IngestError, match="no sequence could be read"):
        ingest_gislr(csv_path, tmp_path / "s.zarr", skip_bad=True, progress=False)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("content, message, names", [
    ("path,participant_id,sign\na.parquet,1,hello\n", r"missing column\(s\) \['sequence_id'\]", "train.csv"),
    ("path,participant_id,sequence_id,sign\n", "no rows", "train.csv"),
    ("path,participant_id,sequence_id,sign\na.parquet,1,5,hi\nb.parquet,1,5,hi\n", "line 3: sequence_id '5' repeats",
     "train.csv"),
    # A row's own problem makes its file a bad file: named by the file, the csv line given in the reason.
    ("path,participant_id,sequence_id,sign\na.parquet,p1,5,hello\n",
     "participant_id on line 2 of train.csv is 'p1', not an integer", "a.parquet"),
    ("path,participant_id,sequence_id,sign,split\na.parquet,1,5,hello,dev\n", "unknown split 'dev' on line 2",
     "a.parquet"),
    ("path,participant_id,sequence_id,sign\na.parquet,-2,5,hello\n", "participant_id on line 2 of train.csv is -2",
     "a.parquet"),
    ("path,participant_id,sequence_id,sign\na.parquet,99999999999,5,hello\n",
     r"is 99999999999, outside -1 \(unknown\) .. 2147483647", "a.parquet"),
])
def test_bad_csv(tmp_path, content, message, names):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(IngestError, match=message) as info:
        ingest_gislr(tmp_path, tmp_path / "s.zarr", progress=False)
    assert info.value.path == str(tmp_path / names)
    with pytest.raises(IngestError, match="expected a GISLR folder"):
        ingest_gislr(tmp_path / "nowhere", tmp_path / "s.zarr", progress=False)


def test_bad_rows_are_found_before_any_file_is_read(gislr_corpus, tmp_path, monkeypatch):
    """A bad participant id on the last row stops the ingest up front, not after every file was read."""
    csv_path = _copy(gislr_corpus, tmp_path)
    lines = csv_path.read_text().splitlines()
    last = lines[-1].split(",")
    last[1] = "-7"
    csv_path.write_text("\n".join(lines[:-1] + [",".join(last)]) + "\n")
    import slr_fast.ingest.gislr as gislr

    reads = []
    monkeypatch.setattr(gislr, "read_gislr_file", lambda *a, **k: reads.append(a) or pytest.fail("file read"))
    with pytest.raises(IngestError, match=f"line {len(lines)} of train.csv is -7"):
        ingest_gislr(csv_path, tmp_path / "s.zarr", progress=False)
    assert not reads and not (tmp_path / "s.zarr").exists()


def test_skip_bad_lists_bad_rows_and_bad_values_by_file(gislr_corpus, tmp_path):
    """--skip-bad skips what used to abort the whole ingest: a signer id < -1, one beyond int32, inf values."""
    from slr_fast.ingest import write_gislr_file
    from slr_fast.ingest.gislr_format import synthetic_gislr_frames

    csv_path = _copy(gislr_corpus, tmp_path)
    entries = read_gislr_csv(csv_path)
    lines = csv_path.read_text().splitlines()
    for row, value in ((2, "-5"), (5, "99999999999")):  # entries[row] is csv line row + 2
        cells = lines[row + 1].split(",")
        cells[1] = value
        lines[row + 1] = ",".join(cells)
    csv_path.write_text("\n".join(lines) + "\n")
    frames = synthetic_gislr_frames(np.random.default_rng(0), 4, p_no_hand=0.0)
    frames[2, 470, 0] = np.inf  # left hand point 2, x
    write_gislr_file(entries[8].path, frames)
    report = ingest_gislr(csv_path, tmp_path / "s.zarr", skip_bad=True, split_by_signer=0, progress=False)
    skipped = dict(report.skipped)
    assert set(skipped) == {str(entries[i].path) for i in (2, 5, 8)}
    assert "line 4 of train.csv is -5" in skipped[str(entries[2].path)]
    assert "is 99999999999, outside" in skipped[str(entries[5].path)]
    assert "coordinate x=inf at frame 2, point 42 (left_hand 2" in skipped[str(entries[8].path)]
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert len(store) == len(entries) - 3 and store.signers.min() >= 0


def test_compression_preset_is_chosen_by_name(gislr_corpus, tmp_path, capsys):
    from cli_testing import assert_one_line_error, call_cli

    from slr_fast.store import compression_presets
    from slr_fast.store.schema import compression_names

    assert sorted(compression_names()) == sorted(compression_presets())  # the CLI offers the store's presets
    ingest_gislr(gislr_corpus, tmp_path / "lz4.zarr", compression="blosc-lz4-shuffle+time", progress=False)
    ingest_gislr(gislr_corpus, tmp_path / "zstd.zarr", progress=False)
    lz4, zstd = KeypointStore.open(tmp_path / "lz4.zarr"), KeypointStore.open(tmp_path / "zstd.zarr")
    assert lz4.attrs["compression"] == "blosc-lz4-shuffle+time" != zstd.attrs["compression"]
    np.testing.assert_array_equal(lz4.frames_array(), zstd.frames_array())
    rc, _, err = call_cli(["ingest", "gislr", gislr_corpus, "--out", tmp_path / "x.zarr", "--compression", "gzip"],
                          capsys)
    assert_one_line_error(rc, err, "--compression", "gzip")
