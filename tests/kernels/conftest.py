"""Kernel tests run everywhere: on CPU through the Triton interpreter, on CUDA natively when a GPU is present.

TRITON_INTERPRET must be set before triton is first imported (``triton.jit`` picks interpreter or compiler at
decoration time), so it is set here, when pytest loads this file and before any kernel module is imported.
On a machine with CUDA it is left unset: the kernels compile for the GPU and the CPU triton cases skip.
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

from kernel_testing import DEVICES  # noqa: E402  (needs the environment above)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each device kernels can be tested on here: cpu always, cuda when present."""
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Same random inputs in every run, so a tolerance failure reproduces."""
    torch.manual_seed(0)
