"""The prefetch thread: single caller, errors surfacing with their traceback, no thread left behind."""

from __future__ import annotations

import gc
import threading
import time
import traceback

import pytest
from loader_testing import RecordingProcessor

from slr_fast.loader import KeypointLoader, LoaderConfig
from slr_fast.loader.prefetch import Prefetcher


def ours() -> list[threading.Thread]:
    # zarr keeps its own I/O threads for the process; only the loader's threads are ours to account for
    return [t for t in threading.enumerate() if t.name.startswith("slr-fast")]


def wait_no_threads(timeout: float = 5.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while ours() and time.monotonic() < deadline:
        time.sleep(0.01)
    return ours()


@pytest.fixture(autouse=True)
def no_threads_before():
    assert wait_no_threads() == []


def test_only_the_prefetch_thread_calls_the_processor(store_factory):
    proc = RecordingProcessor()
    with KeypointLoader(store_factory(), proc, LoaderConfig(batch_size=16)) as loader:
        for _ in loader:
            pass
        for _ in loader:
            pass
    assert proc.calls == 2 * len(loader)
    assert proc.thread_names == {"slr-fast-loader-r0"}  # only the loader's prefetch thread...
    assert threading.get_ident() not in proc.threads  # ...and never the consumer


def test_worker_error_reraised_with_original_traceback(store_factory):
    proc = RecordingProcessor(fail_at=2)
    with KeypointLoader(store_factory(), proc, LoaderConfig(batch_size=16)) as loader:
        got = 0
        with pytest.raises(ValueError, match="bad sequence in batch 3") as info:
            for _ in loader:
                got += 1
        assert got == 2  # the batches made before the failure were delivered first
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "process" in frames and "_produce" in frames  # where it happened, in the worker
    assert wait_no_threads() == []


@pytest.mark.parametrize("in_memory", [True, False])
def test_early_break_leaves_no_thread(store_factory, in_memory):
    extra = {} if in_memory else {"block_frames": 100, "shuffle_window": 2}
    loader = KeypointLoader(store_factory(), RecordingProcessor(), LoaderConfig(batch_size=4, prefetch=2,
                                                                                in_memory=in_memory, **extra))
    for i, _ in enumerate(loader):
        if i == 1:
            break  # the queue is full and the worker blocked on put
    assert loader.position == 2
    loader.close()
    assert wait_no_threads(1.0) == []
    # without close(): dropping the iterator and the loader is enough
    loader = KeypointLoader(store_factory(), RecordingProcessor(), LoaderConfig(batch_size=4, prefetch=2,
                                                                                in_memory=in_memory, **extra))
    it = iter(loader)
    next(it)
    assert ours()
    del it, loader
    gc.collect()
    assert wait_no_threads(2.0) == []


def test_new_iteration_replaces_the_old_one(store_factory):
    with KeypointLoader(store_factory(), RecordingProcessor(), LoaderConfig(batch_size=4)) as loader:
        first = iter(loader)
        next(first)
        second = iter(loader)  # stops the first worker; the epoch continues from the position
        b = next(second)
        assert len(ours()) == 1
        assert loader.position == 2 and len(b["index"]) == 4
        with pytest.raises(StopIteration):
            next(first)
    assert wait_no_threads() == []


def test_prefetcher_bounds_and_stops():
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i

    p = Prefetcher(items, depth=3)
    assert next(p) == 0
    time.sleep(0.2)
    assert len(made) <= 1 + 3 + 1  # taken + queued + one waiting to be queued
    p.close()
    assert not p.alive
    with pytest.raises(StopIteration):
        next(p)
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(items, depth=0)
