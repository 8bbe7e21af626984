"""Bad values on the `slr-fast` command line: each ends with one line naming the value (or file) and exit code 2.

Every case here is refused before a store is opened or a model is built (config validation, argparse types, file
checks), so the whole file runs in-process in a few seconds. Cases that need a store or a checkpoint live in
tests/train/test_hostile_*.py.
"""

from __future__ import annotations

import json
import os

import pytest
from cli_testing import assert_one_line_error, call_cli, run_cli

from slr_fast.cli.main import user_error_line
from slr_fast.errors import TrainingDiverged, UserInputError

NO_STORE = "/nonexistent/store.zarr"  # validation must fire before the store is even opened


def _train(*extra):
    return ["train", "--store", NO_STORE, "--run-dir", "/nonexistent/run", "--no-progress", *extra]


# (extra train arguments, what the error line must name)
TRAIN_VALUES = [
    (["--threads", "-1"], ["--threads -1", "config.threads"]),
    (["--threads", "100000"], ["--threads 100000"]),
    (["--device", "tpu"], ["--device tpu", "cuda:N"]),
    (["--device", "cuda:x"], ["--device cuda:x"]),
    (["--device", ""], ["--device", "config.device"]),
    (["--lr", "inf"], ["--lr inf", "finite positive"]),
    (["--lr", "nan"], ["--lr nan"]),
    (["--lr", "0"], ["--lr 0.0"]),
    (["--lr=-1e-3"], ["--lr -0.001"]),
    (["--lr", "fast"], ["--lr", "'fast'"]),
    (["--frames", "100000"], ["--frames 100000", "4096"]),
    (["--frames", "0"], ["--frames 0"]),
    (["--mixup", "5"], ["--mixup 5.0", "[0, 1]"]),
    (["--mixup", "-0.1"], ["--mixup -0.1"]),
    (["--ema", "-0.5"], ["--ema -0.5", "[0, 1)"]),
    (["--ema", "1"], ["--ema 1.0"]),
    (["--early-stop", "-1"], ["--early-stop -1"]),
    (["--save-every-steps", "-1"], ["--save-every-steps -1"]),
    (["--epochs", "0"], ["--epochs 0"]),
    (["--epochs", "x"], ["--epochs", "'x'"]),
    (["--batch-size", "0"], ["--batch-size 0"]),
    (["--seed", "-1"], ["--seed -1"]),
    (["--schedule", "linear"], ["--schedule", "'linear'"]),
    (["--precision", "fp8"], ["--precision", "'fp8'"]),
    (["--set", "train_eval_samples=-1"], ["config.train_eval_samples", "-1"]),
    (["--set", "schedule.warmup_frac=5"], ["config.schedule.warmup_frac", "5"]),
    (["--set", "schedule.restart_mult=0.5"], ["config.schedule.restart_mult", "0.5"]),
    (["--set", "schedule.final_div=0"], ["config.schedule.final_div"]),
    (["--set", "optim.clip_grad=-1"], ["config.optim.clip_grad", "-1"]),
    (["--set", 'optim.group_lrs={"(": 2}'], ["config.optim.group_lrs", "'('", "regular expression"]),
    (["--set", 'optim.group_lrs={"^embed": -1}'], ["group_lrs['^embed']", "-1"]),
    (["--set", "optim.betas=[0.9]"], ["config.optim.betas", "[0.9]"]),
    (["--set", "optim.weight_decay=NaN"], ["config.optim.weight_decay", "nan"]),
    (["--set", "loss.aux_weight=[-1]"], ["config.loss.aux_weight", "[-1]"]),
    (["--set", "loss.mixup_alpha=0"], ["config.loss.mixup_alpha", "0"]),
    (["--set", "loss.label_smoothing=\"x\""], ["config.loss.label_smoothing", "'x'"]),
    (["--set", "model.dim=100000"], ["config.model", "dim", "100000"]),
    (["--set", "model.dim=\"wide\""], ["config.model", "dim", "'wide'"]),
    (["--set", "model.colour=1"], ["config.model", "colour"]),
    (["--set", "model.preset=huge"], ["config.model", "huge"]),
    (["--set", "model.num_classes=7"], ["config.model.num_classes", "from the store"]),
    (["--set", "epochz=3"], ["epochz"]),
    (["--set", "epochs"], ["--set 'epochs'"]),
    (["--set", "data.classes=[]"], ["config.data.classes"]),
    (["--set", 'data.classes=["a", "a"]'], ["config.data.classes", "'a'"]),
    (["--set", "data.preprocess.T=100000"], ["config.data.preprocess.T", "100000"]),
    (["--set", "data.preprocess.normalize=bogus"], ["config.data.preprocess", "bogus"]),
    (["--set", "new_head=1"], ["config.new_head", "1"]),
    (["--set", "data.in_memory=maybe"], ["config.data.in_memory", "maybe"]),
    (["--set", "eval_batch_size=0"], ["config.eval_batch_size", "0"]),
    (["--classes", "a,b,a"], ["--classes a,b,a", "'a'"]),
    (["--classes", "missing_classes.txt"], ["missing_classes.txt", "file not found"]),
]


