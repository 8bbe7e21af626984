"""`fit(config)`: the training loop — loaders, model, optimizer, schedule, mixed precision, EMA, DDP, checkpoints.

Reproducibility: every random draw comes from the seed — augmentation from (seed, epoch, sample index) in the
engine, batch order from (seed, epoch) in the loader, MixUp from a torch.Generator and dropout from torch's global
RNG, both saved in checkpoints with the loader position — so a run resumed from a mid-epoch checkpoint on CPU ends
with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from slr_fast.errors import TrainingDiverged, UserInputError, user_input
from slr_fast.fileio import remove_temp_files, writing
from slr_fast.model.checkpoint import checked_config
from slr_fast.preprocess import FLAG_EMPTY, FLAG_MIRRORED, FLAG_NO_HAND, FLAG_NO_POINTS
from slr_fast.store.location import is_url
from slr_fast.train import records
from slr_fast.train.checkpoint import (
    RESUME_FIELDS,
    CheckpointError,
    load_checkpoint,
    load_model_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from slr_fast.train.config import TrainConfig
from slr_fast.train.data import RunData, absolute_location, build_data
from slr_fast.train.ema import EMA
from slr_fast.train.evaluate import run_eval
from slr_fast.train.mixup import mixup_batch
from slr_fast.train.optim import build_optimizer
from slr_fast.train.remedies import PART_HEADS, Remedies, matching_part_heads, prepare_config
from slr_fast.train.report import plot_run, write_report
from slr_fast.train.runtime import Runtime, all_gather_objects, all_reduce_sum, init_runtime
from slr_fast.train.schedule import LRSchedule

# What the preprocessing did to a training sample (its out["flags"] bits), counted per epoch: `train_<name>` in the
# epoch's record, and in its printed line when not zero. Mirrored: dominant_hand turned the sequence; no hand: no
# frame showed a hand, so every frame was kept; empty / no points: the sample is all zeros (length 0 for empty).
FLAG_COUNTS = (("mirrored", FLAG_MIRRORED), ("no_hand", FLAG_NO_HAND), ("empty", FLAG_EMPTY),
               ("no_points", FLAG_NO_POINTS))
_FLAG_BITS = np.array([bit for _, bit in FLAG_COUNTS], np.int32)


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    test: dict | None = None
    is_main: bool = True  # rank 0 (or a single process): the one process that writes and prints


def param_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters (bitwise): equal digests mean identical weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Trainer:
    """Holds everything a run needs; `run()` trains to the end (or early stop) and writes the report."""

    def __init__(self, config: TrainConfig, resume: str | None = None, resume_state: dict | None = None):
        config.validate()  # fields assigned after construction are checked too
        self.cfg = config
        self.run_dir = Path(resume or config.run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserInputError(f"--run-dir {self.run_dir}: exists and is not a folder")
        with user_input():  # a device this machine lacks, fp16 on a CPU
            self.rt: Runtime = init_runtime(config.device, config.precision)
        if config.threads and self.rt.device.type == "cpu":
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        self.data: RunData = build_data(config, self.rt)
        self.model = self.data.build_model(config).to(self.rt.device)
        self.model.kernel_report()  # binds the kernels here: a backend this device lacks fails before the run folder
        if config.init_from and not resume:
            self._init_from(config.init_from)
        self.ddp = self.model
        if self.rt.distributed:
            # LayerDrop skips whole blocks, leaving their parameters without gradients on that step.
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.rt.device] if self.rt.device.type == "cuda" else None,
                find_unused_parameters=self.model.config.layerdrop > 0)
        self.opt = build_optimizer(self.model, config.optim.lr, config.optim.weight_decay, config.optim.betas,
                                   config.optim.group_lrs)
        self.steps_per_epoch = len(self.data.train)
        self.sched = LRSchedule(self.opt, config.schedule, config.epochs * self.steps_per_epoch)
        self.scaler = self.rt.grad_scaler()
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.remedies = Remedies(config, self.model, self.ema, self.data.classes, self.sched.total,
                                 self.steps_per_epoch, self.rt.device, self.rt.autocast)
        if config.init_from and not resume:
            self.remedies.take_over(self._init_state.get("remedies"), self._init_state["path"])
        self.mix_gen = torch.Generator().manual_seed(config.seed + 7919)
        self.epoch, self.step, self.history = 0, 0, []
        self.best, self.bad_epochs = None, 0
        self.partial = {"loss": 0.0, "n": 0.0, "correct": 0.0}  # running sums of the epoch in progress
        if resume:
            self._resume(resume_state or load_checkpoint(self.run_dir / "last.pt", fields=RESUME_FIELDS))
        elif self.rt.is_main:
            if (self.run_dir / "last.pt").exists():
                raise UserInputError(f"{self.run_dir} already holds a run (last.pt); use --resume {self.run_dir} to "
                                     "continue it or choose another --run-dir")
            with writing(self.run_dir):
                self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / "config.json")
            records.start(self.run_dir)
        if self.rt.is_main:
            self.remove_temp_files()  # left by a process killed mid-write, before this one

    def remove_temp_files(self) -> None:
        """Delete temporary checkpoint files a killed save left in the run folder."""
        for name in ("last.pt", "best.pt"):
            remove_temp_files(self.run_dir, name)

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "optimizer": self.opt.state_dict(),
            "schedule": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "remedies": self.remedies.state_dict(),
            "rng": rng_state(),
            "mix_gen": self.mix_gen.get_state(),
            "loader": self.data.train.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "partial": dict(self.partial),
            "best_metric": self.best,
            "bad_epochs": self.bad_epochs,
            "history": list(self.history),
            "config": self.cfg.to_dict(),
            "classes": list(self.data.classes),
            "layout": self.data.layout.to_dict(),
            "preprocess": self.data.preprocess_dict,
            "augment": self.data.augment_config,
            "kernels": self.model.kernel_report(),
            "store": self.data.identity,
        }

    def _save(self, name: str):
        if self.rt.is_main:
            save_checkpoint(self.run_dir / name, self._state())

    def _resume(self, st: dict):
        """Continue from `st` (checked by load_checkpoint(fields=RESUME_FIELDS)); a state that does not fit this
        run — an optimizer of other shapes, a generator state torch refuses — is a CheckpointError naming it."""
        path = st["path"]
        problem = self.data.identity_difference(st.get("store"))
        if problem:
            raise UserInputError(f"{self.cfg.data.store} is not the store run {self.run_dir} was trained on "
                                 f"({problem}); pass --store with the run's store")
        load_model_weights(self.model, st["model"], path)
        if bool(self.ema) != (st["ema"] is not None):
            raise CheckpointError(f"{path}: field 'ema': {'missing' if self.ema else 'present'} although the run's "
                                  f"config has ema_decay {self.cfg.ema_decay}")
        with _applying(path, "optimizer"):
            self.opt.load_state_dict(st["optimizer"])
            _check_optimizer_shapes(self.opt)
        with _applying(path, "schedule"):
            self.sched.load_state_dict(st["schedule"])
        with _applying(path, "scaler"):
            self.scaler.load_state_dict(st["scaler"])
        if self.ema:
            load_model_weights(self.ema.module, st["ema"]["module"], f"{path}: field 'ema'")
            self.ema.updates = int(st["ema"]["updates"])
        self.remedies.load_state_dict(st.get("remedies"), path)
        with _applying(path, "mix_gen"):
            self.mix_gen.set_state(st["mix_gen"])
        with _applying(path, "loader"):
            self.data.train.load_state_dict(st["loader"])
        self.epoch, self.step = int(st["epoch"]), int(st["step"])
        self.partial = dict(st["partial"])
        self.best, self.bad_epochs = st["best_metric"], int(st["bad_epochs"])
        self.history = list(st["history"])
        with _applying(path, "rng"):
            set_rng_state(st["rng"])
        if self.rt.is_main:
            records.keep_epochs(self.run_dir, self.epoch)  # those of the epoch about to be run again go
            if self.cfg.data.store != st["config"]["data"]["store"]:  # moved with --store: the run now names it
                self.cfg.save(self.run_dir / "config.json")

    def _init_from(self, path: str):
        st = load_checkpoint(path, map_location="cpu", fields=("model", "model_config", "classes", "layout"))
        checked_config(st["model_config"], st["model"], st["path"])  # a file whose config and weights disagree
        same_classes = list(st["classes"]) == list(self.data.classes)
        if not same_classes and not self.cfg.new_head:
            raise CheckpointError(f"{path}: trained on {len(st['classes'])} classes, this stage has "
                                  f"{len(self.data.classes)}; pass --new-head to re-initialise the classifiers")
        self._init_state = st  # the remedies take over its confusion matrix
        skipped = load_model_weights(self.model, matching_part_heads(self.model, st["model"]), st["path"],
                                     strict=same_classes)
        beyond = [k for k in skipped if not k.startswith(CLASSIFIER_PREFIXES)]
        if beyond:
            raise CheckpointError(f"{path}: weights do not fit this model beyond the classifiers ({len(beyond)} "
                                  f"tensors, e.g. {beyond[0]}); --new-head only re-initialises the classifiers")
        if self.rt.is_main and skipped:
            print(f"init-from {path}: re-initialised {len(skipped)} classifier tensors ({skipped[0]}, …)")

    # ---- one epoch -----------------------------------------------------------------------------------------------
    def _train_epoch(self) -> dict:
        cfg, rt, model = self.cfg, self.rt, self.ddp
        model.train()
        loader = self.data.train
        loader.set_epoch(self.epoch)
        t0, seen = time.perf_counter(), 0
        bar = tqdm(total=self.steps_per_epoch, initial=loader.state_dict().get("position", 0),
                   desc=f"epoch {self.epoch}", leave=False,
                   # None: tqdm draws only on a terminal, so a log file gets no bars (as ingest and synth do)
                   disable=None if cfg.progress and rt.is_main else True)
        for batch in loader:
            x = batch["x"].to(rt.device, non_blocking=True)
            mask = batch["mask"].to(rt.device, non_blocking=True)
            length = batch["length"].to(rt.device, non_blocking=True)
            label = batch["label"].to(rt.device, non_blocking=True)
            target = label
            lc = cfg.loss
            if lc.mixup_prob > 0 and float(torch.rand(1, generator=self.mix_gen)) < lc.mixup_prob:
                x, mask, target, _ = mixup_batch(x, mask, label, self.data.num_classes, lc.mixup_alpha, self.mix_gen)
                target = target.to(rt.device)
            with rt.autocast():
                out = model(x, mask, length)
            loss, parts = self.remedies.loss(out, x, mask, length, target, self.step)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"non-finite loss {float(loss)} at epoch {self.epoch} step {self.step}; "
                                       "lower the learning rate or use fp32/bf16")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.optim.clip_grad > 0:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            if self.ema:
                self.ema.update(self.model)
            self.step += 1
            b = label.shape[0]
            seen += b
            self.partial["loss"] += float(loss.detach()) * b
            self.partial["n"] += b
            self.partial["correct"] += float((out.logits.detach().argmax(1) == label).sum())
            flags = batch.get("flags")
            if flags is not None:  # counted on the batch as loaded (before MixUp); ~16 us a batch
                counts = np.count_nonzero(flags.numpy()[:, None] & _FLAG_BITS, axis=0)
                for (name, _), c in zip(FLAG_COUNTS, counts, strict=True):
                    self.partial[f"flag_{name}"] = self.partial.get(f"flag_{name}", 0.0) + float(c)
            for k, v in parts.items():  # the loss components, summed like the loss (and kept by a checkpoint)
                self.partial[k] = self.partial.get(k, 0.0) + v * b
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", sps=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update(1)
            if cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                self._save("last.pt")
        bar.close()
        names = sorted(k for k in self.partial if k.startswith("loss_"))
        flag_keys = [f"flag_{name}" for name, _ in FLAG_COUNTS]
        loss_sum, n, correct, *rest = all_reduce_sum(
            rt, [self.partial["loss"], self.partial["n"], self.partial["correct"], *map(self.partial.get, names),
                 *(self.partial.get(k, 0.0) for k in flag_keys)])
        components, counts = rest[:len(names)], rest[len(names):]
        self.partial = {"loss": 0.0, "n": 0.0, "correct": 0.0}
        dt = time.perf_counter() - t0
        return {"train_loss_aug": loss_sum / max(n, 1), "train_acc_aug": correct / max(n, 1),
                "samples_per_s": seen * rt.world_size / dt, "epoch_time_s": dt,
                **{k: v / max(n, 1) for k, v in zip(names, components, strict=True)},
                **{f"train_{name}": int(round(c)) for (name, _), c in zip(FLAG_COUNTS, counts, strict=True)}}

    def _evaluate(self, rec: dict):
        d = self.data
        model = self.model
        if d.train_eval is not None:
            r = run_eval(model, d.train_eval, self.rt, d.num_classes, d.classes, limit=self.cfg.train_eval_samples)
            rec.update(train_loss=r["loss"], train_acc=r["top1"])
        if d.val is not None:
            r = run_eval(model, d.val, self.rt, d.num_classes, d.classes)
            rec.update(val_loss=r["loss"], val_acc=r["top1"], val_top5=r["top5"])
            if self.ema:
                r = run_eval(self.ema.module, d.val, self.rt, d.num_classes, d.classes)
                rec.update(ema_val_loss=r["loss"], ema_val_acc=r["top1"])

    def _lr_rows(self) -> list[tuple[int, int, float]]:
        """(step, epoch, lr) of every lr_stride-th step of the epoch just trained, as the schedule set them (also
        the steps before a mid-epoch resume)."""
        stride = records.lr_stride(self.sched.total)
        first = self.epoch * self.steps_per_epoch
        return [(s, self.epoch, self.sched.lr_at(s)) for s in range(first, first + self.steps_per_epoch)
                if s % stride == 0]

    def _is_better(self, rec: dict) -> float | None:
        key = self.cfg.early_stop_metric
        if key not in rec:
            return None
        value = rec[key] if key == "val_acc" else -rec[key]
        if self.best is None or value > self.best + 1e-9:
            self.best, self.bad_epochs = value, 0
            return value
        self.bad_epochs += 1
        return None

    # ---- the run -------------------------------------------------------------------------------------------------
    def run(self) -> FitResult:
        cfg, rt = self.cfg, self.rt
        if rt.is_main:
            print(f"run {self.run_dir}: {len(self.data.train_indices)} train sequences, {self.data.num_classes} "
                  f"classes, {rt.device} {rt.precision}, world {rt.world_size}, kernels {self.model.kernel_report()}")
            print(f"augmentation: {self.data.augment_config or 'none'}")
            dc = cfg.data
            if self.data.val is None:
                print(f"no validation: the store has no split {dc.val_split!r}" if dc.val_split else
                      "no validation (data.val_split is empty)", "- no best.pt and no early stopping; the last "
                      "epoch's weights are the run's")
            if self.data.test is None and dc.test_split:
                print(f"no final test: the store has no split {dc.test_split!r}")
        stopped = False
        while self.epoch < cfg.epochs and not stopped:
            # The rate at the epoch's first step, also when a resumed run starts mid-epoch.
            rec = {"kind": "epoch", "epoch": self.epoch, "lr": self.sched.lr_at(self.epoch * self.steps_per_epoch),
                   **self.remedies.epoch_record(self.epoch * self.steps_per_epoch)}
            rec.update(self._train_epoch())
            self._evaluate(rec)
            improved = self._is_better(rec)
            self.history.append(rec)
            if rt.is_main:  # before the checkpoint: see slr_fast.train.records
                records.append_epoch(self.run_dir, rec, self._lr_rows())
            self.sched.epoch_end(rec.get("val_acc"))
            self.epoch += 1
            if improved is not None:
                self._save("best.pt")
            self._save("last.pt")
            if rt.is_main:
                gap = rec.get("train_acc", math.nan) - rec.get("val_acc", math.nan)
                print(f"epoch {rec['epoch']}: train loss {rec.get('train_loss', math.nan):.4f} acc "
                      f"{rec.get('train_acc', math.nan):.3f} | val loss {rec.get('val_loss', math.nan):.4f} acc "
                      f"{rec.get('val_acc', math.nan):.3f} | gap {gap:+.3f} | {rec['samples_per_s']:.0f} samples/s"
                      + _flag_note(rec))
            if cfg.early_stop_patience and self.bad_epochs >= cfg.early_stop_patience:
                stopped = True
                if rt.is_main:
                    print(f"early stop: no {cfg.early_stop_metric} improvement for {self.bad_epochs} epochs")
        return self._finish()

    def _load_best(self) -> str:
        """Put the weights of best.pt in every rank's model; returns what the model now holds.

        Only rank 0 reads the file — the one it wrote itself, moments ago in the last epoch, and the only copy when
        ranks do not share a disk — and the other ranks receive its tensors, so every rank evaluates exactly the
        same weights (a rank reading best.pt itself could get the previous best before rank 0 replaced it)."""
        rt = self.rt
        path = self.run_dir / "best.pt"
        if not all_gather_objects(rt, rt.is_main and path.exists())[0]:  # rank 0's view decides, for every rank
            return "the last epoch's weights (no best.pt)"
        if rt.is_main:
            best = load_checkpoint(path, fields=("model",))
            load_model_weights(self.model, best["model"], best["path"])
        if rt.distributed:
            for t in self.model.state_dict().values():  # views of the parameters and buffers: received in place
                dist.broadcast(t, src=0)
        return str(path)

    def _finish(self) -> FitResult:
        cfg, rt, d = self.cfg, self.rt, self.data
        trained = all_gather_objects(rt, param_digest(self.model))  # DDP kept every rank's weights identical
        test, evaluated = None, trained
        if d.test is not None:
            weights = self._load_best()
            test = run_eval(self.model, d.test, rt, d.num_classes, d.classes, signers=d.store.signers)
            test.update(split=cfg.data.test_split, checkpoint=weights)
            evaluated = all_gather_objects(rt, param_digest(self.model))
        if rt.is_main:
            summary = {"epochs": self.epoch, "best_metric": self.best, "test": test, "rank_param_digests": trained,
                       "test_rank_param_digests": evaluated,
                       "ranks_agree": len(set(trained)) == 1 and len(set(evaluated)) == 1,
                       "kernels": self.model.kernel_report(), "precision": rt.precision, "device": str(rt.device),
                       "world_size": rt.world_size}
            with writing(self.run_dir / "summary.json"):
                (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            if self.history:
                with writing(self.run_dir / "report.md"):
                    plot_run(self.history, self.run_dir)
                    write_report(self.history, self.run_dir, cfg.to_dict(), test)
        self.data.close()
        return FitResult(self.run_dir, self.history, self.best, test, rt.is_main)


def fit(config: TrainConfig, resume: str | None = None, progress: bool | None = None,
        store: str | None = None) -> FitResult:
    """Train as `config` says (or continue the run in directory `resume`); returns history and test metrics.

    A new run records its store (and --init-from checkpoint) as an absolute path, so it resumes from any folder.
    `store` moves a resumed run to the same store at another place: it must hold the data the run was trained on
    (same sequences, frames, classes, layout and index checksums). `progress` overrides the config's progress bar
    (a resumed run keeps its saved config otherwise). A SIGTERM (torchrun stopping the other ranks after a failure)
    ends the run like Ctrl-C: temporary files are removed.
    """
    state = None
    if resume:
        # A resume continues that run with its own saved config, whatever else was passed.
        run = Path(resume)
        if not run.is_dir():
            raise UserInputError(f"--resume {resume}: not a run folder")
        if not (run / "last.pt").exists():
            raise FileNotFoundError(f"--resume {resume}: no last.pt to resume from")
        state = load_checkpoint(run / "last.pt", fields=RESUME_FIELDS)
        config = TrainConfig.from_dict(state["config"])
        if store:
            config.data.store = absolute_location(store)
        elif not is_url(config.data.store) and not Path(config.data.store).exists():
            raise UserInputError(f"--resume {resume}: the run's store {config.data.store} is not there; if it "
                                 f"moved, pass --store NEW_PLACE")
    else:
        config = TrainConfig.from_dict(config.to_dict())  # the caller's config stays as given
        config.data.store = absolute_location(config.data.store)
        config.init_from = absolute_location(config.init_from)
        prepare_config(config)
    if progress is not None:
        config.progress = progress
    with _sigterm_as_exit():
        trainer = Trainer(config, resume, state)
        try:
            return trainer.run()
        finally:
            trainer.data.close()
            if trainer.rt.is_main:
                trainer.remove_temp_files()


# Parameters a new head re-initialises (`--new-head`): the main classifier and the auxiliary ones.
CLASSIFIER_PREFIXES = ("head.", "aux_heads.", PART_HEADS)


@contextlib.contextmanager
def _applying(path: str, field_name: str):
    """Applying a checked checkpoint field to live objects: what torch still refuses becomes a CheckpointError."""
    try:
        yield
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"{path}: field {field_name!r} does not fit this run ({type(e).__name__}: "
                              f"{str(e)[:300]})") from e


def _check_optimizer_shapes(opt: torch.optim.Optimizer) -> None:
    # torch checks the group sizes but not the moments' shapes: a wrong one would fail at the first step.
    for p, st in opt.state.items():
        for name, t in st.items():
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape != p.shape:
                raise ValueError(f"state {name!r} of shape {tuple(t.shape)} for a parameter of {tuple(p.shape)}")


@contextlib.contextmanager
def _sigterm_as_exit():
    """Within the block SIGTERM raises SystemExit(143), so finally-blocks run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flag_note(rec: dict) -> str:
    """' | 41 mirrored, 2 no hand' for the epoch's non-zero preprocessing counts ('' when there are none)."""
    said = [f"{rec[f'train_{name}']} {name.replace('_', ' ')}" for name, _ in FLAG_COUNTS if rec.get(f"train_{name}")]
    return " | " + ", ".join(said) if said else ""
