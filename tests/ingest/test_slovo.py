"""ingest_slovo / `slr-fast ingest slovo`: annotations.csv rules, the released keypoint JSON (sides, frames, malformed
files) on a generated Slovo-shaped folder, and the video path on clips cut from the real signer clip (skipped
without the video extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_testing import assert_one_line_error, call_cli
from slovo_fixture import (
    REAL_CLIP,
    ROWS,
    annotation_rows,
    hand,
    keypoint_frames,
    write_annotations,
    write_keypoints,
    write_slovo_fixture,
)

from slr_fast.ingest import IngestError
from slr_fast.ingest.slovo import COLUMNS, hands_from_json, ingest_slovo, read_annotations
from slr_fast.layout import get_layout
from slr_fast.store import KeypointStore

pytest.importorskip("ijson")
CLASSES = ["---", "привет", "утро"]  # no_event is ---; sorted by name
IDS = [r[0] for r in ROWS]


@pytest.fixture(scope="module")
def slovo_dir(tmp_path_factory):
    """The fixture's csv and JSON (no videos); treat as read-only."""
    return write_slovo_fixture(tmp_path_factory.mktemp("slovo"), videos=False)


def _xy(cx):
    return np.array([[p["x"], p["y"]] for p in hand(cx)], np.float32)


def _ingest_json(root, out, **kw):
    return ingest_slovo(root, out, keypoints=root / "slovo_mediapipe.json", progress=False, **kw)


def test_keypoints_store_labels_signers_splits_and_extra_keys(slovo_dir, tmp_path):
    report = _ingest_json(slovo_dir, tmp_path / "s.zarr")
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert store.layout == get_layout("hands") and store.classes == CLASSES
    assert list(store.seq_ids) == IDS
    assert [store.classes[i] for i in store.labels] == ["привет", "утро", "---", "привет", "утро"]
    assert list(store.signers) == [0, 1, 2, 3, 3] and store.provenance["signer_names"] == ["u1ab", "u2cd", "u3ef",
                                                                                           "u4aa"]
    assert list(store.splits) == [0, 0, 0, 2, 2]  # train column: True train, False test
    frames = keypoint_frames()
    assert list(store.lengths) == [len(frames[i]) for i in IDS]
    assert report.written == 5 and not report.skipped
    assert any("x9-not-annotated" in n for n in report.notes)  # a JSON-only key is reported, not dropped silently
    assert store.provenance["keypoints_not_in_annotations"] == 1


def test_sides_are_assigned_by_position(slovo_dir, tmp_path):
    _ingest_json(slovo_dir, tmp_path / "s.zarr")
    store = KeypointStore.open(tmp_path / "s.zarr")
    seq = {sid: store[i][0] for i, sid in enumerate(store.seq_ids)}
    left, right = slice(0, 21), slice(21, 42)
    a1 = seq["a1-hello"]  # midline 0.5 from its two-hand frame
    np.testing.assert_allclose(a1[0, left], _xy(0.7), atol=1e-6)  # image right = the signer's left hand
    np.testing.assert_allclose(a1[0, right], _xy(0.3), atol=1e-6)
    np.testing.assert_allclose(a1[1, right], _xy(0.35), atol=1e-6)  # lone hand left of the midline
    assert np.isnan(a1[1, left]).all() and np.isnan(a1[2]).all()  # no hand at all in frame 2
    np.testing.assert_allclose(a1[3, left], _xy(0.65), atol=1e-6)
    a2 = seq["a2-morning"]  # no two-hand frame: midline 0.5
    assert [not np.isnan(a2[t, right]).any() for t in range(3)] == [True, False, True]
    np.testing.assert_allclose(a2[1, left], _xy(0.55), atol=1e-6)
    a3 = seq["a3-none"]  # "hand 1" is the signer's right hand here: the label follows position, not the key
    np.testing.assert_allclose(a3[:, right], np.stack([_xy(0.6), _xy(0.62)]), atol=1e-6)
    b2 = seq["b2-morning"]  # midline (0.3 + 0.5) / 2 = 0.4: a lone hand at 0.66 is the left hand
    np.testing.assert_allclose(b2[1, left], _xy(0.66), atol=1e-6)
    assert np.isnan(b2[1, right]).all()


