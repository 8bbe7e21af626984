"""The kernel ops a SignModel calls, bound once per device from its KernelConfig through `kernels.registry`.

Every attention, RMSNorm and SwiGLU of the model goes through the callables held here, so an ablation or a
backend switch changes only the KernelConfig: parameters, state_dict and math stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernels.registry import KernelConfig, get_op

# Which KernelConfig field chooses the backend of each op the model calls.
OP_FIELDS = {
    "rmsnorm": "rmsnorm",
    "residual_rmsnorm": "rmsnorm",
    "swiglu_packed": "swiglu",
    "attention": "attention",
}


@dataclass(frozen=True)
class Ops:
    """Concrete op callables for one device, plus the backend name each one resolved to."""

    rmsnorm: Callable
    residual_rmsnorm: Callable
    swiglu_packed: Callable
    attention: Callable
    backends: dict[str, str]


def bind_ops(kernels: KernelConfig, device: torch.device) -> Ops:
    """Resolve `kernels` for `device` ("auto" -> triton on CUDA sm >= 7.0, else torch) and fetch each op."""
    resolved = kernels.resolve(device)
    backends = {op: getattr(resolved, field) for op, field in OP_FIELDS.items()}
    # The attention op applies RoPE itself; report the rope backend it was configured with too.
    backends["rope"] = resolved.rope
    return Ops(**{op: get_op(op, backends[op]) for op in OP_FIELDS}, backends=backends)
