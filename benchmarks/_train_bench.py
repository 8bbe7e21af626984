"""Helpers of benchmarks/test_train.py: the benchmark store, an endless batch stream that times its waits, the
training step of `slr_fast.train.loop.Trainer` as a callable, and the GPU results file.

The step mirrors the Trainer's inner loop (autocast forward, deep-supervision focal loss with the default LossConfig,
loss scaling, gradient clipping, AdamW with decay groups, the LR schedule, the per-step loss read-back) so the figures
are those of `slr-fast train`, not of a leaner loop that nobody runs.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from slr_fast.train.config import LossConfig, OptimConfig
from slr_fast.train.losses import deep_supervision_loss
from slr_fast.train.runtime import Runtime

SLOVO_CLASSES = 1001  # 1000 signs + "no event"
SLOVO_TRAIN = 15015  # training sequences the seed trained on (15 per class, split by signer)
SEED_P100_EPOCH_S = 263.7  # the seed's P100 run: 380 epochs in 27 h 50 min at batch 32 (other hardware: context only)
SEED_EPOCHS = 380
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def make_store(path: Path, *, classes: int, per_class: int, signers: int):
    """A synthetic on-disk store (every sequence used: benchmarks read it with split=None)."""
    from slr_fast.synth import SynthConfig, synth_store

    workers = max(1, min(16, (os.cpu_count() or 1))) if classes * per_class > 2000 else 1
    return synth_store(path, SynthConfig(classes=classes, per_class=per_class, signers=signers), progress=False,
                       workers=workers)


def make_loader(store, batch_size: int, frames: int = 64, seed: int = 0):
    """The training loader of a run: default preprocessing at T=`frames`, default augmentation, shuffled, drop_last."""
    from slr_fast.engine import BatchProcessor
    from slr_fast.loader import KeypointLoader, LoaderConfig
    from slr_fast.preprocess import PreprocessConfig
    from slr_fast.train.data import augment_from_config

    # The loader compiles (or loads from Numba's cache) the kernel its thread runs when it is made: never inside a
    # timed region.
    proc = BatchProcessor(store.layout, PreprocessConfig(T=frames), augment_from_config("default"), seed=seed)
    if len(store) < batch_size:
        raise ValueError(f"benchmark store has {len(store)} sequences, fewer than one batch of {batch_size}")
    return KeypointLoader(store, proc, LoaderConfig(batch_size=batch_size, shuffle=True, drop_last=True, seed=seed,
                                                    split=None, rank=0, world_size=1))


class BatchStream:
    """Batches from a loader without end (a new epoch when one runs out); `wait_s` sums the time spent waiting."""

    def __init__(self, loader, epoch: int = 0):
        self.loader = loader
        self.epoch = epoch
        loader.set_epoch(epoch)
        self._it = iter(loader)
        self.wait_s = 0.0
        self.batches = 0

    def __next__(self) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch += 1
            self.loader.set_epoch(self.epoch)
            self._it = iter(self.loader)
            batch = next(self._it)
        self.wait_s += time.perf_counter() - t0
        self.batches += 1
        return batch

    def reset_counters(self) -> None:
        """Start counting waits afresh (after warm-up)."""
        self.wait_s, self.batches = 0.0, 0


def loader_only_rate(loader, batches: int) -> float:
    """Samples/s of the loader alone (no model), over `batches` batches after the first (thread start-up)."""
    stream = BatchStream(loader)
    next(stream)
    n = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        n += next(stream)["x"].shape[0]
    return n / (time.perf_counter() - t0)


class TrainStep:
    """One optimizer step of the Trainer on a loader batch; returns the loss (read back, as the Trainer does)."""

    def __init__(self, model: torch.nn.Module, rt: Runtime, compile_model: bool = False, total_steps: int = 10_000):
        from slr_fast.train.optim import build_optimizer
        from slr_fast.train.schedule import LRSchedule, ScheduleConfig

        self.model, self.rt = model, rt
        self.run = torch.compile(model) if compile_model else model
        oc, self.loss_cfg = OptimConfig(), LossConfig()
        self.clip = oc.clip_grad
        self.opt = build_optimizer(model, oc.lr, oc.weight_decay, oc.betas)
        self.sched = LRSchedule(self.opt, ScheduleConfig(), total_steps)
        self.scaler = rt.grad_scaler()
        self.losses: list[float] = []
        self.correct = 0
        self.skipped = 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        dev = self.rt.device
        x, mask = batch["x"].to(dev, non_blocking=True), batch["mask"].to(dev, non_blocking=True)
        length, label = batch["length"].to(dev, non_blocking=True), batch["label"].to(dev, non_blocking=True)
        self.model.train()
        with self.rt.autocast():
            out = self.run(x, mask, length)
        lc = self.loss_cfg
        loss, _ = deep_supervision_loss(out.logits, out.aux_logits, label, lc.aux_weight, lc.focal_gamma,
                                        lc.label_smoothing)
        # The Trainer reads every step's loss and correct count back (device syncs on GPU): so does the benchmark.
        value = float(loss.detach())
        self.correct += int((out.logits.detach().argmax(1) == label).sum())
        if not np.isfinite(value):
            raise FloatingPointError(f"non-finite training loss {value} at benchmark step {len(self.losses)}")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        scale = self.scaler.get_scale()
        self.scaler.step(self.opt)
        self.scaler.update()
        # fp16 loss scaling skips the update of a step whose gradients overflowed (and lowers the scale)
        self.skipped += int(self.scaler.get_scale() < scale)
        self.sched.step()
        self.losses.append(value)
        return value


@torch.no_grad()
def eval_loss(model: torch.nn.Module, rt: Runtime, batch: dict[str, torch.Tensor]) -> float:
    """The deep-supervision loss of `batch` in eval mode (no dropout): equal weights must give equal values."""
    dev = rt.device
    was_training = model.training
    model.eval()
    with rt.autocast():
        out = model(batch["x"].to(dev), batch["mask"].to(dev), batch["length"].to(dev))
    lc = LossConfig()
    loss, _ = deep_supervision_loss(out.logits, out.aux_logits, batch["label"].to(dev), lc.aux_weight,
                                    lc.focal_gamma, lc.label_smoothing)
    model.train(was_training)
    return float(loss)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every trainable parameter."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def unchanged_parameters(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    """Names of trainable parameters still bitwise equal to `before` (after training they should be none)."""
    return [n for n, p in model.named_parameters() if n in before and torch.equal(p.detach(), before[n])]


def timed(fn: Callable[[], object], sync: bool) -> tuple[float, float]:
    """(wall seconds, this thread's CPU seconds) of fn(), the device synchronized at the end when `sync`.

    With torch single-threaded on CPU, forward, backward (CPU autograd runs in the calling thread) and the optimizer
    all run on this thread, so its CPU time is the step's compute cost, unmoved by other processes' load; the wall
    time adds the waits for the loader and for a busy machine.
    """
    t0, c0 = time.perf_counter(), time.thread_time()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.thread_time() - c0


def environment() -> dict:
    """Device, versions and date recorded with GPU figures."""
    import numba

    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "numba": numba.__version__, "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name()
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        env["cuda"] = torch.version.cuda
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env


def record_gpu_result(name: str, info: dict) -> Path:
    """Merge one benchmark's figures into benchmarks/results/train-<gpu>.json (device, versions, date included)."""
    slug = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
    path = RESULTS_DIR / f"train-{slug}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {"records": {}}
    data.update(environment())
    data["records"][name] = info
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
