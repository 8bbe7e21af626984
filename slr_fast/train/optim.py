"""AdamW with parameter groups: no weight decay on norms, biases and residual scales; optional layer-wise rates."""

from __future__ import annotations

import re

import torch

from slr_fast.train.config import ConfigError, regex_problem


def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    # 1-D tensors are norm weights, biases, residual scales, pooling queries' scales: decaying them toward 0
    # fights their role (a norm gain of 0 silences a channel), as is standard since BERT.
    return p.ndim <= 1 or name.endswith(".bias") or "norm" in name or "scale" in name or "alpha" in name


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999),
                    group_lrs: dict[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over decay / no-decay groups; `group_lrs` maps a regex on parameter names to an lr multiplier.

    The first matching pattern wins, e.g. {"^embed": 0.5, "^head": 2.0} for layer-wise rates in fine-tuning.
    """
    for k in group_lrs or {}:
        problem = regex_problem(k)
        if problem:
            raise ConfigError(f"optim.group_lrs: {problem}")
    patterns = [(re.compile(k), float(v)) for k, v in (group_lrs or {}).items()]
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = next((m for rx, m in patterns if rx.search(name)), 1.0)
        groups.setdefault((mult, _no_decay(name, p)), []).append(p)
    if not groups:
        raise ValueError("model has no trainable parameters")
    param_groups = [
        {"params": ps, "lr": lr * mult, "peak_lr": lr * mult, "weight_decay": 0.0 if nd else weight_decay,
         "lr_mult": mult}
        for (mult, nd), ps in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas)
