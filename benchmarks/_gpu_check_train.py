"""The training steps of benchmarks/gpu_check.py: triton-vs-native loss curves, and training speed end to end.

Both train with `_train_bench.TrainStep`, the step `slr-fast train` runs (autocast, deep-supervision focal loss,
clipping, AdamW, the schedule, the loss read back every step), fed by the training loader on a synthetic store.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from _gpu_check_steps import CUDA, DEVICE, PARITY_TOL, ROOT, Sizes, save_partial, seconds_left
from _train_bench import BatchStream, TrainStep, loader_only_rate, make_loader

from kernels.registry import KernelConfig, triton_status
from slr_fast.model import ModelConfig, SignModel
from slr_fast.store import KeypointStore
from slr_fast.train.runtime import Runtime, resolve_precision


def _wait_prepared(work: Path) -> None:
    if not (work / "prepared").exists():
        raise RuntimeError(f"the stores are not there: the prepare step did not finish (see its log in {work})")


def _models(sizes: Sizes, store, configs: tuple[str, ...], classes: int) -> dict[str, SignModel]:
    """One model per kernel config, all with the first one's initial weights."""
    torch.manual_seed(0)
    cfg = ModelConfig.preset(sizes.preset, num_classes=classes, layout=store.layout)
    models = {}
    for name in configs:
        backend = name.partition("+")[0]
        spec = sizes.triton_kernels if backend == "triton" else backend
        model = SignModel(cfg, kernels=KernelConfig.parse(spec)).to(DEVICE)
        if models:
            model.load_state_dict(next(iter(models.values())).state_dict())
        models[name] = model
    return models


def _runtime() -> Runtime:
    return Runtime(DEVICE, resolve_precision("auto", DEVICE))


def step_parity(sizes: Sizes, work: Path) -> dict:
    """One epoch with --kernels triton and --kernels native from the same weights and seed: the two loss curves."""
    ok, reason = triton_status(DEVICE)
    if not ok:  # a pre-Volta GPU: the automatic PyTorch path is all there is to train with
        return {"skipped": f"triton cannot run here: {reason}", "ok": None}
    _wait_prepared(work)
    store = KeypointStore.open(work / "parity.zarr")
    classes = int(sizes.parity_store[0])
    rt = _runtime()
    curves, raw = {}, {}
    for name, model in _models(sizes, store, ("native", "triton"), classes).items():
        loader = make_loader(store, sizes.parity_batch, sizes.frames, seed=0)
        step = TrainStep(model, rt, total_steps=len(loader))
        torch.manual_seed(1)  # the same dropout and drop-path draws in both runs
        loader.set_epoch(0)
        t0 = time.perf_counter()
        for batch in loader:
            step(batch)
        curves[name] = dict(losses=[round(v, 6) for v in step.losses], seconds=round(time.perf_counter() - t0, 2))
        raw[name] = step.losses
    a, b = raw["triton"], raw["native"]
    rel = [abs(x - y) / max(abs(y), 1e-6) for x, y in zip(a, b, strict=True)]
    out = dict(precision=rt.precision, steps=len(a), batch=sizes.parity_batch, sequences=len(store), curves=curves,
               step_rel_max=max(rel), mean_rel=abs(sum(a) - sum(b)) / max(abs(sum(b)), 1e-6), tolerance=PARITY_TOL)
    out["ok"] = out["step_rel_max"] <= PARITY_TOL["step_rel_max"] and out["mean_rel"] <= PARITY_TOL["mean_rel_max"]
    return out


