"""Where a run executes: device, mixed precision, and torchrun's process group."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from slr_fast.train.config import DEVICE_PATTERN, DEVICES


@dataclass
class Runtime:
    device: torch.device
    precision: str  # fp32 | fp16 | bf16 (resolved)
    rank: int = 0
    world_size: int = 1
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """Autocast context for the forward pass (a no-op in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # Loss scaling only matters for fp16 (5-bit exponent); bf16 has fp32's range.
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")


def resolve_device(name: str) -> torch.device:
    """auto → the local CUDA device when present (LOCAL_RANK under torchrun), else CPU; anything else must be one
    of DEVICES and present on this machine."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"--device {name!r}: not one of {DEVICES}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    if dev.type == "mps" and not (torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: Apple's MPS backend is not available on this machine")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto → bf16 on GPUs with native bf16 (sm_80+), fp16 with loss scaling on older ones (P100), fp32 on CPU."""
    if precision != "auto":
        if device.type == "cpu" and precision == "fp16":
            raise ValueError("fp16 training on CPU is not supported; use fp32 or bf16")
        return precision
    if device.type != "cuda":
        return "fp32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def init_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    return Runtime(dev, resolve_precision(precision, dev), rank, world, dist.is_initialized())


def all_reduce_sum(rt: Runtime, values: list[float]) -> list[float]:
    """Sum floats over ranks (identity in a single process)."""
    if not rt.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=rt.device if rt.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(rt: Runtime, obj) -> list:
    """Every rank's `obj` (a list of one in a single process)."""
    if not rt.distributed:
        return [obj]
    out = [None] * rt.world_size
    dist.all_gather_object(out, obj)
    return out
