"""The kernel ops a SignModel calls, bound per device from its KernelConfig through `kernels.registry`.

Every attention, RMSNorm and SwiGLU of the model goes through one shared `KernelOps`, so an ablation or a backend
switch changes only the KernelConfig: parameters, state_dict and math stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernels.registry import OPS, KernelConfig

# The registry ops the model calls (each follows its KernelConfig field: residual_rmsnorm the rmsnorm one, ...).
MODEL_OPS = ("rmsnorm", "residual_rmsnorm", "swiglu_packed", "attention")


@dataclass(frozen=True)
class Ops:
    """Concrete op callables for one device, plus the backend name each one resolved to."""

    rmsnorm: Callable
    residual_rmsnorm: Callable
    swiglu_packed: Callable
    attention: Callable
    backends: dict[str, str]


def bind_ops(kernels: KernelConfig, device: torch.device) -> Ops:
    """Resolve `kernels` for `device` ("auto" -> triton on CUDA sm >= 7.0, else native) and fetch each op."""
    resolved = kernels.resolve(device)
    backends = {op: getattr(resolved, OPS[op]) for op in MODEL_OPS}
    # The attention op applies RoPE itself; report the rope backend it was configured with too.
    backends["rope"] = resolved.rope
    return Ops(**{op: resolved.op(op) for op in MODEL_OPS}, backends=backends)


class KernelOps:
    """A model's KernelConfig and its ops, bound on first use per device; every module that calls a kernel holds the
    same instance (given at construction), so no `forward` passes ops around.

    Each call takes the ops bound for its input's device, so the choice follows `model.to(device)` by itself (a
    P100 or a CPU resolves "auto" to native, a newer GPU to triton). Copies and pickles carry the config only: bound
    ops are closures of the registry, rebound on first use.
    """

    def __init__(self, config: KernelConfig):
        self.config = config
        self.bound: dict[torch.device, Ops] = {}

    def use(self, config: KernelConfig) -> None:
        """Switch to another KernelConfig (every module sharing this instance follows)."""
        self.config = config
        self.bound.clear()

    def on(self, device: torch.device) -> Ops:
        """The ops for `device`, bound now if this is its first use."""
        ops = self.bound.get(device)
        if ops is None:
            ops = self.bound[device] = bind_ops(self.config, torch.device(device))
        return ops

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return self.on(x.device).rmsnorm(x, weight, eps)

    def residual_rmsnorm(self, x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor,
                         eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return self.on(x.device).residual_rmsnorm(x, f, alpha, weight, eps)

    def swiglu_packed(self, ab: torch.Tensor) -> torch.Tensor:
        return self.on(ab.device).swiglu_packed(ab)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None,
                  window: int | None, base: float) -> torch.Tensor:
        return self.on(q.device).attention(q, k, v, lengths=lengths, window=window, base=base)

    def __getstate__(self) -> dict:
        return {"config": self.config, "bound": {}}
