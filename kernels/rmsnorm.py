r"""RMSNorm and fused residual + RMSNorm in Triton, forward and backward.

Math, per row of length N (fp32 inside the kernel whatever the storage dtype):

    h    = x + α ⊙ f                      (residual variant only; α a scalar or per-channel (N,))
    r    = rsqrt(mean(h²) + eps)           (saved per row for the backward, fp32)
    ĥ    = h · r
    y    = ĥ ⊙ w

Backward. With g = dy ⊙ w, the Jacobian of ĥ w.r.t. h is r·(I − ĥĥᵀ/N), so

    dh   = r · (g − ĥ · mean(g ⊙ ĥ))  [+ dh_out, the gradient arriving at the returned h]
    dw   = Σ_rows dy ⊙ ĥ
    dx   = dh,   df = α ⊙ dh,   dα = Σ_rows dh ⊙ f   (summed over channels too when α is a scalar)

The residual backward recomputes h from x and f instead of reading the stored h: it must load f for dα anyway, so
the traffic is the same and h stays exact in fp32 when x, f are fp16/bf16.

dw and dα are reductions over rows. Each program of the persistent backward kernel owns a contiguous range of
rows and writes its fp32 partial sums to row `pid` of a (programs, N) buffer that the host sums: deterministic,
no atomics. Outputs are always freshly allocated (no in-place writes into dy or the inputs).

Under torch.compile both ops are opaque custom ops (torch.ops.slr_kernels.*) with fake implementations, wrapped in
a torch.autograd.Function, so compiled models keep the kernels without graph-breaking.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._triton_utils import (
    as_rows,
    check_float,
    check_same_device,
    custom_op,
    next_power_of_2,
    num_warps_for,
    persistent_programs,
    rows_per_block,
)

__all__ = ["residual_rmsnorm", "rmsnorm"]

# A whole row lives in registers (one tile): beyond this, tiles spill on every GPU Triton targets.
MAX_HIDDEN = 32768


# ----------------------------------------------------------------------------------------------------- kernels


@triton.jit
def _rmsnorm_fwd_kernel(
    X,  # *T   input rows (n_rows, n_cols), row stride stride_x, unit column stride
    stride_x,  # elements between consecutive rows of X
    F,  # *T   residual branch, same shape as X (unused unless HAS_RESIDUAL)
    stride_f,  # elements between consecutive rows of F
    ALPHA,  # *T   residual scale: one value, or n_cols values when ALPHA_PER_CHANNEL
    H,  # *T   output h = x + α·f, contiguous (n_rows, n_cols) (unused unless HAS_RESIDUAL)
    Y,  # *T   output y, contiguous (n_rows, n_cols)
    W,  # *Tw  weight (n_cols,)
    RSTD,  # *fp32 output 1/rms per row (n_rows,), kept for the backward
    n_rows,  # number of rows
    n_cols,  # hidden size N (any size; BLOCK_N is the next power of two, masked)
    eps,  # added to mean(h²) before the rsqrt
    HAS_RESIDUAL: tl.constexpr,  # fused residual variant
    ALPHA_PER_CHANNEL: tl.constexpr,  # α has n_cols entries (else a single scalar)
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_N: tl.constexpr,  # columns per tile, >= n_cols
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    row_ok = rows < n_rows
    col_ok = cols < n_cols
    ok = row_ok[:, None] & col_ok[None, :]
    rows64 = rows.to(tl.int64)  # rows × stride can pass 2³¹ at the model's largest shapes
    h = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        f = tl.load(F + rows64[:, None] * stride_f + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        if ALPHA_PER_CHANNEL:
            alpha = tl.load(ALPHA + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        else:
            alpha = tl.load(ALPHA).to(tl.float32)
        h = h + alpha * f
        tl.store(H + rows64[:, None] * n_cols + cols[None, :], h.to(H.dtype.element_ty), mask=ok)
    rstd = tl.rsqrt(tl.sum(h * h, axis=1) / n_cols + eps)
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = h * rstd[:, None] * w[None, :]
    tl.store(Y + rows64[:, None] * n_cols + cols[None, :], y.to(Y.dtype.element_ty), mask=ok)
    tl.store(RSTD + rows, rstd, mask=row_ok)


@triton.jit
def _rmsnorm_bwd_kernel(
    DY,  # *T   gradient at y (n_rows, n_cols), row stride stride_dy
    stride_dy,  # elements between consecutive rows of DY
    DH,  # *T   gradient at the returned h (unused unless HAS_DH), row stride stride_dh
    stride_dh,  # elements between consecutive rows of DH
    X,  # *T   forward input x, row stride stride_x
    stride_x,  # elements between consecutive rows of X
    F,  # *T   forward residual branch f (unused unless HAS_RESIDUAL), row stride stride_f
    stride_f,  # elements between consecutive rows of F
    ALPHA,  # *T   residual scale (1 or n_cols values)
    W,  # *Tw  weight (n_cols,)
    RSTD,  # *fp32 1/rms per row from the forward
    DX,  # *T   output dx, contiguous (n_rows, n_cols)
    DF,  # *T   output df, contiguous (unused unless HAS_RESIDUAL)
    DW_PART,  # *fp32 (programs, BLOCK_N) partial dw, one row per program
    DA_PART,  # *fp32 (programs, BLOCK_N) partial dα per channel (unused unless HAS_RESIDUAL)
    n_rows,  # number of rows
    n_cols,  # hidden size N
    rows_per_program,  # contiguous rows owned by each program (a multiple of BLOCK_M)
    HAS_RESIDUAL: tl.constexpr,  # fused residual variant: recompute h, write df, accumulate dα
    HAS_DH: tl.constexpr,  # a gradient arrives at the returned h
    ALPHA_PER_CHANNEL: tl.constexpr,  # α has n_cols entries
    BLOCK_M: tl.constexpr,  # rows per loop step
    BLOCK_N: tl.constexpr,  # columns per tile, >= n_cols
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < n_cols
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        if ALPHA_PER_CHANNEL:
            alpha = tl.load(ALPHA + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        else:
            alpha = tl.load(ALPHA).to(tl.float32)
    dw_acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    da_acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    for start in range(row_start, row_end, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        row_ok = rows < row_end
        ok = row_ok[:, None] & col_ok[None, :]
        rows64 = rows.to(tl.int64)
        h = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            f = tl.load(F + rows64[:, None] * stride_f + cols[None, :], mask=ok, other=0.0).to(tl.float32)
            h = h + alpha * f
        rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)
        h_hat = h * rstd[:, None]
        dy = tl.load(DY + rows64[:, None] * stride_dy + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        g = dy * w[None, :]
        c = tl.sum(g * h_hat, axis=1) / n_cols
        dh = (g - h_hat * c[:, None]) * rstd[:, None]
        if HAS_DH:
            dh += tl.load(DH + rows64[:, None] * stride_dh + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        tl.store(DX + rows64[:, None] * n_cols + cols[None, :], dh.to(DX.dtype.element_ty), mask=ok)
        dw_acc += tl.sum(dy * h_hat, axis=0)
        if HAS_RESIDUAL:
            tl.store(DF + rows64[:, None] * n_cols + cols[None, :], (alpha * dh).to(DF.dtype.element_ty), mask=ok)
            da_acc += tl.sum(dh * f, axis=0)
    tl.store(DW_PART + pid * BLOCK_N + cols, dw_acc)
    if HAS_RESIDUAL:
        tl.store(DA_PART + pid * BLOCK_N + cols, da_acc)


# ---------------------------------------------------------------------------------------------------- launchers


def _alpha_tensor(alpha: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(alpha, torch.Tensor):
        return torch.tensor([float(alpha)], dtype=torch.float32, device=x.device)
    if alpha.numel() != 1 and alpha.shape != (x.shape[-1],):
        raise ValueError(f"residual_rmsnorm: alpha must be a scalar, shape (1,) or ({x.shape[-1]},), "
                         f"got shape {tuple(alpha.shape)}")
    return alpha.reshape(-1).contiguous()


def _check(op: str, x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor | None = None) -> None:
    check_float(op, "x", x)
    check_float(op, "weight", weight)
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"{op}: x must have a non-empty last dim, got shape {tuple(x.shape)}")
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"{op}: weight must have shape ({x.shape[-1]},) to match x {tuple(x.shape)}, "
                         f"got {tuple(weight.shape)}")
    if x.shape[-1] > MAX_HIDDEN:
        raise ValueError(f"{op}: hidden size {x.shape[-1]} > {MAX_HIDDEN}: one row must fit in one tile "
                         f"for the Triton kernel; use backend 'native' for wider rows")
    if f is not None:
        check_float(op, "f", f)
        if f.shape != x.shape:
            raise ValueError(f"{op}: f shape {tuple(f.shape)} must equal x shape {tuple(x.shape)}")
    check_same_device(op, x=x, weight=weight, f=f)


def _fwd(
    x: torch.Tensor, f: torch.Tensor | None, alpha: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Launch the forward; returns (h or None, y, rstd) with h, y shaped like x and rstd (rows,) fp32."""
    n = x.shape[-1]
    x2 = as_rows(x)
    rows = x2.shape[0]
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    rstd = torch.empty(rows, dtype=torch.float32, device=x.device)
    h = torch.empty(x.shape, dtype=x.dtype, device=x.device) if f is not None else None
    if rows == 0:
        return h, y, rstd
    f2 = as_rows(f) if f is not None else x2
    block_n = next_power_of_2(n)
    block_m = rows_per_block(rows, block_n)
    _rmsnorm_fwd_kernel[(triton.cdiv(rows, block_m),)](
        x2, x2.stride(0), f2, f2.stride(0), alpha if alpha is not None else weight, h if h is not None else y,
        y, weight, rstd, rows, n, eps,
        HAS_RESIDUAL=f is not None, ALPHA_PER_CHANNEL=alpha is not None and alpha.numel() > 1,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps_for(block_m * block_n),
    )
    return h, y, rstd


