r"""Rotary position embedding (rotate-half layout) for q and k in one Triton launch, forward and backward.

Math, for a head vector x of even length D split into halves x₁ = x[:D/2], x₂ = x[D/2:], position
p = offsets[b] + t and frequencies ωᵢ = base^(−2i/D):

    θᵢ = p · ωᵢ
    y₁ = x₁ cos θ − x₂ sin θ
    y₂ = x₂ cos θ + x₁ sin θ

Backward. Each (x₁ᵢ, x₂ᵢ) pair is rotated by θᵢ; a rotation is orthogonal, so the gradient is the rotation by
−θᵢ applied to (dy₁ᵢ, dy₂ᵢ):

    dx₁ = dy₁ cos θ + dy₂ sin θ
    dx₂ = dy₂ cos θ − dy₁ sin θ

which is the forward kernel with sin negated; nothing is saved but the offsets. Angles are computed in the kernel
from the host's ωᵢ (the exact values the reference uses) and the integer position, in fp32, so no cos/sin table is
read from memory. q and k may be strided (B, H, T, D) views (e.g. heads split out of a fused QKV projection);
the outputs are fresh contiguous tensors.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kernels._triton_utils import check_float, check_same_device, custom_op, interpreting, next_power_of_2
from kernels.reference import rope_inv_freq

__all__ = ["rope"]


# ----------------------------------------------------------------------------------------------------- kernel


@triton.jit
def _rope_kernel(
    Q,  # *T   q (B, H, T, D), strides (sqb, sqh, sqt, 1)
    sqb, sqh, sqt,  # element strides of Q's batch, head and time dims
    K,  # *T   k (B, H, T, D), strides (skb, skh, skt, 1)
    skb, skh, skt,  # element strides of K's batch, head and time dims
    QO,  # *T   output rotated q, contiguous (B, H, T, D)
    KO,  # *T   output rotated k, contiguous (B, H, T, D)
    OFFSETS,  # *int  per-sequence position offset (B,) (unused unless HAS_OFFSETS)
    INV_FREQ,  # *fp32 frequencies ωᵢ (HALF,)
    n_heads,  # H
    seq_len,  # T
    HALF: tl.constexpr,  # D / 2
    HAS_OFFSETS: tl.constexpr,  # positions start at offsets[b] instead of 0
    BACKWARD: tl.constexpr,  # rotate by −θ (the gradient of the forward rotation)
    BLOCK_T: tl.constexpr,  # time steps per program
    BLOCK_HALF: tl.constexpr,  # next power of two >= HALF
):
    b = tl.program_id(0)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    i = tl.arange(0, BLOCK_HALF)
    ok = (t < seq_len)[:, None] & (i < HALF)[None, :]
    pos = t
    if HAS_OFFSETS:
        pos = pos + tl.load(OFFSETS + b).to(tl.int32)
    inv_freq = tl.load(INV_FREQ + i, mask=i < HALF, other=0.0)
    theta = pos.to(tl.float32)[:, None] * inv_freq[None, :]  # (BLOCK_T, BLOCK_HALF), shared by every head
    cos = tl.cos(theta)
    sin = tl.sin(theta)
    if BACKWARD:
        sin = -sin
    b64 = b.to(tl.int64)  # b × batch stride can pass 2³¹
    out_t = t[:, None] * (2 * HALF) + i[None, :]
    for h in range(n_heads):
        q = Q + b64 * sqb + h * sqh + t[:, None] * sqt + i[None, :]
        q1 = tl.load(q, mask=ok, other=0.0).to(tl.float32)
        q2 = tl.load(q + HALF, mask=ok, other=0.0).to(tl.float32)
        qo = QO + (b64 * n_heads + h) * seq_len * (2 * HALF) + out_t
        tl.store(qo, (q1 * cos - q2 * sin).to(QO.dtype.element_ty), mask=ok)
        tl.store(qo + HALF, (q2 * cos + q1 * sin).to(QO.dtype.element_ty), mask=ok)
        k = K + b64 * skb + h * skh + t[:, None] * skt + i[None, :]
        k1 = tl.load(k, mask=ok, other=0.0).to(tl.float32)
        k2 = tl.load(k + HALF, mask=ok, other=0.0).to(tl.float32)
        ko = KO + (b64 * n_heads + h) * seq_len * (2 * HALF) + out_t
        tl.store(ko, (k1 * cos - k2 * sin).to(KO.dtype.element_ty), mask=ok)
        tl.store(ko + HALF, (k2 * cos + k1 * sin).to(KO.dtype.element_ty), mask=ok)


# ---------------------------------------------------------------------------------------------------- launcher


@functools.lru_cache(maxsize=64)
def _inv_freq(head_dim: int, base: float, device: torch.device) -> torch.Tensor:
    return rope_inv_freq(head_dim, base, device, torch.float32)


def _launch(q: torch.Tensor, k: torch.Tensor, offsets: torch.Tensor | None, base: float,
            backward: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k by +θ (forward) or −θ (backward) into fresh contiguous tensors."""
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    B, H, T, D = q.shape
    qo = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    ko = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    if qo.numel() == 0:
        return qo, ko
    half = D // 2
    # Interpreted: one program per sequence (it costs ~1 ms per program); GPU: 32 steps × all heads per program.
    block_t = next_power_of_2(T) if interpreting() else min(32, next_power_of_2(T))
    grid = (B, triton.cdiv(T, block_t))
    _rope_kernel[grid](
        q, q.stride(0), q.stride(1), q.stride(2), k, k.stride(0), k.stride(1), k.stride(2), qo, ko,
        offsets if offsets is not None else q, _inv_freq(D, float(base), q.device), H, T,
        HALF=half, HAS_OFFSETS=offsets is not None, BACKWARD=backward,
        BLOCK_T=block_t, BLOCK_HALF=next_power_of_2(half), num_warps=4,
    )
    return qo, ko


