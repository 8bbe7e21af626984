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

RoPE inside the kernel: Q and K tiles are loaded as their two halves (E columns each) and rotated in fp32 with
cos/sin evaluated from the position and a (E,) inverse-frequency table computed once on the host with the same
formula as the reference. This needs no (T, D) cos/sin tables in memory, no device-to-host sync for the largest
offset, and costs E sin/cos per row per tile, small next to the BLOCK·D multiply-adds the tile feeds. Because
the halves stay separate, Q̃K̃ᵀ = Q̃₁K̃₁ᵀ + Q̃₂K̃₂ᵀ is two dots over E columns each; E is padded to a power of
two ≥ 16 (tl.dot's minimum) with masked loads, so D = 16, 24, 40, ... all work.

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
from types import SimpleNamespace

import torch
import triton
import triton.language as tl

from kernels._triton_utils import NAMESPACE, interpreting

__all__ = ["rope_attention"]

_LOG2E = math.log2(math.e)
_MAX_HEAD_DIM = 256  # beyond this one tile row no longer fits in registers at any useful block size
_INTERPRET_BLOCK = 16  # the interpreter runs ~1 ms per program instance: small tiles, no autotuning


def _prune_by_length(configs: list, named_args: dict, **kwargs) -> list:
    """Drop configs whose blocks exceed the (padded) sequence length; keep at least the smallest one."""
    limit = max(16, triton.next_power_of_2(int(named_args["T"])))
    kept = [c for c in configs if max(c.kwargs.get("BLOCK_M", 16), c.kwargs.get("BLOCK_N", 16)) <= limit]
    return kept or [min(configs, key=lambda c: c.kwargs.get("BLOCK_M", 16) * c.kwargs.get("BLOCK_N", 16))]


# Forward: big query blocks amortise the K/V stream; T is 64-256 in the model, so 32-128 covers it.
_FWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm in (32, 64, 128)
    for bn in (32, 64)
    for w in (4, 8)
    for s in (2, 3)
    if not (bm == 32 and w == 8)
]


def _attn_fwd(
    Q, K, V,  # (B, H, T, D) inputs, any strides, un-rotated q and k
    Out,  # (B, H, T, D) output, contiguous
    LSE,  # (B·H, T) fp32 out: base-2 log-sum-exp of scaled scores, +inf for rows that see no key
    LENGTHS, OFFSETS,  # (B,) int32: valid length and first RoPE position per sequence
    INV_FREQ,  # (D/2,) fp32: base^(-2e/D), built on the host like the reference
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
    offset = tl.load(OFFSETS + b)
    half = HEAD_DIM // 2

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_e = offs_e < half
    mask_d = offs_d < HEAD_DIM
    inv_freq = tl.load(INV_FREQ + offs_e, mask=mask_e, other=0.0)

    # Rotated Q tile, kept in the input dtype so the dots run on tensor cores with fp32 accumulation.
    q_rows = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt
    q_mask = (offs_m[:, None] < T) & mask_e[None, :]
    q1 = tl.load(q_rows + offs_e[None, :] * stride_qd, mask=q_mask, other=0.0).to(tl.float32)
    q2 = tl.load(q_rows + (offs_e[None, :] + half) * stride_qd, mask=q_mask, other=0.0).to(tl.float32)
    angle = (offset + offs_m).to(tl.float32)[:, None] * inv_freq[None, :]
    cos = tl.cos(angle)
    sin = tl.sin(angle)
    q1r = (q1 * cos - q2 * sin).to(Q.dtype.element_ty)
    q2r = (q2 * cos + q1 * sin).to(Q.dtype.element_ty)

    # Key range this block can see: [lo, hi). A block of padded query rows visits nothing.
    kv_end = tl.where(start_m < length, length, 0)
    if HAS_WINDOW:
        lo = tl.maximum(start_m - WINDOW, 0) // BLOCK_N * BLOCK_N
        hi = tl.minimum(start_m + BLOCK_M + WINDOW, kv_end)
    else:
        lo = 0
        hi = kv_end

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k_rows = k_base + offs_n[:, None] * stride_kt
        k_mask = (offs_n[:, None] < T) & mask_e[None, :]
        k1 = tl.load(k_rows + offs_e[None, :] * stride_kd, mask=k_mask, other=0.0).to(tl.float32)
        k2 = tl.load(k_rows + (offs_e[None, :] + half) * stride_kd, mask=k_mask, other=0.0).to(tl.float32)
        angle_k = (offset + offs_n).to(tl.float32)[:, None] * inv_freq[None, :]
        cos_k = tl.cos(angle_k)
        sin_k = tl.sin(angle_k)
        k1r = (k1 * cos_k - k2 * sin_k).to(K.dtype.element_ty)
        k2r = (k2 * cos_k + k1 * sin_k).to(K.dtype.element_ty)

        s = tl.dot(q1r, tl.trans(k1r), input_precision=DOT_PRECISION)
        s = tl.dot(q2r, tl.trans(k2r), s, input_precision=DOT_PRECISION)
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


# Backward: two (BLOCK, D) accumulators per program plus recomputed P, so blocks stay at 32-64.
_BWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm in (32, 64)
    for bn in (32, 64)
    for w in (4, 8)
    for s in (2, 3)
]