def _bwd(
    dy: torch.Tensor, dh: torch.Tensor | None, x: torch.Tensor, f: torch.Tensor | None, alpha: torch.Tensor | None,
    weight: torch.Tensor, rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Launch the backward; returns (dx, df or None, dα or None, dw) with dw, dα in the parameters' dtypes."""
    n = x.shape[-1]
    x2, dy2 = as_rows(x), as_rows(dy)
    rows = x2.shape[0]
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    df = torch.empty(f.shape, dtype=f.dtype, device=f.device) if f is not None else None
    if rows == 0:
        da = torch.zeros_like(alpha) if alpha is not None else None
        return dx, df, da, torch.zeros_like(weight)
    f2 = as_rows(f) if f is not None else x2
    dh2 = as_rows(dh) if dh is not None else dy2
    block_n = next_power_of_2(n)
    block_m = rows_per_block(rows, block_n)
    programs = persistent_programs(x.device, triton.cdiv(rows, block_m))
    per_program = triton.cdiv(triton.cdiv(rows, programs), block_m) * block_m
    programs = triton.cdiv(rows, per_program)
    dw_part = torch.empty(programs, block_n, dtype=torch.float32, device=x.device)
    da_part = torch.empty(programs, block_n, dtype=torch.float32, device=x.device) if f is not None else dw_part
    _rmsnorm_bwd_kernel[(programs,)](
        dy2, dy2.stride(0), dh2, dh2.stride(0), x2, x2.stride(0), f2, f2.stride(0),
        alpha if alpha is not None else weight, weight, rstd, dx, df if df is not None else dx, dw_part, da_part,
        rows, n, per_program,
        HAS_RESIDUAL=f is not None, HAS_DH=dh is not None, ALPHA_PER_CHANNEL=alpha is not None and alpha.numel() > 1,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps_for(block_m * block_n),
    )
    dw = dw_part[:, :n].sum(0).to(weight.dtype)
    da = None
    if f is not None:
        da_cols = da_part[:, :n].sum(0)
        da = (da_cols if alpha.numel() > 1 else da_cols.sum().reshape(1)).to(alpha.dtype)
    return dx, df, da, dw


# ------------------------------------------------------------------------------------- custom ops (torch.compile)


def _rmsnorm_fwd_impl(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _, y, rstd = _fwd(x, None, None, weight, eps)
    return y, rstd


def _rmsnorm_bwd_impl(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    dx, _, _, dw = _bwd(dy, None, x, None, None, weight, rstd)
    return dx, dw


def _residual_fwd_impl(
    x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _fwd(x, f, alpha, weight, eps)


def _residual_bwd_impl(
    dy: torch.Tensor, dh: torch.Tensor | None, x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor,
    weight: torch.Tensor, rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _bwd(dy, dh, x, f, alpha, weight, rstd)


def _rstd_like(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.numel() // x.shape[-1], dtype=torch.float32)


_rmsnorm_fwd = custom_op("rmsnorm_fwd", _rmsnorm_fwd_impl, lambda x, weight, eps: (x.new_empty(x.shape), _rstd_like(x)))
_rmsnorm_bwd = custom_op("rmsnorm_bwd", _rmsnorm_bwd_impl,
                         lambda dy, x, weight, rstd: (x.new_empty(x.shape), torch.empty_like(weight)))
_residual_fwd = custom_op("residual_rmsnorm_fwd", _residual_fwd_impl,
                          lambda x, f, alpha, weight, eps: (x.new_empty(x.shape), x.new_empty(x.shape), _rstd_like(x)))
_residual_bwd = custom_op("residual_rmsnorm_bwd", _residual_bwd_impl,
                          lambda dy, dh, x, f, alpha, weight, rstd: (x.new_empty(x.shape), f.new_empty(f.shape),
                                                                     torch.empty_like(alpha), torch.empty_like(weight)))


# ------------------------------------------------------------------------------------------- autograd functions


class RMSNormFunction(torch.autograd.Function):
    """y = rmsnorm(x) · w with the Triton forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = _rmsnorm_fwd(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, weight, rstd = ctx.saved_tensors
        dx, dw = _rmsnorm_bwd(dy, x, weight, rstd)
        return dx, dw, None


class ResidualRMSNormFunction(torch.autograd.Function):
    """(h, y) = (x + α·f, rmsnorm(h) · w) with the Triton forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        h, y, rstd = _residual_fwd(x, f, alpha, weight, eps)
        ctx.save_for_backward(x, f, alpha, weight, rstd)
        ctx.set_materialize_grads(False)  # an unused h passes None: the kernel then skips reading dh
        return h, y

    @staticmethod
    def backward(ctx, dh: torch.Tensor | None, dy: torch.Tensor | None):
        x, f, alpha, weight, rstd = ctx.saved_tensors
        if dy is None:  # only h was used: y contributes nothing
            dy = torch.zeros_like(x)
        dx, df, da, dw = _residual_bwd(dy, dh, x, f, alpha, weight, rstd)
        return dx, df, da, dw, None


# ------------------------------------------------------------------------------------------------- public API


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dim with Triton: x · rsqrt(mean(x²) + eps) · weight, fp32 math, x.dtype out."""
    _check("rmsnorm", x, weight)
    return RMSNormFunction.apply(x, weight, float(eps))


def residual_rmsnorm(
    x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor | float, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused h = x + alpha·f and y = rmsnorm(h) · weight with Triton; alpha scalar or per-channel; returns (h, y)."""
    _check("residual_rmsnorm", x, weight, f)
    alpha_t = _alpha_tensor(alpha, x)
    check_float("residual_rmsnorm", "alpha", alpha_t)
    check_same_device("residual_rmsnorm", x=x, alpha=alpha_t)
    h, y = ResidualRMSNormFunction.apply(x, f, alpha_t, weight, float(eps))
    return h, y
