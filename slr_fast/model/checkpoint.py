"""Model checkpoints: the config and the weights in one file, loadable on a CPU with the PyTorch path.

The state_dict is the same for every KernelConfig, so a model trained with Triton kernels on a GPU loads on a
laptop with `load_model(path)` (all-torch kernels, CPU) for inference. Prefixes added by torch.compile
(`_orig_mod.`) and DistributedDataParallel (`module.`) are stripped on save and on load. `load_model` also reads
the weights of a training run's checkpoint (slr_fast.train: `model` and `model_config` keys).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from kernels.registry import KernelConfig
from slr_fast.model.config import ModelConfig
from slr_fast.model.model import SignModel

CHECKPOINT_FORMAT = "slr_fast.model/1"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")

# The PyTorch reference path for every op: runs anywhere, whatever backend trained the weights.
TORCH_KERNELS = KernelConfig(rmsnorm="torch", swiglu="torch", rope="torch", attention="torch")


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
    """What save_model writes: format tag, model config, weights (on CPU), the kernels used, plus `extra`."""
    m = unwrap(model)
    state = {k: v.detach().cpu() for k, v in clean_state_dict(m.state_dict()).items()}
    return {"format": CHECKPOINT_FORMAT, "model_config": m.config.to_dict(), "model_state": state,
            "kernels": m.kernel_report(), **extra}


def save_model(path: str | os.PathLike, model: nn.Module, **extra) -> None:
    """Write a self-describing checkpoint (config + weights + `extra`, e.g. class names or the epoch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint_dict(model, **extra), tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint under the real name


def load_model(source: str | os.PathLike | dict, kernels: KernelConfig | None = None,
               map_location: str | torch.device = "cpu") -> SignModel:
    """Rebuild a SignModel from a checkpoint file or dict; PyTorch kernels on CPU unless told otherwise."""
    name = "checkpoint dict" if isinstance(source, dict) else str(source)
    if isinstance(source, dict):
        ckpt = source
    else:
        if not Path(source).is_file():
            raise FileNotFoundError(f"model checkpoint {name} does not exist")
        ckpt = torch.load(source, map_location=map_location, weights_only=True)
    if isinstance(ckpt, dict) and "model_config" in ckpt and "model_state" in ckpt:
        if ckpt.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
            raise ValueError(f"{name}: checkpoint format {ckpt['format']!r}, this version reads {CHECKPOINT_FORMAT!r}")
        state = ckpt["model_state"]
    elif isinstance(ckpt, dict) and "model_config" in ckpt and isinstance(ckpt.get("model"), dict):
        state = ckpt["model"]  # a training run's checkpoint (slr_fast.train): the same config and weights inside
    else:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{name} is not a slr_fast model checkpoint (needs model_config and model_state; has {keys})")
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: bad model config: {e}") from e
    model = SignModel(config, kernels=kernels if kernels is not None else TORCH_KERNELS)
    try:
        model.load_state_dict(clean_state_dict(state))
    except RuntimeError as e:
        raise ValueError(f"{name}: weights do not match its model config: {e}") from e
    return model.to(map_location).eval()
