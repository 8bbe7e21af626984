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


def leaf(t: torch.Tensor) -> torch.Tensor:
    """A detached copy of `t` (same strides) that requires grad, so each backend gets its own gradient."""
    out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    out.copy_(t)
    return out.requires_grad_(t.is_floating_point())


def forward_backward(fn, inputs: list, grad_outputs: list[torch.Tensor]) -> tuple[list, list]:
    """Run `fn(*inputs)` on fresh leaves and backprop `grad_outputs`; returns (outputs, input grads)."""
    leaves = [leaf(t) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs]
    outs = fn(*leaves)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    tensors = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(outs, tensors, grad_outputs)
    return [o.detach() for o in outs], list(grads)
