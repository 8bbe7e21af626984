"""MultiScalePooling: a sequence of frame vectors -> one vector, from several views of the valid frames.

- avg / max: mean and max over the valid frames (masked_mean_max, also the model's view of earlier levels).
- adaptive: the valid frames cut into s equal segments for each scale s (default 1, 2, 4, 8), each segment
  averaged, all concatenated (1+2+4+8 = 15 vectors): where in the sign something happens.
- attention: learned queries score every frame, a softmax over the valid frames picks the important ones.

Every view uses only frames t < length, so padding never changes the result.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def masked_mean_max(h: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max of h (B, T, D) over the valid frames (B, T) bool; both zeros for a sequence of no frames."""
    w = valid.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    count = w.sum(1).clamp_min(1.0)  # (B, 1)
    mean = (h * w).sum(1) / count  # (B, D)
    # The dtype's lowest value, not -inf, so an empty sequence gives finite values (then 0) and finite gradients.
    lowest = torch.finfo(h.dtype).min
    mx = h.masked_fill(~valid.unsqueeze(-1), lowest).amax(1)  # (B, D)
    mx = torch.where(valid.any(1, keepdim=True), mx, torch.zeros_like(mx))
    return mean, mx


def segment_weights(lengths: torch.Tensor, T: int, scales: tuple[int, ...]) -> torch.Tensor:
    """(B, sum(scales), T) averaging weights: segment i of scale s covers frames [floor(iL/s), ceil((i+1)L/s)).

    The same bounds as adaptive average pooling over the L valid frames, so segments overlap rather than go empty
    when L < s; all-zero rows for L = 0.
    """
    L = lengths.to(torch.int64).view(-1, 1, 1)  # (B, 1, 1)
    t = torch.arange(T, device=lengths.device).view(1, 1, T)  # (1, 1, T)
    rows = []
    for s in scales:
        i = torch.arange(s, device=lengths.device).view(1, s, 1)  # (1, s, 1)
        start = torch.div(i * L, s, rounding_mode="floor")  # (B, s, 1)
        end = torch.div((i + 1) * L + s - 1, s, rounding_mode="floor")  # (B, s, 1)
        rows.append((t >= start) & (t < end))  # (B, s, T)
    w = torch.cat(rows, dim=1).float()  # (B, S, T)
    return w / w.sum(-1, keepdim=True).clamp_min(1.0)


class AttentionPooling(nn.Module):
    """Learned queries attend over the valid frames; returns one vector per query, concatenated.

    Not the registry's `attention` op: that op is self-attention (T queries, RoPE); this is Q << T learned queries
    against the frames, a (B, Q, T) softmax that costs nothing next to the backbone.
    """

    def __init__(self, dim: int, queries: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, dim) * dim**-0.5)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B, T, D = h.shape
        scores = torch.einsum("qd,btd->bqt", self.queries, self.key(h)) / math.sqrt(D)  # (B, Q, T)
        # Lowest finite value, not -inf: a sequence of no frames then gets uniform weights, zeroed just below.
        scores = scores.masked_fill(~valid.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1) * valid.unsqueeze(1).to(scores.dtype)  # (B, Q, T)
        pooled = torch.einsum("bqt,btd->bqd", weights, self.value(h))  # (B, Q, D)
        return pooled.reshape(B, -1)  # (B, Q*D)


class MultiScalePooling(nn.Module):
    """Concatenation of the chosen views (avg, max, adaptive scales, attention) of (B, T, D) -> (B, out_dim)."""

    def __init__(self, dim: int, kinds: tuple[str, ...], scales: tuple[int, ...], queries: int):
        super().__init__()
        self.kinds = tuple(kinds)
        self.scales = tuple(scales)
        self.attention = AttentionPooling(dim, queries) if "attention" in kinds else None
        widths = {"avg": 1, "max": 1, "adaptive": sum(scales), "attention": queries}
        self.out_dim = dim * sum(widths[k] for k in self.kinds)

    def forward(self, h: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = h.shape
        mean, mx = masked_mean_max(h, valid)  # (B, D) each
        views = []
        for kind in self.kinds:
            if kind == "avg":
                views.append(mean)
            elif kind == "max":
                views.append(mx)
            elif kind == "adaptive":
                w = segment_weights(lengths, T, self.scales).to(h.dtype)  # (B, S, T)
                views.append(torch.bmm(w, h).reshape(B, -1))  # (B, S, D) -> (B, S*D)
            else:
                views.append(self.attention(h, valid))  # (B, Q*D)
        return torch.cat(views, dim=-1)  # (B, out_dim)

    def extra_repr(self) -> str:
        return f"kinds={self.kinds}, scales={self.scales}, out_dim={self.out_dim}"
