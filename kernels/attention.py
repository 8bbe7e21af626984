"""Fused RoPE attention (FlashAttention-2 style), bidirectional, with key padding and an optional local window.

Forward, for one (batch b, head h), head dim D = 2·E, positions p_t = offsets[b] + t, θ_e = base^(-2e/D):

    rotate-half RoPE:  x̃[t, e] = x[t, e]·cos(p_t θ_e) − x[t, e+E]·sin(p_t θ_e)
                       x̃[t, e+E] = x[t, e+E]·cos(p_t θ_e) + x[t, e]·sin(p_t θ_e)        (x̃ = R_t x)
    S = scale · Q̃ K̃ᵀ,   S[i, j] = −∞ where j ≥ L (L = lengths[b]) or, with a window w, |i − j| > w
    P = softmax_j(S),   O = P V,   and O[i] = 0 for rows i ≥ L or rows with no visible key.

Each program owns BLOCK_M query rows and streams key blocks with the online softmax: a running max m and sum l in
fp32, in base 2 (S is scaled by log2(e) once so the inner loop uses exp2). Key blocks wholly outside the window
or past L are never visited; the loop bounds come from the window and the length, so a short sequence in a padded
batch costs only its own blocks. The row's log-sum-exp lse = m + log2(l) (base 2) is saved for the backward pass;
rows with nothing to attend to get lse = +∞, which makes every recomputed P = exp2(S − lse) exactly 0 there, so
those rows produce zero output and zero gradients with no NaN and no special case in the backward kernels.

RoPE inside the kernel: Q and K tiles are loaded as their two halves (E columns each) and rotated in fp32 on the
way into the dots; rotated tensors never touch memory. The angles come from two small fp32 tables, cos(t·θ_e)
and sin(t·θ_e) of shape (T, E), built once per (T, D, base, device) with the reference's own torch ops (so with
no offsets the rotation matches the reference exactly), turned by the sequence offset with the angle-sum
identities: cos((o + t)θ) = cos(tθ)cos(oθ) − sin(tθ)sin(oθ), and likewise for sin. Each program evaluates only
the E values cos(oθ), sin(oθ) itself. Why tables rather than sin/cos per element: the backward kernels rotate
every Q (or K) tile once per key (or query) block, and accurate fp32 sin/cos cost tens of instructions each,
as much as the small D = 32 dots they feed; a table row is two L2-resident loads and four FMAs. Why not one
table indexed by absolute position: its size would depend on max(offsets), a device-to-host sync per call.
Because the halves stay separate, Q̃K̃ᵀ = Q̃₁K̃₁ᵀ + Q̃₂K̃₂ᵀ is two dots over E columns each; E is padded to a
power of two ≥ 16 (tl.dot's minimum) with masked loads, so D = 16, 24, 40, ... all work.

Backward (as in FlashAttention-2). With dO given and Δ_i = Σ_d dO[i, d]·O[i, d] (a small preprocess kernel):

    dV = Pᵀ dO
    dP = dO Vᵀ
    dS = P ∘ (dP − Δ)            (softmax Jacobian: dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik), and Σ_k P_ik dP_ik = Δ_i)
    dQ̃ = scale · dS K̃,   dK̃ = scale · dSᵀ Q̃

P is recomputed per tile from the saved lse, so no (T, T) matrix is ever stored. dK and dV are produced by one
program per key block that iterates over the query blocks that can see it; dQ by a separate program per query
block that iterates over key blocks. Each output element is written by exactly one program, so there are no
atomics and the result is deterministic. Finally RoPE is undone on the gradients: x̃ = R x with R a rotation
(orthogonal), so ∂L/∂x = Rᵀ ∂L/∂x̃, i.e. the same rotation with −sin:

    dx[e] = dx̃[e]·cos + dx̃[e+E]·sin,     dx[e+E] = dx̃[e+E]·cos − dx̃[e]·sin

Inputs may be any strided (B, H, T, D) views (e.g. q, k, v sliced out of one packed qkv projection): every
kernel takes explicit strides, so nothing is copied. Outputs are freshly allocated; inputs are never written.
Accumulation is fp32 for fp16/bf16/fp32 inputs; fp32 dots use full precision unless torch allows TF32 matmuls.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import triton
import triton.language as tl

from kernels._triton_utils import custom_op, interpreting

__all__ = ["rope_attention"]

_LOG2E = math.log2(math.e)
_MAX_HEAD_DIM = 128  # the range the tile configs are sized and tested for (the model uses 32-64)
_INTERPRET_BLOCK = 16  # the interpreter runs ~1 ms per program instance: small tiles, no autotuning


def _prune_by_length(configs: list, named_args: dict, **kwargs) -> list:
    """Drop configs whose blocks exceed the (padded) sequence length; keep at least the smallest one."""
    limit = max(16, triton.next_power_of_2(int(named_args["T"])))
    kept = [c for c in configs if max(c.kwargs.get("BLOCK_M", 16), c.kwargs.get("BLOCK_N", 16)) <= limit]
    return kept or [min(configs, key=lambda c: c.kwargs.get("BLOCK_M", 16) * c.kwargs.get("BLOCK_N", 16))]


# ----------------------------------------------------------------------------------------------------------------
# Device helpers
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _offset_rotation(OFFSETS, INV_FREQ, b, offs_e, half):
    # cos and sin of offsets[b]·θ_e, (BLOCK_HALF,) fp32: the per-sequence part of every angle in this program.
    inv_freq = tl.load(INV_FREQ + offs_e, mask=offs_e < half, other=0.0)
    angle = tl.load(OFFSETS + b).to(tl.float32) * inv_freq
    return tl.cos(angle), tl.sin(angle)


@triton.jit
def _rope_angles(COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o):
    # cos and sin of (offsets[b] + t)·θ_e for a (rows, BLOCK_HALF) tile: table rows for t, turned by the offset
    # with the angle-sum identities (four FMAs instead of a sin and a cos per element).
    mask = (offs_t[:, None] < T) & (offs_e[None, :] < half)
    table = offs_t[:, None] * half + offs_e[None, :]
    cos_t = tl.load(COS_T + table, mask=mask, other=1.0)
    sin_t = tl.load(SIN_T + table, mask=mask, other=0.0)
    return cos_t * cos_o[None, :] - sin_t * sin_o[None, :], sin_t * cos_o[None, :] + cos_t * sin_o[None, :]


@triton.jit
def _rope_tile(X, stride_t, stride_d, COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o):
    # Load the two halves of a (rows, D) tile of un-rotated q or k and return them rotated, in fp32.
    rows = X + offs_t[:, None] * stride_t
    mask = (offs_t[:, None] < T) & (offs_e[None, :] < half)
    x1 = tl.load(rows + offs_e[None, :] * stride_d, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(rows + (offs_e[None, :] + half) * stride_d, mask=mask, other=0.0).to(tl.float32)
    cos, sin = _rope_angles(COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o)
    return x1 * cos - x2 * sin, x2 * cos + x1 * sin


@triton.jit
def _store_unrotated(X, stride_t, stride_d, dx1, dx2, COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o):
    # Store Rᵀ·[dx1, dx2] (the gradient w.r.t. the un-rotated input): the same rotation with −sin.
    cos, sin = _rope_angles(COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o)
    rows = X + offs_t[:, None] * stride_t
    mask = (offs_t[:, None] < T) & (offs_e[None, :] < half)
    tl.store(rows + offs_e[None, :] * stride_d, (dx1 * cos + dx2 * sin).to(X.dtype.element_ty), mask=mask)
    tl.store(rows + (offs_e[None, :] + half) * stride_d, (dx2 * cos - dx1 * sin).to(X.dtype.element_ty), mask=mask)


@triton.jit
def _visible_range(start, length, WINDOW, SPAN: tl.constexpr, STEP: tl.constexpr, HAS_WINDOW: tl.constexpr):
    # [lo, hi) of the rows on the other side that a block of SPAN rows at `start` can see: inside the window and
    # below the length, and none at all when the block itself lies past the length. lo is aligned to STEP tiles.
    end = tl.where(start < length, length, 0)
    lo = end * 0
    hi = end
    if HAS_WINDOW:
        lo = tl.maximum(start - WINDOW, 0) // STEP * STEP
        hi = tl.minimum(start + SPAN + WINDOW, end)
    return lo, hi


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------


# Forward: big query blocks amortise the K/V stream; T is 64-256 in the model. A short list keeps the first-launch
# tuning (one compile per config and key) to seconds.
_FWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in ((32, 32, 4, 2), (64, 32, 4, 2), (64, 64, 4, 2), (64, 64, 4, 3), (128, 32, 4, 2),
                         (128, 64, 8, 2), (128, 64, 8, 3))
]


@triton.jit
def _attn_fwd(
    Q, K, V,  # (B, H, T, D) inputs, any strides, un-rotated q and k
    Out,  # (B, H, T, D) output
    LSE,  # (B·H, T) fp32 out: base-2 log-sum-exp of scaled scores, +inf for rows that see no key
    LENGTHS, OFFSETS,  # (B,) int32: valid length and first RoPE position per sequence
    INV_FREQ,  # (D/2,) fp32: θ_e = base^(-2e/D), the reference's values
    COS_T, SIN_T,  # (T, D/2) fp32: cos and sin of t·θ_e, the reference's values
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_ob, stride_oh, stride_ot, stride_od,
    H, T,  # heads, padded sequence length
    WINDOW,  # local window w (only read when HAS_WINDOW)
    qk_scale,  # softmax scale · log2(e), so exp2 can replace exp
    HEAD_DIM: tl.constexpr,  # D (even)
    BLOCK_HALF: tl.constexpr,  # next power of two ≥ max(D/2, 16)
    BLOCK_D: tl.constexpr,  # next power of two ≥ max(D, 16)
    HAS_WINDOW: tl.constexpr,
    DOT_PRECISION: tl.constexpr,  # "ieee" or "tf32": only affects fp32 inputs
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    length = tl.minimum(tl.maximum(tl.load(LENGTHS + b), 0), T)
    half = HEAD_DIM // 2
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    cos_o, sin_o = _offset_rotation(OFFSETS, INV_FREQ, b, offs_e, half)

    # Rotated Q tile in the input dtype, so the dots run on tensor cores with fp32 accumulation.
    q1, q2 = _rope_tile(Q + b * stride_qb + h * stride_qh, stride_qt, stride_qd, COS_T, SIN_T, offs_m, offs_e,
                        half, T, cos_o, sin_o)
    q1 = q1.to(Q.dtype.element_ty)
    q2 = q2.to(Q.dtype.element_ty)

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    lo, hi = _visible_range(start_m, length, WINDOW, BLOCK_M, BLOCK_N, HAS_WINDOW)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k1, k2 = _rope_tile(k_base, stride_kt, stride_kd, COS_T, SIN_T, offs_n, offs_e, half, T, cos_o, sin_o)
        s = tl.dot(q1, tl.trans(k1.to(K.dtype.element_ty)), input_precision=DOT_PRECISION)
        s = tl.dot(q2, tl.trans(k2.to(K.dtype.element_ty)), s, input_precision=DOT_PRECISION)
        s = s * qk_scale
        visible = offs_n[None, :] < length
        if HAS_WINDOW:
            dist = offs_m[:, None] - offs_n[None, :]
            visible = visible & (dist <= WINDOW) & (dist >= -WINDOW)
        s = tl.where(visible, s, float("-inf"))

        # Online softmax. A row with no visible key so far keeps m = -inf; subtracting 0 instead keeps exp2 finite.
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                    mask=(offs_n[:, None] < T) & mask_d[None, :], other=0.0)
        acc = tl.dot(p.to(V.dtype.element_ty), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new

    row_ok = (offs_m < length) & (l_i > 0.0)
    l_safe = tl.where(row_ok, l_i, 1.0)
    out = tl.where(row_ok[:, None], acc / l_safe[:, None], 0.0)
    lse = tl.where(row_ok, m_i + tl.log2(l_safe), float("inf"))
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=(offs_m[:, None] < T) & mask_d[None, :])
    tl.store(LSE + bh * T + offs_m, lse, mask=offs_m < T)


@triton.jit
def _attn_bwd_delta(
    Out, DO,  # (B, H, T, D) forward output and its incoming gradient, any strides
    DELTA,  # (B·H, T) fp32 out: rowsum(dO ∘ O)
    stride_ob, stride_oh, stride_ot, stride_od,
    stride_dob, stride_doh, stride_dot, stride_dod,
    H, T,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < T) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od,
                mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                 mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + bh * T + offs_m, tl.sum(o * do, 1), mask=offs_m < T)


# Backward: two (BLOCK, D) accumulators per program plus recomputed P (≈ 230-255 registers at 64×64, D = 64 on
# sm_90 with no spills), so blocks stay at 32-64.
_BWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in ((32, 32, 4, 2), (32, 32, 4, 3), (32, 64, 4, 2), (64, 32, 4, 2), (64, 64, 4, 2),
                         (64, 64, 8, 2), (64, 64, 8, 3))
]


@triton.jit
def _attn_bwd_dkdv(
    Q, K, V, DO,  # (B, H, T, D) forward inputs and incoming gradient, any strides
    LSE, DELTA,  # (B·H, T) fp32 from the forward pass and the delta kernel
    DK, DV,  # (B, H, T, D) out: gradients w.r.t. the un-rotated k and v
    LENGTHS, OFFSETS, INV_FREQ, COS_T, SIN_T,  # as in the forward kernel
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_dob, stride_doh, stride_dot, stride_dod,
    stride_dkb, stride_dkh, stride_dkt, stride_dkd,
    stride_dvb, stride_dvh, stride_dvt, stride_dvd,
    H, T, WINDOW,
    sm_scale,  # softmax scale (dK̃ = scale · dSᵀ Q̃)
    qk_scale,  # sm_scale · log2(e), to recompute P in base 2 like the forward
    HEAD_DIM: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    length = tl.minimum(tl.maximum(tl.load(LENGTHS + b), 0), T)
    half = HEAD_DIM // 2
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    cos_o, sin_o = _offset_rotation(OFFSETS, INV_FREQ, b, offs_e, half)

    # This program's key block, rotated once and kept for every query block.
    k1, k2 = _rope_tile(K + b * stride_kb + h * stride_kh, stride_kt, stride_kd, COS_T, SIN_T, offs_n, offs_e,
                        half, T, cos_o, sin_o)
    k1 = k1.to(K.dtype.element_ty)
    k2 = k2.to(K.dtype.element_ty)
    v = tl.load(V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                mask=(offs_n[:, None] < T) & mask_d[None, :], other=0.0)

    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh
    dk1 = tl.zeros([BLOCK_N, BLOCK_HALF], tl.float32)
    dk2 = tl.zeros([BLOCK_N, BLOCK_HALF], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    # Query rows that can see this block (padded rows past the length have P = 0 and are skipped too).
    lo, hi = _visible_range(start_n, length, WINDOW, BLOCK_N, BLOCK_M, HAS_WINDOW)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q1, q2 = _rope_tile(q_base, stride_qt, stride_qd, COS_T, SIN_T, offs_m, offs_e, half, T, cos_o, sin_o)
        q1 = q1.to(Q.dtype.element_ty)
        q2 = q2.to(Q.dtype.element_ty)
        do = tl.load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                     mask=(offs_m[:, None] < T) & mask_d[None, :], other=0.0)
        lse = tl.load(LSE + bh * T + offs_m, mask=offs_m < T, other=float("inf"))
        delta = tl.load(DELTA + bh * T + offs_m, mask=offs_m < T, other=0.0)

        # Transposed scores (keys × queries) so every product below lands in this block's rows.
        s_t = tl.dot(k1, tl.trans(q1), input_precision=DOT_PRECISION)
        s_t = tl.dot(k2, tl.trans(q2), s_t, input_precision=DOT_PRECISION)
        visible = offs_n[:, None] < length
        if HAS_WINDOW:
            dist = offs_m[None, :] - offs_n[:, None]
            visible = visible & (dist <= WINDOW) & (dist >= -WINDOW)
        p_t = tl.where(visible, tl.exp2(s_t * qk_scale - lse[None, :]), 0.0)
        dv = tl.dot(p_t.to(DO.dtype.element_ty), do, dv, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = (p_t * (dp_t - delta[None, :])).to(Q.dtype.element_ty)
        dk1 = tl.dot(ds_t, q1, dk1, input_precision=DOT_PRECISION)
        dk2 = tl.dot(ds_t, q2, dk2, input_precision=DOT_PRECISION)

    _store_unrotated(DK + b * stride_dkb + h * stride_dkh, stride_dkt, stride_dkd, dk1 * sm_scale, dk2 * sm_scale,
                     COS_T, SIN_T, offs_n, offs_e, half, T, cos_o, sin_o)
    tl.store(DV + b * stride_dvb + h * stride_dvh + offs_n[:, None] * stride_dvt + offs_d[None, :] * stride_dvd,
             dv.to(DV.dtype.element_ty), mask=(offs_n[:, None] < T) & mask_d[None, :])


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO,  # (B, H, T, D) forward inputs and incoming gradient, any strides
    LSE, DELTA,  # (B·H, T) fp32
    DQ,  # (B, H, T, D) out: gradient w.r.t. the un-rotated q
    LENGTHS, OFFSETS, INV_FREQ, COS_T, SIN_T,  # as in the forward kernel
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_dob, stride_doh, stride_dot, stride_dod,
    stride_dqb, stride_dqh, stride_dqt, stride_dqd,
    H, T, WINDOW, sm_scale, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    length = tl.minimum(tl.maximum(tl.load(LENGTHS + b), 0), T)
    half = HEAD_DIM // 2
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    cos_o, sin_o = _offset_rotation(OFFSETS, INV_FREQ, b, offs_e, half)

    q1, q2 = _rope_tile(Q + b * stride_qb + h * stride_qh, stride_qt, stride_qd, COS_T, SIN_T, offs_m, offs_e,
                        half, T, cos_o, sin_o)
    q1 = q1.to(Q.dtype.element_ty)
    q2 = q2.to(Q.dtype.element_ty)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                 mask=(offs_m[:, None] < T) & mask_d[None, :], other=0.0)
    lse = tl.load(LSE + bh * T + offs_m, mask=offs_m < T, other=float("inf"))
    delta = tl.load(DELTA + bh * T + offs_m, mask=offs_m < T, other=0.0)

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    dq1 = tl.zeros([BLOCK_M, BLOCK_HALF], tl.float32)
    dq2 = tl.zeros([BLOCK_M, BLOCK_HALF], tl.float32)
    lo, hi = _visible_range(start_m, length, WINDOW, BLOCK_M, BLOCK_N, HAS_WINDOW)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k1, k2 = _rope_tile(k_base, stride_kt, stride_kd, COS_T, SIN_T, offs_n, offs_e, half, T, cos_o, sin_o)
        k1 = k1.to(K.dtype.element_ty)
        k2 = k2.to(K.dtype.element_ty)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                    mask=(offs_n[:, None] < T) & mask_d[None, :], other=0.0)

        s = tl.dot(q1, tl.trans(k1), input_precision=DOT_PRECISION)
        s = tl.dot(q2, tl.trans(k2), s, input_precision=DOT_PRECISION)
        visible = offs_n[None, :] < length
        if HAS_WINDOW:
            dist = offs_m[:, None] - offs_n[None, :]
            visible = visible & (dist <= WINDOW) & (dist >= -WINDOW)
        p = tl.where(visible, tl.exp2(s * qk_scale - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = (p * (dp - delta[:, None])).to(K.dtype.element_ty)
        dq1 = tl.dot(ds, k1, dq1, input_precision=DOT_PRECISION)
        dq2 = tl.dot(ds, k2, dq2, input_precision=DOT_PRECISION)

    _store_unrotated(DQ + b * stride_dqb + h * stride_dqh, stride_dqt, stride_dqd, dq1 * sm_scale, dq2 * sm_scale,
                     COS_T, SIN_T, offs_m, offs_e, half, T, cos_o, sin_o)


# ----------------------------------------------------------------------------------------------------------------
# Host side: validation, launches, custom ops (torch.compile), autograd.
# ----------------------------------------------------------------------------------------------------------------


@functools.cache
def _autotuned(kernel: triton.JITFunction) -> triton.runtime.Autotuner:
    """`kernel` wrapped in its autotuner, built on first GPU launch (never under the interpreter, which cannot)."""
    configs = _FWD_CONFIGS if kernel is _attn_fwd else _BWD_CONFIGS
    return triton.autotune(configs, key=["T", "HEAD_DIM", "HAS_WINDOW"],
                           prune_configs_by={"early_config_prune": _prune_by_length})(kernel)


def _launcher(kernel: triton.JITFunction, tuned: bool = True):
    """The kernel itself under the interpreter (fixed tiles come with the launch), its autotuner on a GPU."""
    return _autotuned(kernel) if tuned and not interpreting() else kernel


@functools.lru_cache(maxsize=64)
def _rope_tables(seq_len: int, head_dim: int, base: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """θ (D/2,), cos(t·θ) and sin(t·θ) (T, D/2) in fp32, computed with the reference's ops so they match it exactly."""
    inv_freq = base ** (-torch.arange(head_dim // 2, device=device, dtype=torch.float32) * 2.0 / head_dim)
    theta = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None] * inv_freq  # (T, D/2)
    return inv_freq, theta.cos().contiguous(), theta.sin().contiguous()


def _launch_args(q: torch.Tensor, window: int | None) -> tuple[dict, int]:
    """Constexpr tile sizes, window flag and dot precision for this call, plus the window value to pass."""
    D, T = q.shape[-1], q.shape[-2]
    has_window = window is not None and window < T - 1  # a window of T - 1 or more hides nothing
    meta = {"HEAD_DIM": D, "BLOCK_HALF": max(16, triton.next_power_of_2(D // 2)),
            "BLOCK_D": max(16, triton.next_power_of_2(D)), "HAS_WINDOW": has_window,
            # fp32 dots follow torch's TF32 setting for matmuls; fp16/bf16 dots ignore it.
            "DOT_PRECISION": "tf32" if q.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"}
    if interpreting():  # explicit small tiles: the interpreter pays per program instance and cannot autotune
        meta.update(BLOCK_M=_INTERPRET_BLOCK, BLOCK_N=_INTERPRET_BLOCK)
    return meta, (window if has_window else 0)


def _forward_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor,
                  window: int | None, base: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel; returns the output (B, H, T, D) and the base-2 log-sum-exp (B·H, T) fp32."""
    B, H, T, D = q.shape
    o = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    meta, w = _launch_args(q, window)
    grid = lambda cfg: (triton.cdiv(T, cfg["BLOCK_M"]), B * H)
    _launcher(_attn_fwd)[grid](
        q, k, v, o, lse, lengths, offsets, *_rope_tables(T, D, base, q.device),
        *q.stride(), *k.stride(), *v.stride(), *o.stride(), H, T, w, scale * _LOG2E, **meta)
    return o, lse


def _backward_impl(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                   lse: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor, window: int | None, base: float,
                   scale: float, need_q: bool, need_kv: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch delta, dK/dV and dQ kernels; a gradient that is not needed comes back as an empty tensor."""
    B, H, T, D = q.shape
    meta, w = _launch_args(q, window)
    tables = _rope_tables(T, D, base, q.device)
    delta = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    delta_block = meta.get("BLOCK_M", 64)
    _launcher(_attn_bwd_delta, tuned=False)[(triton.cdiv(T, delta_block), B * H)](
        o, do, delta, *o.stride(), *do.stride(), H, T, HEAD_DIM=D, BLOCK_D=meta["BLOCK_D"], BLOCK_M=delta_block)
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride())
    scalars = (H, T, w, scale, scale * _LOG2E)
    dq, dk, dv = q.new_empty(0), k.new_empty(0), v.new_empty(0)
    if need_kv:
        dk = torch.empty((B, H, T, D), dtype=k.dtype, device=k.device)
        dv = torch.empty((B, H, T, D), dtype=v.dtype, device=v.device)
        grid = lambda cfg: (triton.cdiv(T, cfg["BLOCK_N"]), B * H)
        _launcher(_attn_bwd_dkdv)[grid](q, k, v, do, lse, delta, dk, dv, lengths, offsets, *tables, *strides,
                        *dk.stride(), *dv.stride(), *scalars, **meta)
    if need_q:
        dq = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
        grid = lambda cfg: (triton.cdiv(T, cfg["BLOCK_M"]), B * H)
        _launcher(_attn_bwd_dq)[grid](q, k, v, do, lse, delta, dq, lengths, offsets, *tables, *strides, *dq.stride(),
                      *scalars, **meta)
    return dq, dk, dv


def _forward_fake(q, k, v, lengths, offsets, window, base, scale):
    B, H, T, D = q.shape
    return q.new_empty((B, H, T, D)), q.new_empty((B * H, T), dtype=torch.float32)


def _backward_fake(do, q, k, v, o, lse, lengths, offsets, window, base, scale, need_q, need_kv):
    shape = tuple(q.shape)
    return q.new_empty(shape if need_q else 0), k.new_empty(shape if need_kv else 0), \
        v.new_empty(shape if need_kv else 0)


_forward = custom_op("rope_attention_fwd", _forward_impl, _forward_fake)
_backward = custom_op("rope_attention_bwd", _backward_impl, _backward_fake)


class _RopeAttention(torch.autograd.Function):
    """Autograd wrapper: forward saves the base-2 log-sum-exp, backward recomputes P tile by tile."""

    @staticmethod
    def forward(ctx, q, k, v, lengths, offsets, window, base, scale):
        o, lse = _forward(q, k, v, lengths, offsets, window, base, scale)
        ctx.save_for_backward(q, k, v, o, lse, lengths, offsets)
        ctx.window, ctx.base, ctx.scale = window, base, scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, lengths, offsets = ctx.saved_tensors
        need_q = ctx.needs_input_grad[0]
        need_kv = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        if not (need_q or need_kv):
            return (None,) * 8
        dq, dk, dv = _backward(do, q, k, v, o, lse, lengths, offsets, ctx.window, ctx.base, ctx.scale, need_q, need_kv)
        return (dq if need_q else None, dk if ctx.needs_input_grad[1] else None,
                dv if ctx.needs_input_grad[2] else None, None, None, None, None, None)


def _per_sequence(value: torch.Tensor | None, name: str, batch: int, default: int,
                  device: torch.device) -> torch.Tensor:
    """Validate a (B,) integer tensor (lengths or offsets) and return it as contiguous int32 on the device."""
    if value is None:
        return torch.full((batch,), default, dtype=torch.int32, device=device)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"rope_attention: {name} must be a (B,) integer tensor, got {type(value).__name__}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"rope_attention: {name} must have an integer dtype (int32), got {value.dtype}")
    if tuple(value.shape) != (batch,):
        raise ValueError(f"rope_attention: {name} must have shape (B,) = ({batch},), got {tuple(value.shape)}")
    return value.to(device=device, dtype=torch.int32).contiguous()


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None, base: float,
                  scale: float | None) -> None:
    """Raise a clear error for anything the kernels cannot compute correctly."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"rope_attention: {name} must be a 4-D (B, H, T, D) tensor, got {got}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"rope_attention: q, k, v must have the same (B, H, T, D) shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"rope_attention: q, k, v must share one dtype among float16/bfloat16/float32, got "
                        f"{q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"rope_attention: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    head_dim = q.shape[-1]
    if head_dim % 2 or not 2 <= head_dim <= _MAX_HEAD_DIM:
        raise ValueError(f"rope_attention: head dim must be even and in [2, {_MAX_HEAD_DIM}] (rotate-half RoPE "
                         f"pairs dims e and e + D/2), got {head_dim}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 0):
        raise ValueError(f"rope_attention: window must be None or an int >= 0, got {window!r}")
    if isinstance(base, bool) or not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0):
        raise ValueError(f"rope_attention: base must be a positive finite number, got {base!r}")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise ValueError(f"rope_attention: scale must be None or a finite number, got {scale!r}")


def rope_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None = None,
                   window: int | None = None, offsets: torch.Tensor | None = None, base: float = 10000.0,
                   scale: float | None = None) -> torch.Tensor:
    """RoPE on q, k then bidirectional softmax attention with key padding and an optional window (fused Triton)."""
    _check_inputs(q, k, v, window, base, scale)
    B, H, T, D = q.shape
    lengths = _per_sequence(lengths, "lengths", B, T, q.device)
    offsets = _per_sequence(offsets, "offsets", B, 0, q.device)
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if T == 0 or B * H == 0:  # nothing to launch; keep the result attached to the inputs' graph
        return q * 0.0
    guard = torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext()
    with guard:
        return _RopeAttention.apply(q, k, v, lengths, offsets, window, float(base), scale)
