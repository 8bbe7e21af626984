"""Model checkpoints: the config and the weights in one file, loadable on a CPU with the PyTorch path.

One format for every checkpoint slr_fast writes: a dict with `format` FORMAT, `version` VERSION, the weights under
`model` and the ModelConfig under `model_config`. `save_model` writes those (plus the kernels used and any extra
fields); a training run's checkpoint (slr_fast.train.checkpoint) is the same dict with its optimizer, schedule,
classes, layout and the rest beside them, so `load_model` reads either. Files of the earlier model-only format
(LEGACY_FORMAT, weights under `model_state`) are still read.

The state_dict is the same for every KernelConfig, so a model trained with Triton kernels on a GPU loads on a
laptop with `load_model(path)` (all-torch kernels, CPU) for inference. Prefixes added by torch.compile
(`_orig_mod.`) and DistributedDataParallel (`module.`) are stripped on save and on load.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from kernels.registry import KernelConfig
from slr_fast.errors import UserInputError
from slr_fast.fileio import regular_file_problem, write_atomic
from slr_fast.model.config import ModelConfig
from slr_fast.model.model import SignModel

FORMAT = "slr_fast.checkpoint"  # the format marker of every checkpoint slr_fast writes
VERSION = 1
LEGACY_FORMAT = "slr_fast.model/1"  # save_model's own format before there was one (weights under "model_state")
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")

# The PyTorch reference path for every op: runs anywhere, whatever backend trained the weights.
TORCH_KERNELS = KernelConfig(rmsnorm="torch", swiglu="torch", rope="torch", attention="torch")


class CheckpointError(UserInputError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


def unwrap(model: nn.Module) -> SignModel:
    """The SignModel inside a torch.compile / DDP wrapper (or the model itself)."""
    while not isinstance(model, SignModel):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"expected a SignModel (possibly compiled or DDP-wrapped), got {type(model).__name__}")
        model = inner
    return model


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip torch.compile / DDP prefixes from state_dict keys."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def checkpoint_dict(model: nn.Module, **extra) -> dict:
    """What save_model writes: format and version, model config, weights (on CPU), the kernels used, plus `extra`."""
    m = unwrap(model)
    state = {k: v.detach().cpu() for k, v in clean_state_dict(m.state_dict()).items()}
    return {"format": FORMAT, "version": VERSION, "model_config": m.config.to_dict(), "model": state,
            "kernels": m.kernel_report(), **extra}


def save_model(path: str | os.PathLike, model: nn.Module, **extra) -> None:
    """Write a self-describing checkpoint (config + weights + `extra`, e.g. class names or the epoch)."""
    save_atomic(path, checkpoint_dict(model, **extra))


def save_atomic(path: str | os.PathLike, obj) -> Path:
    """torch.save `obj` to `path` atomically; a full disk is one line naming the file, and no temporary is left."""
    size = sum(t.nbytes for t in _tensors(obj))
    return write_atomic(path, lambda f: torch.save(obj, f), size_hint=size)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors(v)


def read_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """`torch.load(weights_only=True)` of a user-named file: a FIFO or a folder is refused before it is opened
    (never blocks), and an unreadable file is a CheckpointError naming it."""
    problem = regular_file_problem(path)
    if problem == "file not found":
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if problem:
        raise CheckpointError(f"checkpoint {path}: {problem}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # permission denied, I/O error: the CLI words these with the file name
    except Exception as e:  # truncated zip, not a torch file, disallowed pickled object, ...
        raise CheckpointError(f"{path}: not a readable checkpoint ({_load_problem(path, e)})") from e


def _load_problem(path: str | os.PathLike, e: Exception) -> str:
    """Why torch.load refused `path`, in our words. Never torch's own advice for a file holding Python objects
    (to load it with weights_only=False): unpickling an untrusted file runs its code, and slr_fast never does."""
    text = str(e)
    if "Weights only load failed" in text or "weights_only" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = found.group(1) if found else "a Python object"
        return (f"it holds {what}, a Python object beyond tensors and plain data, and slr_fast never unpickles "
                "those: a checkpoint is tensors, numbers, strings, lists and dicts")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b"PK"
    if not head:
        return "an empty file"
    if not head.startswith((b"PK", b"\x80")):  # torch.save writes a zip archive (older versions a pickle)
        return f"not a file torch.save wrote: it starts with {head!r}"
    first = text.split(". ")[0].strip()[:200]
    return f"a truncated or damaged torch file ({type(e).__name__}{': ' + first if first else ''})"


def state_dict_problem(state) -> str | None:
    """What is wrong with an untrusted state_dict (not a mapping of names to finite tensors), or None."""
    if not isinstance(state, dict) or not state:
        return f"expected a non-empty mapping of parameter names to tensors, got {type(state).__name__}"
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            return f"entry {k!r} is {type(v).__name__}, not a tensor named by a string"
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return f"tensor {k!r} holds NaN or infinite values"
    return None


def weights_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """How `state` does not fit a model whose state_dict is `own` (missing/unexpected names, shapes), or None."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    detail = []
    if missing:
        detail.append(f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}")
    if unexpected:
        detail.append(f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    if mismatched:
        detail.append("shape mismatch " + ", ".join(
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:5]))
    return "; ".join(detail) or None


