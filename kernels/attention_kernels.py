"""The Triton kernels of fused RoPE attention (FlashAttention-2 style), bidirectional, with key padding, an
optional local window and an optional dilation; kernels/attention.py sizes, launches and differentiates them.

Forward, for one (batch b, head h), head dim D = 2·E, positions p_t = offsets[b] + t, θ_e = base^(-2e/D):

    rotate-half RoPE:  x̃[t, e] = x[t, e]·cos(p_t θ_e) − x[t, e+E]·sin(p_t θ_e)
                       x̃[t, e+E] = x[t, e+E]·cos(p_t θ_e) + x[t, e]·sin(p_t θ_e)        (x̃ = R_t x)
    S = scale · Q̃ K̃ᵀ,   S[i, j] = −∞ where j ≥ L (L = lengths[b]), or with a window w |i − j| > w,
                        or with a dilation K (i − j) mod K ≠ 0
    P = softmax_j(S),   O = P V,   and O[i] = 0 for rows i ≥ L or rows with no visible key.

Each program owns BLOCK_M query rows and streams key blocks with the online softmax: a running max m and sum l in
fp32, in base 2 (S is scaled by log2(e) once so the inner loop uses exp2). Key blocks wholly outside the window
or past L are never visited; the loop bounds come from the window and the length, so a short sequence in a padded
batch costs only its own blocks. The row's log-sum-exp lse = m + log2(l) (base 2) is saved for the backward pass;
rows with nothing to attend to get lse = +∞, which makes every recomputed P = exp2(S − lse) exactly 0 there, so
those rows produce zero output and zero gradients with no NaN and no special case in the backward kernels.

Dilation (a sparse pattern: each query sees every K-th frame counted from itself, the Sparse Transformer's strided
head). The pattern splits the frames into K residue classes r = t mod K that never see each other, and inside one
class it is dense: frame r + K·u sees frame r + K·u' exactly when dense attention over the class's own "local"
indices u, u' would, with the length L_r = #{u : r + K·u < L} = ⌈(L − r)/K⌉ and the window ⌊w/K⌋ (|i − j| ≤ w
⟺ K·|u − u'| ≤ w). So a program owns one class and BLOCK_M consecutive local rows, gathers its Q rows and every
K/V tile with a row stride of K frames, and runs the unchanged dense loop, window and length rule in local indices;
the RoPE angles and the outputs use the real frame r + K·u. Hidden keys are therefore skipped at the granularity of
single frames, for any K, not only whole BLOCK_N tiles: no hidden key is loaded, multiplied or masked, and a
K-dilated pass costs 1/K of the dense one (the tiles stay full, each row still a contiguous D-vector). With K = 1
there is one class and local index = frame: the dense kernel, unchanged. The grid's first axis enumerates
(class, block) pairs, ⌈T/K⌉ rows per class (the most any class has; the last class's surplus block is empty).

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
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["BWD_CONFIGS", "FWD_CONFIGS", "attn_bwd_delta", "attn_bwd_dkdv", "attn_bwd_dq", "attn_fwd"]


# ----------------------------------------------------------------------------------------------------------------
# Device helpers
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _batch_head(H):
    # (b·H + h, b, h) of this program, in int64: b × batch stride reaches B·H·T·D elements, past 2³¹ for a large
    # inference batch (B·T beyond ~2.8M frames in the model's packed qkv), as in the other kernels' row offsets.
    bh = tl.program_id(1).to(tl.int64)
    return bh, bh // H, bh % H


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
    # Load the two halves of a (rows, D) tile of un-rotated q or k, rotate them in fp32 and return them in the
    # input dtype, so the dots they feed run on tensor cores with fp32 accumulation.
    rows = X + offs_t[:, None] * stride_t
    mask = (offs_t[:, None] < T) & (offs_e[None, :] < half)
    x1 = tl.load(rows + offs_e[None, :] * stride_d, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(rows + (offs_e[None, :] + half) * stride_d, mask=mask, other=0.0).to(tl.float32)
    cos, sin = _rope_angles(COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o)
    return (x1 * cos - x2 * sin).to(X.dtype.element_ty), (x2 * cos + x1 * sin).to(X.dtype.element_ty)


@triton.jit
def _store_unrotated(X, stride_t, stride_d, dx1, dx2, COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o):
    # Store Rᵀ·[dx1, dx2] (the gradient w.r.t. the un-rotated input): the same rotation with −sin.
    cos, sin = _rope_angles(COS_T, SIN_T, offs_t, offs_e, half, T, cos_o, sin_o)
    rows = X + offs_t[:, None] * stride_t
    mask = (offs_t[:, None] < T) & (offs_e[None, :] < half)
    tl.store(rows + offs_e[None, :] * stride_d, (dx1 * cos + dx2 * sin).to(X.dtype.element_ty), mask=mask)
    tl.store(rows + (offs_e[None, :] + half) * stride_d, (dx2 * cos - dx1 * sin).to(X.dtype.element_ty), mask=mask)


@triton.jit
def _class_block(T, DILATION, BLOCK: tl.constexpr):
    # This program's residue class r (frames r, r + K, r + 2K, ...) and the first local index of its block: the
    # grid's first axis runs over min(K, T) classes × ⌈⌈T/K⌉ / BLOCK⌉ blocks each.
    blocks = tl.cdiv(tl.cdiv(T, DILATION), BLOCK)
    pid = tl.program_id(0)
    return pid // blocks, (pid % blocks) * BLOCK


@triton.jit
def _class_count(n, r, DILATION):
    # Frames below n in class r (r + K·u < n), i.e. ⌈(n − r)/K⌉; n ≥ 0 and r < K keep the numerator non-negative.
    return (n - r + DILATION - 1) // DILATION


@triton.jit
def _visible_range(start, length, WINDOW, SPAN: tl.constexpr, STEP: tl.constexpr, HAS_WINDOW: tl.constexpr):
    # [lo, hi) of the rows on the other side that a block of SPAN rows at `start` can see: inside the window and
    # below the length, and none at all when the block itself lies past the length. lo is aligned to STEP tiles.
    # All in one class's local indices (frames themselves when K = 1): length L_r, window ⌊w/K⌋.
    end = tl.where(start < length, length, 0)
    lo = end * 0
    hi = end
    if HAS_WINDOW:
        lo = tl.maximum(start - WINDOW, 0) // STEP * STEP
        hi = tl.minimum(start + SPAN + WINDOW, end)
    return lo, hi


@triton.jit
def _visible_mask(q_idx, k_idx, length, WINDOW, HAS_WINDOW: tl.constexpr):
    # The mask rule, for query indices q_idx and key indices k_idx given as broadcastable vectors ((M, 1) and (1, N),
    # or (1, M) and (N, 1) for the key-major backward): the key lies below the length and, with a window w,
    # |i − j| ≤ w. Query rows past the length are not masked here: their output is zeroed and their lse is +∞.
    visible = k_idx < length
    if HAS_WINDOW:
        dist = q_idx - k_idx
        visible = visible & (dist <= WINDOW) & (dist >= -WINDOW)
    return visible


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------


# Forward: big query blocks amortise the K/V stream; T is 64-256 in the model. A short list keeps the first-launch
# tuning (one compile per config and key) to seconds.
FWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in ((32, 32, 4, 2), (64, 32, 4, 2), (64, 64, 4, 2), (64, 64, 4, 3), (128, 32, 4, 2),
                         (128, 64, 8, 2), (128, 64, 8, 3))
]


@triton.jit
def attn_fwd(
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
    WINDOW,  # local window in class steps, ⌊w/K⌋ (only read when HAS_WINDOW)
    DILATION,  # K ≥ 1: query i sees key j only when (i − j) mod K = 0 (1 = dense)
    qk_scale,  # softmax scale · log2(e), so exp2 can replace exp
    HEAD_DIM: tl.constexpr,  # D (even)
    BLOCK_HALF: tl.constexpr,  # next power of two ≥ max(D/2, 16)
    BLOCK_D: tl.constexpr,  # next power of two ≥ max(D, 16)
    HAS_WINDOW: tl.constexpr,
    DOT_PRECISION: tl.constexpr,  # "ieee" or "tf32": only affects fp32 inputs
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    r, start_m = _class_block(T, DILATION, BLOCK_M)
    bh, b, h = _batch_head(H)
    length = _class_count(tl.minimum(tl.maximum(tl.load(LENGTHS + b), 0), T), r, DILATION)  # L_r, local
    half = HEAD_DIM // 2
    local_m = start_m + tl.arange(0, BLOCK_M)
    offs_m = r + DILATION * local_m  # frames of this block's query rows
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    cos_o, sin_o = _offset_rotation(OFFSETS, INV_FREQ, b, offs_e, half)

    q1, q2 = _rope_tile(Q + b * stride_qb + h * stride_qh, stride_qt, stride_qd, COS_T, SIN_T, offs_m, offs_e,
                        half, T, cos_o, sin_o)

    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    lo, hi = _visible_range(start_m, length, WINDOW, BLOCK_M, BLOCK_N, HAS_WINDOW)
    for start_n in range(lo, hi, BLOCK_N):
        local_n = start_n + tl.arange(0, BLOCK_N)
        offs_n = r + DILATION * local_n  # frames of this key tile, all in class r
        k1, k2 = _rope_tile(k_base, stride_kt, stride_kd, COS_T, SIN_T, offs_n, offs_e, half, T, cos_o, sin_o)
        s = tl.dot(q1, tl.trans(k1), input_precision=DOT_PRECISION)
        s = tl.dot(q2, tl.trans(k2), s, input_precision=DOT_PRECISION)
        s = s * qk_scale
        visible = _visible_mask(local_m[:, None], local_n[None, :], length, WINDOW, HAS_WINDOW)
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

    row_ok = (local_m < length) & (l_i > 0.0)
    l_safe = tl.where(row_ok, l_i, 1.0)
    out = tl.where(row_ok[:, None], acc / l_safe[:, None], 0.0)
    lse = tl.where(row_ok, m_i + tl.log2(l_safe), float("inf"))
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=(offs_m[:, None] < T) & mask_d[None, :])
    tl.store(LSE + bh * T + offs_m, lse, mask=offs_m < T)


@triton.jit
def attn_bwd_delta(
    Out, DO,  # (B, H, T, D) forward output and its incoming gradient, any strides
    DELTA,  # (B·H, T) fp32 out: rowsum(dO ∘ O)
    stride_ob, stride_oh, stride_ot, stride_od,
    stride_dob, stride_doh, stride_dot, stride_dod,
    H, T,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh, b, h = _batch_head(H)
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
BWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in ((32, 32, 4, 2), (32, 32, 4, 3), (32, 64, 4, 2), (64, 32, 4, 2), (64, 64, 4, 2),
                         (64, 64, 8, 2), (64, 64, 8, 3))
]


@triton.jit
def attn_bwd_dkdv(
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
    H, T, WINDOW, DILATION,  # as in the forward kernel
    sm_scale,  # softmax scale (dK̃ = scale · dSᵀ Q̃)
    qk_scale,  # sm_scale · log2(e), to recompute P in base 2 like the forward
    HEAD_DIM: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    r, start_n = _class_block(T, DILATION, BLOCK_N)
    bh, b, h = _batch_head(H)
    length = _class_count(tl.minimum(tl.maximum(tl.load(LENGTHS + b), 0), T), r, DILATION)  # L_r, local
    half = HEAD_DIM // 2
    local_n = start_n + tl.arange(0, BLOCK_N)
    offs_n = r + DILATION * local_n  # frames of this program's keys
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    cos_o, sin_o = _offset_rotation(OFFSETS, INV_FREQ, b, offs_e, half)

    # This program's key block, rotated once and kept for every query block.
    k1, k2 = _rope_tile(K + b * stride_kb + h * stride_kh, stride_kt, stride_kd, COS_T, SIN_T, offs_n, offs_e,
                        half, T, cos_o, sin_o)
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
        local_m = start_m + tl.arange(0, BLOCK_M)
        offs_m = r + DILATION * local_m  # frames of the query rows in class r
        q1, q2 = _rope_tile(q_base, stride_qt, stride_qd, COS_T, SIN_T, offs_m, offs_e, half, T, cos_o, sin_o)
        do = tl.load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :] * stride_dod,
                     mask=(offs_m[:, None] < T) & mask_d[None, :], other=0.0)
        lse = tl.load(LSE + bh * T + offs_m, mask=offs_m < T, other=float("inf"))
        delta = tl.load(DELTA + bh * T + offs_m, mask=offs_m < T, other=0.0)

        # Transposed scores (keys × queries) so every product below lands in this block's rows.
        s_t = tl.dot(k1, tl.trans(q1), input_precision=DOT_PRECISION)
        s_t = tl.dot(k2, tl.trans(q2), s_t, input_precision=DOT_PRECISION)
        visible = _visible_mask(local_m[None, :], local_n[:, None], length, WINDOW, HAS_WINDOW)
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
def attn_bwd_dq(
    Q, K, V, DO,  # (B, H, T, D) forward inputs and incoming gradient, any strides
    LSE, DELTA,  # (B·H, T) fp32
    DQ,  # (B, H, T, D) out: gradient w.r.t. the un-rotated q
    LENGTHS, OFFSETS, INV_FREQ, COS_T, SIN_T,  # as in the forward kernel
    stride_qb, stride_qh, stride_qt, stride_qd,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_vb, stride_vh, stride_vt, stride_vd,
    stride_dob, stride_doh, stride_dot, stride_dod,
    stride_dqb, stride_dqh, stride_dqt, stride_dqd,
    H, T, WINDOW, DILATION, sm_scale, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_WINDOW: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    r, start_m = _class_block(T, DILATION, BLOCK_M)
    bh, b, h = _batch_head(H)
    length = _class_count(tl.minimum(tl.maximum(tl.load(LENGTHS + b), 0), T), r, DILATION)  # L_r, local
    half = HEAD_DIM // 2
    local_m = start_m + tl.arange(0, BLOCK_M)
    offs_m = r + DILATION * local_m  # frames of this block's query rows
    offs_e = tl.arange(0, BLOCK_HALF)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    cos_o, sin_o = _offset_rotation(OFFSETS, INV_FREQ, b, offs_e, half)

    q1, q2 = _rope_tile(Q + b * stride_qb + h * stride_qh, stride_qt, stride_qd, COS_T, SIN_T, offs_m, offs_e,
                        half, T, cos_o, sin_o)
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
        local_n = start_n + tl.arange(0, BLOCK_N)
        offs_n = r + DILATION * local_n  # frames of this key tile, all in class r
        k1, k2 = _rope_tile(k_base, stride_kt, stride_kd, COS_T, SIN_T, offs_n, offs_e, half, T, cos_o, sin_o)
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :] * stride_vd,
                    mask=(offs_n[:, None] < T) & mask_d[None, :], other=0.0)

        s = tl.dot(q1, tl.trans(k1), input_precision=DOT_PRECISION)
        s = tl.dot(q2, tl.trans(k2), s, input_precision=DOT_PRECISION)
        visible = _visible_mask(local_m[:, None], local_n[None, :], length, WINDOW, HAS_WINDOW)
        p = tl.where(visible, tl.exp2(s * qk_scale - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = (p * (dp - delta[:, None])).to(K.dtype.element_ty)
        dq1 = tl.dot(ds, k1, dq1, input_precision=DOT_PRECISION)
        dq2 = tl.dot(ds, k2, dq2, input_precision=DOT_PRECISION)

    _store_unrotated(DQ + b * stride_dqb + h * stride_dqh, stride_dqt, stride_dqd, dq1 * sm_scale, dq2 * sm_scale,
                     COS_T, SIN_T, offs_m, offs_e, half, T, cos_o, sin_o)