def test_z_layout_reads_z_and_names_a_point_without_it(tmp_path):
    layout = get_layout("hands_z")
    got = hands_from_json("k.json", "id", [{"hand 1": hand(0.3, z=True)}], layout)
    np.testing.assert_allclose(got[0, 21:, 2], [-0.001 * i for i in range(21)], atol=1e-7)
    with pytest.raises(IngestError, match=r"k\.json: key 'id', frame 1, 'hand 2': every point needs numeric x/y/z"):
        hands_from_json("k.json", "id", [{"hand 1": hand(0.3, z=True)}, {"hand 2": hand(0.6)}], layout)


def test_validation_signers_are_carved_out_of_train(slovo_dir, tmp_path):
    stores = []
    for k in range(2):
        _ingest_json(slovo_dir, tmp_path / f"{k}.zarr", val_fraction=0.34, val_seed=0)
        stores.append(KeypointStore.open(tmp_path / f"{k}.zarr"))
    s = stores[0]
    assert list(s.splits[3:]) == [2, 2]  # test stays test
    val, train = set(s.signers[s.splits == 1]), set(s.signers[s.splits == 0])
    assert len(val) == 1 and len(train) == 2 and not val & train and val | train == {0, 1, 2}
    assert list(stores[1].splits) == list(s.splits)  # seeded
    assert "val" in s.provenance["split"] and "seed=0" in s.provenance["split"]
    rows = annotation_rows()
    one = _variant(tmp_path, "one.csv", [rows[0], rows[3]])  # a single train signer
    with pytest.raises(IngestError, match=r"one\.csv: cannot carve a validation split of 0\.5 from 1 train signer"):
        ingest_slovo(one, tmp_path / "x.zarr", keypoints=slovo_dir / "slovo_mediapipe.json", val_fraction=0.5)


def _variant(root, name, rows, columns=COLUMNS):
    return write_annotations(root / name, rows, columns)


@pytest.mark.parametrize(("edit", "message"), [
    ({"train": "maybe"}, "line 3 of bad.csv: train is 'maybe', not True or False"),
    ({"width": "wide"}, "line 3 of bad.csv: width is 'wide', not an integer"),
    ({"begin": "-2"}, "line 3 of bad.csv: begin is -2, below 0"),
    ({"attachment_id": "../x"}, "line 3 of bad.csv: attachment_id '../x' is not a file name"),
    ({"user_id": ""}, "line 3 of bad.csv: empty user_id"),
])
def test_a_bad_row_is_named_by_line_and_listed_under_skip_bad(slovo_dir, tmp_path, edit, message):
    rows = annotation_rows()
    rows[1] = {**rows[1], **edit}
    csv_path = _variant(tmp_path, "bad.csv", rows)
    write_keypoints(tmp_path / "slovo_mediapipe.json")
    with pytest.raises(IngestError, match=message.replace(".", r"\.")):
        ingest_slovo(csv_path, tmp_path / "s.zarr", keypoints=tmp_path / "slovo_mediapipe.json", progress=False)
    assert not (tmp_path / "s.zarr").exists()
    report = ingest_slovo(csv_path, tmp_path / "s.zarr", keypoints=tmp_path / "slovo_mediapipe.json", skip_bad=True,
                          progress=False)
    assert report.written == 4 and len(report.skipped) == 1 and message in report.skipped[0][1]
    assert list(KeypointStore.open(tmp_path / "s.zarr").seq_ids) == [i for k, i in enumerate(IDS) if k != 1]


def test_a_row_with_surplus_cells_is_a_bad_row(slovo_dir, tmp_path):
    csv_path = _variant(tmp_path, "wide.csv", annotation_rows())
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    lines[2] += "\tsurplus"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_annotations(csv_path)
    assert rows[1].problem == "line 3 of wide.csv: 10 cells, the header has 9"
    assert [r.problem for k, r in enumerate(rows) if k != 1] == [None] * 4


