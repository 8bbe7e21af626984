"""Exponential moving average of model weights, evaluated alongside the live weights."""

from __future__ import annotations

import copy

import torch


class EMA:
    """Keeps `shadow` = decay·shadow + (1-decay)·param after each step; buffers are copied as they are."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup_steps: int = 100):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.warmup_steps, self.updates = decay, warmup_steps, 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        self.updates += 1
        # Early on the average would remember the random init: ramp the decay up over the first steps.
        d = self.decay
        if self.warmup_steps:
            d = min(d, (1 + self.updates) / (self.warmup_steps + self.updates))
        live = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            p.lerp_(live[name].detach(), 1.0 - d)
        live_b = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(live_b[name])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict):
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
