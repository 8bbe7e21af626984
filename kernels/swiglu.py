r"""SwiGLU gate in Triton, forward and backward, from two tensors or one packed (…, 2H) projection.

Math (elementwise, fp32 inside the kernel):

    σ = sigmoid(a),   silu(a) = a·σ,   c = silu(a) · b

Backward. d silu(a)/da = σ + a·σ·(1 − σ) = σ·(1 + a·(1 − σ)), so

    da = dc · b · σ · (1 + a·(1 − σ)),     db = dc · silu(a)

Nothing is saved but the inputs; σ is recomputed in the backward (one exp per element is cheaper than storing it).
The packed form reads a and b as the two halves of each (2H) row through row strides, with no split copies,
and its backward writes da | db into one (…, 2H) gradient. Gradients are freshly allocated, never written into
the inputs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._triton_utils import as_rows, check_float, check_same_device, custom_op, interpreting, next_power_of_2

__all__ = ["swiglu", "swiglu_packed"]


# ----------------------------------------------------------------------------------------------------- kernels


@triton.jit
def _swiglu_fwd_kernel(
    A,  # *T   gate input a (n_rows, n_cols), row stride stride_a, unit column stride
    stride_a,  # elements between consecutive rows of A
    B,  # *T   value input b (n_rows, n_cols), row stride stride_b
    stride_b,  # elements between consecutive rows of B
    C,  # *T   output silu(a)·b, contiguous (n_rows, n_cols)
    n_rows,  # number of rows
    n_cols,  # H (any size; tiles are masked)
    BLOCK_M: tl.constexpr,  # rows per tile
    BLOCK_N: tl.constexpr,  # columns per tile
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    rows64 = rows.to(tl.int64)[:, None]  # rows × stride can pass 2³¹
    a = tl.load(A + rows64 * stride_a + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    b = tl.load(B + rows64 * stride_b + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    c = a * tl.sigmoid(a) * b
    tl.store(C + rows64 * n_cols + cols[None, :], c.to(C.dtype.element_ty), mask=ok)


@triton.jit
def _swiglu_bwd_kernel(
    DC,  # *T   gradient at c (n_rows, n_cols), row stride stride_dc
    stride_dc,  # elements between consecutive rows of DC
    A,  # *T   forward a, row stride stride_a
    stride_a,  # elements between consecutive rows of A
    B,  # *T   forward b, row stride stride_b
    stride_b,  # elements between consecutive rows of B
    DA,  # *T   output da, row stride stride_da (the left half of a packed gradient when packed)
    stride_da,  # elements between consecutive rows of DA
    DB,  # *T   output db, row stride stride_db (the right half of a packed gradient when packed)
    stride_db,  # elements between consecutive rows of DB
    n_rows,  # number of rows
    n_cols,  # H
    BLOCK_M: tl.constexpr,  # rows per tile
    BLOCK_N: tl.constexpr,  # columns per tile
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    dc = tl.load(DC + rows64 * stride_dc + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    a = tl.load(A + rows64 * stride_a + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    b = tl.load(B + rows64 * stride_b + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    sig = tl.sigmoid(a)
    silu = a * sig
    da = dc * b * sig * (1.0 + a * (1.0 - sig))
    db = dc * silu
    tl.store(DA + rows64 * stride_da + cols[None, :], da.to(DA.dtype.element_ty), mask=ok)
    tl.store(DB + rows64 * stride_db + cols[None, :], db.to(DB.dtype.element_ty), mask=ok)


# ---------------------------------------------------------------------------------------------------- launchers


def _tiles(rows: int, cols: int) -> tuple[int, int, int, tuple[int, int]]:
    """(BLOCK_M, BLOCK_N, num_warps, grid): 4K-element tiles on GPU (16 per thread at 8 warps), 64K interpreted."""
    block_n = min(next_power_of_2(cols), 1024)
    budget = 65536 if interpreting() else 4096
    block_m = max(1, min(next_power_of_2(rows), budget // block_n))
    num_warps = 8 if block_m * block_n >= 4096 else 4
    return block_m, block_n, num_warps, (triton.cdiv(rows, block_m), triton.cdiv(cols, block_n))


def _fwd(a2: torch.Tensor, b2: torch.Tensor, out_shape: torch.Size) -> torch.Tensor:
    """Launch the forward on (rows, H) views; returns c of `out_shape`."""
    rows, n = a2.shape
    c = torch.empty(out_shape, dtype=a2.dtype, device=a2.device)
    if c.numel() == 0:
        return c
    block_m, block_n, warps, grid = _tiles(rows, n)
    _swiglu_fwd_kernel[grid](a2, a2.stride(0), b2, b2.stride(0), c, rows, n,
                             BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps)
    return c


def _bwd(dc2: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor, da2: torch.Tensor, db2: torch.Tensor) -> None:
    """Launch the backward, writing into freshly allocated da2/db2 (views of one packed buffer when packed)."""
    rows, n = a2.shape
    if rows * n == 0:
        return
    block_m, block_n, warps, grid = _tiles(rows, n)
    _swiglu_bwd_kernel[grid](dc2, dc2.stride(0), a2, a2.stride(0), b2, b2.stride(0), da2, da2.stride(0), db2,
                             db2.stride(0), rows, n, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps)


def _split_packed(ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ab2 = as_rows(ab)
    h = ab2.shape[1] // 2
    return ab2[:, :h], ab2[:, h:]  # views: the kernel walks both halves with ab's row stride


def _swiglu_fwd_impl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _fwd(as_rows(a), as_rows(b), a.shape)


def _swiglu_bwd_impl(dc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    da = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    db = torch.empty(b.shape, dtype=b.dtype, device=b.device)
    _bwd(as_rows(dc), as_rows(a), as_rows(b), da.view(-1, a.shape[-1]), db.view(-1, b.shape[-1]))
    return da, db


def _swiglu_packed_fwd_impl(ab: torch.Tensor) -> torch.Tensor:
    a2, b2 = _split_packed(ab)
    return _fwd(a2, b2, (*ab.shape[:-1], ab.shape[-1] // 2))


def _swiglu_packed_bwd_impl(dc: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    dab = torch.empty(ab.shape, dtype=ab.dtype, device=ab.device)
    a2, b2 = _split_packed(ab)
    da2, db2 = _split_packed(dab)
    _bwd(as_rows(dc), a2, b2, da2, db2)
    return dab


# ------------------------------------------------------------------------------------- custom ops (torch.compile)

_swiglu_fwd = custom_op("swiglu_fwd", _swiglu_fwd_impl, lambda a, b: a.new_empty(a.shape))
_swiglu_bwd = custom_op("swiglu_bwd", _swiglu_bwd_impl, lambda dc, a, b: (a.new_empty(a.shape), b.new_empty(b.shape)))
_packed_fwd = custom_op("swiglu_packed_fwd", _swiglu_packed_fwd_impl,
                        lambda ab: ab.new_empty((*ab.shape[:-1], ab.shape[-1] // 2)))
_packed_bwd = custom_op("swiglu_packed_bwd", _swiglu_packed_bwd_impl, lambda dc, ab: ab.new_empty(ab.shape))


# ------------------------------------------------------------------------------------------- autograd functions


class SwiGLUFunction(torch.autograd.Function):
    """c = silu(a) · b with the Triton forward and backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return _swiglu_fwd(a, b)

    @staticmethod
    def backward(ctx, dc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = ctx.saved_tensors
        return _swiglu_bwd(dc, a, b)


class SwiGLUPackedFunction(torch.autograd.Function):
    """c = silu(ab[..., :H]) · ab[..., H:] with the Triton forward and backward."""

    @staticmethod
    def forward(ctx, ab: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ab)
        return _packed_fwd(ab)

    @staticmethod
    def backward(ctx, dc: torch.Tensor) -> torch.Tensor:
        (ab,) = ctx.saved_tensors
        return _packed_bwd(dc, ab)


# ------------------------------------------------------------------------------------------------- public API


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """silu(a) · b with Triton (fp32 math, a.dtype out); a and b may be strided views."""
    check_float("swiglu", "a", a)
    check_float("swiglu", "b", b)
    if a.shape != b.shape:
        raise ValueError(f"swiglu: a shape {tuple(a.shape)} must equal b shape {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"swiglu: a and b must share a dtype for the Triton backend, got {a.dtype} and {b.dtype}")
    if a.dim() == 0:
        raise ValueError("swiglu: inputs must have at least one dim")
    check_same_device("swiglu", a=a, b=b)
    return SwiGLUFunction.apply(a, b)


def swiglu_packed(ab: torch.Tensor) -> torch.Tensor:
    """silu(ab[..., :H]) · ab[..., H:] with Triton on one packed (…, 2H) projection, no split copies."""
    check_float("swiglu_packed", "ab", ab)
    if ab.dim() < 1 or ab.shape[-1] % 2:
        raise ValueError(f"swiglu_packed: last dim must be even (a | b halves), got shape {tuple(ab.shape)}")
    return SwiGLUPackedFunction.apply(ab)
