"""Checkpoints: atomic writes, `weights_only=True` loads, and every field a command uses checked before use.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing pickled beyond what
`torch.load(weights_only=True)` accepts), so loading one never executes code. It is still untrusted input: a
file may be truncated, foreign, edited or hostile, so `load_checkpoint` checks the structure of each field the
caller names (`INFERENCE_FIELDS` for eval/predict/init-from, `RESUME_FIELDS` to continue a run) and a bad one is a
`CheckpointError` naming the file and the field, never a traceback from deep inside torch.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import torch

from slr_fast.model.checkpoint import (  # noqa: F401  (CheckpointError re-exported: one class for every checkpoint)
    FORMAT,
    VERSION,
    CheckpointError,
    read_torch_file,
    save_atomic,
    state_dict_problem,
    weights_mismatch,
)

REQUIRED = ("format", "version", "model", "model_config", "classes", "layout")
INFERENCE_FIELDS = ("model", "model_config", "classes", "layout", "preprocess")
RESUME_FIELDS = INFERENCE_FIELDS + ("config", "optimizer", "schedule", "scaler", "ema", "rng", "mix_gen", "loader",
                                    "epoch", "step", "partial", "best_metric", "bad_epochs", "history")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` to `path` atomically (temporary file, fsync, rename). A full disk raises
    `slr_fast.fileio.no_space_error(path)` and leaves no temporary file behind."""
    return save_atomic(path, {"format": FORMAT, "version": VERSION, **state})


# The checkpoint a run folder stands for, in order of preference: the weights of the best validation epoch (what
# the run's report.md and summary.json evaluate on the test split), else the last epoch's (a run without a
# validation split has no best.pt). One rule for eval, predict and --init-from.
RUN_CHECKPOINTS = ("best.pt", "last.pt")


