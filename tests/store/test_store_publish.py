"""A writer killed between the two renames of a replacing publish: the old store is restored, never deleted."""

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from store_testing import smooth_sequences

from slr_fast.store import KeypointStore, StoreError, StoreWriter, write_store
from slr_fast.store.publish import clean_stale

OLD = smooth_sequences(6, seed=31)
NEW = smooth_sequences(9, seed=32)


def _dead_pid() -> int:
    """The id of a process that has exited."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(out.stdout)


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def _killed_between_renames(path, pid: int):
    """The state a kill between the renames leaves: no store at `path`, the old one aside, the new one unpublished."""
    write_store(path, OLD, [0] * len(OLD))
    new = path.parent / "new.zarr"
    write_store(new, NEW, [0] * len(NEW))
    os.rename(path, path.parent / f".{path.name}.replaced-{pid}-0123abcd")
    os.rename(new, path.parent / f".{path.name}.writing-{pid}-4567cdef")


def _is_old(store):
    return len(store) == len(OLD) and all(np.array_equal(store[i][0], s, equal_nan=True) for i, s in enumerate(OLD))


def test_real_kill_between_renames_then_open_restores_old(tmp_path, caplog):
    path = tmp_path / "s.zarr"
    write_store(path, OLD, [0] * len(OLD))
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from store_testing import smooth_sequences
        import slr_fast.store.publish as publish
        real_rename, renames = os.rename, []
        def rename(a, b):
            if renames:  # the second rename: tmp -> final
                os.kill(os.getpid(), signal.SIGKILL)
            renames.append(a)
            real_rename(a, b)
        publish.os.rename = rename
        from slr_fast.store import write_store
        write_store({str(path)!r}, smooth_sequences(9, seed=32), [0] * 9, overwrite=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not path.exists()
    assert [n.split("-")[0] for n in _siblings(path)] == [".s.zarr.replaced", ".s.zarr.writing"]
    with caplog.at_level(logging.WARNING, logger="slr_fast.store"):
        store = KeypointStore.open(path)
    assert _is_old(store) and "restored the previous store" in caplog.text
    assert [n.split("-")[0] for n in _siblings(path)] == [".s.zarr.writing"]  # the killed writer's new store
    write_store(path, NEW, [0] * len(NEW), overwrite=True)  # the next writer clears it away
    assert len(KeypointStore.open(path)) == len(NEW) and _siblings(path) == []


def test_next_writer_restores_old_store_and_never_deletes_it(tmp_path):
    path = tmp_path / "s.zarr"
    _killed_between_renames(path, _dead_pid())
    with pytest.raises(StoreError, match="a complete store already exists; pass overwrite=True"):
        StoreWriter(path, classes=["a"], progress=False)  # without overwrite: the restored store is kept
    assert _is_old(KeypointStore.open(path)) and _siblings(path) == []
    write_store(path, NEW, [0] * len(NEW), overwrite=True)
    assert len(KeypointStore.open(path)) == len(NEW) and _siblings(path) == []


def test_clean_stale_keeps_the_only_copy(tmp_path):
    path = tmp_path / "s.zarr"
    pid = _dead_pid()
    _killed_between_renames(path, pid)
    clean_stale(path)  # what an ingest to this path did first, before recovery existed
    assert _siblings(path) == [f".s.zarr.replaced-{pid}-0123abcd"]  # the dead writer's temp folder went; this stays
    assert _is_old(KeypointStore.open(path))


def test_restore_that_cannot_be_done_says_what_happened(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    pid = _dead_pid()
    _killed_between_renames(path, pid)

    def read_only(a, b):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("slr_fast.store.publish.os.rename", read_only)
    with pytest.raises(StoreError) as err:
        KeypointStore.open(path)
    message = str(err.value)
    assert message.startswith(f"{path}: no store there, but ") and f".s.zarr.replaced-{pid}-0123abcd" in message
    assert f"process {pid}" in message and "Read-only file system" in message and "rename it to s.zarr" in message
    monkeypatch.undo()
    assert f".s.zarr.replaced-{pid}-0123abcd" in _siblings(path)  # nothing was deleted


def test_open_while_a_live_writer_is_between_renames(tmp_path):
    path = tmp_path / "s.zarr"
    _killed_between_renames(path, os.getpid())  # this process stands in for a writer that is still running
    with pytest.raises(StoreError, match=rf"no store there right now: writer process {os.getpid()} is replacing it"):
        KeypointStore.open(path)
    assert not path.exists() and len(_siblings(path)) == 2  # nothing moved under the live writer's feet
