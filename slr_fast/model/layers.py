"""The sign model's building blocks, in dependency order: the kernel ops every block calls (bound once per model,
per device), RMSNorm, the SwiGLU feed-forward, stochastic depth, RoPE self-attention, the transformer block and
the temporal convolution block. model.py assembles them into SignModel.

Every attention, RMSNorm and SwiGLU goes through one shared `KernelOps`, so an ablation or a backend switch changes
only the KernelConfig: parameters, state_dict and math stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kernels.registry import OPS, KernelConfig

# The registry ops the model calls (each follows its KernelConfig field: residual_rmsnorm the rmsnorm one, ...).
MODEL_OPS = ("rmsnorm", "residual_rmsnorm", "swiglu_packed", "attention")


@dataclass(frozen=True)
class Ops:
    """Concrete op callables for one device, plus the backend name each one resolved to."""

    rmsnorm: Callable
    residual_rmsnorm: Callable
    swiglu_packed: Callable
    attention: Callable
    backends: dict[str, str]


def bind_ops(kernels: KernelConfig, device: torch.device) -> Ops:
    """Resolve `kernels` for `device` ("auto" -> triton on CUDA sm >= 7.0, else native) and fetch each op."""
    resolved = kernels.resolve(device)
    backends = {op: getattr(resolved, OPS[op]) for op in MODEL_OPS}
    # The RoPE inside the attention op: the attention backend's own unless KernelConfig.rope runs another first.
    backends["rope"] = resolved.rope
    return Ops(**{op: resolved.op(op) for op in MODEL_OPS}, backends=backends)


class KernelOps:
    """A model's KernelConfig and its ops, bound on first use per device; every module that calls a kernel holds the
    same instance (given at construction), so no `forward` passes ops around.

    Each call takes the ops bound for its input's device, so the choice follows `model.to(device)` by itself (a
    P100 or a CPU resolves "auto" to native, a newer GPU to triton). Copies and pickles carry the config only: bound
    ops are closures of the registry, rebound on first use.
    """

    def __init__(self, config: KernelConfig):
        self.config = config
        self.bound: dict[torch.device, Ops] = {}

    def use(self, config: KernelConfig) -> None:
        """Switch to another KernelConfig (every module sharing this instance follows)."""
        self.config = config
        self.bound.clear()

    def on(self, device: torch.device) -> Ops:
        """The ops for `device`, bound now if this is its first use."""
        ops = self.bound.get(device)
        if ops is None:
            ops = self.bound[device] = bind_ops(self.config, torch.device(device))
        return ops

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return self.on(x.device).rmsnorm(x, weight, eps)

    def residual_rmsnorm(self, x: torch.Tensor, f: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor,
                         eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return self.on(x.device).residual_rmsnorm(x, f, alpha, weight, eps)

    def swiglu_packed(self, ab: torch.Tensor) -> torch.Tensor:
        return self.on(ab.device).swiglu_packed(ab)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None,
                  window: int | None, base: float, dilation: int = 1) -> torch.Tensor:
        return self.on(q.device).attention(q, k, v, lengths=lengths, window=window, base=base, dilation=dilation)

    def __getstate__(self) -> dict:
        return {"config": self.config, "bound": {}}


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension through the registry's `rmsnorm` op; holds only the weight."""

    def __init__(self, ops: KernelOps, dim: int, eps: float = 1e-6):
        super().__init__()
        self.ops = ops
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.rmsnorm(x, self.weight, self.eps)


