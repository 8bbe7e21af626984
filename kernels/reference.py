"""PyTorch truth for every kernel op: plain, eager, readable, computed in fp32 (fp64 when given fp64).

Every backend of every op (``torch``, ``native``, ``triton``) must agree with these functions; tests compare against
them and the ``torch`` backend of the registry *is* them. Outputs are cast back to the input dtype.

Ops and their math (H = hidden size, D = head dim, all reductions over the last dim):

- ``rmsnorm``:           y = x · rsqrt(mean(x²) + eps) · w
- ``residual_rmsnorm``:  h = x + α·f (α scalar or per-channel), y = rmsnorm(h); returns (h, y)
- ``swiglu``:            silu(a) · b;  ``swiglu_packed(ab)`` splits the last dim (…, 2H) into a | b
- ``rope``:              rotate-half RoPE on (B, H, T, D): x·cos θ + rotate_half(x)·sin θ,
                         θ[b, t, i] = (offsets[b] + t) · base^(−2i/D) for i < D/2, repeated for the second half
- ``rope_attention``:    RoPE on q, k, then bidirectional softmax(q·kᵀ·scale)·v with key padding (j ≥ lengths[b]
                         masked), an optional local window |i − j| ≤ w and an optional dilation K (only keys with
                         (i − j) mod K = 0: every K-th frame counted from the query, itself included); query rows
                         i ≥ lengths[b] and rows with no visible key give zeros (never NaN). ``masked_attention`` is
                         the same without RoPE: what follows a separate RoPE when KernelConfig.rope picks another
                         backend than the attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "attention_mask",
    "masked_attention",
    "residual_rmsnorm",
    "rmsnorm",
    "rope",
    "rope_angles",
    "rope_inv_freq",
    "rope_attention",
    "swiglu",
    "swiglu_packed",
]


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """fp32 for half types, fp64 when any input is fp64 (so gradcheck runs in double precision)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_hidden(name: str, x: torch.Tensor, weight: torch.Tensor) -> None:
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"{name}: x must have a non-empty last dim, got shape {tuple(x.shape)}")
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"{name}: weight must have shape ({x.shape[-1]},) to match x {tuple(x.shape)}, "
                         f"got {tuple(weight.shape)}")


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dim in fp32: x · rsqrt(mean(x²) + eps) · weight, cast back to x.dtype."""
    _check_hidden("rmsnorm", x, weight)
    cd = _compute_dtype(x, weight)
    xf = x.to(cd)
    rstd = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (xf * rstd * weight.to(cd)).to(x.dtype)


def _alpha_like(alpha: torch.Tensor | float, x: torch.Tensor, cd: torch.dtype) -> torch.Tensor:
    """α as a tensor broadcastable over the last dim: a scalar (shape () or (1,)) or per-channel (H,)."""
    if not isinstance(alpha, torch.Tensor):
        return torch.tensor(float(alpha), dtype=cd, device=x.device)
    if alpha.numel() == 1:
        return alpha.to(cd).reshape(())
    if alpha.shape != (x.shape[-1],):
        raise ValueError(f"residual_rmsnorm: alpha must be a scalar, shape (1,) or ({x.shape[-1]},), "
                         f"got shape {tuple(alpha.shape)}")
    return alpha.to(cd)


def residual_rmsnorm(
    x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor | float, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive residual then RMSNorm: h = x + alpha·f, y = rmsnorm(h); returns (h, y) in x.dtype."""
    if f.shape != x.shape:
        raise ValueError(f"residual_rmsnorm: f shape {tuple(f.shape)} must equal x shape {tuple(x.shape)}")
    _check_hidden("residual_rmsnorm", x, weight)
    cd = _compute_dtype(x, f, weight)
    h = x.to(cd) + _alpha_like(alpha, x, cd) * f.to(cd)
    # y is normalized from the fp32 h, not the rounded one the caller receives: the fused kernel does the same.
    rstd = torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)
    y = h * rstd * weight.to(cd)
    return h.to(x.dtype), y.to(x.dtype)


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SwiGLU gate in fp32: silu(a) · b, cast back to a.dtype."""
    if a.shape != b.shape:
        raise ValueError(f"swiglu: a shape {tuple(a.shape)} must equal b shape {tuple(b.shape)}")
    cd = _compute_dtype(a, b)
    return (F.silu(a.to(cd)) * b.to(cd)).to(a.dtype)


def swiglu_packed(ab: torch.Tensor) -> torch.Tensor:
    """SwiGLU on one packed projection (…, 2H): silu(ab[..., :H]) · ab[..., H:]."""
    if ab.dim() < 1 or ab.shape[-1] % 2:
        raise ValueError(f"swiglu_packed: last dim must be even (a | b halves), got shape {tuple(ab.shape)}")
    a, b = ab.chunk(2, dim=-1)
    return swiglu(a, b)


def _check_qk(name: str, q: torch.Tensor, k: torch.Tensor) -> None:
    if q.dim() != 4:
        raise ValueError(f"{name}: q must be (B, H, T, D), got shape {tuple(q.shape)}")
    if k.shape != q.shape:
        raise ValueError(f"{name}: k shape {tuple(k.shape)} must equal q shape {tuple(q.shape)}")
    if q.shape[-1] % 2:
        raise ValueError(f"{name}: head dim must be even for rotate-half RoPE, got D={q.shape[-1]}")


def _check_per_batch(name: str, what: str, t: torch.Tensor | None, batch: int) -> None:
    if t is None:
        return
    if t.shape != (batch,):
        raise ValueError(f"{name}: {what} must have shape ({batch},), got {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name}: {what} must be an integer tensor, got {t.dtype}")


def rope_inv_freq(head_dim: int, base: float, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RoPE frequencies base^(−2i/D) for i < D/2, shape (D/2,); the Triton kernel reads these exact values."""
    return base ** (-torch.arange(head_dim // 2, device=device, dtype=dtype) * 2.0 / head_dim)


def rope_angles(
    batch: int, seq_len: int, head_dim: int, offsets: torch.Tensor | None, base: float, device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the RoPE angles, each (B, 1, T, D) in `dtype`, position = offsets[b] + t."""
    inv_freq = rope_inv_freq(head_dim, base, device, dtype)  # (D/2,)
    pos = torch.arange(seq_len, device=device, dtype=dtype).expand(batch, seq_len)  # (B, T)
    if offsets is not None:
        pos = pos + offsets.to(device=device, dtype=dtype)[:, None]
    theta = pos[:, :, None] * inv_freq  # (B, T, D/2)
    theta = torch.cat([theta, theta], dim=-1)[:, None]  # (B, 1, T, D): both halves share a frequency
    return theta.cos(), theta.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rope(
    q: torch.Tensor, k: torch.Tensor, offsets: torch.Tensor | None = None, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half RoPE on q and k of shape (B, H, T, D) in fp32, position = offsets[b] + t; returns (q, k)."""
    _check_qk("rope", q, k)
    B, _, T, D = q.shape
    _check_per_batch("rope", "offsets", offsets, B)
    cd = _compute_dtype(q, k)
    cos, sin = rope_angles(B, T, D, offsets, base, q.device, cd)
    qf, kf = q.to(cd), k.to(cd)
    q_out = qf * cos + _rotate_half(qf) * sin
    k_out = kf * cos + _rotate_half(kf) * sin
    return q_out.to(q.dtype), k_out.to(k.dtype)


def attention_mask(
    batch: int, seq_len: int, lengths: torch.Tensor | None, window: int | None, device: torch.device,
    dilation: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (True = visible): pair mask (B, 1, T, T) and query-row mask (B, 1, T, 1).

    A pair (i, j) is visible when both frames lie below the length, |i − j| ≤ window (with a window) and
    (i − j) mod dilation = 0: the one rule every attention backend implements (the Triton kernel by construction).
    """
    idx = torch.arange(seq_len, device=device)
    if lengths is None:
        valid = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
    else:
        valid = idx[None, :] < lengths.to(device=device, dtype=torch.int64)[:, None]  # (B, T)
    pair = valid[:, None, None, :] & valid[:, None, :, None]  # (B, 1, Tq, Tk)
    if window is not None:
        pair = pair & ((idx[:, None] - idx[None, :]).abs() <= window)  # (Tq, Tk) broadcast
    if dilation > 1:
        pair = pair & ((idx[:, None] - idx[None, :]) % dilation == 0)  # (Tq, Tk) broadcast
    return pair, valid[:, None, :, None]


def _check_dilation(name: str, dilation) -> None:
    """The one rule for a dilation argument: an int >= 1 (1 = dense)."""
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"{name}: dilation must be an int >= 1 (1 = dense), got {dilation!r}")


def _check_attention(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths, window,
                     dilation: int = 1) -> None:
    if q.dim() != 4:
        raise ValueError(f"{name}: q must be (B, H, T, D), got shape {tuple(q.shape)}")
    for what, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"{name}: {what} shape {tuple(t.shape)} must equal q shape {tuple(q.shape)}")
    _check_per_batch(name, "lengths", lengths, q.shape[0])
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 0):
        raise ValueError(f"{name}: window must be None or an int >= 0, got {window!r}")
    _check_dilation(name, dilation)


def _check_rope_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths, window, offsets,
                          dilation: int = 1) -> None:
    _check_qk("rope_attention", q, k)
    _check_per_batch("rope_attention", "offsets", offsets, q.shape[0])
    _check_attention("rope_attention", q, k, v, lengths, window, dilation)


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor | None = None,
    window: int | None = None,
    scale: float | None = None,
    dilation: int = 1,
) -> torch.Tensor:
    """rope_attention without its RoPE: softmax(q·kᵀ·scale)·v with key padding, a local window and a dilation."""
    _check_attention("masked_attention", q, k, v, lengths, window, dilation)
    B, _, T, D = q.shape
    cd = _compute_dtype(q, k, v)
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    s = (q.to(cd) @ k.to(cd).transpose(-1, -2)) * scale  # (B, H, T, T)
    pair, _ = attention_mask(B, T, lengths, window, q.device, dilation)
    s = s.masked_fill(~pair, float("-inf"))
    # Softmax is shift-invariant, so the row max carries no gradient; rows with no visible key get max 0, p 0.
    m = s.amax(dim=-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)  # exp(-inf) = 0 on masked pairs
    denom = p.sum(dim=-1, keepdim=True)
    # A fully masked row has p = 0 and denom = 0: dividing by 1 there gives 0 output and finite gradients.
    out = (p @ v.to(cd)) / torch.where(denom > 0, denom, torch.ones_like(denom))
    return out.to(q.dtype)


def rope_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor | None = None,
    window: int | None = None,
    offsets: torch.Tensor | None = None,
    base: float = 10000.0,
    scale: float | None = None,
    dilation: int = 1,
) -> torch.Tensor:
    """Bidirectional RoPE attention on (B, H, T, D) with key padding, a local window and a dilation, fp32 math."""
    _check_rope_attention(q, k, v, lengths, window, offsets, dilation)
    cd = _compute_dtype(q, k, v)
    qr, kr = rope(q.to(cd), k.to(cd), offsets, base)  # rotated in fp32, never rounded to the input dtype
    return masked_attention(qr, kr, v.to(cd), lengths, window, scale, dilation).to(q.dtype)