def checked_config(model_config, state, name: str) -> ModelConfig:
    """The ModelConfig of an untrusted checkpoint, after checking that it parses, that its model is within
    MAX_PARAMETERS and that `state` holds exactly that model's weights — compared on the meta device, so a hostile
    config (a billion-wide layer) or weights of another model are refused before any memory is allocated."""
    try:
        config = ModelConfig.from_dict(model_config)
        config.check_size()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{name}: bad model config: {e}") from e
    problem = state_dict_problem(state)
    if problem:
        raise CheckpointError(f"{name}: weights: {problem}")
    with torch.device("meta"):
        skeleton = SignModel(config)
    problem = weights_mismatch(skeleton.state_dict(), clean_state_dict(state))
    if problem:
        raise CheckpointError(f"{name}: weights do not match its model config ({problem})")
    return config


def model_from_state(model_config, state, name: str, kernels: KernelConfig | None = None) -> SignModel:
    """A SignModel from an untrusted config and state_dict, built only after `checked_config` accepts them."""
    config = checked_config(model_config, state, name)
    model = SignModel(config, kernels=kernels if kernels is not None else TORCH_KERNELS)
    model.load_state_dict(clean_state_dict(state))
    return model


def load_model(source: str | os.PathLike | dict, kernels: KernelConfig | None = None,
               map_location: str | torch.device = "cpu") -> SignModel:
    """Rebuild a SignModel from a checkpoint file or dict; PyTorch kernels on CPU unless told otherwise."""
    name = "checkpoint dict" if isinstance(source, dict) else str(source)
    ckpt = source if isinstance(source, dict) else read_torch_file(source, "cpu")
    state = model_weights(ckpt, name)
    return model_from_state(ckpt["model_config"], state, name, kernels).to(map_location).eval()


def model_weights(ckpt, name: str):
    """The weights of a checkpoint dict of this format or the legacy one (unchecked: see checked_config)."""
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or not ({"model", "model_state"} & set(ckpt)):
        keys = sorted(map(str, ckpt))[:20] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{name} is not a slr_fast model checkpoint (needs model_config and model; "
                              f"has {keys})")
    fmt = ckpt.get("format")  # a dict made by hand may have none: its keys tell
    if fmt == LEGACY_FORMAT or (fmt is None and "model" not in ckpt):
        return ckpt["model_state"]
    if fmt not in (None, FORMAT):
        raise CheckpointError(f"{name}: checkpoint format {fmt!r}; this version reads {FORMAT!r} (and the older "
                              f"{LEGACY_FORMAT!r})")
    if fmt == FORMAT and ckpt.get("version") != VERSION:
        raise CheckpointError(f"{name}: checkpoint version {ckpt.get('version')!r}, this slr_fast reads {VERSION}")
    if "model" not in ckpt:
        raise CheckpointError(f"{name}: a {FORMAT!r} checkpoint without its 'model' weights")
    return ckpt["model"]