def _attn_bwd_dkdv(
    Q, K, V, DO,  # (B, H, T, D) forward inputs and incoming gradient, any strides
    LSE, DELTA,  # (B·H, T) fp32 from the forward pass and the delta kernel
    DK, DV,  # (B, H, T, D) out: gradients w.r.t. the un-rotated k and v
    LENGTHS, OFFSETS, INV_FREQ,
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
    offset = tl.load(OFFSETS + b)
    half = HEAD_DIM // 2

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_e = offs_e < half
    mask_d = offs_d < HEAD_DIM
    inv_freq = tl.load(INV_FREQ + offs_e, mask=mask_e, other=0.0)

    # This program's key block, rotated once and kept for every query block.
    k_rows = K + b * stride_kb + h * stride_kh + offs_n[:, None] * stride_kt
    k_mask = (offs_n[:, None] < T) & mask_e[None, :]
    k1 = tl.load(k_rows + offs_e[None, :] * stride_kd, mask=k_mask, other=0.0).to(tl.float32)
    k2 = tl.load(k_rows + (offs_e[None, :] + half) * stride_kd, mask=k_mask, other=0.0).to(tl.float32)
    angle_k = (offset + offs_n).to(tl.float32)[:, None] * inv_freq[None, :]
    cos_k = tl.cos(angle_k)
    sin_k = tl.sin(angle_k)
    k1r = (k1 * cos_k - k2 * sin_k).to(K.dtype.element_ty)
    k2r = (k2 * cos_k + k1 * sin_k).to(K.dtype.element_ty)
    v = tl.load(V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                mask=(offs_n[:, None] < T) & mask_d[None, :], other=0.0)

    # Query rows that can see this block: inside the window and below the length (padded rows have P = 0).
    q_end = tl.where(start_n < length, length, 0)
    if HAS_WINDOW:
        lo = tl.maximum(start_n - WINDOW, 0) // BLOCK_M * BLOCK_M
        hi = tl.minimum(start_n + BLOCK_N + WINDOW, q_end)
    else:
        lo = 0
        hi = q_end

    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh
    dk1 = tl.zeros([BLOCK_N, BLOCK_HALF], tl.float32)
    dk2 = tl.zeros([BLOCK_N, BLOCK_HALF], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_rows = q_base + offs_m[:, None] * stride_qt
        q_mask = (offs_m[:, None] < T) & mask_e[None, :]
        q1 = tl.load(q_rows + offs_e[None, :] * stride_qd, mask=q_mask, other=0.0).to(tl.float32)
        q2 = tl.load(q_rows + (offs_e[None, :] + half) * stride_qd, mask=q_mask, other=0.0).to(tl.float32)
        angle = (offset + offs_m).to(tl.float32)[:, None] * inv_freq[None, :]
        cos = tl.cos(angle)
        sin = tl.sin(angle)
        q1r = (q1 * cos - q2 * sin).to(Q.dtype.element_ty)
        q2r = (q2 * cos + q1 * sin).to(Q.dtype.element_ty)
        do = tl.load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                     mask=(offs_m[:, None] < T) & mask_d[None, :], other=0.0)
        lse = tl.load(LSE + bh * T + offs_m, mask=offs_m < T, other=float("inf"))
        delta = tl.load(DELTA + bh * T + offs_m, mask=offs_m < T, other=0.0)

        # Transposed scores (keys × queries) so every product below lands in this block's rows.
        s_t = tl.dot(k1r, tl.trans(q1r), input_precision=DOT_PRECISION)
        s_t = tl.dot(k2r, tl.trans(q2r), s_t, input_precision=DOT_PRECISION)
        visible = offs_n[:, None] < length
        if HAS_WINDOW:
            dist = offs_m[None, :] - offs_n[:, None]
            visible = visible & (dist <= WINDOW) & (dist >= -WINDOW)
        p_t = tl.where(visible, tl.exp2(s_t * qk_scale - lse[None, :]), 0.0)
        dv = tl.dot(p_t.to(DO.dtype.element_ty), do, dv, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = (p_t * (dp_t - delta[None, :])).to(Q.dtype.element_ty)
        dk1 = tl.dot(ds_t, q1r, dk1, input_precision=DOT_PRECISION)
        dk2 = tl.dot(ds_t, q2r, dk2, input_precision=DOT_PRECISION)

    # dK = Rᵀ dK̃: rotate back with −sin.
    dk1 = dk1 * sm_scale
    dk2 = dk2 * sm_scale
    dk_rows = DK + b * stride_dkb + h * stride_dkh + offs_n[:, None] * stride_dkt
    tl.store(dk_rows + offs_e[None, :] * stride_dkd, (dk1 * cos_k + dk2 * sin_k).to(DK.dtype.element_ty), mask=k_mask)
    tl.store(dk_rows + (offs_e[None, :] + half) * stride_dkd, (dk2 * cos_k - dk1 * sin_k).to(DK.dtype.element_ty),
             mask=k_mask)
    tl.store(DV + b * stride_dvb + h * stride_dvh + offs_n[:, None] * stride_dvt + offs_d[None, :] * stride_dvd,
             dv.to(DV.dtype.element_ty), mask=(offs_n[:, None] < T) & mask_d[None, :])


def _attn_bwd_dq(
    Q, K, V, DO,  # (B, H, T, D) forward inputs and incoming gradient, any strides
    LSE, DELTA,  # (B·H, T) fp32
    DQ,  # (B, H, T, D) out: gradient w.r.t. the un-rotated q
    LENGTHS, OFFSETS, INV_FREQ,
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
    offset = tl.load(OFFSETS + b)
    half = HEAD_DIM // 2

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_e = offs_e < half
    mask_d = offs_d < HEAD_DIM
    inv_freq = tl.load(INV_FREQ + offs_e, mask=mask_e, other=0.0)

    q_rows = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt
    q_mask = (offs_m[:, None] < T) & mask_e[None, :]
    q1 = tl.load(q_rows + offs_e[None, :] * stride_qd, mask=q_mask, other=0.0).to(tl.float32)
    q2 = tl.load(q_rows + (offs_e[None, :] + half) * stride_qd, mask=q_mask, other=0.0).to(tl.float32)
    angle = (offset + offs_m).to(tl.float32)[:, None] * inv_freq[None, :]
    cos = tl.cos(angle)
    sin = tl.sin(angle)
    q1r = (q1 * cos - q2 * sin).to(Q.dtype.element_ty)
    q2r = (q2 * cos + q1 * sin).to(Q.dtype.element_ty)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                 mask=(offs_m[:, None] < T) & mask_d[None, :], other=0.0)
    lse = tl.load(LSE + bh * T + offs_m, mask=offs_m < T, other=float("inf"))
    delta = tl.load(DELTA + bh * T + offs_m, mask=offs_m < T, other=0.0)

    kv_end = tl.where(start_m < length, length, 0)
    if HAS_WINDOW:
        lo = tl.maximum(start_m - WINDOW, 0) // BLOCK_N * BLOCK_N
        hi = tl.minimum(start_m + BLOCK_M + WINDOW, kv_end)
    else:
        lo = 0
        hi = kv_end

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    dq1 = tl.zeros([BLOCK_M, BLOCK_HALF], tl.float32)
    dq2 = tl.zeros([BLOCK_M, BLOCK_HALF], tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k_rows = k_base + offs_n[:, None] * stride_kt
        k_mask = (offs_n[:, None] < T) & mask_e[None, :]
        k1 = tl.load(k_rows + offs_e[None, :] * stride_kd, mask=k_mask, other=0.0).to(tl.float32)
        k2 = tl.load(k_rows + (offs_e[None, :] + half) * stride_kd, mask=k_mask, other=0.0).to(tl.float32)
        angle_k = (offset + offs_n).to(tl.float32)[:, None] * inv_freq[None, :]
        cos_k = tl.cos(angle_k)
        sin_k = tl.sin(angle_k)
        k1r = (k1 * cos_k - k2 * sin_k).to(K.dtype.element_ty)
        k2r = (k2 * cos_k + k1 * sin_k).to(K.dtype.element_ty)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                    mask=(offs_n[:, None] < T) & mask_d[None, :], other=0.0)

        s = tl.dot(q1r, tl.trans(k1r), input_precision=DOT_PRECISION)
        s = tl.dot(q2r, tl.trans(k2r), s, input_precision=DOT_PRECISION)
        visible = offs_n[None, :] < length
        if HAS_WINDOW:
            dist = offs_m[:, None] - offs_n[None, :]
            visible = visible & (dist <= WINDOW) & (dist >= -WINDOW)
        p = tl.where(visible, tl.exp2(s * qk_scale - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = (p * (dp - delta[:, None])).to(K.dtype.element_ty)
        dq1 = tl.dot(ds, k1r, dq1, input_precision=DOT_PRECISION)
        dq2 = tl.dot(ds, k2r, dq2, input_precision=DOT_PRECISION)

    # dQ = Rᵀ dQ̃ with this block's own angles.
    dq1 = dq1 * sm_scale
    dq2 = dq2 * sm_scale
    dq_rows = DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqt
    tl.store(dq_rows + offs_e[None, :] * stride_dqd, (dq1 * cos + dq2 * sin).to(DQ.dtype.element_ty), mask=q_mask)
    tl.store(dq_rows + (offs_e[None, :] + half) * stride_dqd, (dq2 * cos - dq1 * sin).to(DQ.dtype.element_ty),
             mask=q_mask)


# ----------------------------------------------------------------------------------------------------------------
# Host side: validation, launches, custom ops (torch.compile), autograd.
# ----------------------------------------------------------------------------------------------------------------


@functools.cache
def _kernels(interpret: bool) -> SimpleNamespace:
    """JIT the kernels for the current mode: fixed small tiles when interpreting, autotuned tiles on a GPU."""
    fns = {name: triton.jit(fn) for name, fn in
           (("fwd", _attn_fwd), ("delta", _attn_bwd_delta), ("dkdv", _attn_bwd_dkdv), ("dq", _attn_bwd_dq))}
    if not interpret:  # the interpreter cannot autotune (and would gain nothing from it)
        prune = {"early_config_prune": _prune_by_length}
        key = ["T", "HEAD_DIM", "HAS_WINDOW"]
        fns["fwd"] = triton.autotune(_FWD_CONFIGS, key=key, prune_configs_by=prune)(fns["fwd"])
        fns["dkdv"] = triton.autotune(_BWD_CONFIGS, key=key, prune_configs_by=prune)(fns["dkdv"])
        fns["dq"] = triton.autotune(_BWD_CONFIGS, key=key, prune_configs_by=prune)(fns["dq"])
    return SimpleNamespace(**fns)


@functools.lru_cache(maxsize=64)
def _inv_freq(head_dim: int, base: float, device: torch.device) -> torch.Tensor:
    """RoPE inverse frequencies base^(-2e/D) in fp32, with the reference's exact formula (same rounding)."""
    return base ** (-torch.arange(head_dim // 2, device=device, dtype=torch.float32) * 2.0 / head_dim)


def _launch_args(q: torch.Tensor, window: int | None) -> tuple[dict, int, bool]:
    """Constexpr tile sizes and precision for this call, plus the effective window and whether it masks anything."""
    D, T = q.shape[-1], q.shape[-2]
    has_window = window is not None and window < T - 1  # a window of T - 1 or more hides nothing
    meta = {"HEAD_DIM": D, "BLOCK_HALF": max(16, triton.next_power_of_2(D // 2)),
            "BLOCK_D": max(16, triton.next_power_of_2(D)), "HAS_WINDOW": has_window,
            # fp32 dots follow torch's TF32 setting for matmuls; fp16/bf16 dots ignore it.
            "DOT_PRECISION": "tf32" if q.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"}
    if interpreting():  # explicit small tiles: the interpreter pays per program instance and cannot autotune
        meta.update(BLOCK_M=_INTERPRET_BLOCK, BLOCK_N=_INTERPRET_BLOCK)
    return meta, (window if has_window else 0), has_window


def _forward_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor,
                  window: int | None, base: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel; returns the output (B, H, T, D) and the base-2 log-sum-exp (B·H, T) fp32."""
    B, H, T, D = q.shape
    o = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    meta, w, _ = _launch_args(q, window)
    grid = lambda cfg: (triton.cdiv(T, cfg["BLOCK_M"]), B * H)
    _kernels(interpreting()).fwd[grid](
        q, k, v, o, lse, lengths, offsets, _inv_freq(D, base, q.device),
        *q.stride(), *k.stride(), *v.stride(), *o.stride(), H, T, w, scale * _LOG2E, **meta)
    return o, lse


def _backward_impl(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                   lse: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor, window: int | None, base: float,
                   scale: float, need_q: bool, need_kv: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch delta, dK/dV and dQ kernels; a gradient that is not needed comes back as an empty tensor."""
    B, H, T, D = q.shape
    kern = _kernels(interpreting())
    meta, w, _ = _launch_args(q, window)
    inv_freq = _inv_freq(D, base, q.device)
    delta = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    delta_block = meta.get("BLOCK_M", 64)
    kern.delta[(triton.cdiv(T, delta_block), B * H)](
        o, do, delta, *o.stride(), *do.stride(), H, T, HEAD_DIM=D, BLOCK_D=meta["BLOCK_D"], BLOCK_M=delta_block)
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride())
    scalars = (H, T, w, scale, scale * _LOG2E)
    dq, dk, dv = q.new_empty(0), k.new_empty(0), v.new_empty(0)
    if need_kv:
        dk = torch.empty((B, H, T, D), dtype=k.dtype, device=k.device)
        dv = torch.empty((B, H, T, D), dtype=v.dtype, device=v.device)
        grid = lambda cfg: (triton.cdiv(T, cfg["BLOCK_N"]), B * H)
        kern.dkdv[grid](q, k, v, do, lse, delta, dk, dv, lengths, offsets, inv_freq, *strides,
                        *dk.stride(), *dv.stride(), *scalars, **meta)
    if need_q:
        dq = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
        grid = lambda cfg: (triton.cdiv(T, cfg["BLOCK_M"]), B * H)
        kern.dq[grid](q, k, v, do, lse, delta, dq, lengths, offsets, inv_freq, *strides, *dq.stride(),
                      *scalars, **meta)
    return dq, dk, dv


# Under torch.compile the launches are opaque custom ops with shape-only fake implementations (no graph break).
_forward_op = torch.library.custom_op(f"{NAMESPACE}::rope_attention_fwd", _forward_impl, mutates_args=())
_backward_op = torch.library.custom_op(f"{NAMESPACE}::rope_attention_bwd", _backward_impl, mutates_args=())


@_forward_op.register_fake
def _(q, k, v, lengths, offsets, window, base, scale):
    B, H, T, D = q.shape
    return q.new_empty((B, H, T, D)), q.new_empty((B * H, T), dtype=torch.float32)


@_backward_op.register_fake
def _(do, q, k, v, o, lse, lengths, offsets, window, base, scale, need_q, need_kv):
    shape = tuple(q.shape)
    return q.new_empty(shape if need_q else 0), k.new_empty(shape if need_kv else 0), \
        v.new_empty(shape if need_kv else 0)


class _RopeAttention(torch.autograd.Function):
    """Autograd wrapper: forward saves the base-2 log-sum-exp, backward recomputes P tile by tile."""

    @staticmethod
    def forward(ctx, q, k, v, lengths, offsets, window, base, scale):
        fwd = _forward_op if torch.compiler.is_compiling() else _forward_impl
        o, lse = fwd(q, k, v, lengths, offsets, window, base, scale)
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
        bwd = _backward_op if torch.compiler.is_compiling() else _backward_impl
        dq, dk, dv = bwd(do, q, k, v, o, lse, lengths, offsets, ctx.window, ctx.base, ctx.scale, need_q, need_kv)
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
    if q.device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(q.device)
        if major < 7:
            raise RuntimeError(f"rope_attention: Triton needs compute capability >= 7.0, {q.device} has "
                               f"{major}.{minor}; use the torch or native attention backend")
    elif not interpreting():
        raise RuntimeError(f"rope_attention: Triton kernels need CUDA tensors (got {q.device}); set "
                           "TRITON_INTERPRET=1 to run them on the CPU interpreter, or use the torch backend")


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