@pytest.mark.parametrize("extra, names", TRAIN_VALUES, ids=[" ".join(e) for e, _ in TRAIN_VALUES])
def test_bad_train_values_are_one_line(extra, names, capsys):
    rc, out, err = call_cli(_train(*extra), capsys)
    assert_one_line_error(rc, err, *names)
    assert "Traceback" not in out


OTHER_VALUES = [
    (["predict", "--checkpoint", "x.pt", "--top-k", "-3", "a.parquet"], ["--top-k", "-3"]),
    (["predict", "--checkpoint", "x.pt", "--top-k", "0", "a.parquet"], ["--top-k", "0"]),
    (["predict", "--checkpoint", "x.pt", "--top-k", "three", "a.parquet"], ["--top-k", "'three'"]),
    (["eval", "--checkpoint", "x.pt", "--store", NO_STORE, "--batch-size", "0"], ["--batch-size", "0"]),
    (["eval", "--checkpoint", "x.pt", "--store", NO_STORE, "--batch-size", "-8"], ["--batch-size", "-8"]),
    (["eval", "--checkpoint", "x.pt", "--store", NO_STORE, "--device", "tpu"], ["--device 'tpu'"]),
    (["eval", "--checkpoint", "x.pt", "--store", NO_STORE, "--device", "cuda:99"], ["--device cuda:99"]),
    (["predict", "--checkpoint", "x.pt", "missing.parquet"], ["missing.parquet", "file not found"]),
    (["show", NO_STORE, "--index", "0", "--out", "x.png", "--dpi", "0"], ["--dpi", "0"]),
    (["show", NO_STORE, "--index", "0", "--out", "x.png", "--dpi", "100000"], ["--dpi", "100000"]),
    (["show", NO_STORE, "--index", "0", "--out", "x.png", "--frames", "0"], ["--frames", "0"]),
    (["show", NO_STORE, "--index", "0", "--out", "x.v2"], ["--out x.v2", "'.v2'"]),
    (["synth", "/nonexistent/s.zarr", "--jitter", "nan"], ["--jitter", "nan"]),  # ranges: SynthConfig's own
    (["synth", "/nonexistent/s.zarr", "--length-median", "inf"], ["--length-median", "inf"]),
    (["synth", "/nonexistent/s.zarr", "--workers", "0"], ["--workers", "0"]),
    (["ablate", "--store", NO_STORE, "--kernels-grid", "attention=torch", "--frames", "0"], ["--frames", "0"]),
    (["ablate", "--store", NO_STORE, "--kernels-grid", "attention=torch", "--batch-size", "-1"],
     ["--batch-size", "-1"]),
    (["ablate", "--store", NO_STORE, "--kernels-grid", "attention=torch", "--reference", "bogus"],
     ["--reference bogus", "'bogus'"]),
    (["ablate", "--store", NO_STORE, "--kernels-grid", "attention=torch", "--device", "tpu"], ["--device 'tpu'"]),
    (["demo", "--epochs", "0"], ["--epochs", "0"]),
    (["train", "--bogus"], ["--bogus"]),
    (["bogus-command"], ["bogus-command"]),
]


@pytest.mark.parametrize("argv, names", OTHER_VALUES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in OTHER_VALUES])
def test_bad_values_of_other_commands_are_one_line(argv, names, capsys):
    rc, _, err = call_cli(argv, capsys)
    assert_one_line_error(rc, err, *names)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.timeout(60)  # a reader that opened the FIFO would block forever: fail instead of hanging the suite
def test_fifos_and_folders_named_as_files_are_refused_without_blocking(fifo, tmp_path, capsys):
    empty = tmp_path / "a.parquet"
    empty.write_bytes(b"")
    for argv, name in [
        (_train("--config", fifo), "FIFO"),
        (_train("--config", tmp_path), "directory"),
        (_train("--classes", fifo), "FIFO"),
        (_train("--classes", tmp_path), "directory"),
        (["predict", "--checkpoint", "x.pt", str(fifo)], "FIFO"),
        (["predict", "--checkpoint", str(fifo), str(empty)], "FIFO"),
        (["eval", "--checkpoint", str(fifo), "--store", NO_STORE], "FIFO"),
        (["show", NO_STORE, "--index", "0", "--out", "x.png", "--augment", str(fifo)], "FIFO"),
    ]:
        rc, _, err = call_cli(argv, capsys)
        assert_one_line_error(rc, err, name, str(fifo) if name == "FIFO" else str(tmp_path))


