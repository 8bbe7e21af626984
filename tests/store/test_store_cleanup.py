"""A failed write leaves nothing behind, a full disk is one line, and a failed read leaves nothing running.

Why temp folders were left: zarr writes a block's chunks as concurrent tasks on its own event loop; when one fails
(a full disk) the call returns at once while the others go on writing, so the writer removed its temporary folder
and those tasks then recreated chunk files (and the folders above them) in it. The same leftover tasks printed
"Task was destroyed but it is pending!" by the dozen at exit after a chunk failed to decode.
"""

import asyncio
import errno
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from cli_testing import assert_one_line_error, call_cli, run_cli
from store_testing import smooth_sequences, write_legacy_store

from slr_fast.store import KeypointStore, StoreError, StoreWriter, write_store


def _leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def _no_space_line(err, path):
    assert err.errno == errno.ENOSPC
    assert err.strerror.startswith("no space left on ") and err.strerror.endswith(f" writing {path}")


@pytest.fixture
def full_disk_at(monkeypatch):
    """full_disk_at(prefix): every zarr write of a key starting with `prefix` fails with ENOSPC; the other chunk
    writes are slowed down, so they are still running when the failure reaches the writer."""
    from zarr.storage import LocalStore

    real_set = LocalStore.set

    def install(prefix: str):
        async def set(self, key, value):
            if key.startswith(prefix):
                raise OSError(errno.ENOSPC, "No space left on device")
            if key.startswith("frames/c/"):
                await asyncio.sleep(0.2)
            return await real_set(self, key, value)

        monkeypatch.setattr(LocalStore, "set", set)

    return install


def _zarr_idle():
    """Wait until zarr's event loop has nothing left to do (what a late write would recreate is then there)."""
    deadline = time.monotonic() + 10
    while _zarr_tasks_pending() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_full_disk_mid_block_leaves_nothing(tmp_path, full_disk_at):
    path = tmp_path / "s.zarr"
    full_disk_at("frames/c/1/")
    with pytest.raises(OSError) as err:
        write_store(path, smooth_sequences(40, seed=41), [0] * 40, chunk_frames=8, flush_frames=64)
    _no_space_line(err.value, path)
    _zarr_idle()
    assert not path.exists() and _leftovers(path) == []


def test_full_disk_without_with_block_cleans_up_at_once(tmp_path, full_disk_at):
    path = tmp_path / "s.zarr"
    full_disk_at("frames/c/2/")
    w = StoreWriter(path, classes=["a"], progress=False, chunk_frames=8, flush_frames=8)
    with pytest.raises(OSError) as err:
        for s in smooth_sequences(40, seed=42):
            w.append(s, 0)
    _no_space_line(err.value, path)
    assert _leftovers(path) == []  # removed on the way out, before anyone calls close() or abort()
    with pytest.raises(RuntimeError, match="nothing was published: the writer was aborted"):
        w.close()
    assert not path.exists()


@pytest.mark.parametrize("prefix", ["offsets/", "frames_crc32c/", "zarr.json"])
def test_full_disk_while_closing(tmp_path, full_disk_at, prefix):
    path = tmp_path / "s.zarr"
    w = StoreWriter(path, classes=["a"], progress=False)
    w.append(smooth_sequences(1)[0], 0)
    full_disk_at(prefix)  # the index arrays, the chunk checksums, the final attributes
    with pytest.raises(OSError) as err:
        w.close()
    _no_space_line(err.value, path)
    assert not path.exists() and _leftovers(path) == []


def test_full_disk_while_creating(tmp_path, full_disk_at):
    path = tmp_path / "s.zarr"
    full_disk_at("frames/zarr.json")
    with pytest.raises(OSError) as err:
        StoreWriter(path, classes=["a"], progress=False)
    _no_space_line(err.value, path)
    assert not path.exists() and _leftovers(path) == []


def test_interrupt_leaves_nothing_and_keeps_old_store(tmp_path):
    path = tmp_path / "s.zarr"
    old = smooth_sequences(3, seed=43)
    write_store(path, old, [0] * 3)
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(path, classes=["a"], progress=False, overwrite=True, chunk_frames=8, flush_frames=8) as w:
            for i, s in enumerate(smooth_sequences(30, seed=44)):
                w.append(s, 0)
                if i == 20:
                    raise KeyboardInterrupt
    assert _leftovers(path) == [] and np.array_equal(KeypointStore.open(path)[2][0], old[2], equal_nan=True)


def test_unclosed_writer_is_removed_at_exit(tmp_path):
    path = tmp_path / "s.zarr"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from store_testing import smooth_sequences
        from slr_fast.store import StoreWriter
        w = StoreWriter({str(path)!r}, classes=["a"], progress=False, chunk_frames=8, flush_frames=8)
        for s in smooth_sequences(20, seed=45):
            w.append(s, 0)
        raise RuntimeError("the caller failed and never closed the writer")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "the caller failed" in proc.stderr
    assert not path.exists() and _leftovers(path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MB filesystem (tmpfs); skipped where mounting is not permitted (not root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], capture_output=True)


def test_real_full_disk(tiny_disk):
    path = tiny_disk / "s.zarr"
    with pytest.raises(OSError) as err:  # ~5.6 MB of frames, ~3 MB compressed, on 2 MB
        write_store(path, smooth_sequences(200, seed=46, max_len=80), [0] * 200, chunk_frames=64)
    assert err.value.strerror == f"no space left on {tiny_disk} writing {path}"
    assert os.listdir(tiny_disk) == []


