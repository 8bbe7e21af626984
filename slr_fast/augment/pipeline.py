"""An augmentation pipeline declared as data: a list of ops with parameters, printable and saved with a run.

    pipe = AugmentPipeline.from_config([{"op": "mirror", "p": 0.5}, {"op": "noise", "std": 0.02}])
    pipe.to_config()   # the same list back, every parameter spelled out (JSON-ready)
    load_pipeline("aug.json") / load_pipeline("default") / load_pipeline('[{"op": "scale"}]')

Execution order: temporal ops first (in their listed order) on the raw frame axis, then normalization, then spatial
ops (in their listed order). Each op's randomness is keyed by its position in the list, so adding an op at the end
leaves the draws of the others unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

import numpy as np

from slr_fast.augment.ops import MAX_PARAMS, OPS, TEMPORAL, Op


def _make_op(i: int, item: dict) -> Op:
    if not isinstance(item, dict) or "op" not in item:
        raise ValueError(f"augment entry {i}: expected a dict with an 'op' key, got {item!r}")
    name = item["op"]
    if name not in OPS:
        raise ValueError(f"augment entry {i}: unknown op {name!r}; valid: {sorted(OPS)}")
    cls = OPS[name]
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(item) - {"op"} - set(valid))
    if unknown:
        raise ValueError(f"augment entry {i} ({name}): unknown parameters {unknown}; valid: {valid}")
    return cls(**{k: v for k, v in item.items() if k != "op"})


class AugmentPipeline:
    """An ordered list of augmentation ops (see module docstring for the execution order)."""

    def __init__(self, ops: Iterable[Op] = ()):
        self.ops: tuple[Op, ...] = tuple(ops)
        for i, op in enumerate(self.ops):
            if not isinstance(op, Op):
                raise TypeError(f"augment entry {i}: {op!r} is not an augmentation op")

    @classmethod
    def from_config(cls, config: list[dict]) -> AugmentPipeline:
        """Build from [{"op": name, "p": ..., param: value, ...}, ...]; unknown names are rejected."""
        if isinstance(config, dict) and "ops" in config:
            config = config["ops"]
        if not isinstance(config, list):
            raise ValueError(f"augment config must be a list of ops, got {type(config).__name__}")
        return cls(_make_op(i, item) for i, item in enumerate(config))

    def to_config(self) -> list[dict]:
        """JSON-ready list of ops with every parameter; from_config(to_config()) == self."""
        return [op.to_config() for op in self.ops]

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of to_config(), also written to `path` when given."""
        text = json.dumps(self.to_config(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def __eq__(self, other) -> bool:
        return isinstance(other, AugmentPipeline) and self.ops == other.ops

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        if not self.ops:
            return "AugmentPipeline([])"
        lines = []
        for op in self.ops:
            args = ", ".join(f"{f.name}={getattr(op, f.name)!r}" for f in fields(op))
            lines.append(f"  {op.name}({args}),  # {op.stage}")
        return "AugmentPipeline([\n" + "\n".join(lines) + "\n])"

    def growth(self) -> float:
        """Upper bound of (frames after temporal ops) / (frames before)."""
        g = 1.0
        for op in self.ops:
            g *= op.growth()
        return g

    def kernel_tables(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(ops (K, 2) int64 [code, op id], params (K, MAX_PARAMS) float64 [p, ...], n_temporal), temporal first."""
        order = [i for i, op in enumerate(self.ops) if op.stage == TEMPORAL]
        n_temporal = len(order)
        order += [i for i, op in enumerate(self.ops) if op.stage != TEMPORAL]
        codes = np.zeros((len(order), 2), np.int64)
        params = np.zeros((len(order), MAX_PARAMS), np.float64)
        for row, i in enumerate(order):
            op = self.ops[i]
            prm = [op.p, *op.params()]
            codes[row] = (op.code, i + 1)  # op id 0 is never used, so ids are distinct from "no op"
            params[row, :len(prm)] = prm
        return codes, params, n_temporal


DEFAULT_OPS = [
    # The user's original augmentations: slower/faster signing, coordinate noise, scaling.
    {"op": "time_warp", "p": 0.5, "min_speed": 0.7, "max_speed": 1.3},
    {"op": "scale", "p": 0.5, "min_scale": 0.8, "max_scale": 1.2, "aspect": 0.1},
    {"op": "noise", "p": 0.5, "std": 0.01},
]
FULL_OPS = [
    # Every op, at strengths that keep a sign recognisable; the wish-list pipeline.
    {"op": "temporal_crop", "p": 0.3, "min_frac": 0.8},
    {"op": "time_warp", "p": 0.5, "min_speed": 0.7, "max_speed": 1.3},
    {"op": "speed_change", "p": 0.3, "strength": 0.5, "knots": 4},
    {"op": "mirror", "p": 0.5},
    {"op": "scale", "p": 0.5, "min_scale": 0.8, "max_scale": 1.2, "aspect": 0.1},
    {"op": "rotate", "p": 0.5, "roll_deg": 15.0, "yaw_deg": 25.0, "pitch_deg": 15.0},
    {"op": "part_distort", "p": 0.3, "scale": 0.1, "rotate_deg": 10.0, "shift": 0.05},
    {"op": "noise", "p": 0.5, "std": 0.01},
    {"op": "dropout", "p": 0.3, "rate": 0.05, "part_rate": 0.02},
    {"op": "detector_noise", "p": 0.3, "jitter_std": 0.01, "jitter_corr": 0.8, "miss_rate": 0.02,
     "miss_max_len": 6, "swap_rate": 0.01, "swap_max_len": 3},
]
NAMED = {"default": DEFAULT_OPS, "full": FULL_OPS, "none": []}


def default_pipeline() -> AugmentPipeline:
    """The user's augmentations: time warp, scaling and Gaussian noise, each with p = 0.5."""
    return AugmentPipeline.from_config(DEFAULT_OPS)


def named_pipeline(name: str) -> AugmentPipeline:
    """A named pipeline: "default" (the user's ops), "full" (every op), "none"."""
    if name not in NAMED:
        raise ValueError(f"unknown augment pipeline {name!r}; valid: {sorted(NAMED)}")
    return AugmentPipeline.from_config(NAMED[name])


def load_pipeline(spec: str | Path | list | AugmentPipeline | None) -> AugmentPipeline:
    """A pipeline from a name ("default", "full", "none"), a .json/.yaml file, JSON text, or a config list."""
    if spec is None:
        return AugmentPipeline()
    if isinstance(spec, AugmentPipeline):
        return spec
    if isinstance(spec, list | dict):
        return AugmentPipeline.from_config(spec)
    text = str(spec)
    if text in NAMED:
        return named_pipeline(text)
    if text.lstrip().startswith(("[", "{")):
        try:
            return AugmentPipeline.from_config(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"augment config is not valid JSON: {e}") from e
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"augment config {text!r}: no such file, and not a named pipeline "
                                f"(valid names: {sorted(NAMED)})")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # optional: only YAML configs need it
        except ImportError as e:
            raise ValueError(f"augment config {path}: reading YAML needs PyYAML (pip install pyyaml)") from e
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"augment config {path}: not valid YAML: {e}") from e
    else:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"augment config {path}: not valid JSON: {e}") from e
    try:
        return AugmentPipeline.from_config(data)
    except ValueError as e:
        raise ValueError(f"augment config {path}: {e}") from e
