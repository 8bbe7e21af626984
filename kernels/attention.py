"""Fused RoPE attention: checks, RoPE tables, launches, custom ops and autograd around the Triton kernels.

``rope_attention(q, k, v, lengths, window, offsets, base, scale, dilation)`` applies RoPE to q and k, then
bidirectional softmax attention with key padding, an optional local window and an optional dilation (query i sees
key j only when (i − j) mod K = 0; the kernels gather each residue class by stride, so hidden keys cost nothing), in
one fused kernel per pass (FlashAttention-2 style). The math, the online softmax, RoPE inside the kernel, the
dilation's residue classes and the backward derivation are written out above the kernels, in
kernels/attention_kernels.py.

Inputs may be any strided (B, H, T, D) views (e.g. q, k, v sliced out of one packed qkv projection): every
kernel takes explicit strides, so nothing is copied. Outputs are freshly allocated; inputs are never written.
Accumulation is fp32 for fp16/bf16/fp32 inputs; fp32 dots use full precision unless torch allows TF32 matmuls.
On a GPU the tiles are autotuned per (T, D, window, dilation); under the interpreter they are fixed at 16×16.
Whether the device can run Triton is checked once per call by the registry (kernels.registry), the way the
model and every other caller reach this op; importing rope_attention from here skips that check.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import triton

from kernels._triton_utils import custom_op, interpreting
from kernels.attention_kernels import BWD_CONFIGS, FWD_CONFIGS, attn_bwd_delta, attn_bwd_dkdv, attn_bwd_dq, attn_fwd
from kernels.reference import _check_dilation, rope_angles, rope_inv_freq

__all__ = ["rope_attention"]

_LOG2E = math.log2(math.e)
_MAX_HEAD_DIM = 128  # the range the tile configs are sized and tested for (the model uses 32-64)
_INTERPRET_BLOCK = 16  # the interpreter runs ~1 ms per program instance: small tiles, no autotuning


def _prune_by_length(configs: list, named_args: dict, **kwargs) -> list:
    """Drop configs whose blocks exceed the (padded) rows of one residue class, ⌈T/K⌉; keep at least the smallest."""
    limit = max(16, triton.next_power_of_2(triton.cdiv(int(named_args["T"]), int(named_args["DILATION"]))))
    kept = [c for c in configs if max(c.kwargs.get("BLOCK_M", 16), c.kwargs.get("BLOCK_N", 16)) <= limit]
    return kept or [min(configs, key=lambda c: c.kwargs.get("BLOCK_M", 16) * c.kwargs.get("BLOCK_N", 16))]


@functools.cache
def _autotuned(kernel: triton.JITFunction) -> triton.runtime.Autotuner:
    """`kernel` wrapped in its autotuner, built on first GPU launch (never under the interpreter, which cannot)."""
    configs = FWD_CONFIGS if kernel is attn_fwd else BWD_CONFIGS
    return triton.autotune(configs, key=["T", "HEAD_DIM", "HAS_WINDOW", "DILATION"],
                           prune_configs_by={"early_config_prune": _prune_by_length})(kernel)


def _launcher(kernel: triton.JITFunction, tuned: bool = True):
    """The kernel itself under the interpreter (fixed tiles come with the launch), its autotuner on a GPU."""
    return _autotuned(kernel) if tuned and not interpreting() else kernel


@functools.lru_cache(maxsize=64)
def _rope_tables(seq_len: int, head_dim: int, base: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """θ (D/2,), cos(t·θ) and sin(t·θ) (T, D/2) in fp32: the reference's own values (the kernel rotates as it does)."""
    cos, sin = rope_angles(1, seq_len, head_dim, None, base, device)  # (1, 1, T, D), both halves share a frequency
    half = head_dim // 2
    return rope_inv_freq(head_dim, base, device), cos[0, 0, :, :half].contiguous(), sin[0, 0, :, :half].contiguous()


