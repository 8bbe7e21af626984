"""The engine's kernel variants give the same batches, share one lock for parallel calls, and say when they compile."""

from __future__ import annotations

import logging
import threading

import numba
import numpy as np
import pytest

from slr_fast.engine import PARALLEL_LOCK, PARALLEL_MIN_BATCH, BatchProcessor, compiling, kernels
from slr_fast.engine.processor import _readonly
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.preprocess import PreprocessConfig

TWO = min(2, numba.config.NUMBA_NUM_THREADS)  # a 1-core machine has one Numba thread: every call is serial there


def big(batch):
    """(frames, offsets, indices) with enough samples for the parallel kernel (sequences repeat)."""
    frames, offsets = batch
    return frames, offsets, np.resize(np.arange(len(offsets) - 1), PARALLEL_MIN_BATCH + 7)


def run(bp, frames, offsets, idx, threads=None, epoch=3):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(threads or before)
        return bp.process(frames, offsets, idx, epoch, bp.alloc(len(idx)), sample_ids=np.arange(len(idx)))
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("augment", [None, "full"])
def test_parallel_and_serial_kernels_give_the_same_batch(batch, augment):
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=24), augment, seed=4)
    frames, offsets, idx = big(batch)
    serial, parallel = run(bp, frames, offsets, idx, threads=1), run(bp, frames, offsets, idx, threads=TWO)
    if TWO > 1:
        assert kernels._parallel.signatures, "a batch this size with two threads runs the parallel kernel"
    for k in serial:
        np.testing.assert_array_equal(serial[k], parallel[k], err_msg=k)
    small = run(bp, frames, offsets, idx[:5], threads=TWO)  # below PARALLEL_MIN_BATCH: serial on this thread
    np.testing.assert_array_equal(small["x"], serial["x"][:5])


def test_no_augmentation_on_the_augmenting_kernel_equals_the_preprocessing_kernel(batch):
    frames, offsets = batch
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=20, normalize="part"), None)
    idx = np.arange(len(offsets) - 1)
    # Read-only inputs, as `process` hands them over: the kernel signatures the engine uses (and set-up compiles).
    frames, offsets, idx = (_readonly(a) for a in (frames, offsets, idx))
    outs = []
    for aug in (None, kernels.Augment(bp._ops, bp._params, 0, 1.0, 0, 0)):  # no ops: what an eval loader may get
        out = bp.alloc(len(idx))
        src = kernels.Source(frames, offsets, idx, idx)
        kernels._serial(src, bp._prep, bp.tables, aug, kernels.Out(out["x"], out["mask"], out["length"], out["flags"]))
        outs.append(out)
    for k in outs[0]:
        np.testing.assert_array_equal(outs[0][k], outs[1][k], err_msg=k)


def test_read_only_inputs_need_no_second_compile(batch):
    frames, offsets = batch
    bp = BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=16))
    idx = np.arange(len(offsets) - 1)
    want = run(bp, frames, offsets, idx, threads=1)
    signatures = len(kernels._serial.signatures)
    ro = frames.copy()
    ro.flags.writeable = False
    got = run(bp, ro, offsets, idx, threads=1)
    assert len(kernels._serial.signatures) == signatures
    np.testing.assert_array_equal(got["x"], want["x"])


def test_parallel_calls_take_turns(batch):
    """A parallel call waits while another thread holds the lock (Numba's workqueue layer would abort), and calls
    from several threads at once, on several processors, give what each gives alone."""
    frames, offsets, idx = big(batch)
    procs = [BatchProcessor(DEFAULT_LAYOUT, PreprocessConfig(T=16), "default", seed=s) for s in (1, 2)]
    want = [run(bp, frames, offsets, idx, threads=1) for bp in procs]
    got, errors = {}, []

    def work(i, rounds):
        try:
            numba.set_num_threads(TWO)
            for r in range(rounds):
                got[i, r] = procs[i].process(frames, offsets, idx, 3, procs[i].alloc(len(idx)),
                                             sample_ids=np.arange(len(idx)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with PARALLEL_LOCK:
        waiting = threading.Thread(target=work, args=(0, 1))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() == (TWO > 1)  # a serial call needs no lock
    waiting.join()
    threads = [threading.Thread(target=work, args=(i, 4)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (i, _), res in got.items():
        for k in res:
            np.testing.assert_array_equal(res[k], want[i][k], err_msg=k)


def test_a_compile_is_announced_with_its_time(caplog):
    @numba.njit
    def kernel(x):
        return x + 1

    caplog.set_level(logging.WARNING, logger="slr_fast.engine")
    compiling.first_call(kernel, (1,), "test kernel", 7)
    first = [r.getMessage() for r in caplog.records]
    assert len(first) == 2 and "compiling the keypoint engine (test kernel)" in first[0] and "about 7 s" in first[0]
    assert "compiled in" in first[1] and compiling.compile_seconds["test kernel"] >= 0
    caplog.clear()
    compiling.first_call(kernel, (1,), "test kernel", 7)  # compiled already: nothing to say
    assert caplog.records == []
