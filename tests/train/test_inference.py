"""eval and predict from a run: which checkpoint a run folder means, predict on folders and real .pose files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_testing import assert_one_line_error, call_cli

import slr_fast.train.inference as inference

POSE_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "pose-samples"


def test_a_run_folder_means_its_best_checkpoint_and_the_file_used_is_printed(tiny_run, small_store, tmp_path,
                                                                              capsys):
    rc, out, _ = call_cli(["eval", "--checkpoint", tiny_run, "--store", small_store], capsys)
    assert rc == 0 and out.splitlines()[0].startswith(f"checkpoint {tiny_run / 'best.pt'} on {small_store} split ")
    rc, out, _ = call_cli(["eval", "--checkpoint", tiny_run, "--store", small_store, "--json"], capsys)
    assert json.loads(out)["checkpoint"] == str(tiny_run / "best.pt")
    # A run without a validation split has no best.pt: its last.pt, named as such.
    only_last = tmp_path / "run"
    only_last.mkdir()
    shutil.copy(tiny_run / "last.pt", only_last / "last.pt")
    rc, out, _ = call_cli(["eval", "--checkpoint", only_last, "--store", small_store, "--json"], capsys)
    assert rc == 0 and json.loads(out)["checkpoint"] == str(only_last / "last.pt")


def _pose_samples(tmp_path) -> Path:
    if not (POSE_SAMPLES / "mediapipe.pose").is_file():
        pytest.skip(f"pose samples not available at {POSE_SAMPLES}")
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("mediapipe.pose", "example.pose"):  # example.pose: pixel coordinates, a full pose component
        shutil.copy(POSE_SAMPLES / name, folder / name)
    (folder / "notes.txt").write_text("not a keypoint file")  # a folder stands for its .parquet/.pose files only
    return folder


def test_predict_reads_a_folder_of_real_pose_files(tiny_run, tmp_path, monkeypatch, capsys):
    folder = _pose_samples(tmp_path)
    # mediapipe.pose lacks the pose nose of the default layout: the error names the option that reads it.
    rc, _, err = call_cli(["predict", "--checkpoint", tiny_run, folder], capsys)
    assert_one_line_error(rc, err, "mediapipe.pose", "--missing-points nan")
    args = ["predict", "--checkpoint", tiny_run, "--missing-points", "nan", "--top-k", "3", "--json"]
    rc, out, _ = call_cli([*args, folder], capsys)
    assert rc == 0
    results = json.loads(out)
    assert [Path(r["file"]).name for r in results] == ["example.pose", "mediapipe.pose"]  # sorted, .txt left out
    assert all(r["checkpoint"] == str(tiny_run / "best.pt") and len(r["top"]) == 3 for r in results)
    assert all(r["top"][0]["prob"] >= r["top"][1]["prob"] >= r["top"][2]["prob"] > 0 for r in results)
    # The folder is its files named one by one, and one file per forward pass gives the same probabilities.
    monkeypatch.setattr(inference, "PREDICT_BATCH", 1)
    rc, out, _ = call_cli([*args, folder / "mediapipe.pose", folder / "example.pose"], capsys)
    one_by_one = {r["file"]: r["top"] for r in json.loads(out)}
    for r in results:
        assert [t["sign"] for t in one_by_one[r["file"]]] == [t["sign"] for t in r["top"]]
        assert one_by_one[r["file"]][0]["prob"] == pytest.approx(r["top"][0]["prob"], abs=1e-5)
    # --coords reaches the reader: example.pose is in pixels; read as normalized, its points are off the frame.
    rc, out, _ = call_cli([*args, "--coords", "normalized", folder / "example.pose"], capsys)
    as_normalized = json.loads(out)[0]["top"]
    assert [t["prob"] for t in as_normalized] != pytest.approx([t["prob"] for t in results[0]["top"]], abs=1e-4)


def test_predict_refuses_a_folder_without_keypoint_files(tiny_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.csv").write_text("x")
    rc, _, err = call_cli(["predict", "--checkpoint", tiny_run, empty], capsys)
    assert_one_line_error(rc, err, str(empty), ".parquet or .pose")


def test_predict_offers_the_pose_readers_choices():
    from slr_fast.cli.main import build_parser
    from slr_fast.ingest.pose import COORD_MODES, MISSING_MODES

    predict = build_parser("predict")._subparsers._group_actions[0].choices["predict"]
    choices = {a.dest: tuple(a.choices) for a in predict._actions if a.choices}
    assert choices["coords"] == COORD_MODES and choices["missing_points"] == MISSING_MODES
