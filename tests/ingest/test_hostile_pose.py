"""Hostile and broken .pose input and labels: never a signal, a hang or a runaway allocation; values finite or
NaN; every refusal one line naming the file; --skip-bad skips and lists every bad file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_testing import REPO, assert_one_line_error, run_cli
from ingest_testing import HOLISTIC, POSE_SAMPLES, holistic_data, write_pose

from slr_fast.ingest import IngestError, ingest_pose, load_classes, read_pose_file
from slr_fast.store import KeypointStore

pytest.importorskip("pose_format")
HERE = Path(__file__).parent


@pytest.mark.timeout(180)
def test_seeded_corruptions_fail_cleanly_or_read_valid_frames(tmp_path):
    """~200 truncations and byte/bit flips (half in the header) of a normalized and a pixel file, in a child
    process whose address space is capped."""
    done = subprocess.run([sys.executable, str(HERE / "hostile_run.py"), "pose", str(tmp_path), "1", "80"],
                          capture_output=True, text=True, timeout=170, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"child died (signal {-done.returncode})\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    records = [json.loads(line) for line in done.stdout.splitlines()]
    summary, cases = records[-1], records[:-1]
    assert len(cases) > 150 and any(c["ok"] for c in cases) and any(not c["ok"] for c in cases)
    for c in cases:
        if c["ok"]:
            assert c["finite_or_nan"] and c["dtype"] == "float32" and c["shape"][1:] == [87, 2], c
        else:
            assert c["message"].startswith(c["path"] + ": ") and "\n" not in c["message"], c
    assert summary["maxrss_kb"] < 600_000, summary


def test_real_sample_with_a_damaged_header(tmp_path):
    sample = POSE_SAMPLES / "example.pose"
    if not sample.is_file():
        pytest.skip(f"pose sample {sample} not available")
    data = bytearray(sample.read_bytes())
    for k, pos in enumerate((9, 40, 200, 2_000, 9_000)):
        data[pos] ^= 0x5A
        path = tmp_path / f"damaged{k}.pose"
        path.write_bytes(bytes(data))
        try:
            frames = read_pose_file(path, missing_points="nan")
        except IngestError as e:
            assert e.path == str(path) and "\n" not in str(e)
        else:
            assert frames.dtype == np.float32 and (np.isfinite(frames) | np.isnan(frames)).all()


def _labelled(tmp_path: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(9)
    rows = ["file,sign,signer"]
    for i in range(n):
        write_pose(tmp_path / f"c{i}.pose", holistic_data(rng, t=3 + i), components=HOLISTIC)
        rows.append(f"c{i}.pose,{'ab'[i % 2]},{i}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "labels.csv"


def test_inf_values_and_bad_signers_are_skipped_by_file(tmp_path):
    labels = _labelled(tmp_path, 5)
    data = holistic_data(np.random.default_rng(1), 4)
    data[2, 0, 501 + 3, 1] = np.inf  # left hand point 3, y
    write_pose(tmp_path / "c1.pose", data, components=HOLISTIC)
    text = labels.read_text().replace("c3.pose,b,3", "c3.pose,b,-4").replace("c4.pose,a,4", "c4.pose,a,99999999999")
    labels.write_text(text)
    with pytest.raises(IngestError, match="signer on line 5 of labels.csv is -4") as info:
        ingest_pose(None, labels, tmp_path / "s.zarr", progress=False)  # found before any file is read
    assert info.value.path == str(tmp_path / "c3.pose")
    report = ingest_pose(None, labels, tmp_path / "s.zarr", skip_bad=True, progress=False)
    skipped = dict(report.skipped)
    assert set(skipped) == {str(tmp_path / f"c{i}.pose") for i in (1, 3, 4)}
    assert "infinite coordinate (inf) at frame 2, point 43 (left_hand 3" in skipped[str(tmp_path / "c1.pose")]
    assert "is 99999999999, outside -1 (unknown)" in skipped[str(tmp_path / "c4.pose")]
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert store.seq_ids.tolist() == ["c0.pose", "c2.pose"] and store.signers.tolist() == [0, 2]


def test_nan_confidence_means_not_detected(tmp_path):
    conf = np.ones((4, 1, 543))
    conf[1, 0, 501:522] = np.nan  # the left hand of frame 1
    path = write_pose(tmp_path / "c.pose", holistic_data(np.random.default_rng(2), 4), components=HOLISTIC,
                      confidence=conf)
    frames = read_pose_file(path)
    assert np.isnan(frames[1, 40:61]).all() and not np.isnan(frames[0]).any()


@pytest.mark.timeout(30)
def test_fifo_labels_files_and_class_maps_are_refused(tmp_path):
    labels = _labelled(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(IngestError, match="is a FIFO"):
        ingest_pose(None, fifo, tmp_path / "s.zarr", progress=False)
    with pytest.raises(IngestError, match="class map: is a FIFO"):
        load_classes(fifo)
    with pytest.raises(IngestError, match="is a FIFO") as info:
        read_pose_file(fifo)
    assert info.value.path == str(fifo)
    (tmp_path / "c2.pose").unlink()
    os.mkfifo(tmp_path / "c2.pose")
    report = ingest_pose(None, labels, tmp_path / "s.zarr", skip_bad=True, progress=False)
    assert dict(report.skipped) == {str(tmp_path / "c2.pose"): "is a FIFO (named pipe), not a regular file"}


@pytest.mark.timeout(120)
def test_cli_fifo_labels_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "labels.csv")
    done = run_cli("ingest", "pose", "--labels", tmp_path / "labels.csv", "--out", tmp_path / "s.zarr", timeout=100)
    assert_one_line_error(done.returncode, done.stderr, str(tmp_path / "labels.csv"), "FIFO")
