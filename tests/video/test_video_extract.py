"""Video -> keypoints: the real clip through `extract`, agreement with pose-format's video_to_pose, and every kind
of bad video named (or listed under --skip-bad). Holistic runs on the 58-frame clip once per session."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from cli_testing import assert_one_line_error, call_cli
from video_testing import REAL_CLIP, bad_files, cut, need_video, write_labels

from slr_fast.layout import get_layout
from slr_fast.store import KeypointStore

# What each bad file is reported as (a fragment of its reason).
REASONS = {
    "zero_bytes": "empty file (0 bytes)",
    "text": "not a readable video",
    "truncated": "not a readable video, or a damaged or truncated one",
    "truncated_indexed": "truncated",
    "no_person": "no person detected in any of its 4 frames",
    "missing": "file not found",
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The real clip and one bad file of each kind extracted once with --skip-bad (cache kept)."""
    need_video()
    from slr_fast.video import extract_videos

    root = tmp_path_factory.mktemp("video")
    bad = bad_files(root / "bad")
    labels = write_labels(root / "labels.csv", [(str(REAL_CLIP), "hello")] + [(str(p), "bye") for p in bad.values()])
    report = extract_videos(None, labels, root / "clip.zarr", workers=2, skip_bad=True, progress=False,
                            cache_dir=root / "cache", keep_cache=True)
    return root, bad, report, KeypointStore.open(root / "clip.zarr")


def test_the_real_clip_gives_face_and_body_in_every_frame_and_the_right_hand(real_run):
    _, _, report, store = real_run
    assert report.written == 1 and len(store) == 1 and store.layout == get_layout("default")
    frames, label = store[0]
    assert frames.shape == (58, 87, 2) and store.classes[label] == "hello"
    parts = store.layout.part_slices()
    seen = {name: (~np.isnan(frames[:, s]).any(-1)).all(-1) for name, s in parts.items()}  # (T,): every point
    assert seen["lips"].all() and seen["pose"].all()
    assert seen["right_hand"].sum() >= 15
    # A part is found whole or not at all: Holistic gives every point of a component it detects.
    assert all(((~np.isnan(frames[:, s, 0])).sum(1) % (s.stop - s.start) == 0).all() for s in parts.values())
    # Normalized by the frame: the signer's face sits inside the picture.
    lips = frames[:, parts["lips"]]
    assert 0.2 < np.nanmin(lips) and np.nanmax(lips) < 0.8
    videos = store.provenance["videos"]
    assert videos["seq_id"] == [str(REAL_CLIP)] and videos["width"] == [540] and videos["height"] == [720]
    assert videos["fps"][0] == pytest.approx(29.92, abs=0.01)


def test_every_bad_video_is_listed_with_its_reason_under_skip_bad(real_run):
    _, bad, report, store = real_run
    skipped = dict(report.skipped)
    assert set(skipped) == {str(p) for p in bad.values()}
    for kind, path in bad.items():
        assert REASONS[kind] in skipped[str(path)], kind
        assert "\n" not in skipped[str(path)]
    assert store.provenance["skipped"] == len(bad)


def test_a_re_run_reads_every_video_from_the_kept_cache(real_run, tmp_path):
    from slr_fast.video import count_extractions, extract_videos

    root, bad, _, store = real_run
    report = extract_videos(None, root / "labels.csv", tmp_path / "again.zarr", workers=2, skip_bad=True,
                            progress=False, cache_dir=root / "cache", keep_cache=True)
    counts = count_extractions(root / "cache")
    assert any("extracted 0 video(s)" in n for n in report.notes)
    # Missing and empty files are refused before extraction; the rest was extracted once, bad ones included.
    assert counts == {str(p): 1 for k, p in bad.items() if k not in ("missing", "zero_bytes")} | {str(REAL_CLIP): 1}
    np.testing.assert_array_equal(KeypointStore.open(tmp_path / "again.zarr")[0][0], store[0][0])


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_each_bad_video_is_one_error_naming_the_file(real_run, kind):
    from slr_fast.video import VideoError, read_video_keypoints

    _, bad, _, _ = real_run
    with pytest.raises(VideoError) as e:
        read_video_keypoints(bad[kind])
    assert str(e.value).startswith(f"{bad[kind]}: ") and REASONS[kind] in str(e.value) and "\n" not in str(e.value)


def test_extract_stops_at_a_bad_video_with_one_line_and_writes_no_store(real_run, tmp_path, capsys):
    root, bad, _, _ = real_run
    labels = write_labels(tmp_path / "labels.csv", [(str(bad["text"]), "a"), (str(bad["zero_bytes"]), "b")])
    rc, _, err = call_cli(["extract", "--labels", labels, "--out", tmp_path / "s.zarr", "--no-progress"], capsys)
    assert_one_line_error(rc, err, str(bad["zero_bytes"]), "empty file")  # refused before any worker started
    assert not (tmp_path / "s.zarr").exists()
    labels = write_labels(tmp_path / "labels.csv", [(str(bad["text"]), "a")])
    rc, _, err = call_cli(["extract", "--labels", labels, "--out", tmp_path / "s.zarr", "--workers", "1",
                           "--no-progress", "--cache-dir", tmp_path / "cache"], capsys)
    assert_one_line_error(rc, err, str(bad["text"]), "not a readable video")
    assert not (tmp_path / "s.zarr").exists() and (tmp_path / "cache").is_dir()  # kept for the next run


def test_landmarks_match_pose_formats_video_to_pose_after_another_video(real_run, tmp_path):
    """Same frames, same landmarks (<= 1e-6) as pose-format's video_to_pose, which starts from a new Holistic
    graph, while ours has just tracked another video: the reset between videos leaves nothing behind."""
    need_video()
    from pose_format.bin.pose_estimation import pose_video

    from slr_fast.ingest import read_pose_file
    from slr_fast.video import read_video_keypoints

    layout = get_layout("default_z")
    clip = cut(tmp_path / "clip.mp4", 14, 22)  # right hand in most frames
    read_video_keypoints(cut(tmp_path / "before.mp4", 40, 46), layout)
    ours, info = read_video_keypoints(clip, layout)
    pose_video(str(clip), str(tmp_path / "clip.pose"), "mediapipe", progress=False)
    theirs = read_pose_file(tmp_path / "clip.pose", layout)
    assert ours.shape == theirs.shape == (8, 87, 3) and info["found"]["right_hand"] >= 4
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.nanmax(np.abs(ours - theirs)) <= 1e-6


@pytest.mark.parametrize("complexity", [0, 2])
def test_model_complexities_that_would_download_a_model_are_refused(complexity):
    from slr_fast.errors import UserInputError
    from slr_fast.video import check_model_complexity

    with pytest.raises(UserInputError, match=f"model_complexity={complexity}: only 1 is supported"):
        check_model_complexity(complexity)


def test_without_the_extra_extract_says_what_to_install(monkeypatch, tmp_path, capsys):
    for name in ["mediapipe", *(m for m in sys.modules if m.startswith("mediapipe."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: finding or importing it fails
    labels = write_labels(tmp_path / "labels.csv", [("clip.mp4", "a")])
    rc, _, err = call_cli(["extract", "--labels", labels, "--out", tmp_path / "s.zarr"], capsys)
    assert_one_line_error(rc, err, "pip install -e '.[video]'")
    from slr_fast.video.reader import VideoExtraMissing, import_holistic

    with pytest.raises(ImportError, match=r"pip install -e '\.\[video\]'") as e:
        import_holistic()
    assert isinstance(e.value, VideoExtraMissing)
