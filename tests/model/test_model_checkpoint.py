"""Checkpoints: self-describing, loadable on CPU with the PyTorch path whatever backend trained the weights."""

from __future__ import annotations

import collections
import os

import pytest
import torch
from model_testing import LOGIT_TOL, make_batch, tiny_config

from kernels.registry import KernelConfig
from slr_fast.layout import get_layout
from slr_fast.model import TORCH_KERNELS, checkpoint_dict, load_model, save_model
from slr_fast.model.checkpoint import clean_state_dict
from slr_fast.model.model import SignModel


def test_save_then_load_on_cpu_with_the_torch_path(tmp_path):
    layout = get_layout("arm_z")
    trained = SignModel(tiny_config(layout=layout), kernels=KernelConfig.parse("native")).eval()
    with torch.no_grad():  # weights that differ from a fresh init, so loading must really restore them
        for p in trained.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = make_batch(B=2, T=9, layout=layout)
    want = trained(batch["x"], batch["mask"], batch["length"]).logits
    path = tmp_path / "sub" / "model.pt"
    save_model(path, trained, classes=["a", "b"], epoch=3)
    assert path.is_file() and not path.with_name("model.pt.tmp").exists()

    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == trained.config
    assert set(loaded.kernel_report().values()) == {"torch"}
    torch.testing.assert_close(loaded(batch["x"], batch["mask"], batch["length"]).logits, want, **LOGIT_TOL)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["classes"] == ["a", "b"] and ckpt["epoch"] == 3
    assert ckpt["kernels"]["attention"] == "native"  # the record says what trained it


def test_compiled_and_wrapped_prefixes_are_stripped():
    model = SignModel(tiny_config())
    state = {"_orig_mod.module.head.fc2.bias": torch.zeros(1), "embed.absent": torch.zeros(1)}
    assert set(clean_state_dict(state)) == {"head.fc2.bias", "embed.absent"}
    wrapped = torch.nn.Module()
    wrapped._orig_mod = model  # what torch.compile's wrapper holds
    ckpt = checkpoint_dict(wrapped)
    assert set(ckpt["model"]) == set(model.state_dict())
    loaded = load_model(ckpt, kernels=KernelConfig.parse("native"))
    assert set(loaded.kernel_report().values()) == {"native"}


def test_reads_the_weights_of_a_training_checkpoint(tmp_path):
    model = SignModel(tiny_config()).eval()
    path = tmp_path / "last.pt"
    # The layout of a training run's checkpoint: weights under "model", plus optimizer state and the like.
    torch.save({"format": "slr_fast.checkpoint", "version": 1, "model": model.state_dict(),
                "model_config": model.config.to_dict(), "optimizer": {"state": {}}}, path)
    loaded = load_model(path)
    batch = make_batch(B=2, T=6)
    torch.testing.assert_close(loaded(batch["x"], batch["mask"], batch["length"]).logits,
                               model(batch["x"], batch["mask"], batch["length"]).logits, **LOGIT_TOL)


def test_one_format_for_model_and_training_checkpoints(tmp_path):
    """save_model writes what a training run writes (format marker, version, weights under "model"), so the
    training side's loader reads it; the earlier model-only format ("model_state") still loads."""
    from slr_fast.model.checkpoint import FORMAT, LEGACY_FORMAT, VERSION
    from slr_fast.train.checkpoint import FORMAT as TRAIN_FORMAT
    from slr_fast.train.checkpoint import load_checkpoint

    model = SignModel(tiny_config()).eval()
    path = tmp_path / "model.pt"
    save_model(path, model, classes=[f"c{i}" for i in range(model.config.num_classes)],
               layout=get_layout("default").to_dict())
    ckpt = torch.load(path, weights_only=True)
    assert (ckpt["format"], ckpt["version"], TRAIN_FORMAT) == (FORMAT, VERSION, FORMAT)
    assert "model_state" not in ckpt and set(ckpt["model"]) == set(model.state_dict())
    st = load_checkpoint(path, fields=("model", "model_config", "classes", "layout"))
    assert all(torch.equal(st["model"][k], v) for k, v in model.state_dict().items())

    legacy = tmp_path / "legacy.pt"
    torch.save({"format": LEGACY_FORMAT, "model_config": model.config.to_dict(), "model_state": model.state_dict(),
                "kernels": model.kernel_report()}, legacy)
    batch = make_batch(B=2, T=6)
    torch.testing.assert_close(load_model(legacy)(batch["x"], batch["mask"], batch["length"]).logits,
                               model(batch["x"], batch["mask"], batch["length"]).logits, **LOGIT_TOL)
    with pytest.raises(ValueError, match="format 'slr_fast.model/9'"):
        load_model({**ckpt, "format": "slr_fast.model/9"})
    with pytest.raises(ValueError, match="version 2"):
        load_model({**ckpt, "version": 2})


def test_default_inference_kernels_are_all_torch():
    assert all(v == "torch" for v in TORCH_KERNELS.to_dict().values())


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_model(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="other.pt is not a slr_fast model checkpoint.*has \\['weights'\\]"):
        load_model(other)
    ckpt = checkpoint_dict(SignModel(tiny_config()))
    ckpt["model"]["head.fc2.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="weights do not match its model config"):
        load_model(ckpt)
    ckpt = checkpoint_dict(SignModel(tiny_config()))
    ckpt["model_config"]["dim"] = 65
    with pytest.raises(ValueError, match="bad model config.*dim=65"):
        load_model(ckpt)


def test_untrusted_checkpoints_are_checked_before_anything_is_built(tmp_path):
    from slr_fast.model.checkpoint import CheckpointError
    from slr_fast.model.config import MAX_PARAMETERS

    good = checkpoint_dict(SignModel(tiny_config()))
    huge = {**good, "model_config": {**good["model_config"], "dim": 16384, "heads": 256, "global_layers": 64}}
    with pytest.raises(CheckpointError, match=f"parameters, over the limit of {MAX_PARAMETERS:,}"):
        load_model(huge)  # ~2e11 parameters: refused from the meta-device count, nothing allocated
    nan = {**good, "model": {**good["model"]}}
    key = next(k for k, v in nan["model"].items() if v.is_floating_point())
    nan["model"][key] = torch.full_like(nan["model"][key], float("nan"))
    with pytest.raises(CheckpointError, match=f"weights: tensor '{key}' holds NaN"):
        load_model(nan)
    with pytest.raises(CheckpointError, match="bad model config: model config must be a mapping"):
        load_model({**good, "model_config": "tiny"})
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="is a FIFO"):
        load_model(fifo)  # refused without opening it: a reader would block forever
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model(tmp_path)


def test_save_model_leaves_no_temporary_when_writing_fails(tmp_path, monkeypatch):
    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("writer failed")

    monkeypatch.setattr(torch, "save", failing_save)
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 0, 1 << 40))  # room on the disk
    with pytest.raises(RuntimeError, match="writer failed"):
        save_model(tmp_path / "model.pt", SignModel(tiny_config()))
    assert list(tmp_path.iterdir()) == []
