"""Training configuration: one dataclass tree, saved in full with every run and checkpoint.

The CLI maps its flags onto these fields; `--config FILE.json` loads a whole tree and `--set a.b=value` overrides
single fields, so every run is reproducible from its saved `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SCHEDULES = ("cyclic", "cosine_restarts", "onecycle", "plateau", "constant")

@dataclass
class ScheduleConfig:
    name: str = "cyclic"  # one of SCHEDULES; the user's cyclic LR by default
    warmup_steps: int = 0  # 0 → warmup_frac of the run
    warmup_frac: float = 0.05  # warm-up length as a fraction of total steps when warmup_steps is 0
    min_lr_ratio: float = 0.05  # lowest rate as a fraction of the peak (cyclic, cosine)
    cycle_steps: int = 0  # cyclic: steps per full cycle; 0 → total/4 (four cycles per run)
    cycle_decay: float = 0.7  # cyclic: amplitude factor per cycle
    restart_period: int = 0  # cosine_restarts: first period; 0 → total/3
    restart_mult: float = 1.0  # cosine_restarts: period growth
    final_div: float = 100.0  # onecycle: final rate = peak / final_div
    plateau_factor: float = 0.5  # plateau: rate factor on a plateau
    plateau_patience: int = 3  # plateau: epochs without improvement before reducing

    def __post_init__(self):
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; valid: {', '.join(SCHEDULES)}")



@dataclass
class DataConfig:
    store: str = ""  # store path or URL (s3://, memory://, ...)
    train_split: str = "train"
    val_split: str = "val"  # "" → no validation (then no early stopping either)
    test_split: str = "test"  # evaluated once at the end with the best weights; "" to skip
    classes: list[str] | None = None  # class subset (names), e.g. 500 of 1001; labels remapped to 0..K-1
    frames: int = 64  # T: every sequence resampled to this many frames
    preprocess: dict = field(default_factory=dict)  # PreprocessConfig overrides (normalize, resample, ...)
    augment: str | list = "default"  # "default", "none", a JSON file, or a list of {"op": ..., params}
    in_memory: str | bool = "auto"  # load the store into memory when it fits (the fast path)


@dataclass
class OptimConfig:
    lr: float = 2e-3  # peak rate of the schedule
    weight_decay: float = 0.05  # AdamW decay; never applied to norms, biases and residual scales
    betas: tuple[float, float] = (0.9, 0.98)
    clip_grad: float = 1.0  # global gradient-norm clip; 0 disables
    group_lrs: dict[str, float] = field(default_factory=dict)  # regex on param name → lr multiplier


@dataclass
class LossConfig:
    focal_gamma: float = 1.0  # 0 → cross-entropy
    label_smoothing: float = 0.1
    aux_weight: float | list[float] = 0.3  # weight of each auxiliary head's loss (deep supervision)
    mixup_alpha: float = 0.2  # Beta(α, α) mixing coefficient
    mixup_prob: float = 0.0  # fraction of batches mixed; 0 disables MixUp


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = field(default_factory=lambda: {"preset": "tiny"})  # preset name + ModelConfig overrides
    kernels: str = "auto"  # KernelConfig string, e.g. "attention=triton,rmsnorm=native"
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 30
    batch_size: int = 64  # per process
    eval_batch_size: int = 256
    precision: str = "auto"  # auto: bf16 on GPUs that have it, fp16 + loss scaling on older GPUs, fp32 on CPU
    ema_decay: float = 0.0  # 0 disables; e.g. 0.999 evaluates an EMA of the weights alongside
    early_stop_patience: int = 0  # epochs without val improvement before stopping; 0 disables
    early_stop_metric: str = "val_acc"  # or "val_loss"
    seed: int = 0
    run_dir: str = "runs/run"
    save_every_steps: int = 0  # also checkpoint mid-epoch every N optimizer steps (0: epoch ends only)
    train_eval_samples: int = 1024  # clean train samples evaluated each epoch to measure the train/val gap
    init_from: str = ""  # checkpoint to start a fine-tuning stage from (weights only; new schedule)
    new_head: bool = False  # with init_from: re-initialise classifier heads (different classes)
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.early_stop_metric not in ("val_acc", "val_loss"):
            raise ValueError(f"early_stop_metric must be val_acc or val_loss, got {self.early_stop_metric!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be ≥ 1 (got {self.epochs}, {self.batch_size})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return _build(cls, d, "config")

    def save(self, path: str | Path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e

    def override(self, assignments: list[str]) -> TrainConfig:
        """Apply `a.b=value` strings (value parsed as JSON when possible, else a string)."""
        d = self.to_dict()
        for a in assignments:
            key, sep, raw = a.partition("=")
            if not sep:
                raise ValueError(f"--set {a!r}: expected key=value")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            node, parts = d, key.split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise ValueError(f"--set {a!r}: {p!r} is not a section of the config")
                node = node[p]
            if parts[-1] not in node and node is not d["model"] and node is not d["data"]["preprocess"]:
                raise ValueError(f"--set {a!r}: unknown field {parts[-1]!r}; valid: {', '.join(sorted(node))}")
            node[parts[-1]] = value
        return TrainConfig.from_dict(d)


def _build(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in d.items():
        sub = {"data": DataConfig, "optim": OptimConfig, "loss": LossConfig, "schedule": ScheduleConfig}.get(name)
        if sub is not None and cls is TrainConfig:
            value = _build(sub, value, f"{where}.{name}")
        elif name == "betas":
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