class SwiGLUFeedForward(nn.Module):
    """silu(x W_a) * (x W_b) then W_out: one packed input projection so the gate runs as one `swiglu_packed` op."""

    def __init__(self, ops: KernelOps, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.ops = ops
        self.w_in = nn.Linear(dim, 2 * hidden, bias=False)  # [W_a | W_b] packed along the output
        self.w_out = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w_out(self.ops.swiglu_packed(self.w_in(x))))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero the whole residual branch of random samples (dim 0) with probability p, rescaling the rest by 1/(1-p)."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class DropPath(nn.Module):
    """Stochastic depth of one residual branch (a no-op in eval)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class SelfAttention(nn.Module):
    """QKV projection -> attention op (RoPE, key padding from lengths, optional +-window and dilation) -> projection.

    The op masks keys j >= lengths[b], limits a local block to |i - j| <= window, a dilated one to (i - j) % dilation
    == 0, and returns zeros for query rows beyond a sequence's length, so padded frames never reach valid ones
    through attention.
    """

    def __init__(self, ops: KernelOps, dim: int, heads: int, window: int | None = None, rope_base: float = 10000.0,
                 dropout: float = 0.0, dilation: int = 1):
        super().__init__()
        self.ops = ops
        self.heads = heads
        self.head_dim = dim // heads
        self.window = window
        self.dilation = dilation
        self.rope_base = rope_base
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        # The fused op has no attention-probability dropout; regularize the projected output instead.
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, self.head_dim)  # (B, T, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, Dh)
        y = self.ops.attention(q, k, v, lengths, self.window, self.rope_base, self.dilation)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.dropout(self.proj(y))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}, window={self.window}, dilation={self.dilation}"


class TransformerBlock(nn.Module):
    """Pre-norm transformer block with adaptive (learnable, per-channel) residual scales and stochastic depth.

        h   = x + a_attn * Attention(RMSNorm(x))        } one `residual_rmsnorm` op: the residual add and the
        y   = RMSNorm(h)                                 } feed-forward's pre-norm in one pass over the activations
        out = h + a_ffn * SwiGLU(y)

    The same block serves the local stage (attention within +-window frames), the global stage (full attention, or
    dilated: every `dilation`-th frame) and the cross-modal attention among the part tokens of a frame
    (PartEmbedding in model.py).
    """

    def __init__(self, ops: KernelOps, dim: int, heads: int, mlp_hidden: int, *, window: int | None = None,
                 dilation: int = 1, rope_base: float = 10000.0, dropout: float = 0.0, drop_path: float = 0.0,
                 residual_init: float = 1.0, eps: float = 1e-6):
        super().__init__()
        self.ops = ops
        self.attn_norm = RMSNorm(ops, dim, eps)
        self.attn = SelfAttention(ops, dim, heads, window=window, rope_base=rope_base, dropout=dropout,
                                  dilation=dilation)
        # Per-channel residual scales: each branch learns how much it adds to the stream.
        self.attn_scale = nn.Parameter(torch.full((dim,), float(residual_init)))
        self.ffn_norm = RMSNorm(ops, dim, eps)
        self.ffn = SwiGLUFeedForward(ops, dim, mlp_hidden, dropout)
        self.ffn_scale = nn.Parameter(torch.full((dim,), float(residual_init)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        a = self.drop_path(self.attn(self.attn_norm(x), lengths))  # (B, T, D)
        h, y = self.ops.residual_rmsnorm(x, a, self.attn_scale, self.ffn_norm.weight, self.ffn_norm.eps)
        f = self.drop_path(self.ffn(y))  # (B, T, D)
        return h + self.ffn_scale * f


class TemporalConvBlock(nn.Module):
    """Pre-norm gated depthwise-separable convolution over frames, between the local and global stages.

        y   = SwiGLU-gated pointwise expansion of RMSNorm(x)       (the gate is the registry's `swiglu_packed` op)
        y   = depthwise Conv1d over time (one filter per channel), padded frames zeroed first
        y   = pointwise projection of SiLU(RMSNorm(y))
        out = x + a * y                                            (learnable per-channel residual scale)

    Depthwise + pointwise is the separable convolution: k x D + D x D weights instead of k x D x D. No BatchNorm:
    it would mix statistics across sequences and padded frames (RMSNorm is per frame).
    """

    def __init__(self, ops: KernelOps, dim: int, kernel_size: int, *, dropout: float = 0.0, drop_path: float = 0.0,
                 residual_init: float = 1.0, eps: float = 1e-6):
        super().__init__()
        self.ops = ops
        self.norm = RMSNorm(ops, dim, eps)
        self.expand = nn.Linear(dim, 2 * dim, bias=False)  # [gate | value] packed for swiglu_packed
        # "same" padding: frame t sees frames t - k//2 .. t + k//2; zeros beyond the sequence.
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.mid_norm = RMSNorm(ops, dim, eps)
        self.act = nn.SiLU()
        self.pointwise = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.scale = nn.Parameter(torch.full((dim,), float(residual_init)))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = self.ops.swiglu_packed(self.expand(self.norm(x)))  # (B, T, D)
        # Padded frames must contribute exactly zero, as the conv's own zero padding does at the sequence ends.
        y = y * valid.unsqueeze(-1).to(y.dtype)  # (B, T, D)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)  # (B, D, T) -> conv -> (B, T, D)
        y = self.pointwise(self.act(self.mid_norm(y)))  # (B, T, D)
        return x + self.scale * self.drop_path(self.dropout(y))


def init_linear(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal weights and zero biases for every Linear under `module` (a GPT-style init)."""
    # Depthwise convolutions keep PyTorch's fan-in init: their fan-in is the kernel size, not the width.
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
