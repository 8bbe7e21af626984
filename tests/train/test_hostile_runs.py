"""Training runs against a hostile environment: a full disk, a batch larger than the data, FIFOs named as files.

A full disk is made two ways: by injecting the failure torch really raises (its zip writer loses the errno and
says "unexpected pos"), which runs everywhere, and by a real 2 MiB tmpfs where mounting is permitted (root).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections import namedtuple

import numpy as np
import pytest
import torch
from cli_testing import assert_one_line_error, call_cli

import slr_fast.fileio as fileio
from slr_fast.train.checkpoint import load_checkpoint, save_checkpoint

_Usage = namedtuple("_Usage", "total used free")


def _torch_save_failing_like_a_full_disk(monkeypatch):
    """torch.save writes part of the file, then fails as its zip writer does on a full disk (no errno)."""

    def save(obj, f, *args, **kwargs):
        f.write(b"x" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 913344 vs 913236")

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_without_errno_is_named_and_leaves_no_temporary(tmp_path, monkeypatch):
    _torch_save_failing_like_a_full_disk(monkeypatch)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: _Usage(10 << 20, 10 << 20, 512))
    with pytest.raises(OSError) as info:
        save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.zeros(1000)}})
    assert info.value.errno == errno.ENOSPC and fileio.is_no_space(info.value)
    assert str(tmp_path / "last.pt") in info.value.strerror and info.value.strerror.startswith("no space left on ")
    assert "unexpected pos" in str(info.value.__cause__)  # torch's own error stays in the chain
    assert list(tmp_path.iterdir()) == []


def test_the_same_failure_with_room_on_the_disk_is_not_called_a_full_disk(tmp_path, monkeypatch):
    _torch_save_failing_like_a_full_disk(monkeypatch)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: _Usage(1 << 40, 0, 1 << 40))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.zeros(1000)}})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_with_errno_during_fsync(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    with pytest.raises(OSError, match="no space left on .* writing .*best.pt"):
        save_checkpoint(tmp_path / "best.pt", {"model": {"w": torch.zeros(4)}})
    assert list(tmp_path.iterdir()) == []


def test_train_on_a_full_disk_is_one_line_and_cleans_up(small_store, small_args, tmp_path, monkeypatch, capsys):
    _torch_save_failing_like_a_full_disk(monkeypatch)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: _Usage(10 << 20, 10 << 20, 0))
    run = tmp_path / "run"
    rc, _, err = call_cli(small_args(small_store, run, "--epochs", "1"), capsys)
    line = assert_one_line_error(rc, err, "no space left on", f"writing {run / 'best.pt'}")  # the first save
    assert fileio.filesystem_of(run) in line
    assert not list(run.glob(".*.tmp")) and not list(run.glob("*.pt"))
    assert not (run / "summary.json").exists()  # the run stopped: no test metrics as if it had finished


def _mount_tmpfs(where, size: str) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


def test_train_on_a_really_full_tmpfs(small_store, small_args, tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount_tmpfs(disk, "2m"):  # one checkpoint of the small model is ~1.2 MB: the second does not fit
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        run = disk / "run"
        rc, _, err = call_cli(small_args(small_store, run, "--epochs", "1"), capsys)
        assert_one_line_error(rc, err, f"no space left on {disk} writing {run / 'last.pt'}")
        assert not list(run.glob(".*.tmp")) and (run / "best.pt").exists()  # best.pt fit, last.pt did not
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_batch_larger_than_the_training_split_is_refused_up_front(small_store, small_args, tmp_path, capsys):
    from slr_fast.store import KeypointStore

    n_train = KeypointStore.open(small_store).split_counts()["train"]
    run = tmp_path / "run"
    rc, _, err = call_cli(small_args(small_store, run, "--batch-size", str(n_train + 1)), capsys)
    assert_one_line_error(rc, err, f"--batch-size {n_train + 1}", f"{n_train} training sequences", "'train'")
    assert not run.exists()  # no best.pt, no test metrics of an untrained model
    # The boundary: a batch of the whole split is one step per epoch.
    rc, _, err = call_cli(small_args(small_store, run, "--batch-size", str(n_train), "--epochs", "1"), capsys)
    assert rc == 0, err
    assert load_checkpoint(run / "last.pt", fields=("step",))["step"] == 1


def test_a_named_split_the_store_lacks_is_refused_not_skipped(small_store, small_args, tmp_path, capsys):
    for key in ("val_split", "test_split"):
        run = tmp_path / key
        rc, _, err = call_cli(small_args(small_store, run, "--set", f"data.{key}=nope"), capsys)
        assert_one_line_error(rc, err, "'nope'", f"data.{key}", "'train'")
        assert not run.exists()
    # Empty means none, on purpose: the run trains and says it has no validation.
    run = tmp_path / "none"
    rc, out, err = call_cli(small_args(small_store, run, "--set", "data.val_split=", "--epochs", "1"), capsys)
    assert rc == 0, err
    assert "no validation" in out
    assert (run / "last.pt").exists() and not (run / "best.pt").exists()


@pytest.mark.timeout(120)  # a reader that opened a FIFO would block: fail instead of hanging
def test_fifos_for_augment_and_init_from_are_refused(small_store, small_args, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for flag in ("--augment", "--init-from"):
        rc, _, err = call_cli(small_args(small_store, tmp_path / flag.strip("-"), flag, fifo), capsys)
        assert_one_line_error(rc, err, str(fifo), "FIFO")


def test_show_writes_and_prints_the_file_it_made(small_store, tmp_path, capsys):
    rc, out, err = call_cli(["show", small_store, "--index", "0", "--out", tmp_path / "seq"], capsys)
    assert rc == 0, err
    assert out.strip() == f"wrote {tmp_path / 'seq.png'}"
    assert (tmp_path / "seq.png").stat().st_size > 1000 and not (tmp_path / "seq").exists()
    rc, _, err = call_cli(["show", small_store, "--index", "0", "--out", tmp_path], capsys)
    assert_one_line_error(rc, err, f"--out {tmp_path}", "folder")


def test_predict_top_k_beyond_the_classes_lists_every_class(tiny_run, small_store, tmp_path, capsys):
    from slr_fast.ingest.gislr_format import write_gislr_file
    from slr_fast.store import KeypointStore

    store = KeypointStore.open(small_store)
    frames = store[0][0]
    full = np.full((len(frames), 543, 3), np.nan)
    full[:, store.layout.gislr_rows(), :2] = frames
    clip = tmp_path / "clip.parquet"
    write_gislr_file(clip, full)
    rc, out, err = call_cli(["predict", "--checkpoint", tiny_run / "best.pt", clip, "--top-k", "50", "--json"],
                            capsys)
    assert rc == 0, err
    top = json.loads(out)[0]["top"]
    assert sorted(t["sign"] for t in top) == sorted(store.classes)
    assert abs(sum(t["prob"] for t in top) - 1) < 1e-4


def test_sigterm_during_fit_unwinds_like_ctrl_c():
    """torchrun stops the other ranks with SIGTERM: inside fit it raises SystemExit(143), so the finally-blocks
    that remove temporary checkpoint files run; outside, the previous handler is back."""
    import signal

    from slr_fast.train.loop import _sigterm_as_exit

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info, _sigterm_as_exit():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted at once by the handler's exception
    assert info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
