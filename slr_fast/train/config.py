"""Training configuration: one dataclass tree, saved in full with every run and checkpoint.

The CLI maps its flags onto these fields; `--config FILE.json` loads a whole tree and `--set a.b=value` overrides
single fields, so every run is reproducible from its saved `config.json`.

Every field is checked where it is defined: a `Rule` per field (type, range or names) in each class's `RULES`,
plus a few checks that relate fields or look inside lists and mappings. A bad value is a `ConfigError` naming the
field and the value (`config.optim.lr: inf is not a finite positive number`) before anything is loaded or built.
Nothing here imports torch: `slr-fast --help` reads SCHEDULES and PRECISIONS from this module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from slr_fast.errors import UserInputError
from slr_fast.fileio import regular_file_problem

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SCHEDULES = ("cyclic", "cosine_restarts", "onecycle", "plateau", "constant")
FOCAL_SCHEDULES = ("constant", "linear", "cosine")  # loss.focal_schedule: how γ grows over a stage
DEVICES = "auto, cpu, cuda, cuda:N, mps"
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")

# The longest resampled sequence a run may ask for. Attention is quadratic in T: at T = 4096 the PyTorch path holds
# B x heads x T^2 fp32 scores per layer, 512 MiB for a single sequence with 8 heads (16 GiB at batch 32, a whole
# P100), and every layer keeps its own for the backward pass. Signs are short (GISLR's longest sequences are a few
# hundred frames; a minute of 30 fps video is 1800 frames), so 4096 only refuses typing mistakes like 100000.
MAX_FRAMES = 4096
MAX_THREADS = 1024  # torch's intra-op pool: more threads than any machine has cores only thrash


class ConfigError(UserInputError):
    """A config value of the wrong type or out of range; the message names the field and the value."""

    def __init__(self, message: str, field: str = "", value=None, expected: str = ""):
        super().__init__(message)
        self.field, self.value, self.expected = field, value, expected

    @classmethod
    def bad_value(cls, where: str, value, expected: str) -> ConfigError:
        """`config.optim.lr: inf is not a finite positive number`."""
        return cls(f"{where}: {value!r} is not {expected}", where, value, expected)


@dataclass(frozen=True)
class Rule:
    """What one config field accepts: a type (int, float = any finite real, str, bool), then an optional range
    (closed unless `lo_open` / `hi_open`), a set of names, or a pattern a string must match."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    pattern: re.Pattern | None = None
    expected: str = ""  # how the error words it, when the range does not say it well

    def accepts(self, value) -> bool:
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is int and not isinstance(value, int):
            return False
        if self.kind is float and not (isinstance(value, int | float) and math.isfinite(value)):
            return False
        if self.kind is str and not isinstance(value, str):
            return False
        if self.choices and value not in self.choices:
            return False
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return self.hi is None or (value < self.hi or (not self.hi_open and value == self.hi))

    def describe(self) -> str:
        if self.expected:
            return self.expected
        if self.choices:
            return "one of " + ", ".join(self.choices)
        noun = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}[self.kind]
        if self.kind is float and self.lo == 0 and self.lo_open and self.hi is None:
            return "a finite positive number"
        if self.lo is not None and self.hi is not None:
            noun = "a number" if self.kind is float else noun
            return (f"{noun} in {'(' if self.lo_open else '['}{_number(self.lo)}, {_number(self.hi)}"
                    f"{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{noun} {'>' if self.lo_open else '>='} {_number(self.lo)}"
        return noun

    def check(self, where: str, value) -> None:
        if not self.accepts(value):
            raise ConfigError.bad_value(where, value, self.describe())


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


COUNT = Rule(int, lo=0)  # steps, samples, epochs of patience: 0 means "off" or "automatic"
AT_LEAST_ONE = Rule(int, lo=1)
FRACTION = Rule(float, lo=0, hi=1)
POSITIVE = Rule(float, lo=0, lo_open=True)
NON_NEGATIVE = Rule(float, lo=0)
TEXT = Rule(str)


class _Checked:
    """`validate()` runs every Rule of the class's RULES, then its `_relations()`; run on construction and again by
    `fit` (a field assigned after construction, as the demo does, is checked too)."""

    WHERE = "config"
    RULES: dict[str, Rule] = {}

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for name, rule in self.RULES.items():
            rule.check(f"{self.WHERE}.{name}", getattr(self, name))
        self._relations()

    def _relations(self) -> None:
        pass


@dataclass
class ScheduleConfig(_Checked):
    name: str = "cyclic"  # one of SCHEDULES; the user's cyclic LR by default
    warmup_steps: int = 0  # 0 → warmup_frac of the run
    warmup_frac: float = 0.05  # warm-up length as a fraction of total steps when warmup_steps is 0
    min_lr_ratio: float = 0.05  # lowest rate as a fraction of the peak (cyclic, cosine)
    cycle_steps: int = 0  # cyclic: steps per full cycle; 0 → total/4 (four cycles per run)
    cycle_decay: float = 0.7  # cyclic: amplitude factor per cycle
    restart_period: int = 0  # cosine_restarts: first period; 0 → total/3
    restart_mult: float = 1.0  # cosine_restarts: period growth (>= 1: shrinking periods would never end)
    final_div: float = 100.0  # onecycle: final rate = peak / final_div
    plateau_factor: float = 0.5  # plateau: rate factor on a plateau
    plateau_patience: int = 3  # plateau: epochs without improvement before reducing

    WHERE = "config.schedule"
    RULES = {
        "name": Rule(str, choices=SCHEDULES),
        "warmup_steps": COUNT, "warmup_frac": FRACTION, "min_lr_ratio": FRACTION, "cycle_steps": COUNT,
        "cycle_decay": FRACTION, "restart_period": COUNT, "restart_mult": Rule(float, lo=1, hi=1e3),
        "final_div": Rule(float, lo=1, hi=1e9), "plateau_factor": Rule(float, lo=0, hi=1, lo_open=True),
        "plateau_patience": COUNT,
    }


@dataclass
class DataConfig(_Checked):
    store: str = ""  # store path or URL (s3://, memory://, ...)
    train_split: str = "train"
    val_split: str = "val"  # "" → no validation (then no early stopping either)
    test_split: str = "test"  # evaluated once at the end with the best weights; "" to skip
    classes: list[str] | None = None  # class subset (names), e.g. 500 of 1001; labels remapped to 0..K-1
    frames: int = 64  # T: every sequence resampled to this many frames (at most MAX_FRAMES)
    preprocess: dict = field(default_factory=dict)  # PreprocessConfig overrides (normalize, resample, ...)
    augment: str | list = "default"  # "default", "none", a JSON file, or a list of {"op": ..., params}
    in_memory: str | bool = "auto"  # load the store into memory when it fits (the fast path)

    WHERE = "config.data"
    RULES = {
        "store": TEXT, "train_split": Rule(str, expected="a split name (e.g. train)", pattern=re.compile(".+")),
        "val_split": TEXT, "test_split": TEXT,
        "frames": Rule(int, lo=1, hi=MAX_FRAMES, expected=f"an integer in [1, {MAX_FRAMES}] (MAX_FRAMES)"),
    }

    def _relations(self) -> None:
        w = self.WHERE
        if self.classes is not None:
            problem = class_list_problem(self.classes)
            if problem:
                raise ConfigError(f"{w}.classes: {problem}", f"{w}.classes", self.classes)
        if not isinstance(self.preprocess, dict):
            raise ConfigError.bad_value(f"{w}.preprocess", self.preprocess, "a mapping of PreprocessConfig fields")
        from slr_fast.preprocess.config import PreprocessConfig

        try:
            pre = PreprocessConfig.from_dict({"T": self.frames, **self.preprocess})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{w}.preprocess: {e}", f"{w}.preprocess", self.preprocess) from e
        if pre.T > MAX_FRAMES:
            raise ConfigError.bad_value(f"{w}.preprocess.T", pre.T, f"an integer in [1, {MAX_FRAMES}] (MAX_FRAMES)")
        ok = isinstance(self.augment, str) or (isinstance(self.augment, list)
                                               and all(isinstance(op, dict) for op in self.augment))
        if not ok:
            raise ConfigError.bad_value(f"{w}.augment", self.augment,
                                        "a pipeline name, a JSON/YAML file or a list of {\"op\": ...} mappings")
        if self.in_memory != "auto" and not isinstance(self.in_memory, bool):
            raise ConfigError.bad_value(f"{w}.in_memory", self.in_memory, "auto, true or false")


def class_list_problem(names) -> str | None:
    """Why `names` is not a usable class list (a non-empty list of unique non-empty strings), or None."""
    if not isinstance(names, list) or not names:
        return f"expected a non-empty list of class names, got {type(names).__name__} {str(names)[:80]}"
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        return f"class names must be non-empty strings, got {bad[0]!r}"
    seen: set[str] = set()
    dup = next((n for n in names if n in seen or seen.add(n)), None)
    if dup is not None:
        return f"class {dup!r} is listed twice"
    return None


@dataclass
class OptimConfig(_Checked):
    lr: float = 2e-3  # peak rate of the schedule
    weight_decay: float = 0.05  # AdamW decay; never applied to norms, biases and residual scales
    betas: tuple[float, float] = (0.9, 0.98)
    clip_grad: float = 1.0  # global gradient-norm clip; 0 disables
    group_lrs: dict[str, float] = field(default_factory=dict)  # regex on param name → lr multiplier

    WHERE = "config.optim"
    RULES = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "clip_grad": NON_NEGATIVE}

    def _relations(self) -> None:
        w = self.WHERE
        beta = Rule(float, lo=0, hi=1, hi_open=True)
        if not isinstance(self.betas, list | tuple) or len(self.betas) != 2 or not all(map(beta.accepts, self.betas)):
            raise ConfigError.bad_value(f"{w}.betas", self.betas, "two numbers in [0, 1)")
        self.betas = tuple(self.betas)  # JSON gives a list
        if not isinstance(self.group_lrs, dict):
            raise ConfigError.bad_value(f"{w}.group_lrs", self.group_lrs, "a mapping of regex to lr multiplier")
        for pattern, mult in self.group_lrs.items():
            problem = regex_problem(pattern)
            if problem:
                raise ConfigError(f"{w}.group_lrs: {problem}", f"{w}.group_lrs", pattern)
            NON_NEGATIVE.check(f"{w}.group_lrs[{pattern!r}]", mult)