def run_checkpoint(path: str | os.PathLike) -> Path:
    """`path` itself for a file; for a run folder its checkpoint by RUN_CHECKPOINTS (best.pt, else last.pt)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in RUN_CHECKPOINTS:
        if (path / name).exists():
            return path / name
    raise CheckpointError(f"{path}: a directory without {' or '.join(RUN_CHECKPOINTS)}")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    fields: tuple[str, ...] = INFERENCE_FIELDS) -> dict:
    """Load a checkpoint written by `save_checkpoint` (a run folder: see run_checkpoint) and check the structure
    of `fields` (see FIELD_CHECKS); the file read is under "path"."""
    path = run_checkpoint(path)
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path}: no such checkpoint file")
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an slr_fast checkpoint (no '{FORMAT}' format marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, this slr_fast reads {VERSION}")
    missing = [k for k in dict.fromkeys(REQUIRED + tuple(fields)) if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    for name in fields:
        problem = FIELD_CHECKS[name](state[name])
        if problem:
            raise CheckpointError(f"{path}: field {name!r}: {problem}")
    problem = _consistency(state, fields)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    state["path"] = str(path)
    return state


# ---- structural checks: each takes a field's value and returns what is wrong with it, or None -------------------
def _is_int(v, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _mapping(v, what: str) -> str | None:
    return None if isinstance(v, dict) else f"expected {what}, got {type(v).__name__}"


def _model_config(v) -> str | None:
    from slr_fast.model.config import ModelConfig

    try:
        ModelConfig.from_dict(v)
    except (TypeError, ValueError) as e:
        return str(e)
    return None


def _classes(v) -> str | None:
    from slr_fast.train.config import class_list_problem

    return class_list_problem(v)


def _layout(v) -> str | None:
    from slr_fast.layout import Layout

    if not isinstance(v, dict):
        return _mapping(v, "a layout mapping (name, channels, parts)")
    try:
        Layout.from_dict(v)
    except (TypeError, ValueError, AttributeError) as e:  # AttributeError: a part that is not a mapping
        return f"not a keypoint layout ({type(e).__name__}: {str(e)[:200]})"
    return None


def _preprocess(v) -> str | None:
    from slr_fast.preprocess.config import PreprocessConfig
    from slr_fast.train.config import MAX_FRAMES

    if not isinstance(v, dict):
        return _mapping(v, "a PreprocessConfig mapping")
    try:
        cfg = PreprocessConfig.from_dict(v)
    except (TypeError, ValueError) as e:
        return str(e)
    return None if cfg.T <= MAX_FRAMES else f"T={cfg.T} frames exceeds MAX_FRAMES={MAX_FRAMES}"


def _config(v) -> str | None:
    from slr_fast.train.config import TrainConfig

    try:
        TrainConfig.from_dict(v)
    except (TypeError, ValueError) as e:
        return f"the run's config does not parse: {e}"
    return None


def _optimizer(v) -> str | None:
    if not isinstance(v, dict) or not isinstance(v.get("state"), dict) or not isinstance(v.get("param_groups"), list):
        return "expected an optimizer state: a mapping with 'state' (mapping) and 'param_groups' (list)"
    for g in v["param_groups"]:
        if not isinstance(g, dict) or not isinstance(g.get("params"), list) or not all(map(_is_int, g["params"])):
            return "a parameter group without a list of parameter ids"
        for key in ("lr", "peak_lr", "weight_decay", "eps", "lr_mult"):
            if key in g and not (_is_number(g[key]) and g[key] >= 0):
                return f"parameter group {key} {g[key]!r} is not a finite number >= 0"
        betas = g.get("betas", (0.9, 0.999))
        if not (isinstance(betas, list | tuple) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1
                                                                           for b in betas)):
            return f"parameter group betas {betas!r} are not two numbers in [0, 1)"
    for k, s in v["state"].items():
        if not _is_int(k) or not isinstance(s, dict):
            return f"state entry {k!r} is not a parameter id with a mapping"
        for name, t in s.items():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"state {name!r} of parameter {k} holds NaN or infinite values"
            if not isinstance(t, torch.Tensor) and not _is_number(t):
                return f"state {name!r} of parameter {k} is {type(t).__name__}, not a tensor or number"
    return None


_SCHEDULE_KEYS = {"step_num": 0, "bad_epochs": 0, "total": 1, "warmup": 0}  # integer: lowest value


def _schedule(v) -> str | None:
    if not isinstance(v, dict):
        return _mapping(v, "a schedule state mapping")
    for key, lo in _SCHEDULE_KEYS.items():
        if not _is_int(v.get(key), lo):
            return f"{key} {v.get(key)!r} is not an integer >= {lo}"
    if not (_is_number(v.get("plateau_scale")) and v["plateau_scale"] > 0):
        return f"plateau_scale {v.get('plateau_scale')!r} is not a finite positive number"
    best = v.get("best")
    if not (isinstance(best, int | float) and not isinstance(best, bool) and not math.isnan(best)):
        return f"best {best!r} is not a number"
    return None


def _scaler(v) -> str | None:
    if not isinstance(v, dict):
        return _mapping(v, "a loss-scaler state mapping")
    bad = [k for k, x in v.items() if not (_is_number(x) and x >= 0)]
    return f"{bad[0]} {v[bad[0]]!r} is not a finite number >= 0" if bad else None


def _ema(v) -> str | None:
    if v is None:
        return None
    if not isinstance(v, dict) or not _is_int(v.get("updates")):
        return "expected None or a mapping with 'module' weights and an 'updates' count"
    problem = state_dict_problem(v.get("module"))
    return f"EMA weights: {problem}" if problem else None


def _byte_tensor(v, what: str) -> str | None:
    if not isinstance(v, torch.Tensor) or v.dtype != torch.uint8 or v.dim() != 1:
        return f"{what} is not a generator state (a 1-D uint8 tensor)"
    return None


def _rng(v) -> str | None:
    if not isinstance(v, dict):
        return _mapping(v, "a mapping of python, numpy and torch RNG states")
    py = v.get("python")
    if not (isinstance(py, list) and len(py) == 3 and _is_int(py[0]) and isinstance(py[1], list)
            and len(py[1]) == 625 and all(_is_int(x) and x < 2**32 for x in py[1][:-1]) and _is_int(py[1][-1])
            and py[1][-1] <= 624 and (py[2] is None or _is_number(py[2]))):
        return "python: not a Mersenne Twister state (version, 625 integers, gauss)"
    n = v.get("numpy")
    if not (isinstance(n, dict) and isinstance(n.get("keys"), torch.Tensor) and tuple(n["keys"].shape) == (624,)
            and not n["keys"].is_floating_point() and _is_int(n.get("pos")) and n["pos"] <= 624
            and _is_int(n.get("has_gauss")) and _is_number(n.get("cached_gauss"))):
        return "numpy: not a Mersenne Twister state (624 keys, pos, has_gauss, cached_gauss)"
    return _byte_tensor(v.get("torch"), "torch")


def _loader(v) -> str | None:
    if not isinstance(v, dict) or not _is_int(v.get("epoch")) or not _is_int(v.get("position")):
        return "expected a loader state with integer epoch and position"
    return None


def _partial(v) -> str | None:
    if not isinstance(v, dict) or not all(_is_number(v.get(k)) and v[k] >= 0 for k in ("loss", "n", "correct")):
        return "expected running sums: loss, n and correct, finite and >= 0"
    bad = [k for k, x in v.items() if not (isinstance(k, str) and _is_number(x))]  # the loss components too
    return f"running sum {bad[0]!r} is not a finite number" if bad else None


def _history(v) -> str | None:
    if not isinstance(v, list):
        return f"expected a list of epoch records, got {type(v).__name__}"
    for i, rec in enumerate(v):
        if not isinstance(rec, dict) or rec.get("epoch") != i:
            return f"record {i} is not the mapping of epoch {i}"
        bad = [k for k, x in rec.items() if not (isinstance(k, str) and (isinstance(x, str) or _is_number(x)
                                                                           or x is None))]
        if bad:
            return f"record {i} has a value {rec[bad[0]]!r} under {bad[0]!r} that is not a number"
    return None


FIELD_CHECKS = {
    "model": state_dict_problem,
    "model_config": _model_config,
    "classes": _classes,
    "layout": _layout,
    "preprocess": _preprocess,
    "config": _config,
    "optimizer": _optimizer,
    "schedule": _schedule,
    "scaler": _scaler,
    "ema": _ema,
    "rng": _rng,
    "mix_gen": lambda v: _byte_tensor(v, "mix_gen"),
    "loader": _loader,
    "epoch": lambda v: None if _is_int(v) else f"{v!r} is not an integer >= 0",
    "step": lambda v: None if _is_int(v) else f"{v!r} is not an integer >= 0",
    "partial": _partial,
    "best_metric": lambda v: None if v is None or _is_number(v) else f"{v!r} is neither None nor a finite number",
    "bad_epochs": lambda v: None if _is_int(v) else f"{v!r} is not an integer >= 0",
    "history": _history,
}


def _consistency(st: dict, fields: tuple[str, ...]) -> str | None:
    """Fields that must agree with each other: classes and layout with the model config, history with epoch."""
    if "model_config" in fields:
        mc = st["model_config"]
        if "classes" in fields and mc.get("num_classes", 250) != len(st["classes"]):
            return (f"field 'classes' names {len(st['classes'])} classes, its model_config has "
                    f"{mc.get('num_classes', 250)}")
        if "layout" in fields:
            from slr_fast.layout import Layout

            layout = Layout.from_dict(st["layout"])
            if ([list(layout.part_sizes), layout.num_channels] !=
                    [list(mc.get("part_sizes", [])), mc.get("channels", 2)]):
                return (f"field 'layout' ({dict(zip(layout.part_names, layout.part_sizes, strict=True))} x "
                        f"{layout.num_channels}) does not match its model_config ({mc.get('part_sizes')} x "
                        f"{mc.get('channels', 2)})")
    if "history" in fields and "epoch" in fields and len(st["history"]) != st["epoch"]:
        return f"field 'history' holds {len(st['history'])} epochs, field 'epoch' says {st['epoch']}"
    return None


# ---- RNG states ------------------------------------------------------------------------------------------------
def rng_state() -> dict:
    """Python, NumPy and torch RNG states in a weights_only-loadable form."""
    py = random.getstate()
    np_state = np.random.get_state()
    out = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict):
    """Restore what `rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_weights(model: torch.nn.Module, state_dict: dict, path: str, strict: bool = True) -> list[str]:
    """Load weights with a readable error on shape mismatches; returns skipped keys when not strict."""
    problem = state_dict_problem(state_dict)
    if problem:
        raise CheckpointError(f"{path}: weights: {problem}")
    own = model.state_dict()
    if strict:
        problem = weights_mismatch(own, state_dict)
        if problem:
            raise CheckpointError(f"{path}: weights do not fit this model ({problem})")
        model.load_state_dict(state_dict)
        return []
    keep = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)
    return sorted(set(state_dict) - set(keep))