def _rope_fwd_impl(q: torch.Tensor, k: torch.Tensor, offsets: torch.Tensor | None,
                   base: float) -> tuple[torch.Tensor, torch.Tensor]:
    return _launch(q, k, offsets, base, backward=False)


def _rope_bwd_impl(dq: torch.Tensor, dk: torch.Tensor, offsets: torch.Tensor | None,
                   base: float) -> tuple[torch.Tensor, torch.Tensor]:
    return _launch(dq, dk, offsets, base, backward=True)


# ------------------------------------------------------------------------------------- custom ops (torch.compile)


def _rotated_fake(q, k, offsets, base):
    return q.new_empty(q.shape), k.new_empty(k.shape)


_rope_fwd = custom_op("rope_fwd", _rope_fwd_impl, _rotated_fake)
_rope_bwd = custom_op("rope_bwd", _rope_bwd_impl, _rotated_fake)


# ------------------------------------------------------------------------------------------- autograd function


class RoPEFunction(torch.autograd.Function):
    """(q, k) rotated by position with the Triton forward; the backward is the inverse rotation."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, offsets: torch.Tensor | None,
                base: float) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(offsets)
        ctx.base = base
        return _rope_fwd(q, k, offsets, base)

    @staticmethod
    def backward(ctx, dq: torch.Tensor, dk: torch.Tensor):
        (offsets,) = ctx.saved_tensors
        dq_in, dk_in = _rope_bwd(dq, dk, offsets, ctx.base)
        return dq_in, dk_in, None, None


# ------------------------------------------------------------------------------------------------- public API


def rope(
    q: torch.Tensor, k: torch.Tensor, offsets: torch.Tensor | None = None, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half RoPE on q, k (B, H, T, D) with Triton, position = offsets[b] + t; returns new (q, k)."""
    check_float("rope", "q", q)
    check_float("rope", "k", k)
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"rope: q and k must both be (B, H, T, D), got {tuple(q.shape)} and {tuple(k.shape)}")
    if q.shape[-1] % 2:
        raise ValueError(f"rope: head dim must be even for rotate-half RoPE, got D={q.shape[-1]}")
    if offsets is not None:
        if offsets.shape != (q.shape[0],) or offsets.is_floating_point():
            raise ValueError(f"rope: offsets must be an integer tensor of shape ({q.shape[0]},), "
                             f"got {offsets.dtype} {tuple(offsets.shape)}")
        offsets = offsets.contiguous()
    check_same_device("rope", q=q, k=k, offsets=offsets)
    return RoPEFunction.apply(q, k, offsets, float(base))
