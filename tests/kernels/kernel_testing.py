"""Shared parametrization for kernel tests: devices, dtypes per device, and triton availability."""

from __future__ import annotations

import pytest
import torch

from kernels.registry import triton_status

# cpu always (Triton via the interpreter), cuda when present; tests need no change to run on a GPU machine.
DEVICES: list[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def require_triton(device: str) -> None:
    """Skip the test when Triton cannot run on `device` (CPU without the interpreter, pre-Volta GPU)."""
    ok, reason = triton_status(device)
    if not ok:
        pytest.skip(f"triton cannot run on {device}: {reason}")


def device_dtype_params(bf16_on_cpu: bool = True) -> list:
    """pytest params of (device, dtype) pairs; bf16 on CPU only when the interpreter handles the op's math."""
    params = []
    for device in DEVICES:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            if dtype == torch.bfloat16 and device == "cpu" and not bf16_on_cpu:
                continue
            params.append(pytest.param(device, dtype, id=f"{device}-{str(dtype).removeprefix('torch.')}"))
    return params