# ---------------------------------------------------------------- a failed read: one error, nothing left running
def _zarr_tasks_pending() -> int:
    from zarr.core import sync as zsync

    loop = zsync.loop[0]
    if loop is None:
        return 0
    return asyncio.run_coroutine_threadsafe(_count_others(), loop).result(10)


async def _count_others() -> int:
    return sum(1 for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done())


@pytest.fixture
def damaged(tmp_path):
    """A new store with a flipped byte in frames chunk 3 and a store from before checksums with chunk 3 cut short
    (so blosc, not crc32c, is what fails)."""
    seqs = smooth_sequences(30, seed=47, max_len=60)  # 14 chunks
    new, legacy = tmp_path / "new.zarr", tmp_path / "legacy.zarr"
    write_store(new, seqs, [0] * 30, chunk_frames=64)
    write_legacy_store(legacy, seqs, [0] * 30, chunk_frames=64)
    chunk = new / "frames" / "c" / "3" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 1
    chunk.write_bytes(bytes(raw))
    chunk = legacy / "frames" / "c" / "3" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    return {"new": new, "legacy": legacy}


SLOW_READS = """
import asyncio
from zarr.storage import LocalStore
real_get = LocalStore.get
async def get(self, key, *args, **kwargs):
    # Chunks after the damaged one (3) come slowly: they are still being read when chunk 3 has failed.
    if key.startswith("frames/c/") and int(key.split("/")[2]) > 3:
        await asyncio.sleep(0.1)
    return await real_get(self, key, *args, **kwargs)
LocalStore.get = get
"""


@pytest.fixture
def slow_reads():
    from zarr.storage import LocalStore

    real_get = LocalStore.get
    exec(SLOW_READS, {})
    yield
    LocalStore.get = real_get


@pytest.mark.parametrize("kind", ["new", "legacy"])
@pytest.mark.parametrize("read", ["get_many", "read_frames", "verify"])
def test_failed_read_is_one_error_and_leaves_nothing_running(damaged, kind, read, capfd, slow_reads):
    store = KeypointStore.open(damaged[kind])
    calls = {"get_many": lambda: store.get_many(range(len(store))),
             "read_frames": lambda: store.read_frames(0, store.num_frames), "verify": store.verify}
    with pytest.raises(StoreError) as err:
        calls[read]()
    assert str(err.value).startswith(f"{damaged[kind]}: frames chunk c/3/0/0 (frames 192..255, sequence")
    assert _zarr_tasks_pending() == 0  # nothing left to be destroyed, noisily, at exit
    assert capfd.readouterr().err == ""


def test_no_asyncio_noise_at_exit(damaged):
    script = SLOW_READS + textwrap.dedent(f"""
        from slr_fast.store import KeypointStore, StoreError
        for path in ({str(damaged["new"])!r}, {str(damaged["legacy"])!r}):
            store = KeypointStore.open(path)
            try:
                store.get_many(range(len(store)))
            except StoreError as e:
                print(e)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.count("frames chunk c/3/0/0") == 2


def test_cli_verify_damage_is_one_line(damaged):
    proc = run_cli("verify", damaged["legacy"])  # a real process: what is printed at exit counts too
    line = assert_one_line_error(proc.returncode, proc.stderr, damaged["legacy"], "frames chunk c/3/0/0")
    assert "cannot be decoded" in line and proc.stdout == ""  # blosc fails here: no crc32c in such stores


def test_cli_verify_reports_what_it_checked(tmp_path, damaged, capsys):
    path = tmp_path / "ok.zarr"
    write_store(path, smooth_sequences(30, seed=48), [0] * 30, chunk_frames=16)
    rc, out, err = call_cli(["verify", path], capsys)
    assert rc == 0 and err == ""
    assert out.startswith(f"{path}: OK") and "matching their crc32c checksums" in out and "index arrays" in out
    rc, out, err = call_cli(["verify", damaged["new"]], capsys)
    assert_one_line_error(rc, err, damaged["new"], "frames chunk c/3/0/0", "crc32c")
    (path / "zarr.json").write_bytes(b"\x00not json")
    rc, out, err = call_cli(["verify", path], capsys)
    assert_one_line_error(rc, err, path, "zarr.json")


def test_cli_verify_store_without_checksums_does_not_claim_ok(tmp_path, capsys):
    path = tmp_path / "legacy.zarr"
    seqs = smooth_sequences(12, seed=49)
    write_legacy_store(path, seqs, [0, 1] * 6, chunk_frames=32)
    store = KeypointStore.open(path)  # stores from before checksums still open and read as written
    assert np.array_equal(store.frames_array(), np.concatenate(seqs), equal_nan=True)
    rc, out, err = call_cli(["verify", path], capsys)
    assert rc == 0 and err == "" and "OK" not in out
    assert "checksums NOT checked" in out and "written without them" in out
    # Such stores left out chunks holding only fill values: an absent chunk is reported, never called OK.
    os.remove(path / "frames" / "c" / "1" / "0" / "0")
    rc, out, err = call_cli(["verify", path], capsys)
    assert rc == 0 and "OK" not in out and "1 of 17 chunks ABSENT" in out and "frames chunk c/1/0/0" in out
