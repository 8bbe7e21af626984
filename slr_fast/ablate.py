"""Kernel ablations: the same model, seed, weights and data under several KernelConfigs, in one table.

`time` mode runs a fixed set of training steps per config from identical initial weights on identical batches
(loaded once, so only the model's speed differs); `train` mode runs a full `fit` per config. Both report the
largest logit difference to the reference config (default: every op on `torch`, the PyTorch truth) on the same
batch with the same initial weights — the backend's numerical deviation, free of training noise.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kernels.registry import FIELDS, KernelConfig
from slr_fast.errors import UserInputError

REFERENCE = "torch"


def parse_grid(spec: str) -> list[KernelConfig]:
    """"attention=torch|triton;rmsnorm=native|triton" → the cartesian product as KernelConfigs."""
    axes: list[tuple[str, list[str]]] = []
    for item in (s.strip() for s in spec.split(";")):
        if not item:
            continue
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise UserInputError(f"--kernels-grid item {item!r} must look like op=backend|backend")
        key = key.strip()
        if key not in FIELDS:
            raise UserInputError(f"--kernels-grid: unknown op {key!r}; valid: {', '.join(FIELDS)}")
        if key in dict(axes):
            raise UserInputError(f"--kernels-grid: op {key!r} given twice")
        axes.append((key, [v.strip() for v in values.split("|") if v.strip()]))
    if not axes:
        raise UserInputError(f"--kernels-grid {spec!r} names no op")
    grid = [KernelConfig(**dict(zip([k for k, _ in axes], combo, strict=True)))
            for combo in itertools.product(*[v for _, v in axes])]
    return grid


def _label(kc: KernelConfig) -> str:
    return ",".join(f"{f}={getattr(kc, f)}" for f in FIELDS)


@dataclass
class AblationSetup:
    store: str
    preset: str = "tiny"
    frames: int = 32
    batch_size: int = 32
    steps: int = 20  # timed steps per config (time mode)
    warmup: int = 3  # untimed steps first (compilation, caches)
    epochs: int = 5  # train mode
    seed: int = 0
    device: str = "auto"
    reference: str = REFERENCE  # KernelConfig string of the reference config


def _batches(setup: AblationSetup, n: int, device: torch.device):
    """The first n training batches (with default augmentation), materialized once for every config."""
    from slr_fast.engine import BatchProcessor
    from slr_fast.loader import KeypointLoader, LoaderConfig
    from slr_fast.preprocess import PreprocessConfig
    from slr_fast.store import KeypointStore
    from slr_fast.train.data import augment_from_config

    store = KeypointStore.open(setup.store)
    proc = BatchProcessor(store.layout, PreprocessConfig(T=setup.frames), augment_from_config("default"),
                          seed=setup.seed)
    split = "train" if store.split_counts()["train"] else None
    out = []
    with KeypointLoader(store, proc, LoaderConfig(batch_size=setup.batch_size, drop_last=True, seed=setup.seed,
                                                  split=split, rank=0, world_size=1)) as loader:
        classes = list(loader.classes)
        while len(out) < n:
            before = len(out)
            for b in loader:
                out.append({k: v.to(device) for k, v in b.items()})
                if len(out) == n:
                    break
            if len(out) == before:
                raise UserInputError(f"{setup.store}: no training batch of size {setup.batch_size}")
    return store, classes, out


def _model(setup: AblationSetup, store, num_classes: int, kc: KernelConfig, state: dict | None, device):
    from slr_fast.model import ModelConfig, SignModel

    torch.manual_seed(setup.seed)
    model = SignModel(ModelConfig.preset(setup.preset, num_classes=num_classes, layout=store.layout), kernels=kc)
    if state is not None:
        model.load_state_dict(state)  # identical weights whatever the backend
    return model.to(device)


@torch.no_grad()
def _logits(model, batch) -> torch.Tensor:
    model.eval()
    z = model(batch["x"], batch["mask"], batch["length"]).logits.float()
    model.train()
    return z


def run_ablation(setup: AblationSetup, grid: list[KernelConfig], mode: str = "time",
                 out_dir: str | Path | None = None) -> list[dict]:
    """One row per KernelConfig: samples/s, peak memory, accuracy (train mode), max |Δlogit| vs the reference."""
    from slr_fast.train.runtime import resolve_device

    if mode not in ("time", "train"):
        raise ValueError(f"ablation mode must be 'time' or 'train', got {mode!r}")
    device = resolve_device(setup.device)
    store, classes, batches = _batches(setup, setup.warmup + setup.steps, device)
    ref_kc = KernelConfig.parse(setup.reference)
    ref_model = _model(setup, store, len(classes), ref_kc, None, device)
    state = {k: v.detach().clone() for k, v in ref_model.state_dict().items()}
    ref_logits = _logits(ref_model, batches[0])
    rows = []
    for kc in grid:
        row = {"kernels": _label(kc)}
        try:
            resolved = kc.resolve(device)
        except Exception as e:  # e.g. triton on a CPU without the interpreter, or on a P100
            rows.append({**row, "status": f"unavailable: {e}"})
            continue
        row["resolved"] = _label(resolved)
        model = _model(setup, store, len(classes), kc, state, device)
        row["max_logit_diff_init"] = float((_logits(model, batches[0]) - ref_logits).abs().max())
        if mode == "time":
            row.update(_time_steps(model, batches, setup, device))
        else:
            row.update(_train_run(setup, kc, out_dir, device))
        row["status"] = "ok"
        rows.append(row)
    if out_dir is not None:
        write_table(rows, out_dir, setup, mode)
    return rows


def _time_steps(model, batches, setup: AblationSetup, device) -> dict:
    from slr_fast.train.losses import deep_supervision_loss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = None
    for i, b in enumerate(batches):
        if i == setup.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        out = model(b["x"], b["mask"], b["length"])
        loss, _ = deep_supervision_loss(out.logits, out.aux_logits, b["label"], 0.3, 1.0, 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    res = {"samples_per_s": setup.steps * setup.batch_size / dt, "final_loss": float(loss.detach())}
    res["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return res


def _train_run(setup: AblationSetup, kc: KernelConfig, out_dir, device) -> dict:
    from slr_fast.train.config import TrainConfig
    from slr_fast.train.loop import fit

    if out_dir is None:
        raise ValueError("train-mode ablations need an output folder for their runs")
    slug = str(kc).replace(",", "_").replace("=", "-")
    cfg = TrainConfig(run_dir=str(Path(out_dir) / slug), epochs=setup.epochs, batch_size=setup.batch_size,
                      seed=setup.seed, kernels=str(kc), device=str(device), progress=False)
    cfg.model = {"preset": setup.preset}
    cfg.data.store, cfg.data.frames = setup.store, setup.frames
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = fit(cfg)
    last = result.history[-1]
    sps = [h["samples_per_s"] for h in result.history[1:]] or [last["samples_per_s"]]  # epoch 0 includes warm-up
    return {"samples_per_s": sum(sps) / len(sps), "val_acc": last.get("val_acc"),
            "test_acc": (result.test or {}).get("top1"),
            "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


def write_table(rows: list[dict], out_dir: str | Path, setup: AblationSetup, mode: str) -> Path:
    """ablation.md (a Markdown table) and ablation.json in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ablation.json").write_text(json.dumps({"setup": setup.__dict__, "mode": mode, "rows": rows},
                                                      indent=2))
    cols = ["kernels", "samples_per_s", "peak_mem_mb", "val_acc", "test_acc", "max_logit_diff_init", "status"]
    if mode == "time":
        cols.remove("val_acc")
        cols.remove("test_acc")
    lines = [f"# Kernel ablation ({mode}; preset {setup.preset}, batch {setup.batch_size}, T {setup.frames}, "
             f"reference `{setup.reference}`)", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]

    def fmt(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    path = out_dir / "ablation.md"
    path.write_text("\n".join(lines) + "\n")
    return path
