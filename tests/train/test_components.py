"""Losses, MixUp, schedules, optimizer groups, EMA, checkpoints, metrics and the overfitting report."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slr_fast.train.checkpoint import CheckpointError, load_checkpoint, load_model_weights, save_checkpoint
from slr_fast.train.config import TrainConfig
from slr_fast.train.ema import EMA
from slr_fast.train.losses import deep_supervision_loss, focal_loss, soft_targets
from slr_fast.train.metrics import classification_report
from slr_fast.train.mixup import mixup_batch
from slr_fast.train.optim import build_optimizer
from slr_fast.train.report import overfit_analysis, plot_run, write_report
from slr_fast.train.schedule import LRSchedule, ScheduleConfig


def test_focal_gamma0_is_cross_entropy_with_smoothing():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(16, 7, generator=g), torch.randint(0, 7, (16,), generator=g)
    for eps in (0.0, 0.1):
        ref = F.cross_entropy(z, y, label_smoothing=eps)
        assert torch.allclose(focal_loss(z, y, gamma=0.0, smoothing=eps), ref, atol=1e-6)


def test_focal_downweights_easy_examples_and_accepts_soft_targets():
    y = torch.tensor([0, 0])
    z = torch.tensor([[5.0, 0.0, 0.0], [0.5, 0.0, 0.0]])  # easy, hard
    ce = F.cross_entropy(z, y, reduction="none")
    per = torch.stack([focal_loss(z[i:i + 1], y[i:i + 1], gamma=2.0) for i in range(2)])
    assert (per < ce).all()
    assert per[0] / ce[0] < per[1] / ce[1]  # the easy one is down-weighted more
    q = soft_targets(y, 3)
    assert torch.allclose(focal_loss(z, q, gamma=2.0), focal_loss(z, y, gamma=2.0))


def test_deep_supervision_weights_aux_heads():
    g = torch.Generator().manual_seed(1)
    z, a = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    total, parts = deep_supervision_loss(z, [a], y, 0.5, 0.0, 0.0)
    assert torch.allclose(total, F.cross_entropy(z, y) + 0.5 * F.cross_entropy(a, y), atol=1e-6)
    assert set(parts) == {"loss_main", "loss_aux0"}
    with pytest.raises(ValueError, match="auxiliary"):
        deep_supervision_loss(z, [a], y, [0.1, 0.2], 0.0, 0.0)


def test_mixup_mixes_inputs_and_targets_consistently():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 2).clone()
    mask = torch.zeros(4, 2, 3)
    mask[0] = 1
    y = torch.tensor([0, 1, 2, 3])
    xm, mm, q, lam = mixup_batch(x, mask, y, 4, alpha=0.4, generator=torch.Generator().manual_seed(3))
    assert 0.0 <= lam <= 1.0
    assert torch.allclose(q.sum(1), torch.ones(4))
    # Each mixed sample's value equals the expectation of the source labels under its target distribution.
    assert torch.allclose(xm[:, 0, 0, 0], q @ torch.arange(4.0), atol=1e-5)
    assert mm.sum() >= mask.sum()
    _, _, q2, lam2 = mixup_batch(x, mask, y, 4, alpha=0.4, generator=torch.Generator().manual_seed(3))
    assert lam2 == lam and torch.equal(q, q2)


def _opt(n_groups_lr=None):
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    return m, build_optimizer(m, lr=1.0, weight_decay=0.1, group_lrs=n_groups_lr)


def test_optimizer_groups_skip_decay_on_norms_and_biases():
    m, opt = _opt({"^2\\.": 3.0})
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(m[0].weight), id(m[2].weight)}
    head = [g for g in opt.param_groups if any(p is m[2].weight for p in g["params"])][0]
    assert head["peak_lr"] == 3.0


@pytest.mark.parametrize("name", ["cyclic", "cosine_restarts", "onecycle", "constant", "plateau"])
def test_schedules_warm_up_then_stay_within_peak(name):
    _, opt = _opt()
    s = LRSchedule(opt, ScheduleConfig(name=name, warmup_steps=10), total_steps=200)
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        s.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert max(lrs) <= 1.0 + 1e-9 and min(lrs) > 0
    if name in ("cyclic", "cosine_restarts"):
        rises = sum(b > a + 1e-9 for a, b in zip(lrs[10:], lrs[11:], strict=False))
        assert rises >= (5 if name == "cyclic" else 2)  # it cycles (ramps up) / restarts (jumps up)
    if name == "onecycle":
        assert lrs[-1] < 0.02


def test_schedule_state_roundtrip_and_plateau():
    _, opt = _opt()
    s = LRSchedule(opt, ScheduleConfig(name="plateau", warmup_steps=0, plateau_patience=1), total_steps=10)
    for m in (0.5, 0.6, 0.6, 0.6):
        s.epoch_end(m)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    _, opt2 = _opt()
    s2 = LRSchedule(opt2, ScheduleConfig(name="plateau", warmup_steps=0), total_steps=10)
    s2.load_state_dict(s.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="config.schedule.name: 'linear' is not one of cyclic, cosine_restarts"):
        ScheduleConfig(name="linear")


def test_ema_tracks_weights():
    m = torch.nn.Linear(3, 3)
    ema = EMA(m, decay=0.5, warmup_steps=0)
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.module.weight, m.weight - 0.5)


def test_checkpoint_atomic_roundtrip_and_errors(tmp_path):
    m = torch.nn.Linear(3, 2)
    p = save_checkpoint(tmp_path / "c.pt", {"model": m.state_dict(), "model_config": {"a": 1}, "classes": ["x"],
                                            "layout": {}, "config": TrainConfig().to_dict()})
    st = load_checkpoint(p, fields=("model",))  # only what is used is checked: the rest is a stand-in
    assert torch.equal(st["model"]["weight"], m.weight)
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind
    (tmp_path / "bad.pt").write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="c.pt: field 'model_config': model config has unknown fields"):
        load_checkpoint(p, fields=("model", "model_config"))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an slr_fast checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model_weights(torch.nn.Linear(3, 5), st["model"], "c.pt")
    skipped = load_model_weights(torch.nn.Linear(3, 5), st["model"], "c.pt", strict=False)
    assert skipped == ["bias", "weight"]


def test_metrics_report():
    logits = np.array([[3, 1, 0], [0, 3, 1], [0, 3, 1], [1, 0, 3]], np.float32)
    labels = np.array([0, 1, 2, 2])
    r = classification_report(logits, labels, ["a", "b", "c"])
    assert r["top1"] == 0.75 and r["top5"] == 1.0
    assert r["per_class"]["c"] == {"accuracy": 0.5, "support": 2}
    assert r["confused_pairs"][0] == {"true": "c", "predicted": "b", "count": 1, "rate": 0.5}


def test_overfit_report_finds_onset(tmp_path):
    hist = [{"epoch": e, "train_loss": 2.0 - 0.3 * e, "val_loss": v, "train_acc": 0.5 + 0.1 * e, "val_acc": a,
             "lr": 1e-3} for e, (v, a) in enumerate([(1.8, 0.4), (1.5, 0.6), (1.6, 0.62), (1.9, 0.6), (2.2, 0.58)])]
    info = overfit_analysis(hist)
    assert info["overfit_from_epoch"] == 1 and info["best_epoch"] == 2
    assert info["final_acc_gap"] == pytest.approx(0.9 - 0.58)
    paths = plot_run(hist, tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths)
    text = write_report(hist, tmp_path, {"model": {"preset": "tiny"}, "kernels": "auto"}).read_text()
    assert "overfitting from epoch 1" in text


def test_config_roundtrip_and_overrides(tmp_path):
    c = TrainConfig().override(["optim.lr=0.01", "schedule.name=onecycle", "data.classes=[\"a\",\"b\"]"])
    assert c.optim.lr == 0.01 and c.schedule.name == "onecycle" and c.data.classes == ["a", "b"]
    c.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == c
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig().override(["optim.lrr=1"])
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"epochz": 3})
    assert json.loads((tmp_path / "c.json").read_text())["schedule"]["name"] == "onecycle"
    assert not math.isnan(c.optim.lr)


def test_per_signer_accuracy_groups_hits_by_signer_and_names_unknown():
    from slr_fast.train.evaluate import per_signer_accuracy

    correct = np.array([1, 0, 1, 1, 0, 1], bool)
    signer = np.array([3, 3, 7, -1, 7, 3])
    r = per_signer_accuracy(correct, signer)
    assert list(r) == ["unknown", "3", "7"]
    assert r["3"] == {"accuracy": pytest.approx(2 / 3), "support": 3}
    assert r["7"] == {"accuracy": 0.5, "support": 2} and r["unknown"] == {"accuracy": 1.0, "support": 1}
    with pytest.raises(ValueError, match="6 predictions but 5 signer ids"):
        per_signer_accuracy(correct, signer[:5])
