"""The ``native`` backend: torch's own fused paths, with the reference's signatures and semantics.

``F.rms_norm`` and ``F.scaled_dot_product_attention`` dispatch to torch's fused CPU/CUDA kernels (flash or
memory-efficient attention where the mask allows); RoPE has no fused torch op, so it is the reference's.
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
    if lengths is None and window is None and dilation == 1:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    pair, rows = attention_mask(B, T, lengths, window, q.device, dilation)  # (B, 1, T, T), (B, 1, T, 1)
    # SDPA turns a row with no visible key into NaN. With window >= 0 and any dilation every valid query sees itself,
    # so only padded query rows are fully masked: let them see every key, then zero them (gradients are zeroed too).
    pair = pair | ~rows
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=pair, scale=scale)
    return out * rows.to(out.dtype)


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