def regex_problem(pattern) -> str | None:
    """Why `pattern` is not a usable regular expression (naming it), or None."""
    if not isinstance(pattern, str):
        return f"{pattern!r} is not a regular expression (a string)"
    try:
        re.compile(pattern)
    except re.error as e:
        return f"{pattern!r} is not a valid regular expression ({e})"
    return None


@dataclass
class LossConfig(_Checked):
    focal_gamma: float = 1.0  # 0 → cross-entropy
    label_smoothing: float = 0.1
    aux_weight: float | list[float] = 0.3  # weight of each auxiliary head's loss (deep supervision)
    mixup_alpha: float = 0.2  # Beta(α, α) mixing coefficient
    mixup_prob: float = 0.0  # fraction of batches mixed; 0 disables MixUp
    # The anti-overfitting remedies (slr_fast/train/remedies.py), each off by default.
    # Curriculum focal loss: γ goes from focal_gamma_start to focal_gamma over the first focal_ramp of the stage.
    focal_schedule: str = "constant"  # constant (γ = focal_gamma throughout), linear or cosine
    focal_gamma_start: float = 0.0
    focal_ramp: float = 1.0  # fraction of the stage's optimizer steps the ramp takes
    # Pairwise margin between the true class's logit and those of the classes it is most confused with.
    margin_weight: float = 0.0  # 0 disables
    margin: float = 1.0  # in logits
    margin_pairs: int = 3  # rival classes per true class, from the running confusion matrix
    margin_decay: float = 0.5  # the running confusion's factor per epoch (0.5: the last epoch weighs as all before)
    # Self-distillation from a teacher's soft targets: + weight · T² · KL(teacher_T || student_T).
    distill_weight: float = 0.0  # 0 disables
    distill_temperature: float = 2.0
    distill_teacher: str = "ema"  # ema (needs ema_decay), init (the init_from checkpoint) or a checkpoint path
    distill_ramp: float = 0.0  # the weight rises linearly from 0 over this fraction of the stage's steps
    # Cross-modal consistency: per-part classifiers (model.part_heads, set by it) agreeing with each other.
    consistency_weight: float = 0.0  # Jensen-Shannon divergence of the parts' predictions; 0 disables
    part_weight: float = 0.3  # the per-part classifiers' own loss (with consistency_weight > 0)

    WHERE = "config.loss"
    RULES = {"focal_gamma": Rule(float, lo=0, hi=100), "label_smoothing": FRACTION, "mixup_alpha": POSITIVE,
             "mixup_prob": FRACTION,
             "focal_schedule": Rule(str, choices=FOCAL_SCHEDULES), "focal_gamma_start": Rule(float, lo=0, hi=100),
             "focal_ramp": Rule(float, lo=0, hi=1, lo_open=True), "margin_weight": NON_NEGATIVE,
             "margin": POSITIVE, "margin_pairs": AT_LEAST_ONE, "margin_decay": Rule(float, lo=0, hi=1, hi_open=True),
             "distill_weight": NON_NEGATIVE, "distill_temperature": Rule(float, lo=0, hi=100, lo_open=True),
             "distill_teacher": Rule(str, pattern=re.compile(".+"), expected="ema, init or a checkpoint path"),
             "distill_ramp": FRACTION, "consistency_weight": NON_NEGATIVE, "part_weight": NON_NEGATIVE}

    def _relations(self) -> None:
        weights = self.aux_weight if isinstance(self.aux_weight, list) else [self.aux_weight]
        if not all(NON_NEGATIVE.accepts(v) for v in weights):
            raise ConfigError.bad_value(f"{self.WHERE}.aux_weight", self.aux_weight,
                                        "a finite number >= 0 or a list of them (one per auxiliary head)")


