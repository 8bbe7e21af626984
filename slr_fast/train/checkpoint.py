"""Checkpoints: atomic writes, `weights_only=True` loads, clear errors for corrupt or mismatched files.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing pickled beyond what
`torch.load(weights_only=True)` accepts), so loading one never executes code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "slr_fast.checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "model_config", "classes", "layout")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` to `path` atomically: a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint written by `save_checkpoint`."""
    path = Path(path)
    if path.is_dir():
        for name in ("last.pt", "best.pt"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: a directory without last.pt or best.pt")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, disallowed pickled object, ...
        raise CheckpointError(f"{path}: not a readable slr_fast checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an slr_fast checkpoint (no '{FORMAT}' format marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')}, this slr_fast reads {VERSION}")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    state["path"] = str(path)
    return state


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
    own = model.state_dict()
    mismatched = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if strict:
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if missing or unexpected or mismatched:
            detail = []
            if missing:
                detail.append(f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}")
            if unexpected:
                detail.append(f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
            if mismatched:
                detail.append("shape mismatch " + ", ".join(
                    f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in mismatched[:5]))
            raise CheckpointError(f"{path}: weights do not fit this model ({'; '.join(detail)})")
        model.load_state_dict(state_dict)
        return []
    keep = {k: v for k, v in state_dict.items() if k in own and k not in mismatched}
    model.load_state_dict(keep, strict=False)
    return sorted(set(state_dict) - set(keep))
