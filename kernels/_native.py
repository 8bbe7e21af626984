"""The ``native`` backend: torch's own fused paths, with the reference's signatures and semantics.

``F.rms_norm`` and ``F.scaled_dot_product_attention`` dispatch to torch's fused CPU/CUDA kernels (flash or
memory-efficient attention where the mask allows); RoPE has no fused torch op, so it is the reference's. A dilated
attention runs as dense SDPA on each residue class of frames (1/K of the pairs), not as a K-times-sparser mask.
Weights are cast to the input dtype because torch's fused ops expect matching dtypes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernels import reference
from kernels.reference import _alpha_like, _check_attention, _check_hidden, _check_rope_attention, attention_mask

__all__ = ["attention", "masked_attention", "residual_rmsnorm", "rmsnorm", "rope", "swiglu", "swiglu_packed"]


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm through ``F.rms_norm``."""
    _check_hidden("rmsnorm", x, weight)
    return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps)


def residual_rmsnorm(
    x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor | float, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """h = x + alpha·f in x.dtype, then ``F.rms_norm``; returns (h, y)."""
    if f.shape != x.shape:
        raise ValueError(f"residual_rmsnorm: f shape {tuple(f.shape)} must equal x shape {tuple(x.shape)}")
    _check_hidden("residual_rmsnorm", x, weight)
    h = x + _alpha_like(alpha, x, x.dtype) * f
    return h, F.rms_norm(h, (h.shape[-1],), weight.to(h.dtype), eps)


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """silu(a) · b in the input dtype."""
    if a.shape != b.shape:
        raise ValueError(f"swiglu: a shape {tuple(a.shape)} must equal b shape {tuple(b.shape)}")
    return F.silu(a) * b


def swiglu_packed(ab: torch.Tensor) -> torch.Tensor:
    """silu(ab[..., :H]) · ab[..., H:]."""
    if ab.dim() < 1 or ab.shape[-1] % 2:
        raise ValueError(f"swiglu_packed: last dim must be even (a | b halves), got shape {tuple(ab.shape)}")
    a, b = ab.chunk(2, dim=-1)
    return F.silu(a) * b


rope = reference.rope


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor | None = None,
    window: int | None = None,
    scale: float | None = None,
    dilation: int = 1,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with a boolean padding/window/dilation mask (the attention, without RoPE)."""
    _check_attention("masked_attention", q, k, v, lengths, window, dilation)
    B, _, T, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if dilation > 1 and T > 1:
        return _dilated_attention(q, k, v, lengths, window, scale, min(dilation, T))
    if lengths is None and window is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    pair, rows = attention_mask(B, T, lengths, window, q.device, dilation)  # (B, 1, T, T), (B, 1, T, 1)
    # SDPA turns a row with no visible key into NaN. With window >= 0 and any dilation every valid query sees itself,
    # so only padded query rows are fully masked: let them see every key, then zero them (gradients are zeroed too).
    pair = pair | ~rows
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=pair, scale=scale)
    return out * rows.to(out.dtype)


def _by_class(x: torch.Tensor, K: int) -> torch.Tensor:
    """(B, H, T, D) -> (B·K, H, ⌈T/K⌉, D): row u of class r is frame r + K·u (zero rows past T)."""
    B, H, T, D = x.shape
    Tk = -(-T // K)
    if Tk * K != T:
        x = F.pad(x, (0, 0, 0, Tk * K - T))
    x = x.reshape(B, H, Tk, K, D)  # frame r + K·u at [:, :, u, r]
    return x.permute(0, 3, 1, 2, 4).reshape(B * K, H, Tk, D)


def _dilated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None,
                       window: int | None, scale: float, K: int) -> torch.Tensor:
    """Attention with dilation K as dense masked attention on each residue class r (frames r, r + K, ...): within a
    class the rule of reference.attention_mask is the dense one with length ⌈(L − r)/K⌉ and window ⌊w/K⌋, and no
    class sees another, so SDPA over B·K short sequences computes it with 1/K of the (query, key) pairs."""
    B, H, T, D = q.shape
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=q.device)
    lengths = lengths.to(device=q.device, dtype=torch.int64).clamp(0, T)  # class lengths must stay below ⌈T/K⌉
    r = torch.arange(K, device=q.device)
    class_lengths = ((lengths[:, None] - r + K - 1) // K).clamp(min=0).flatten()  # (B·K,), b-major like _by_class
    out = masked_attention(_by_class(q, K), _by_class(k, K), _by_class(v, K), class_lengths,
                           None if window is None else window // K, scale)  # (B·K, H, ⌈T/K⌉, D)
    Tk = out.shape[2]
    return out.view(B, K, H, Tk, D).permute(0, 2, 3, 1, 4).reshape(B, H, Tk * K, D)[:, :, :T]


def attention(
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
    """Reference RoPE, then ``F.scaled_dot_product_attention`` with a boolean padding/window/dilation mask."""
    _check_rope_attention(q, k, v, lengths, window, offsets, dilation)
    qr, kr = reference.rope(q, k, offsets, base)
    return masked_attention(qr, kr, v, lengths, window, scale, dilation)