def _launch_args(q: torch.Tensor, window: int | None, dilation: int) -> tuple[dict, int, int]:
    """Constexpr tile sizes, window flag and dot precision for this call, plus the window (in steps of the
    dilation, as the kernels count inside a residue class) and the dilation to pass."""
    D, T = q.shape[-1], q.shape[-2]
    has_window = window is not None and window < T - 1  # a window of T - 1 or more hides nothing
    # A dilation of T or more leaves each frame alone in its class, as T does: no more classes than frames.
    dilation = max(1, min(dilation, T))
    meta = {"HEAD_DIM": D, "BLOCK_HALF": max(16, triton.next_power_of_2(D // 2)),
            "BLOCK_D": max(16, triton.next_power_of_2(D)), "HAS_WINDOW": has_window,
            # fp32 dots follow torch's TF32 setting for matmuls; fp16/bf16 dots ignore it.
            "DOT_PRECISION": "tf32" if q.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"}
    if interpreting():  # explicit small tiles: the interpreter pays per program instance and cannot autotune
        meta.update(BLOCK_M=_INTERPRET_BLOCK, BLOCK_N=_INTERPRET_BLOCK)
    return meta, (window // dilation if has_window else 0), dilation


def _grid(T: int, dilation: int, batch_heads: int, block: str):
    """The launch grid: K residue classes (K already clamped to T) × blocks of ⌈T/K⌉ local rows, then B·H."""
    return lambda cfg: (dilation * triton.cdiv(triton.cdiv(T, dilation), cfg[block]), batch_heads)


def _forward_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor,
                  window: int | None, base: float, scale: float, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel; returns the output (B, H, T, D) and the base-2 log-sum-exp (B·H, T) fp32."""
    B, H, T, D = q.shape
    o = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    meta, w, dil = _launch_args(q, window, dilation)
    _launcher(attn_fwd)[_grid(T, dil, B * H, "BLOCK_M")](
        q, k, v, o, lse, lengths, offsets, *_rope_tables(T, D, base, q.device),
        *q.stride(), *k.stride(), *v.stride(), *o.stride(), H, T, w, dil, scale * _LOG2E, **meta)
    return o, lse


def _backward_impl(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                   lse: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor, window: int | None, base: float,
                   scale: float, dilation: int, need_q: bool,
                   need_kv: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch delta, dK/dV and dQ kernels; a gradient that is not needed comes back as an empty tensor."""
    B, H, T, D = q.shape
    meta, w, dil = _launch_args(q, window, dilation)
    tables = _rope_tables(T, D, base, q.device)
    delta = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    delta_block = meta.get("BLOCK_M", 64)
    _launcher(attn_bwd_delta, tuned=False)[(triton.cdiv(T, delta_block), B * H)](
        o, do, delta, *o.stride(), *do.stride(), H, T, HEAD_DIM=D, BLOCK_D=meta["BLOCK_D"], BLOCK_M=delta_block)
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride())
    scalars = (H, T, w, dil, scale, scale * _LOG2E)
    dq, dk, dv = q.new_empty(0), k.new_empty(0), v.new_empty(0)
    if need_kv:
        dk = torch.empty((B, H, T, D), dtype=k.dtype, device=k.device)
        dv = torch.empty((B, H, T, D), dtype=v.dtype, device=v.device)
        _launcher(attn_bwd_dkdv)[_grid(T, dil, B * H, "BLOCK_N")](
            q, k, v, do, lse, delta, dk, dv, lengths, offsets, *tables, *strides, *dk.stride(), *dv.stride(),
            *scalars, **meta)
    if need_q:
        dq = torch.empty((B, H, T, D), dtype=q.dtype, device=q.device)
        _launcher(attn_bwd_dq)[_grid(T, dil, B * H, "BLOCK_M")](
            q, k, v, do, lse, delta, dq, lengths, offsets, *tables, *strides, *dq.stride(), *scalars, **meta)
    return dq, dk, dv


def _forward_fake(q, k, v, lengths, offsets, window, base, scale, dilation):
    B, H, T, D = q.shape
    return q.new_empty((B, H, T, D)), q.new_empty((B * H, T), dtype=torch.float32)


def _backward_fake(do, q, k, v, o, lse, lengths, offsets, window, base, scale, dilation, need_q, need_kv):
    shape = tuple(q.shape)
    return q.new_empty(shape if need_q else 0), k.new_empty(shape if need_kv else 0), \
        v.new_empty(shape if need_kv else 0)


_forward = custom_op("rope_attention_fwd", _forward_impl, _forward_fake)
_backward = custom_op("rope_attention_bwd", _backward_impl, _backward_fake)


class _RopeAttention(torch.autograd.Function):
    """Autograd wrapper: forward saves the base-2 log-sum-exp, backward recomputes P tile by tile."""

    @staticmethod
    def forward(ctx, q, k, v, lengths, offsets, window, base, scale, dilation):
        o, lse = _forward(q, k, v, lengths, offsets, window, base, scale, dilation)
        ctx.save_for_backward(q, k, v, o, lse, lengths, offsets)
        ctx.window, ctx.base, ctx.scale, ctx.dilation = window, base, scale, dilation
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, lengths, offsets = ctx.saved_tensors
        need_q = ctx.needs_input_grad[0]
        need_kv = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        if not (need_q or need_kv):
            return (None,) * 9
        dq, dk, dv = _backward(do, q, k, v, o, lse, lengths, offsets, ctx.window, ctx.base, ctx.scale, ctx.dilation,
                               need_q, need_kv)
        return (dq if need_q else None, dk if ctx.needs_input_grad[1] else None,
                dv if ctx.needs_input_grad[2] else None, None, None, None, None, None, None)


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
                  scale: float | None, dilation: int) -> None:
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
    _check_dilation("rope_attention", dilation)
    if isinstance(base, bool) or not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0):
        raise ValueError(f"rope_attention: base must be a positive finite number, got {base!r}")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise ValueError(f"rope_attention: scale must be None or a finite number, got {scale!r}")


def rope_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None = None,
                   window: int | None = None, offsets: torch.Tensor | None = None, base: float = 10000.0,
                   scale: float | None = None, dilation: int = 1) -> torch.Tensor:
    """RoPE on q, k then bidirectional softmax attention with key padding, a window and a dilation (fused Triton)."""
    _check_inputs(q, k, v, window, base, scale, dilation)
    B, H, T, D = q.shape
    lengths = _per_sequence(lengths, "lengths", B, T, q.device)
    offsets = _per_sequence(offsets, "offsets", B, 0, q.device)
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if T == 0 or B * H == 0:  # nothing to launch; keep the result attached to the inputs' graph
        return q * 0.0
    guard = torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext()
    with guard:
        return _RopeAttention.apply(q, k, v, lengths, offsets, window, float(base), scale, dilation)
