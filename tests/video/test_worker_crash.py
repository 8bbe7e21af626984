"""A worker process that dies (as on a file that crashes a decoder or MediaPipe) costs its own video only: the
videos in flight with it are run again alone, the culprit is named, every other video is extracted."""

from __future__ import annotations

import os

from video_testing import cut, need_video

from slr_fast.layout import DEFAULT_LAYOUT


def crash_on_named_video(job):
    """Runs in a worker: dies without a word on a video named crash*, extracts any other."""
    from slr_fast.video.extract import _extract_job

    if os.path.basename(job.video).startswith("crash"):
        os._exit(3)
    return _extract_job(job)


def test_a_worker_that_dies_fails_only_its_own_video(tmp_path):
    need_video()
    from slr_fast.video.cache import cache_key, load_result
    from slr_fast.video.extract import _Job, run_jobs

    cache = tmp_path / "cache"
    cache.mkdir()
    clips = [cut(tmp_path / "crash.mp4", 0, 3), cut(tmp_path / "good.mp4", 17, 20)]
    jobs = [_Job(str(c), cache_key(c, DEFAULT_LAYOUT), str(cache), DEFAULT_LAYOUT.to_dict()) for c in clips]
    outcomes = run_jobs(jobs, 2, progress=False, fail_fast=False, task=crash_on_named_video)
    frames, problem = outcomes[str(clips[0])]
    assert frames == 0 and problem.startswith("the extraction process died while reading this video")
    assert outcomes[str(clips[1])] == (3, None)
    assert load_result(cache, jobs[0].key) is None  # a crash is not cached: the next run tries the video again
    keypoints, info, error = load_result(cache, jobs[1].key)
    assert error is None and keypoints.shape == (3, 87, 2) and info["frames"] == 3


def test_workers_missing_a_module_of_the_extra_say_what_to_install(tmp_path, monkeypatch, capsys):
    """MediaPipe present but a module it imports broken (a half-installed extra): one line naming the extra, from
    the workers' own import, not a crash blamed on a video."""
    need_video()
    from cli_testing import assert_one_line_error, call_cli
    from video_testing import write_labels

    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "cv2.py").write_text("raise ImportError('cv2 is broken here')\n")
    monkeypatch.syspath_prepend(str(stub))  # spawned workers start with this process's sys.path
    clip = cut(tmp_path / "clip.mp4", 0, 2)
    labels = write_labels(tmp_path / "labels.csv", [(str(clip), "a")])
    rc, _, err = call_cli(["extract", "--labels", labels, "--out", tmp_path / "s.zarr", "--workers", "1",
                           "--no-progress"], capsys)
    line = assert_one_line_error(rc, err, "pip install -e '.[video]'", "cv2 is broken here")
    assert "clip.mp4" not in line
