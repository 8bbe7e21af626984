"""Host-side helpers shared by the Triton launchers: layouts, block sizes, grid sizes, custom-op plumbing.

Importing this module does not import Triton; the kernel modules do, and only the registry imports them.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import torch

# Custom-op namespace: torch.ops.slr_kernels.<name> is what torch.compile sees (an opaque call with a fake impl).
NAMESPACE = "slr_kernels"


def interpreting() -> bool:
    """True when Triton runs through its numpy interpreter (TRITON_INTERPRET=1): fixed configs, tiny grids."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def compiled_triton_imported() -> bool:
    """Triton is loaded in compiled mode. triton.jit picks interpreter or compiler when it decorates, and Triton's
    own tl functions are decorated when triton is imported, so a later TRITON_INTERPRET=1 cannot take effect."""
    triton = sys.modules.get("triton")
    language = getattr(triton, "language", None)
    return language is not None and isinstance(language.cdiv, triton.runtime.JITFunction)


def custom_op(name: str, impl: Callable, fake: Callable) -> Callable:
    """`impl` as the custom op torch.ops.slr_kernels.<name> (its shapes from `fake`), called the one right way.

    Traced by torch.compile, the call goes through the op: an opaque node with a fake implementation, so a compiled
    model keeps the kernel without a graph break. Eager, it calls `impl` directly and skips the dispatcher's few µs.
    """
    op = torch.library.custom_op(f"{NAMESPACE}::{name}", impl, mutates_args=())
    op.register_fake(fake)

    @functools.wraps(impl)
    def call(*args):
        return (op if torch.compiler.is_compiling() else impl)(*args)

    return call


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (>= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """(…, N) -> (rows, N) with unit column stride, as a view when the strides allow (sliced rows stay views)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    try:
        return x.view(-1, x.shape[-1])
    except RuntimeError:  # leading dims not mergeable into one row stride (e.g. transposed batch/time)
        return x.contiguous().view(-1, x.shape[-1])


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def persistent_programs(device: torch.device, n_blocks: int) -> int:
    """Programs for a persistent (grid-stride) kernel: a few per SM on CUDA, few under the interpreter."""
    if device.type == "cuda" and not interpreting():
        target = 2 * _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    else:
        target = 4  # the interpreter pays ~1 ms per program: fewer, larger programs are faster
    return max(1, min(n_blocks, target))


def rows_per_block(n_rows: int, block_n: int) -> int:
    """Rows per program tile: ~4K fp32 elements per tile on GPU (registers), ~16K under the interpreter."""
    budget = 16384 if interpreting() else 4096
    return max(1, min(next_power_of_2(n_rows), budget // block_n, 64))


def num_warps_for(tile_elems: int) -> int:
    """Warps for a tile of `tile_elems` elements: ~8 elements per thread keeps loads vectorized without spills."""
    return max(1, min(16, next_power_of_2(tile_elems // 256)))


def check_float(op: str, name: str, t: torch.Tensor) -> None:
    """Kernels take fp32/fp16/bf16; anything else is a caller error, named."""
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16 for the Triton backend, got {t.dtype}")


def check_same_device(op: str, **tensors: torch.Tensor) -> None:
    """All tensors of one launch on one device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(f"{op}: inputs must share one device, got {listing}")
