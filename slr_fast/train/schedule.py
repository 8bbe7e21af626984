"""Learning-rate schedules, stepped once per optimizer step, all with linear warm-up.

Each parameter group keeps its own peak rate in `group["peak_lr"]` (layer-wise rates, per-group one-cycle maxima),
and a schedule multiplies it by a factor of the step. Schedules are plain objects with `state_dict()` so a resumed
run continues the same curve.

- `cyclic`: triangular cycles between `min_lr_ratio`·peak and peak (the user's schedule), each cycle's amplitude
  multiplied by `cycle_decay` (1.0 = triangular, 0.5 = "triangular2").
- `cosine_restarts`: cosine annealing with warm restarts (SGDR), first period `restart_period` steps, each next
  period `restart_mult` times longer.
- `onecycle`: warm-up to each group's peak, then cosine down to peak/`final_div`.
- `plateau`: constant after warm-up; `epoch_end(metric)` multiplies by `plateau_factor` after `plateau_patience`
  epochs without improvement.
- `constant`: warm-up then constant.
"""

from __future__ import annotations

import math

import torch

from slr_fast.train.config import SCHEDULES, ScheduleConfig  # noqa: F401  (re-exported)


class LRSchedule:
    """Sets each group's lr = peak_lr · factor(step); call `step()` after every optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_steps: int):
        self.opt, self.cfg, self.total = optimizer, config, max(1, int(total_steps))
        for g in optimizer.param_groups:
            g.setdefault("peak_lr", g["lr"])
        self.warmup = config.warmup_steps or int(round(config.warmup_frac * self.total))
        self.step_num = 0
        self.plateau_scale, self.best, self.bad_epochs = 1.0, -math.inf, 0
        self._apply()

    def factor(self, step: int) -> float:
        """The multiplier of the peak rate at optimizer step `step`."""
        c, w = self.cfg, self.warmup
        if step < w:
            return (step + 1) / w
        t, span = step - w, max(1, self.total - w)
        lo = c.min_lr_ratio
        if c.name == "cyclic":
            cycle = c.cycle_steps or max(2, span // 4)
            k, pos = divmod(t, cycle)
            tri = abs(2.0 * pos / cycle - 1.0)  # peak → bottom → peak: the first cycle continues the warm-up
            return lo + (1.0 - lo) * tri * c.cycle_decay**k
        if c.name == "cosine_restarts":
            period = float(c.restart_period or max(1, span // 3))
            while t >= period:
                t -= period
                period *= c.restart_mult
            return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * t / period))
        if c.name == "onecycle":
            lo = 1.0 / c.final_div
            return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
        return self.plateau_scale  # plateau and constant

    def lr_at(self, step: int) -> float:
        """The rate of the first parameter group at optimizer step `step` (what `step()` sets it to there)."""
        return self.opt.param_groups[0]["peak_lr"] * self.factor(step)

    def _apply(self):
        f = self.factor(self.step_num)
        for g in self.opt.param_groups:
            g["lr"] = g["peak_lr"] * f

    def step(self):
        self.step_num += 1
        self._apply()

    def epoch_end(self, metric: float | None):
        """Plateau logic (higher metric is better); other schedules ignore it."""
        if self.cfg.name != "plateau" or metric is None:
            return
        if metric > self.best + 1e-6:
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.plateau_patience:
                self.plateau_scale *= self.cfg.plateau_factor
                self.bad_epochs = 0
                self._apply()

    def state_dict(self) -> dict:
        return {"step_num": self.step_num, "plateau_scale": self.plateau_scale, "best": self.best,
                "bad_epochs": self.bad_epochs, "total": self.total, "warmup": self.warmup}

    def load_state_dict(self, state: dict):
        self.step_num, self.plateau_scale = int(state["step_num"]), float(state["plateau_scale"])
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
        self.total, self.warmup = int(state["total"]), int(state["warmup"])
        self._apply()
