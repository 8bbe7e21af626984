"""A failed or killed ingest never leaves a store that opens as valid; re-running recovers."""

import errno
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from store_testing import smooth_sequences

from slr_fast.store import KeypointStore, StoreError, StoreWriter, write_store


class Boom(RuntimeError):
    pass


def _write_then_fail(path, seqs, fail_at, **kwargs):
    with pytest.raises(Boom):
        with StoreWriter(path, classes=["a", "b"], progress=False, chunk_frames=16, flush_frames=16, **kwargs) as w:
            for i, s in enumerate(seqs):
                if i == fail_at:
                    raise Boom("source file unreadable")
                w.append(s, i % 2)


def _leftovers(path):
    return [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]


def test_failure_leaves_nothing_and_rerun_succeeds(tmp_path):
    path = tmp_path / "s.zarr"
    seqs = smooth_sequences(40, seed=4)
    _write_then_fail(path, seqs, fail_at=30)
    assert not path.exists() and _leftovers(path) == []
    with pytest.raises(StoreError, match="no keypoint store"):
        KeypointStore.open(path)
    store = write_store(path, seqs, [i % 2 for i in range(40)], classes=["a", "b"])
    assert len(store) == 40


def test_failed_rewrite_keeps_previous_store(tmp_path):
    path = tmp_path / "s.zarr"
    old = smooth_sequences(10, seed=5)
    write_store(path, old, [0] * 10, classes=["a", "b"])
    _write_then_fail(path, smooth_sequences(40, seed=6), fail_at=25, overwrite=True)
    store = KeypointStore.open(path)
    assert len(store) == 10 and np.array_equal(store[9][0], old[9], equal_nan=True)
    assert _leftovers(path) == []


def test_overwrite_false_refuses_complete_store(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path, smooth_sequences(3), [0, 0, 0])
    with pytest.raises(StoreError, match=r"s\.zarr: a complete store already exists; pass overwrite=True"):
        StoreWriter(path, classes=["a"], progress=False)
    store = write_store(path, smooth_sequences(5), [0] * 5, overwrite=True)
    assert len(store) == 5


def test_refuses_to_replace_foreign_folder(tmp_path):
    path = tmp_path / "photos"
    path.mkdir()
    (path / "keep.jpg").write_bytes(b"x")
    with pytest.raises(StoreError, match="is not an slr_fast store; refusing to replace it"):
        StoreWriter(path, classes=["a"], overwrite=True, progress=False)
    assert (path / "keep.jpg").exists()


def test_killed_process_leaves_no_valid_store_and_rerun_cleans_up(tmp_path):
    path = tmp_path / "s.zarr"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from store_testing import smooth_sequences
        from slr_fast.store import StoreWriter
        w = StoreWriter({str(path)!r}, classes=["a"], progress=False, chunk_frames=16, flush_frames=16)
        for i, s in enumerate(smooth_sequences(50, seed=7)):
            w.append(s, 0)
            if i == 30:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    stale = _leftovers(path)
    assert len(stale) == 1 and ".writing-" in stale[0]  # the killed writer's partial data, under a hidden name
    with pytest.raises(StoreError, match="no keypoint store"):
        KeypointStore.open(path)
    seqs = smooth_sequences(50, seed=7)
    store = write_store(path, seqs, [0] * 50)
    assert len(store) == 50 and np.array_equal(store[49][0], seqs[49], equal_nan=True)
    assert _leftovers(path) == []  # the re-run removed the dead writer's folder


def test_url_store_marked_incomplete_until_closed(tmp_path):
    url = "memory://crash-test/s.zarr"
    seqs = smooth_sequences(30, seed=8)
    _write_then_fail(url, seqs, fail_at=20)
    with pytest.raises(StoreError, match="incomplete .* did not finish .* re-run the ingest"):
        KeypointStore.open(url)
    store = write_store(url, seqs, [i % 2 for i in range(30)], classes=["a", "b"])  # recovers without overwrite
    assert len(store) == 30
    with pytest.raises(StoreError, match="a complete store already exists"):
        StoreWriter(url, classes=["a"], progress=False)


def test_writer_rejects_bad_sequences_with_clear_errors(tmp_path):
    with StoreWriter(tmp_path / "s.zarr", classes=["a", "b"], progress=False) as w:
        good = smooth_sequences(1)[0]
        w.append(good, "b", seq_id="ok")
        with pytest.raises(ValueError, match=r"sequence 1 \('x'\): frames have shape \(4, 87, 3\), expected"):
            w.append(np.zeros((4, 87, 3)), 0, seq_id="x")
        bad = good.copy()
        bad[0, 0, 0] = np.inf
        with pytest.raises(ValueError, match="infinite values"):
            w.append(bad, 0)
        with pytest.raises(ValueError, match="label 2 outside 0..1"):
            w.append(good, 2)
        with pytest.raises(ValueError, match="unknown class 'c'"):
            w.append(good, "c")
        with pytest.raises(ValueError, match="duplicate sequence id 'ok'"):
            w.append(good, 0, seq_id="ok")
        with pytest.raises(ValueError, match="signer -2 invalid"):
            w.append(good, 0, signer=-2)
        with pytest.raises(ValueError, match="unknown split 'dev'"):
            w.append(good, 0, split="dev")
        with pytest.raises(ValueError, match="must be numeric"):
            w.append(np.full((2, 87, 2), "a"), 0)
    store = KeypointStore.open(tmp_path / "s.zarr")
    assert len(store) == 1 and store.labels[0] == 1  # rejected appends left no trace


def test_write_store_length_mismatch(tmp_path):
    with pytest.raises(ValueError, match="2 sequences given but 3 labels"):
        write_store(tmp_path / "s.zarr", smooth_sequences(2), [0, 0, 0])
    assert not (tmp_path / "s.zarr").exists()
    with pytest.raises(ValueError, match="signers has 1 entries but labels has 2"):
        write_store(tmp_path / "s.zarr", smooth_sequences(2), [0, 0], signers=[1])


def test_second_writer_does_not_clobber_a_store_published_meanwhile(tmp_path):
    path = tmp_path / "s.zarr"
    slow = StoreWriter(path, classes=["a"], progress=False)
    slow.append(smooth_sequences(1)[0], 0)
    write_store(path, smooth_sequences(3), [0] * 3)  # another ingest finishes first
    with pytest.raises(StoreError, match="a complete store appeared there while writing"):
        slow.close()
    assert len(KeypointStore.open(path)) == 3 and _leftovers(path) == []


def test_failed_background_write_surfaces_and_publishes_nothing(tmp_path, monkeypatch):
    def disk_full(self, start, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StoreWriter, "_write_block", disk_full)
    path = tmp_path / "s.zarr"
    with pytest.raises(OSError, match=r"no space left on \S+ writing \S+s\.zarr") as err:
        with StoreWriter(path, classes=["a"], progress=False, chunk_frames=8, flush_frames=8) as w:
            for s in smooth_sequences(30, seed=12):
                w.append(s, 0)
    assert err.value.errno == errno.ENOSPC and err.value.strerror.endswith(str(path))
    assert not path.exists() and _leftovers(path) == []


def test_bad_provenance_fails_before_anything_is_left(tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match="provenance must be JSON-serialisable"):
        StoreWriter(path, classes=["a"], provenance={"when": object()}, progress=False)
    assert not path.exists() and _leftovers(path) == []
