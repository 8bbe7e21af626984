"""Messages a new user meets first: each names the problem once, in the command line's words, on one line."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import pytest
import torch
from cli_testing import REPO, assert_one_line_error, call_cli

from slr_fast.synth import SynthConfig, synth_store


def test_a_layout_mismatch_describes_both_layouts(tiny_run, tmp_path, capsys):
    arm = tmp_path / "arm.zarr"
    synth_store(arm, SynthConfig(classes=4, per_class=2, signers=2, seed=1, max_length=20, layout="arm"),
                progress=False)
    rc, _, err = call_cli(["eval", "--checkpoint", tiny_run, "--store", arm, "--split", ""], capsys)
    line = assert_one_line_error(rc, err, str(arm), "layout")
    # Both layouts hold 87 points in parts of the same sizes: the message says where they differ.
    assert "arm: lips 40, left_hand 21, right_hand 21, pose 5 × (x, y) vs default: lips 40," in line
    store_pose, ckpt_pose = (part.split("]")[0] for part in line.split("(pose takes pose points ")[1].split(" vs "))
    assert store_pose != ckpt_pose


def test_files_that_are_not_checkpoints_get_no_advice_to_unpickle_them(tiny_run, small_store, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    pickled = tmp_path / "pickled.pt"
    st = torch.load(tiny_run / "best.pt", weights_only=True)
    torch.save({**st, "when": datetime.date(2024, 1, 1)}, pickled)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tiny_run / "best.pt").read_bytes()[:4000])
    for path, names in ((text, ["not a file torch.save wrote"]), (pickled, ["datetime.date", "never unpickles"]),
                        (truncated, ["truncated or damaged"])):
        rc, _, err = call_cli(["eval", "--checkpoint", path, "--store", small_store], capsys)
        line = assert_one_line_error(rc, err, str(path), *names)
        assert "weights_only" not in line and "trust" not in line and "add_safe_globals" not in line


def test_an_existing_store_names_the_overwrite_option(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    argv = ["synth", out, "--classes", "2", "--per-class", "2", "--signers", "2", "--no-progress"]
    assert call_cli(argv, capsys)[0] == 0
    rc, _, err = call_cli(argv, capsys)
    assert_one_line_error(rc, err, str(out), "--overwrite")


def test_triton_on_a_cpu_is_one_line_before_the_run_folder(small_store, small_args, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    run = tmp_path / "run"
    rc, _, err = call_cli(small_args(small_store, run, "--kernels", "attention=triton"), capsys)
    assert_one_line_error(rc, err, "attention", "triton", "cpu")
    rc, _, err = call_cli(small_args(small_store, run, "--kernels", "attention=bogus"), capsys)
    assert_one_line_error(rc, err, "--kernels attention=bogus", "'bogus'")
    assert not run.exists()


@pytest.mark.timeout(120)
def test_a_reader_that_goes_away_ends_the_command_quietly(small_store):
    """`slr-fast info --json | head -1`: the pipe closes before the output is written — no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "slr_fast", "info", small_store, "--json"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # nobody reads: the command's first write fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=100) == 141, err  # 128 + SIGPIPE, as a shell reports `yes | head`
    assert err == ""