def test_config_files_with_bad_content_name_the_file_and_field(tmp_path, capsys):
    cases = {
        "fields.json": ('{"epochs": "x"}', ["fields.json", "config.epochs", "'x'"]),
        "section.json": ('{"optim": 5}', ["section.json", "config.optim", "mapping"]),
        "nested.json": ('{"optim": {"lr": Infinity}}', ["nested.json", "config.optim.lr", "inf"]),
        "list.json": ("[1, 2]", ["list.json", "mapping"]),
        "broken.json": ('{"epochs": ', ["broken.json", "not valid JSON"]),
        "binary.json": (b"\xff\xfe\x00{", ["binary.json", "UTF-8"]),
        "unknown.json": ('{"epochz": 1}', ["unknown.json", "epochz"]),
    }
    for name, (content, names) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        rc, _, err = call_cli(_train("--config", path), capsys)
        assert_one_line_error(rc, err, *names)


def test_class_files_with_bad_content(tmp_path, capsys):
    cases = {"ints.json": "[1, 2]", "empty.txt": "\n\n", "dups.txt": "a\nb\na\n", "bad.json": "[\"a\", "}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_text(content)
        rc, _, err = call_cli(_train("--classes", path), capsys)
        assert_one_line_error(rc, err, f"--classes {path}")


def test_run_dir_and_resume_that_are_not_folders(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a run")
    rc, _, err = call_cli(["train", "--store", NO_STORE, "--run-dir", a_file, "--no-progress"], capsys)
    assert_one_line_error(rc, err, f"--run-dir {a_file}", "not a folder")
    rc, _, err = call_cli(["train", "--resume", a_file], capsys)
    assert_one_line_error(rc, err, str(a_file), "not a run folder")
    rc, _, err = call_cli(["train", "--resume", tmp_path], capsys)
    assert_one_line_error(rc, err, str(tmp_path), "no last.pt")
    rc, _, err = call_cli(["train", "--resume", tmp_path, "--epochs", "50", "--lr", "1e-3"], capsys)
    assert_one_line_error(rc, err, "--epochs", "--lr", "saved config")


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """Only the user's errors become one line: a TypeError/KeyError inside our code is re-raised as it is."""
    import slr_fast.cli.train as cli_train

    def broken(args):
        raise KeyError("internal")

    monkeypatch.setattr(cli_train, "cmd_eval", broken)
    from slr_fast.cli.main import main

    with pytest.raises(KeyError, match="internal"):
        main(["eval", "--checkpoint", "x.pt", "--store", NO_STORE])
    assert user_error_line(TypeError("bug")) is None
    assert user_error_line(ValueError("bug")) is None  # only the project's own error types are the user's
    assert user_error_line(FloatingPointError("bug")) is None
    assert user_error_line(UserInputError("bad\nvalue")) == "bad value"
    assert user_error_line(TrainingDiverged("non-finite loss")) == "non-finite loss"
    assert user_error_line(OSError(9, "Bad file descriptor")) is None  # EBADF is ours, not the user's
    assert user_error_line(PermissionError(13, "Permission denied", "/root/x")) == "/root/x: Permission denied"
    assert user_error_line(OSError(28, "No space left on device", "/x/y")).startswith("no space left on ")


def test_a_plain_value_error_inside_slr_fast_keeps_its_traceback(monkeypatch):
    """A ValueError is not the user's by its type: one raised by our own code (a bug) is re-raised as it is."""
    import slr_fast.cli.train as cli_train

    def broken(args):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(cli_train, "cmd_eval", broken)
    from slr_fast.cli.main import main

    with pytest.raises(ValueError, match="broadcast"):
        main(["eval", "--checkpoint", "x.pt", "--store", NO_STORE])


def test_the_projects_errors_share_one_base_that_is_a_value_error():
    from slr_fast.ingest.common import IngestError
    from slr_fast.model.checkpoint import CheckpointError
    from slr_fast.store.schema import StoreError
    from slr_fast.train.config import ConfigError

    for cls in (ConfigError, CheckpointError, IngestError, StoreError, TrainingDiverged):
        assert issubclass(cls, UserInputError) and issubclass(cls, ValueError), cls


def test_the_real_entry_point_prints_one_line_and_exits_2(tmp_path):
    """A child process: the exit code of `python -m slr_fast` itself and no traceback on stderr."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"optim": {"lr": -1}}))
    proc = run_cli(*_train("--config", bad), timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "bad.json", "config.optim.lr", "-1")


def test_help_describes_the_command_and_lists_every_named_pipeline(capsys):
    from slr_fast.augment.pipeline import NAMED

    rc, out, _ = call_cli(["--help"], capsys)
    assert rc == 0 and "Entry point" not in out and "keypoint store" in out and "slr-fast demo" in out
    rc, out, _ = call_cli(["train", "--help"], capsys)
    assert rc == 0 and all(f"'{name}'" in " ".join(out.split()) for name in NAMED)


def test_each_command_is_found_in_the_module_that_registers_it():
    """`slr-fast CMD` imports only CMD's module: the map must name every command, and nothing else."""
    from slr_fast.cli.main import COMMAND_MODULES, COMMANDS, build_parser

    def commands(parser):
        return set(parser._subparsers._group_actions[0].choices)

    assert commands(build_parser()) == set(COMMANDS) and set(COMMANDS.values()) == set(COMMAND_MODULES)
    for name in COMMANDS:
        assert name in commands(build_parser(name))
