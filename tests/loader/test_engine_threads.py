"""How many Numba threads the loader's thread gives the engine, and the compile the loader does up front."""

from __future__ import annotations

import numba
import pytest
import torch
from loader_testing import RecordingProcessor

from slr_fast.loader import KeypointLoader, LoaderConfig


class ThreadsProcessor(RecordingProcessor):
    """Records the Numba thread count of the thread that calls process, and every warmup call."""

    def __init__(self):
        super().__init__()
        self.numba_threads: set[int] = set()
        self.warmups: list[dict] = []

    def process(self, frames, offsets, indices, epoch, out, sample_ids=None):
        self.numba_threads.add(numba.get_num_threads())
        return super().process(frames, offsets, indices, epoch, out, sample_ids)

    def warmup(self, batch_size=256, threads=None):
        self.warmups.append({"batch_size": batch_size, "threads": threads})
        return 0.0


@pytest.mark.parametrize("threads", [1, 2, None])
def test_the_loader_thread_runs_the_engine_on_its_own_thread_count(store_factory, threads):
    if threads is None and torch.cuda.is_available():
        pytest.skip("the default is every core when CUDA is available")
    proc = ThreadsProcessor()
    before = numba.get_num_threads()
    with KeypointLoader(store_factory(), proc, LoaderConfig(batch_size=50, engine_threads=threads)) as loader:
        assert proc.warmups == [{"batch_size": 50, "threads": threads or 1}]  # compiled before the first epoch
        assert sum(len(b["index"]) for b in loader) == 203
    assert proc.numba_threads == {min(threads or 1, numba.config.NUMBA_NUM_THREADS)}
    assert numba.get_num_threads() == before  # Numba's setting is per thread: the caller's is untouched


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_bad_engine_threads_are_refused(bad):
    with pytest.raises(ValueError, match="engine_threads must be a positive integer or None"):
        LoaderConfig(engine_threads=bad)
