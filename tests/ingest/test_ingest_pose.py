"""read_pose_file / ingest_pose: real MIT samples (skipped when ../shared is absent) and generated .pose files."""

from __future__ import annotations

import numpy as np
import pytest
from ingest_testing import HOLISTIC, POSE_SAMPLES, START, holistic_data, write_pose

from slr_fast.ingest import IngestError, ingest_pose, read_pose_file
from slr_fast.ingest.pose import POSE_NAMES
from slr_fast.layout import LIPS, get_layout
from slr_fast.store import KeypointStore

pytest.importorskip("pose_format")


def _sample(name):
    path = POSE_SAMPLES / name
    if not path.is_file():
        pytest.skip(f"pose sample {path} not available")
    return path


def _source_columns(layout, start=START):
    return np.array([start[p.source] + i for p in layout.parts for i in p.indices])


def test_real_pixel_sample_is_normalized_by_frame_size():
    from pose_format import Pose

    path = _sample("example.pose")
    pose = Pose.read(path.read_bytes())
    w, h = pose.header.dimensions.width, pose.header.dimensions.height
    layout = get_layout("default")
    got = read_pose_file(path, layout)
    assert got.shape == (97, 87, 2) and got.dtype == np.float32
    # example.pose: POSE 33, FACE 468, LEFT_HAND 21, RIGHT_HAND 21 (then world landmarks).
    cols = _source_columns(layout)
    raw = np.ma.getdata(pose.body.data)[:, 0][:, cols, :2] / np.array([w, h])
    absent = np.ma.getmaskarray(pose.body.data)[:, 0][:, cols].any(-1) | (pose.body.confidence[:, 0][:, cols] == 0)
    np.testing.assert_allclose(got[~absent], raw[~absent], rtol=1e-6)
    assert np.isnan(got[absent]).all() and absent.any()  # undetected hand frames exist in the sample
    assert np.nanmin(got) > -0.5 and np.nanmax(got) < 1.5  # pixels became frame fractions


def test_real_reduced_face_sample_maps_points_by_name():
    from pose_format import Pose

    path = _sample("mediapipe.pose")
    with pytest.raises(IngestError, match=r"pose points 0 \(NOSE\)") as info:  # its pose component has no nose
        read_pose_file(path)
    assert str(path) in str(info.value)
    pose = Pose.read(path.read_bytes())
    comps = {c.name: c for c in pose.header.components}
    assert len(comps["FACE_LANDMARKS"].points) == 128  # the reduced face: point names are mesh indices
    face_start = len(comps["POSE_LANDMARKS"].points)
    layout = get_layout("default")
    got = read_pose_file(path, layout, missing_points="nan")
    lips = layout.part_slices()["lips"]
    cols = [face_start + comps["FACE_LANDMARKS"].points.index(str(i)) for i in LIPS]
    w, h = pose.header.dimensions.width, pose.header.dimensions.height
    raw = np.ma.getdata(pose.body.data)[:, 0][:, cols, :2] / np.array([w, h])
    ok = ~np.isnan(got[:, lips, 0])
    np.testing.assert_allclose(got[:, lips][ok], raw[ok], rtol=1e-6)
    pose_part = layout.part_slices()["pose"]
    assert np.isnan(got[:, pose_part.start]).all()  # the nose (missing) is NaN
    shoulder = POSE_NAMES.index("LEFT_SHOULDER")  # present under its name, at a different position
    col = comps["POSE_LANDMARKS"].points.index("LEFT_SHOULDER")
    k = pose_part.start + list(layout.parts[3].indices).index(shoulder)
    seen = ~np.isnan(got[:, k, 0])
    np.testing.assert_allclose(got[seen, k, 0], np.ma.getdata(pose.body.data)[seen, 0, col, 0] / w, rtol=1e-6)


def test_normalized_file_is_kept_and_undetected_points_become_nan(tmp_path):
    rng = np.random.default_rng(0)
    data = holistic_data(rng, t=5, people=2)
    # pose-format stores "not detected" as zero confidence and masks those points when reading.
    conf = np.ones(data.shape[:3])
    conf[1, 0, START["left_hand"]:START["left_hand"] + 21] = 0.0  # left hand not detected in frame 1
    conf[3, 0, START["right_hand"] + 4] = 0.0  # one right-hand point
    conf[2, 1] = 0.0  # person 1 (ignored) undetected: must not affect person 0
    path = write_pose(tmp_path / "a.pose", data, components=HOLISTIC, confidence=conf)
    layout = get_layout("default_z")
    got = read_pose_file(path, layout)
    want = data[:, 0][:, _source_columns(layout)].astype(np.float32)  # person 0 only, units unchanged
    left = layout.part_slices()["left_hand"]
    right = layout.part_slices()["right_hand"]
    want[1, left] = np.nan
    want[3, right.start + 4] = np.nan
    np.testing.assert_array_equal(got, want)


def test_pixel_detection_and_override(tmp_path):
    rng = np.random.default_rng(1)
    data = holistic_data(rng)
    data[..., 0] *= 1280
    data[..., 1] *= 720
    path = write_pose(tmp_path / "px.pose", data, components=HOLISTIC, width=1280, height=720)
    layout = get_layout("default_z")
    want = (data[:, 0][:, _source_columns(layout)] / [1280, 720, 1]).astype(np.float32)  # z is already normalized
    np.testing.assert_allclose(read_pose_file(path, layout), want, rtol=1e-6)
    np.testing.assert_allclose(read_pose_file(path, layout, coords="pixel"), want, rtol=1e-6)
    kept = read_pose_file(path, layout, coords="normalized")
    assert np.nanmax(kept[..., 0]) > 100  # forced: no division
    with pytest.raises(ValueError, match="coords='cm'"):
        read_pose_file(path, layout, coords="cm")