def test_header_and_repeated_ids_stop_at_the_csv(tmp_path):
    rows = annotation_rows()
    with pytest.raises(IngestError, match=r"a\.csv: missing column\(s\) \['end'\]"):
        read_annotations(_variant(tmp_path, "a.csv", rows, COLUMNS[:-1]))
    with pytest.raises(IngestError, match=r"line 4: attachment_id 'a1-hello' repeats line 2"):
        read_annotations(_variant(tmp_path, "b.csv", [rows[0], rows[1], rows[0]]))
    (tmp_path / "c.csv").write_text(",".join(COLUMNS) + "\n" + "x,u,1,1,1,t,True,0,1\n")
    with pytest.raises(IngestError, match="is it tab-separated"):
        read_annotations(tmp_path / "c.csv")


@pytest.mark.parametrize(("content", "message"), [
    (lambda d: json.dumps(d)[:-40], "malformed JSON after key 'b2-morning'"),
    (lambda d: json.dumps(list(d.values())), "not Slovo's keypoint JSON: starts with b'["),
    (lambda d: "", "not Slovo's keypoint JSON: empty"),
    (lambda d: json.dumps(d)[:-1] + ', "a1-hello": []}', "key 'a1-hello' appears twice"),
])
def test_a_malformed_json_stops_naming_the_file_and_key(slovo_dir, tmp_path, content, message):
    bad = tmp_path / "kp.json"
    bad.write_text(content(keypoint_frames()), encoding="utf-8")
    with pytest.raises(IngestError) as info:
        ingest_slovo(slovo_dir, tmp_path / "s.zarr", keypoints=bad, skip_bad=True, progress=False)
    assert str(bad) in str(info.value) and message in str(info.value)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("a3-none"), "kp.json: no key 'a3-none'"),
    (lambda d: d["a3-none"][1]["hand 1"].pop(), "kp.json: key 'a3-none', frame 1, 'hand 1': expected a list of 21 "
                                                "points, got 20"),
    (lambda d: d["a3-none"][0].update(hand3=[]), "kp.json: key 'a3-none', frame 0: unknown key(s) ['hand3']"),
    (lambda d: d["a3-none"][1]["hand 2"][4].update(x="0.5"), "kp.json: key 'a3-none', frame 1, 'hand 2': "
                                                             "every point needs numeric x/y"),
    (lambda d: d.update({"a3-none": [{}, {}]}), "kp.json: key 'a3-none': all-NaN sequence"),
    (lambda d: d.update({"a3-none": []}), "kp.json: key 'a3-none': empty sequence"),
])
def test_a_bad_entry_is_a_bad_file_listed_under_skip_bad(slovo_dir, tmp_path, edit, message):
    frames = keypoint_frames()
    edit(frames)
    bad = write_keypoints(tmp_path / "kp.json", frames)
    with pytest.raises(IngestError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        ingest_slovo(slovo_dir, tmp_path / "s.zarr", keypoints=bad, progress=False)
    report = ingest_slovo(slovo_dir, tmp_path / "s.zarr", keypoints=bad, skip_bad=True, progress=False)
    assert report.written == 4 and len(report.skipped) == 1
    assert report.skipped[0][0] == str(bad) and report.skipped[0][1].startswith(message.split(": ", 1)[1])
    assert "a3-none" not in set(KeypointStore.open(tmp_path / "s.zarr").seq_ids)


def test_keypoints_refuse_a_layout_with_lips_or_pose_and_trim(slovo_dir, tmp_path):
    with pytest.raises(IngestError, match=r"holds hand keypoints only; layout 'default' also needs \['lips', 'pose'\]"):
        _ingest_json(slovo_dir, tmp_path / "s.zarr", layout=get_layout("default"))
    with pytest.raises(IngestError, match="--trim applies to videos only"):
        _ingest_json(slovo_dir, tmp_path / "s.zarr", trim=True)


def test_cli_keypoints_and_one_line_errors(slovo_dir, tmp_path, capsys):
    rc, out, _ = call_cli(["ingest", "slovo", slovo_dir, "--keypoints", slovo_dir / "slovo_mediapipe.json", "--out",
                           tmp_path / "s.zarr", "--val-fraction", "0.34", "--no-progress"], capsys)
    assert rc == 0 and "wrote 5 sequences" in out and "x9-not-annotated" in out
    assert sorted(set(KeypointStore.open(tmp_path / "s.zarr").splits)) == [0, 1, 2]
    rows = annotation_rows()
    rows[2] = {**rows[2], "train": "yes"}
    _variant(tmp_path, "annotations.csv", rows)
    write_keypoints(tmp_path / "slovo_mediapipe.json")
    rc, _, err = call_cli(["ingest", "slovo", tmp_path, "--keypoints", tmp_path / "slovo_mediapipe.json", "--out",
                           tmp_path / "t.zarr"], capsys)
    assert_one_line_error(rc, err, "annotations.csv", "line 4 of annotations.csv: train is 'yes'")


def test_without_ijson_one_line_names_the_extra(slovo_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ijson", None)  # as if not installed
    rc, _, err = call_cli(["ingest", "slovo", slovo_dir, "--keypoints", slovo_dir / "slovo_mediapipe.json", "--out",
                           tmp_path / "s.zarr"], capsys)
    assert_one_line_error(rc, err, "pip install -e '.[slovo]'")


# ------------------------------------------------------------------ the video path (MediaPipe Holistic)
def _need_video():
    from slr_fast.video import video_available

    if not video_available():
        pytest.skip("the video extra is not installed: pip install -e '.[video]'")
    if not REAL_CLIP.is_file():
        pytest.skip(f"real clip {REAL_CLIP} not available")


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """The fixture with its five clips ingested once untrimmed and once trimmed (the second from the kept cache)."""
    _need_video()
    root = write_slovo_fixture(tmp_path_factory.mktemp("slovo_video"))
    cache = root / "cache"
    full = ingest_slovo(root, root / "full.zarr", workers=2, progress=False, cache_dir=cache, keep_cache=True)
    trimmed = ingest_slovo(root, root / "trim.zarr", trim=True, val_fraction=0.34, workers=2, progress=False,
                           cache_dir=cache, keep_cache=True)
    return root, full, trimmed


def test_videos_are_extracted_with_labels_signers_and_splits(video_run):
    root, full, _ = video_run
    store = KeypointStore.open(root / "full.zarr")
    assert store.layout == get_layout("default") and store.classes == CLASSES
    assert list(store.seq_ids) == IDS and list(store.splits) == [0, 0, 0, 2, 2]
    assert [store.classes[i] for i in store.labels] == ["привет", "утро", "---", "привет", "утро"]
    assert list(store.lengths) == [8] * 5 and full.written == 5
    lips = store.layout.part_slices()["lips"]
    assert all(not np.isnan(store[i][0][:, lips]).all() for i in range(5))  # Holistic found the signer's face


def test_trim_keeps_frames_begin_to_end_exclusive(video_run):
    root, _, trimmed = video_run
    full, cut = KeypointStore.open(root / "full.zarr"), KeypointStore.open(root / "trim.zarr")
    assert any("extracted 0 video(s)" in n for n in trimmed.notes)  # the second run read the kept cache
    for i, (_, _, _, _, begin, end, _) in enumerate(ROWS):
        assert cut.lengths[i] == end - begin
        np.testing.assert_array_equal(cut[i][0], full[i][0][begin:end])
    val, train = set(cut.signers[cut.splits == 1]), set(cut.signers[cut.splits == 0])
    assert len(val) == 1 and not val & train


def test_a_row_whose_video_is_missing_is_a_bad_file(video_run):
    root, _, _ = video_run
    rows = annotation_rows() + annotation_rows((("c1-gone", "u1ab", "утро", True, 0, 2, (0, 2)),))
    csv_path = _variant(root, "missing.csv", rows)
    gone = root / "train" / "c1-gone.mp4"
    with pytest.raises(IngestError, match=f"{gone}: video file not found \\(listed on line 7 of missing.csv\\)"):
        ingest_slovo(csv_path, root / "m.zarr", progress=False, cache_dir=root / "cache", keep_cache=True)
    report = ingest_slovo(csv_path, root / "m.zarr", skip_bad=True, progress=False, cache_dir=root / "cache",
                          keep_cache=True)
    assert report.written == 5 and report.skipped == [(str(gone), "video file not found (listed on line 7 of "
                                                                  "missing.csv)")]