def step_cli(sizes: Sizes, work: Path) -> dict:
    """`slr-fast train --epochs 1` with --kernels native and triton, same seed: the epoch records side by side."""
    _wait_prepared(work)
    records = {}
    for kernels in ("native", "triton"):
        run_dir = work / f"cli-{kernels}"
        spec = sizes.triton_kernels if kernels == "triton" else kernels
        cmd = [sys.executable, "-m", "slr_fast", "train", "--store", str(work / "parity.zarr"), "--run-dir",
               str(run_dir), "--kernels", spec, "--epochs", "1", "--seed", "0", "--preset", sizes.preset,
               "--frames", str(sizes.frames), "--batch-size", str(sizes.parity_batch), "--no-progress"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1, seconds_left() - 3))
        except subprocess.TimeoutExpired:
            records[kernels] = {"returncode": None, "seconds": round(time.perf_counter() - t0, 1),
                                "stderr_tail": "out of the step's time"}
            break
        rec = {"returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1)}
        metrics = run_dir / "metrics.jsonl"
        if proc.returncode == 0 and metrics.exists():
            last = json.loads(metrics.read_text().splitlines()[-1])
            rec.update({k: v for k, v in last.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        else:
            rec["stderr_tail"] = proc.stderr[-1500:]
        records[kernels] = rec
    a, b = (records.get(k, {}).get("train_loss_aug") for k in ("triton", "native"))
    records["train_loss_rel"] = abs(a - b) / max(abs(b), 1e-6) if a is not None and b is not None else None
    return records


def step_e2e(sizes: Sizes, work: Path) -> dict:
    """`base` training samples/s per kernel config (bf16 on the GPU), then one whole Slovo-shape epoch."""
    _wait_prepared(work)
    store = KeypointStore.open(work / "slovo.zarr")
    rt = _runtime()
    B = sizes.train_batch
    loader = make_loader(store, B, sizes.frames, seed=0)
    out = dict(preset=sizes.preset, batch=B, frames=sizes.frames, precision=rt.precision, classes=sizes.slovo_classes,
               sequences=len(store), loader_samples_per_s=round(loader_only_rate(loader, 4 if CUDA else 1), 1))
    out["epoch"] = _slovo_epoch(sizes, store, rt, loader)  # the headline figure first
    print(f"Slovo-shape epoch: {out['epoch']['seconds']} s", flush=True)
    rates, errors = {}, {}
    out.update(train=rates, train_errors=errors)
    save_partial(work, "e2e", out)
    stream = BatchStream(loader, epoch=2)
    for name, model in _models(sizes, store, sizes.e2e_configs, sizes.slovo_classes).items():
        if name.endswith("+compile") and seconds_left() < 75:
            errors[name] = f"skipped: {seconds_left():.0f} s left in the step, too few to compile the model"
            continue
        try:
            step = TrainStep(model, rt)
            if name.endswith("+compile"):
                step.run = torch.compile(model, backend=sizes.compile_backend)
            t0 = time.perf_counter()
            for _ in range(sizes.train_warmup):
                step(next(stream))
            warm_s = time.perf_counter() - t0
            if CUDA:
                torch.cuda.synchronize()
            stream.reset_counters()
            t0 = time.perf_counter()
            for _ in range(sizes.train_steps):
                step(next(stream))
            if CUDA:
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            assert all(math.isfinite(v) for v in step.losses), step.losses
            rates[name] = dict(samples_per_s=round(B * sizes.train_steps / wall, 1), warmup_s=round(warm_s, 1),
                               loader_wait_frac=round(stream.wait_s / wall, 3), final_loss=round(step.losses[-1], 4))
            print(f"{name:>16}: {rates[name]['samples_per_s']:9.1f} samples/s (warm-up {warm_s:.1f} s)", flush=True)
        except Exception as err:  # noqa: BLE001  (one config failing must not hide the others' figures)
            errors[name] = f"{type(err).__name__}: {str(err)[:500]}"
        del model
        for r in rates.values():  # every ratio so far, saved: a step killed at its box keeps them
            for base in ("torch", "native", "native+compile"):
                if base in rates and rates[base] is not r:
                    r[f"vs_{base}"] = round(r["samples_per_s"] / rates[base]["samples_per_s"], 3)
        save_partial(work, "e2e", out)
    return out


def _slovo_epoch(sizes: Sizes, store, rt: Runtime, loader) -> dict:
    """A whole epoch of the store at the training batch with the automatic kernels (Triton on the GPU), after a few
    warm-up steps of the epoch before: the wall time from its first batch request to its last step's end."""
    model = _models(sizes, store, ("auto",), sizes.slovo_classes)["auto"]
    step = TrainStep(model, rt, total_steps=2 * len(loader))
    warm = BatchStream(loader, epoch=0)
    for _ in range(sizes.train_warmup):
        step(next(warm))
    loader.set_epoch(1)
    if CUDA:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    steps = 0
    for batch in loader:
        step(batch)
        steps += 1
    if CUDA:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return dict(kernels="auto", sequences=len(store),
                batch=loader.config.batch_size, steps=steps, seconds=round(wall, 2),
                samples_per_s=round(steps * loader.config.batch_size / wall, 1),
                peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None)
