"""A killed extraction (kill -9 of the command and its workers) continues where it stopped: the re-run extracts
only what the cache lacks, no video twice, and writes the same store as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from cli_testing import REPO, call_cli
from video_testing import cut, need_video, write_labels

from slr_fast.store import KeypointStore

N_CLIPS = 3


def _same_store(a: KeypointStore, b: KeypointStore) -> None:
    assert a.layout == b.layout and a.classes == b.classes
    for name in ("offsets", "labels", "signers", "splits"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert list(a.seq_ids) == list(b.seq_ids)
    np.testing.assert_array_equal(a.frames_array(), b.frames_array())
    assert a.provenance["videos"] == b.provenance["videos"]


def test_kill_9_mid_extraction_then_rerun_gives_the_same_store_and_extracts_no_video_twice(tmp_path, capsys):
    need_video()
    from slr_fast.video import count_extractions, extract_videos

    clips = [cut(tmp_path / "clips" / f"c{i}.mp4", 10 * i, 10 * i + 4) for i in range(N_CLIPS)]
    labels = write_labels(tmp_path / "clips" / "labels.csv", [(c.name, f"s{i % 2}") for i, c in enumerate(clips)])
    cache = tmp_path / "cache"
    args = ["extract", "--labels", labels, "--out", tmp_path / "a.zarr", "--workers", "1", "--cache-dir", cache,
            "--keep-cache", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "slr_fast", *map(str, args)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not count_extractions(cache):  # the first video is cached: kill while the next one is in flight
            assert child.poll() is None, f"the extraction ended before it was killed: {child.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no video was extracted in 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the command and its worker processes (its own session)
        child.wait()
        child.stderr.close()
    first = count_extractions(cache)
    assert 1 <= len(first) < N_CLIPS and not (tmp_path / "a.zarr").exists()

    rc, out, err = call_cli(args, capsys)
    assert rc == 0, err
    counts = count_extractions(cache)
    assert counts == {str(c): 1 for c in clips}  # every video extracted exactly once over both runs
    assert f"extracted {N_CLIPS - len(first)} video(s)" in out and f"{len(first)} read from the cache" in out

    extract_videos(None, labels, tmp_path / "b.zarr", workers=2, progress=False, cache_dir=tmp_path / "cache_b")
    assert not (tmp_path / "cache_b").exists()  # removed once the store is written
    _same_store(KeypointStore.open(tmp_path / "a.zarr"), KeypointStore.open(tmp_path / "b.zarr"))