# ModelConfig fields a run takes from its store, never from config.model.
_FROM_DATA = {"num_classes", "part_names", "part_sizes", "channels", "layout_name"}

_SECTIONS = {"data": DataConfig, "optim": OptimConfig, "loss": LossConfig, "schedule": ScheduleConfig}


@dataclass
class TrainConfig(_Checked):
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
    seed: int = 0  # 0 .. 2^32-1, like NumPy's seeds
    run_dir: str = "runs/run"
    save_every_steps: int = 0  # also checkpoint mid-epoch every N optimizer steps (0: epoch ends only)
    train_eval_samples: int = 1024  # clean train samples evaluated each epoch to measure the train/val gap
    init_from: str = ""  # checkpoint to start a fine-tuning stage from (weights only; new schedule)
    new_head: bool = False  # with init_from: re-initialise classifier heads (different classes)
    threads: int = 0  # torch intra-op threads on CPU; 0: the cores idle when the run starts (runtime.default_threads)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    progress: bool = True

    RULES = {
        "kernels": TEXT, "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "eval_batch_size": AT_LEAST_ONE,
        "precision": Rule(str, choices=PRECISIONS), "ema_decay": Rule(float, lo=0, hi=1, hi_open=True),
        "early_stop_patience": COUNT, "early_stop_metric": Rule(str, choices=("val_acc", "val_loss")),
        "seed": Rule(int, lo=0, hi=2**32 - 1), "run_dir": Rule(str, pattern=re.compile(".+"), expected="a folder"),
        "save_every_steps": COUNT, "train_eval_samples": COUNT, "init_from": TEXT, "new_head": Rule(bool),
        "threads": Rule(int, lo=0, hi=MAX_THREADS), "device": Rule(str, pattern=DEVICE_PATTERN, expected=f"one of "
                                                                  f"{DEVICES}"),
        "progress": Rule(bool),
    }

    def validate(self) -> None:
        for name, cls in _SECTIONS.items():
            section = getattr(self, name)
            if not isinstance(section, cls):
                raise ConfigError.bad_value(f"config.{name}", section, f"a {cls.__name__}")
            section.validate()
        super().validate()

    def _relations(self) -> None:
        if not isinstance(self.model, dict):
            raise ConfigError.bad_value("config.model", self.model, "a mapping: preset plus ModelConfig fields")
        spec = dict(self.model)
        preset = spec.pop("preset", "tiny")
        from_data = sorted(set(spec) & _FROM_DATA)
        if from_data:
            raise ConfigError(f"config.model.{from_data[0]}: set from the store (its classes and layout), not by "
                              "the config", f"config.model.{from_data[0]}", spec[from_data[0]])
        from slr_fast.model.config import ModelConfig  # the model's own checks, with stand-in data sizes

        try:
            ModelConfig.preset(preset, num_classes=2, **spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config.model: {e}", "config.model", self.model) from e
        lc = self.loss
        if lc.distill_weight > 0 and lc.distill_teacher == "ema" and self.ema_decay == 0:
            raise ConfigError("config.loss.distill_teacher: ema needs an EMA of the weights; set ema_decay (e.g. "
                              "--ema 0.999) or name a checkpoint", "config.loss.distill_teacher", "ema")
        if lc.distill_weight > 0 and lc.distill_teacher == "init" and not self.init_from:
            raise ConfigError("config.loss.distill_teacher: init needs init_from (the checkpoint to start from)",
                              "config.loss.distill_teacher", "init")
        if lc.consistency_weight > 0 and self.model.get("part_heads") is False:
            raise ConfigError("config.loss.consistency_weight: needs the model's part heads; model.part_heads is "
                              "false", "config.loss.consistency_weight", lc.consistency_weight)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return _build(cls, d, "config")

    def save(self, path: str | Path):
        from slr_fast.fileio import writing

        with writing(path):
            Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """A config from a JSON file the user names; every problem is one ConfigError naming the file."""
        problem = regular_file_problem(path)
        if problem:
            raise ConfigError(f"--config {path}: {problem}")
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a text (UTF-8) file ({e.reason} at byte {e.start})") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from e
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}", e.field, e.value, e.expected) from e

    def override(self, assignments: list[str]) -> TrainConfig:
        """Apply `a.b=value` strings (value parsed as JSON when possible, else a string)."""
        d = self.to_dict()
        for a in assignments:
            key, sep, raw = a.partition("=")
            if not sep:
                raise ConfigError(f"--set {a!r}: expected key=value")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            node, parts = d, key.split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"--set {a!r}: {p!r} is not a section of the config")
                node = node[p]
            if parts[-1] not in node and node is not d["model"] and node is not d["data"]["preprocess"]:
                raise ConfigError(f"--set {a!r}: unknown field {parts[-1]!r}; valid: {', '.join(sorted(node))}")
            node[parts[-1]] = value
        return TrainConfig.from_dict(d)


def _build(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}", where, d)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; valid: {', '.join(sorted(fields))}", where)
    kwargs = {}
    for name, value in d.items():
        sub = _SECTIONS.get(name)
        if sub is not None and cls is TrainConfig:
            value = _build(sub, value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)
