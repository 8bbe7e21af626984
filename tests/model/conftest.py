"""Model tests: the tiny preset on small synthetic batches, on CPU (Triton through its interpreter).

TRITON_INTERPRET must be set before triton is first imported (``triton.jit`` chooses interpreter or compiler when a
kernel is decorated), so it is set when pytest loads this file; on a CUDA machine the kernels compile for the GPU.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if importlib.util.find_spec("triton") is not None:
    # Fix Triton's mode now, while collecting: a test run before these that unsets TRITON_INTERPRET and imports
    # torch._dynamo (which imports triton; building an optimizer does) would load it compiled for the whole session.
    import triton  # noqa: F401


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Same weights and inputs in every run (a tolerance failure reproduces), on one intra-op thread.

    The tiny model's tensors are small: a second thread's synchronization costs more than it saves, and far more
    when the suite shares its two cores with other work. The previous setting is restored afterwards.
    """
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