def test_bad_pose_files(tmp_path):
    rng = np.random.default_rng(2)
    junk = tmp_path / "junk.pose"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(IngestError, match="not a readable .pose file") as info:
        read_pose_file(junk)
    assert info.value.path == str(junk)
    with pytest.raises(IngestError, match="file not found"):
        read_pose_file(tmp_path / "absent.pose")
    flat = write_pose(tmp_path / "xy.pose", holistic_data(rng)[..., :2], components=HOLISTIC, fmt="XYC")
    assert read_pose_file(flat).shape == (6, 87, 2)
    with pytest.raises(IngestError, match="has 2 coordinates per point, layout 'default_z' needs 3"):
        read_pose_file(flat, get_layout("default_z"))
    hands_only = write_pose(tmp_path / "hands.pose", holistic_data(rng)[:, :, :42], components=HOLISTIC[2:])
    with pytest.raises(IngestError, match=r"lips points 61, 185.*pose points 0 \(NOSE\)"):
        read_pose_file(hands_only)
    blind = write_pose(tmp_path / "blind.pose", holistic_data(rng), components=HOLISTIC,
                       confidence=np.zeros((6, 1, 543)))
    with pytest.raises(IngestError, match="all-NaN sequence"):
        read_pose_file(blind)
    empty = write_pose(tmp_path / "empty.pose", np.zeros((0, 1, 543, 3)), components=HOLISTIC)
    with pytest.raises(IngestError, match="no frames"):
        read_pose_file(empty)


def _labelled_files(tmp_path, n=6):
    rng = np.random.default_rng(3)
    (tmp_path / "clips").mkdir()
    rows = ["file,sign,signer"]
    for i in range(n):
        write_pose(tmp_path / "clips" / f"c{i}.pose", holistic_data(rng, t=3 + i), components=HOLISTIC)
        rows.append(f"clips/c{i}.pose,{['hello', 'thanks'][i % 2]},{['ana', 'bo', 'cy'][i % 3]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def test_ingest_pose_store_contents(tmp_path):
    labels = _labelled_files(tmp_path)
    report = ingest_pose(None, labels, tmp_path / "s.zarr", split_by_signer=0, workers=2, progress=False)
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert report.written == len(store) == 6 and store.classes == ["hello", "thanks"]
    np.testing.assert_array_equal(store.labels, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(store.signers, [0, 1, 2, 0, 1, 2])  # names numbered in sorted order
    assert store.provenance["signer_names"] == ["ana", "bo", "cy"]
    assert store.seq_ids.tolist() == [f"clips/c{i}.pose" for i in range(6)]
    assert all(len(set(store.splits[store.signers == s].tolist())) == 1 for s in range(3))
    for i in range(6):
        np.testing.assert_array_equal(store[i][0], read_pose_file(tmp_path / "clips" / f"c{i}.pose"))


def test_ingest_pose_given_files_and_folders(tmp_path):
    labels = _labelled_files(tmp_path)
    stray = write_pose(tmp_path / "clips" / "stray.pose", holistic_data(np.random.default_rng(4)), components=HOLISTIC)
    files = [tmp_path / "clips" / "c4.pose", tmp_path / "clips"]
    with pytest.raises(IngestError, match="no label") as info:
        ingest_pose(files, labels, tmp_path / "s.zarr", progress=False)
    assert info.value.path == str(stray)
    report = ingest_pose(files, labels, tmp_path / "s.zarr", skip_bad=True, progress=False)
    assert [f for f, _ in report.skipped] == [str(stray)]
    store = KeypointStore.open(tmp_path / "s.zarr")
    # c4 first (as given), then the folder's files sorted, c4 not a second time.
    assert store.seq_ids.tolist() == [f"clips/c{i}.pose" for i in (4, 0, 1, 2, 3, 5)]
    assert report.written == len(store) == 6


def test_bad_labels_csv(tmp_path):
    (tmp_path / "labels.csv").write_text("path,sign\na.pose,hello\n")
    with pytest.raises(IngestError, match=r"missing column\(s\) \['file'\]"):
        ingest_pose(None, tmp_path / "labels.csv", tmp_path / "s.zarr", progress=False)
    (tmp_path / "labels.csv").write_text("file,sign,split\na.pose,hello,dev\n")
    with pytest.raises(IngestError, match=r"unknown split 'dev'.*\(line 2 of labels.csv\)") as info:
        ingest_pose(None, tmp_path / "labels.csv", tmp_path / "s.zarr", progress=False)
    assert info.value.path == str(tmp_path / "a.pose")  # the row's file is the bad file
    (tmp_path / "labels.csv").write_text("file,sign\na.pose,hello\nb.pose,hi\na.pose,bye\n")
    with pytest.raises(IngestError, match="line 4: seq_id .* 'a.pose' repeats line 2"):
        ingest_pose(None, tmp_path / "labels.csv", tmp_path / "s.zarr", progress=False)
