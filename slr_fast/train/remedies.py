"""The training loss with the anti-overfitting remedies: one `Remedies` per run computes every batch's loss.

Each remedy is a switch of `TrainConfig.loss` (config.py), off by default; with all of them off the loss is exactly
`deep_supervision_loss` of the focal loss (the same calls, so bit-identical to a run made before they existed).

- Curriculum focal loss (`focal_schedule`, `focal_gamma_start`, `focal_ramp`): γ grows from focal_gamma_start to
  focal_gamma over the first focal_ramp of the stage's steps (why: losses.curriculum_gamma).
- Pairwise margin (`margin_weight`, `margin`, `margin_pairs`, `margin_decay`): a hinge between the true class's
  logit and those of the `margin_pairs` classes it is most confused with, read from a running confusion matrix of
  the training predictions (decayed by `margin_decay` per epoch). The matrix is saved in every checkpoint
  ("remedies") and a later stage starting from one (`init_from`) takes it over, matched by class name.
- Self-distillation (`distill_weight`, `distill_temperature`, `distill_teacher`, `distill_ramp`): the soft targets
  of a teacher — the run's EMA weights, the `init_from` checkpoint (the previous stage's best) or any checkpoint
  of the same classes — on the very batch the student sees (MixUp's mixed input included).
- Cross-modal consistency (`consistency_weight`, `part_weight`): the model's per-part classifiers
  (ModelConfig.part_heads, switched on by it) each learn the sign from their own part and are pulled together by
  the Jensen-Shannon divergence of their predictions (why: losses.part_losses).

Every component is returned by name (`loss_main`, `loss_aux0`, ..., `loss_margin`, `loss_distill`, `loss_part`,
`loss_consistency`) for the epoch records; `focal_gamma` is recorded too when it follows a curriculum.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from slr_fast.train.checkpoint import CheckpointError, load_checkpoint
from slr_fast.train.config import ConfigError, TrainConfig
from slr_fast.train.losses import (
    confusion_update,
    curriculum_gamma,
    deep_supervision_loss,
    distillation_loss,
    pairwise_margin_loss,
    part_losses,
    rivals_from_confusion,
)

PART_HEADS = "part_heads."  # the state-dict prefix of the model's per-part classifiers
TEACHER_FIELDS = ("model", "model_config", "classes", "layout")


def prepare_config(config: TrainConfig) -> None:
    """What a new run's config implies, made explicit before it is saved: the part heads the consistency loss
    trains (unless the config says otherwise, which TrainConfig refuses) and an absolute teacher path (so the run
    resumes from any folder)."""
    from slr_fast.train.data import absolute_location

    lc = config.loss
    if lc.consistency_weight > 0:
        config.model = {**config.model, "part_heads": True}
    if lc.distill_teacher not in ("ema", "init"):
        lc.distill_teacher = absolute_location(lc.distill_teacher)


def matching_part_heads(model: torch.nn.Module, state: dict) -> dict:
    """`state` (another run's weights) fitted to `model`'s part heads: heads the model lacks are dropped, heads
    the state lacks keep the model's fresh initialisation. Everything else is left for the strict load."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(PART_HEADS) or k in own}
    fresh = {k: v for k, v in own.items() if k.startswith(PART_HEADS) and k not in state}
    return {**state, **fresh}


class Remedies:
    """The loss of a run: `loss(out, x, mask, length, target, step)` -> (total, {component: value})."""

    def __init__(self, config: TrainConfig, model: torch.nn.Module, ema, classes: list[str], total_steps: int,
                 steps_per_epoch: int, device: torch.device, autocast=None):
        self.cfg, self.lc = config, config.loss
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.total_steps = max(int(total_steps), 1)
        self.autocast = autocast
        lc = self.lc
        self.confusion = None
        if lc.margin_weight > 0:
            self.confusion = torch.zeros(self.num_classes, self.num_classes, device=device)
            # margin_decay is per epoch; the matrix is updated every step.
            self.step_decay = lc.margin_decay ** (1.0 / max(steps_per_epoch, 1))
        self.teacher = None
        if lc.distill_weight > 0:
            self.teacher = ema.module if lc.distill_teacher == "ema" else self._load_teacher(model, device)
        self.parts_on = lc.consistency_weight > 0
        if self.parts_on and getattr(model, "part_heads", None) is None:
            raise ConfigError("config.loss.consistency_weight: the model has no part heads; set model.part_heads=true "
                              "(fit does so itself)", "config.loss.consistency_weight", lc.consistency_weight)

    # ---- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict | None:
        """What a checkpoint keeps ("remedies"): the running confusion matrix and the classes it is over."""
        if self.confusion is None:
            return None
        return {"confusion": self.confusion.detach().cpu().clone(), "classes": list(self.classes)}

    def load_state_dict(self, state, path: str) -> None:
        """Continue a run (its own checkpoint): the confusion matrix must be there when the run uses one."""
        if self.confusion is None:
            return
        if state is None:
            raise CheckpointError(f"{path}: field 'remedies': missing although the run's config has margin_weight "
                                  f"{self.lc.margin_weight}")
        self._take_confusion(state, path, same_classes=True)

    def take_over(self, state, path: str) -> None:
        """Start from an earlier stage's running confusion (`init_from`), for the classes both stages share; a
        checkpoint without one (its stage had no margin loss) leaves the matrix empty."""
        if self.confusion is not None and state is not None:
            self._take_confusion(state, path, same_classes=False)

    def _take_confusion(self, state, path: str, same_classes: bool) -> None:
        c, classes = (state.get("confusion"), state.get("classes")) if isinstance(state, dict) else (None, None)
        k = len(classes) if isinstance(classes, list) else -1
        ok = (isinstance(c, torch.Tensor) and c.is_floating_point() and tuple(c.shape) == (k, k)
              and all(isinstance(n, str) for n in classes) and bool(torch.isfinite(c).all()) and bool((c >= 0).all()))
        if not ok:
            raise CheckpointError(f"{path}: field 'remedies': not a confusion matrix of finite counts >= 0 over its "
                                  "class list")
        if same_classes and classes != self.classes:
            raise CheckpointError(f"{path}: field 'remedies': its confusion matrix is over other classes than the run")
        where = {name: i for i, name in enumerate(classes)}
        mine = [i for i, n in enumerate(self.classes) if n in where]
        device = self.confusion.device
        theirs = torch.tensor([where[self.classes[i]] for i in mine], dtype=torch.long, device=device)
        mine = torch.tensor(mine, dtype=torch.long, device=device)
        self.confusion.zero_()
        self.confusion[mine.unsqueeze(1), mine.unsqueeze(0)] = c.to(self.confusion)[theirs.unsqueeze(1),
                                                                                     theirs.unsqueeze(0)]

    def _load_teacher(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        from slr_fast.model.checkpoint import model_from_state

        path = self.cfg.init_from if self.lc.distill_teacher == "init" else self.lc.distill_teacher
        st = load_checkpoint(path, map_location="cpu", fields=TEACHER_FIELDS)
        if list(st["classes"]) != self.classes:
            raise CheckpointError(f"{st['path']}: a distillation teacher must know the run's classes; it was "
                                  f"trained on {len(st['classes'])} classes, the run has {self.num_classes}")
        teacher = model_from_state(st["model_config"], st["model"], st["path"], model.kernels).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    # ---- the loss ----------------------------------------------------------------------------------------------
    def gamma(self, step: int) -> float:
        """The focal γ at optimizer step `step` of the stage."""
        lc = self.lc
        if lc.focal_schedule == "constant":
            return lc.focal_gamma
        return curriculum_gamma(step / self.total_steps, lc.focal_gamma_start, lc.focal_gamma, lc.focal_ramp,
                                lc.focal_schedule)

    def epoch_record(self, step: int) -> dict:
        """What an epoch record notes about the remedies beside the loss components (γ of a curriculum)."""
        return {} if self.lc.focal_schedule == "constant" else {"focal_gamma": self.gamma(step)}

    def loss(self, out, x: torch.Tensor, mask: torch.Tensor, length: torch.Tensor, target: torch.Tensor,
             step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's loss for model output `out` on input (x, mask, length) with `target` (B,) ids or (B, K)
        MixUp probabilities; `step` is the optimizer step of the stage (the curricula and ramps follow it)."""
        lc = self.lc
        total, parts = deep_supervision_loss(out.logits, out.aux_logits, target, lc.aux_weight, self.gamma(step),
                                             lc.label_smoothing)
        if self.confusion is not None:
            rivals = rivals_from_confusion(self.confusion, lc.margin_pairs)
            margin = pairwise_margin_loss(out.logits, target, rivals, lc.margin)
            total = total + lc.margin_weight * margin
            parts["loss_margin"] = float(margin.detach())
            self._update_confusion(out.logits, target)
        if self.teacher is not None:
            with torch.no_grad(), (self.autocast() if self.autocast else contextlib.nullcontext()):
                teacher_logits = self.teacher(x, mask, length).logits
            distill = distillation_loss(out.logits, teacher_logits, lc.distill_temperature)
            ramp = min(step / (lc.distill_ramp * self.total_steps), 1.0) if lc.distill_ramp > 0 else 1.0
            total = total + lc.distill_weight * ramp * distill
            parts["loss_distill"] = float(distill.detach())
        if self.parts_on:
            part_ce, consistency = part_losses(out.part_logits, out.part_seen, target, lc.label_smoothing)
            total = total + lc.part_weight * part_ce + lc.consistency_weight * consistency
            parts["loss_part"], parts["loss_consistency"] = float(part_ce.detach()), float(consistency.detach())
        return total, parts

    @torch.no_grad()
    def _update_confusion(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        counts = confusion_update(logits, target).to(self.confusion)
        if dist.is_available() and dist.is_initialized():  # every rank keeps the same matrix
            dist.all_reduce(counts)
        self.confusion.mul_(self.step_decay).add_(counts)

