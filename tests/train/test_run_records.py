"""What a run folder records: the rate of every step, no progress bars in logs, a store path that survives a move."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from cli_testing import assert_one_line_error, call_cli

from slr_fast.train import records
from slr_fast.train.config import ScheduleConfig
from slr_fast.train.schedule import LRSchedule


def test_the_rate_of_every_step_is_recorded_and_logs_get_no_progress_bars(small_store, small_args, tmp_path,
                                                                          capsys):
    run = tmp_path / "run"
    # 4 steps per epoch, cycles of 6 steps: one sample per epoch would never show the peaks.
    argv = [a for a in small_args(small_store, run, "--epochs", "3", "--set", "schedule.cycle_steps=6",
                                  "--set", "train_eval_samples=0") if a != "--no-progress"]
    rc, out, err = call_cli(argv, capsys)  # stdout and stderr are not terminals here, like a log file
    assert rc == 0, err
    assert "epoch 0:" in out and "\r" not in err + out and "it/s" not in err  # no tqdm bar, only the epoch lines
    steps, lrs = records.read_lr(run)
    cfg = json.loads((run / "config.json").read_text())
    total = len(steps)
    assert steps == list(range(total)) and total == 3 * (total // 3) >= 9  # every step of the 3 epochs
    sched = LRSchedule(torch.optim.SGD([torch.zeros(1)], lr=cfg["optim"]["lr"]),
                       ScheduleConfig(**cfg["schedule"]), total)
    assert lrs == pytest.approx([sched.lr_at(s) for s in steps], rel=1e-12)
    assert max(lrs) == pytest.approx(cfg["optim"]["lr"]) and lrs.count(max(lrs)) >= 2  # warm-up end, next peak
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    per_epoch = total // 3
    assert [e["lr"] for e in epochs] == [lrs[e["epoch"] * per_epoch] for e in epochs]  # each epoch's first step
    assert (run / "lr.png").stat().st_size > 0


def test_lr_records_are_thinned_evenly_and_a_resume_drops_the_epochs_it_repeats(tmp_path):
    assert records.lr_stride(records.MAX_LR_POINTS) == 1
    assert records.lr_stride(records.MAX_LR_POINTS + 1) == 2
    assert records.lr_stride(10 * records.MAX_LR_POINTS) == 10
    records.start(tmp_path)
    for epoch in range(3):
        records.append_epoch(tmp_path, {"kind": "epoch", "epoch": epoch}, [(2 * epoch, epoch, 0.1),
                                                                           (2 * epoch + 1, epoch, 0.2)])
    with open(tmp_path / records.METRICS, "a") as f:
        f.write('{"kind": "epo')  # a line torn by a kill
    records.keep_epochs(tmp_path, 2)
    assert [json.loads(x)["epoch"] for x in (tmp_path / records.METRICS).read_text().splitlines()] == [0, 1]
    assert records.read_lr(tmp_path) == ([0, 1, 2, 3], [0.1, 0.2, 0.1, 0.2])


def test_a_relative_store_is_recorded_absolute_and_a_moved_store_resumes(small_store, small_args, tmp_path,
                                                                        monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(small_store, data / "s.zarr")
    monkeypatch.chdir(data)
    run = tmp_path / "run"
    rc, _, err = call_cli(small_args("s.zarr", run, "--epochs", "1"), capsys)
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["store"] == str(data / "s.zarr")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = tmp_path / "moved.zarr"
    (data / "s.zarr").rename(moved)
    rc, _, err = call_cli(["train", "--resume", run, "--no-progress"], capsys)
    assert_one_line_error(rc, err, str(data / "s.zarr"), "--store")
    # A store of other data under the run's old name: refused, whatever its path.
    shutil.copytree(moved, tmp_path / "other.zarr")
    assert call_cli(["split", tmp_path / "other.zarr", "--seed", "7"], capsys)[0] == 0  # other splits, same frames
    rc, _, err = call_cli(["train", "--resume", run, "--store", tmp_path / "other.zarr", "--no-progress"], capsys)
    assert_one_line_error(rc, err, str(tmp_path / "other.zarr"), "checksums", "not the store")
    rc, _, err = call_cli(["train", "--resume", run, "--store", "../moved.zarr", "--no-progress"], capsys)
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["store"] == str(moved)
    rc, _, err = call_cli(["train", "--resume", run, "--store", moved, "--epochs", "3", "--no-progress"], capsys)
    assert_one_line_error(rc, err, "--epochs", "saved config")  # only the store may be given again
