"""Where a run executes: device, mixed precision, and torchrun's process group."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from slr_fast.errors import UserInputError
from slr_fast.loader.loader import usable_cores
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
        raise UserInputError(f"--device {name!r}: not one of {DEVICES}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {name}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserInputError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    if dev.type == "mps" and not (torch.backends.mps.is_available()):
        raise UserInputError(f"--device {name}: Apple's MPS backend is not available on this machine")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto → bf16 on GPUs with native bf16 (sm_80+), fp16 with loss scaling on older ones (P100), fp32 on CPU."""
    if precision != "auto":
        if device.type == "cpu" and precision == "fp16":
            raise UserInputError("fp16 training on CPU is not supported; use fp32 or bf16")
        return precision
    if device.type != "cuda":
        return "fp32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def idle_cores(sample_s: float = 0.1) -> float | None:
    """Cores the machine leaves idle over the next `sample_s` seconds (Linux: /proc/stat; time a hypervisor gave
    to others counts as busy), or None where that cannot be read."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return ticks[3] + ticks[4], sum(ticks)

    try:
        idle0, total0 = read()
        time.sleep(sample_s)
        idle1, total1 = read()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (idle1 - idle0) / (total1 - total0) * usable_cores()


def default_threads() -> int:
    """torch's intra-op threads for a CPU run that asks for none: as many as there are idle cores when it starts
    (this process's share when torchrun starts several per machine), at least 1; the cores less one where idle time
    cannot be read.

    A thread per core (torch's own default) is the fastest on an idle machine and by far the slowest on a busy one:
    torch's threads then wait at every barrier for a thread the scheduler has put aside. Measured on 2 cores with the
    demo's training (README, "Threads"): 2 threads 1.3-1.4x faster than 1 on an idle machine, 1.9-2.3x slower with
    one other process burning a core, 2-14x slower when other jobs share the cores. The choice is made once, when
    the run starts; pass --threads N to fix it (a resumed run decides afresh)."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    per_process = max(1, usable_cores() // local)
    idle = idle_cores()
    if idle is None:
        return max(1, per_process - 1)
    return max(1, min(per_process, int(idle / local + 0.5)))


def set_cpu_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads: `threads`, or with 0 default_threads() unless OMP_NUM_THREADS is set (then
    torch already took it from there). Returns the count in force."""
    if threads:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(default_threads())
    return torch.get_num_threads()


def init_runtime(device: str = "auto", precision: str = "auto", threads: int = 0) -> Runtime:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL on GPU, gloo on CPU); on CPU set torch's threads
    (`threads`, 0: default_threads())."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if dev.type == "cpu":
        set_cpu_threads(threads)
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
