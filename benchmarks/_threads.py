"""Thread settings shared by the benchmark suites."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_torch_thread_on_cpu() -> Iterator[None]:
    """Time CPU cases on one torch thread (no-op with CUDA).

    On a shared 2-core machine OpenMP barriers stall for whole time slices, turning sub-millisecond ops into
    100 ms outliers; in the training benchmarks the loader's thread also needs the other core.
    """
    if torch.cuda.is_available():
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
