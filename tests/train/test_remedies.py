"""The anti-overfitting remedies (slr_fast.train.losses, slr_fast.train.remedies): hand-computed values,
float64 gradient checks, MixUp targets, unseen parts and padding, off-by-default bit-identity, config errors, and
one short run with all four on followed by a stage that starts from it."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from slr_fast.model import ModelConfig, SignModel
from slr_fast.train.config import ConfigError, LossConfig, TrainConfig
from slr_fast.train.losses import (
    confusion_update,
    curriculum_gamma,
    deep_supervision_loss,
    distillation_loss,
    pairwise_margin_loss,
    part_losses,
    rivals_from_confusion,
)
from slr_fast.train.remedies import Remedies, matching_part_heads


def _f64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- curriculum focal loss ------------------------------------------------------------------------------------
def test_curriculum_gamma_follows_its_ramp():
    assert curriculum_gamma(0.0, 0.0, 2.0) == 0.0
    assert curriculum_gamma(0.25, 0.0, 2.0) == pytest.approx(0.5)
    assert curriculum_gamma(0.25, 0.0, 2.0, ramp=0.5) == pytest.approx(1.0)
    assert curriculum_gamma(0.9, 0.0, 2.0, ramp=0.5) == 2.0  # after the ramp: the final γ
    assert curriculum_gamma(0.25, 1.0, 3.0, shape="cosine") == pytest.approx(1.0 + 2.0 * (0.5 - 0.5 * math.cos(
        math.pi / 4)))
    assert curriculum_gamma(0.5, 1.0, 3.0, shape="cosine") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="shape"):
        curriculum_gamma(0.5, 0.0, 1.0, shape="square")


def test_remedies_gamma_by_step():
    cfg = TrainConfig(loss=LossConfig(focal_gamma=2.0, focal_schedule="linear", focal_gamma_start=0.5))
    r = Remedies(cfg, None, None, ["a", "b"], total_steps=100, steps_per_epoch=10, device=torch.device("cpu"))
    assert r.gamma(0) == 0.5 and r.gamma(50) == pytest.approx(1.25) and r.gamma(100) == 2.0
    assert r.epoch_record(50) == {"focal_gamma": pytest.approx(1.25)}
    constant = Remedies(TrainConfig(), None, None, ["a", "b"], 100, 10, torch.device("cpu"))
    assert constant.gamma(50) == 1.0 and constant.epoch_record(50) == {}


# ---- pairwise margin -------------------------------------------------------------------------------------------
def test_margin_loss_hand_computed():
    z = torch.tensor([[2.0, 1.0, 0.5]])
    rivals = torch.tensor([[1, -1], [0, -1], [0, 1]])
    # class 0 vs its rival 1: gap 1, hinge 1.5 - 1 = 0.5; the empty slot adds nothing; / (B * k) = 2
    assert float(pairwise_margin_loss(z, torch.tensor([0]), rivals, 1.5)) == pytest.approx(0.25)
    # a wide enough gap costs nothing
    assert float(pairwise_margin_loss(z, torch.tensor([0]), rivals, 0.9)) == 0.0
    # MixUp 0.5/0.5 of classes 0 and 1: neither is pushed against the other; class 1 vs 2: gap 0.5, hinge 1.0 · 0.5
    rivals = torch.tensor([[1, 2], [0, 2], [0, 1]])
    mixed = torch.tensor([[0.5, 0.5, 0.0]])
    assert float(pairwise_margin_loss(z, mixed, rivals, 1.5)) == pytest.approx(0.25)


def test_margin_loss_gradient():
    z = _f64(3, 5).requires_grad_()
    rivals = torch.tensor([[1, 2], [0, -1], [4, 3], [2, 0], [3, -1]])
    target = torch.tensor([0, 2, 3])
    assert torch.autograd.gradcheck(lambda t: pairwise_margin_loss(t, target, rivals, 0.7), (z,))


def test_rivals_and_confusion_counts():
    c = torch.tensor([[9.0, 3.0, 1.0, 0.0], [0.0, 5.0, 0.0, 0.0], [2.0, 2.5, 7.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    r = rivals_from_confusion(c, 2)
    assert r.tolist() == [[1, 2], [-1, -1], [1, 0], [-1, -1]]  # diagonal ignored; never-confused slots empty
    logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 0.0]])
    p = logits.softmax(-1)
    counts = confusion_update(logits, torch.tensor([2, 0]))
    want = torch.zeros(3, 3)
    want[2, :2] = p[0, :2]  # sample 0 (class 2): mass on 0 and 1
    want[0, 1:] = p[1, 1:]  # sample 1 (class 0): mass on 1 and 2
    torch.testing.assert_close(counts, want)
    # mixed 0.7/0.3 of classes 0 and 1: only class 2 counts as a confusion, in both rows by their share
    counts = confusion_update(logits[:1], torch.tensor([[0.7, 0.3, 0.0]]))
    torch.testing.assert_close(counts[:, 2], torch.tensor([0.7, 0.3, 0.0]) * p[0, 2])
    assert float(counts[:, :2].abs().sum()) == 0.0


def test_confusion_is_taken_over_by_class_name():
    cfg = TrainConfig(loss=LossConfig(margin_weight=0.1))
    r = Remedies(cfg, None, None, ["b", "c", "x"], 10, 10, torch.device("cpu"))
    old = torch.arange(9, dtype=torch.float32).view(3, 3)  # over classes a, b, c
    r.take_over({"confusion": old, "classes": ["a", "b", "c"]}, "stage1/best.pt")
    torch.testing.assert_close(r.confusion, torch.tensor([[4.0, 5.0, 0.0], [7.0, 8.0, 0.0], [0.0, 0.0, 0.0]]))
    r.take_over(None, "no-margin.pt")  # a stage without the margin loss leaves nothing to take over
    with pytest.raises(Exception, match="field 'remedies'"):
        r.take_over({"confusion": torch.full((3, 3), float("nan")), "classes": ["a", "b", "c"]}, "bad.pt")
    with pytest.raises(Exception, match="other classes"):
        r.load_state_dict({"confusion": old, "classes": ["a", "b", "c"]}, "last.pt")


# ---- self-distillation -----------------------------------------------------------------------------------------
def test_distillation_matches_kl_and_vanishes_on_agreement():
    s, t = _f64(4, 6, seed=1), _f64(4, 6, seed=2)
    want = F.kl_div(F.log_softmax(s / 3, -1), F.log_softmax(t / 3, -1), log_target=True, reduction="batchmean") * 9
    torch.testing.assert_close(distillation_loss(s, t, 3.0), want)
    assert float(distillation_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-12)
    # hand-computed: two classes, teacher (0.5, 0.5), student softmax(0, log 3) = (0.25, 0.75), T = 1
    got = distillation_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.zeros(1, 2), 1.0)
    assert float(got) == pytest.approx(0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75))
    z = s.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda u: distillation_loss(u, t, 2.0), (z,))


# ---- cross-modal consistency -----------------------------------------------------------------------------------
def test_part_losses_hand_computed():
    # two parts over two classes: p1 = (0.5, 0.5), p2 = (0.25, 0.75); mean (0.375, 0.625)
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    seen = torch.tensor([[True, True]])
    ce, js = part_losses(logits, seen, torch.tensor([1]))
    assert float(ce) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)

    def kl(p, q):
        return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))

    mean = (0.375, 0.625)
    assert float(js) == pytest.approx((kl((0.5, 0.5), mean) + kl((0.25, 0.75), mean)) / 2)
    # label smoothing 0.2 over 2 classes: target (0.1, 0.9)
    ce, _ = part_losses(logits, seen, torch.tensor([1]), smoothing=0.2)
    assert float(ce) == pytest.approx(-(0.1 * math.log(0.5) + 0.9 * math.log(0.5) + 0.1 * math.log(0.25)
                                        + 0.9 * math.log(0.75)) / 2)
    # MixUp target (0.5, 0.5) on the same logits
    ce, _ = part_losses(logits, seen, torch.tensor([[0.5, 0.5]]))
    assert float(ce) == pytest.approx(-(math.log(0.5) + 0.5 * math.log(0.25) + 0.5 * math.log(0.75)) / 2)


def test_part_losses_leave_unseen_parts_out():
    logits = _f64(3, 3, 5, seed=4)
    seen = torch.tensor([[True, False, True], [True, False, False], [False, False, False]])
    ce, js = part_losses(logits, seen, torch.tensor([0, 1, 2]))
    # only sample 0 has two parts seen: its JS over parts 0 and 2 alone; CE over the three seen (sample, part)s
    ce0, js0 = part_losses(logits[:1, [0, 2]], torch.ones(1, 2, dtype=torch.bool), torch.tensor([0]))
    torch.testing.assert_close(js, js0)
    ce1, _ = part_losses(logits[1:2, :1], torch.ones(1, 1, dtype=torch.bool), torch.tensor([1]))
    torch.testing.assert_close(ce, (2 * ce0 + ce1) / 3)
    # an unseen part's logits change nothing and get no gradient; a sample with no part seen gives no NaN
    z = logits.clone().requires_grad_()
    ce, js = part_losses(z, seen, torch.tensor([0, 1, 2]))
    (ce + js).backward()
    assert torch.isfinite(z.grad).all() and float(z.grad[:, 1].abs().sum()) == 0.0
    assert float(z.grad[2].abs().sum()) == 0.0


def test_part_losses_gradient():
    z = _f64(2, 3, 4, seed=5).requires_grad_()
    seen = torch.tensor([[True, True, False], [True, True, True]])
    target = torch.tensor([[0.6, 0.0, 0.4, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda u: sum(part_losses(u, seen, target, 0.1)), (z,))


def _batch(cfg: ModelConfig, B=2, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, cfg.num_points, cfg.channels, generator=g)
    mask = (torch.rand(B, T, cfg.num_points, generator=g) > 0.2).float()
    return x, mask


def test_part_heads_see_their_own_part_and_ignore_padding():
    cfg = ModelConfig.preset("tiny", num_classes=5, part_heads=True, dropout=0.0, drop_path=0.0)
    model = SignModel(cfg).eval()
    x, mask = _batch(cfg)
    length = torch.tensor([10, 6])
    out = model(x, mask, length)
    assert out.part_logits.shape == (2, len(cfg.part_names), 5) and out.part_seen.all()
    # padding: frames past a sequence's length change nothing
    x2, mask2 = x.clone(), mask.clone()
    x2[1, 6:] = 7.0
    mask2[1, 6:] = 1.0
    torch.testing.assert_close(model(x2, mask2, length).part_logits, out.part_logits)
    # each part's prediction rests on its own points: moving the last part's points moves only its logits
    last = slice(cfg.num_points - cfg.part_sizes[-1], cfg.num_points)
    x3 = x.clone()
    x3[:, :, last] += 1.0
    got = model(x3, mask, length).part_logits
    torch.testing.assert_close(got[:, :-1], out.part_logits[:, :-1])
    assert not torch.allclose(got[:, -1], out.part_logits[:, -1])
    # a part never seen within the length is reported unseen
    mask4 = mask.clone()
    mask4[0, :, last] = 0.0
    assert model(x, mask4, length).part_seen[0].tolist() == [True] * (len(cfg.part_names) - 1) + [False]
    assert SignModel(cfg.replace(part_heads=False)).eval()(x, mask, length).part_logits is None


def test_part_heads_weights_fit_models_with_or_without_them():
    cfg = ModelConfig.preset("tiny", num_classes=5)
    plain, with_heads = SignModel(cfg), SignModel(cfg.replace(part_heads=True))
    with_heads.load_state_dict(matching_part_heads(with_heads, plain.state_dict()))  # an old run's weights
    plain.load_state_dict(matching_part_heads(plain, with_heads.state_dict()))  # a later stage without them


# ---- off by default: the loss of before, bit for bit ------------------------------------------------------------
def test_all_off_is_the_old_loss_bit_for_bit():
    cfg = ModelConfig.preset("tiny", num_classes=5)
    model = SignModel(cfg)
    x, mask = _batch(cfg)
    out = model(x, mask)
    run = TrainConfig(ema_decay=0.9)
    r = Remedies(run, model, None, list("abcde"), 100, 10, torch.device("cpu"))
    assert r.confusion is None and r.teacher is None and not r.parts_on
    for target in (torch.tensor([1, 3]), torch.tensor([[0.3, 0.7, 0, 0, 0], [0, 0, 1.0, 0, 0]])):
        got, parts = r.loss(out, x, mask, None, target, step=37)
        want, want_parts = deep_supervision_loss(out.logits, out.aux_logits, target, 0.3, 1.0, 0.1)
        assert torch.equal(got, want) and parts == want_parts
    assert r.state_dict() is None


def test_remedies_add_their_terms():
    cfg = ModelConfig.preset("tiny", num_classes=5, part_heads=True)
    model = SignModel(cfg)
    x, mask = _batch(cfg)
    out = model(x, mask)
    lc = LossConfig(margin_weight=0.5, consistency_weight=0.2, part_weight=0.4, distill_weight=0.3,
                    distill_teacher="ema", distill_temperature=2.0)
    from slr_fast.train.ema import EMA

    ema = EMA(model, 0.9)
    r = Remedies(TrainConfig(loss=lc, ema_decay=0.9), model, ema, list("abcde"), 100, 10, torch.device("cpu"))
    target = torch.tensor([1, 3])
    r.confusion[1, 2] = r.confusion[3, 0] = 1.0  # class 1 confused with 2, class 3 with 0
    total, parts = r.loss(out, x, mask, None, target, step=0)
    base, _ = deep_supervision_loss(out.logits, out.aux_logits, target, 0.3, 1.0, 0.1)
    margin = pairwise_margin_loss(out.logits, target, torch.tensor([[-1] * 3, [2, -1, -1], [-1] * 3, [0, -1, -1],
                                                                    [-1] * 3]), 1.0)
    distill = distillation_loss(out.logits, ema.module(x, mask).logits, 2.0)
    part_ce, js = part_losses(out.part_logits, out.part_seen, target, 0.1)
    torch.testing.assert_close(total, base + 0.5 * margin + 0.3 * distill + 0.4 * part_ce + 0.2 * js)
    assert set(parts) >= {"loss_main", "loss_margin", "loss_distill", "loss_part", "loss_consistency"}
    assert float(r.confusion[1].sum()) > 1.0  # the batch was counted
    total.backward()


# ---- config ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, message", [
    ("focal_schedule", "step", "config.loss.focal_schedule: 'step' is not one of constant, linear, cosine"),
    ("focal_gamma_start", -1.0, "config.loss.focal_gamma_start: -1.0 is not a number in [0, 100]"),
    ("focal_ramp", 0.0, "config.loss.focal_ramp: 0.0 is not a number in (0, 1]"),
    ("margin_weight", -0.1, "config.loss.margin_weight: -0.1 is not a finite number >= 0"),
    ("margin", 0.0, "config.loss.margin: 0.0 is not a finite positive number"),
    ("margin_pairs", 0, "config.loss.margin_pairs: 0 is not an integer >= 1"),
    ("margin_decay", 1.0, "config.loss.margin_decay: 1.0 is not a number in [0, 1)"),
    ("distill_weight", float("nan"), "config.loss.distill_weight: nan is not a finite number >= 0"),
    ("distill_temperature", 0, "config.loss.distill_temperature: 0 is not a number in (0, 100]"),
    ("distill_teacher", "", "config.loss.distill_teacher: '' is not ema, init or a checkpoint path"),
    ("distill_ramp", 2.0, "config.loss.distill_ramp: 2.0 is not a number in [0, 1]"),
    ("consistency_weight", "x", "config.loss.consistency_weight: 'x' is not a finite number >= 0"),
    ("part_weight", True, "config.loss.part_weight: True is not a finite number >= 0"),
])
def test_bad_remedy_values_are_one_line_errors(field, value, message):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"loss": {field: value}})
    assert str(e.value) == message


def test_remedy_relations_are_checked():
    with pytest.raises(ConfigError, match="distill_teacher: ema needs an EMA"):
        TrainConfig.from_dict({"loss": {"distill_weight": 0.5}})
    with pytest.raises(ConfigError, match="distill_teacher: init needs init_from"):
        TrainConfig.from_dict({"loss": {"distill_weight": 0.5, "distill_teacher": "init"}})
    with pytest.raises(ConfigError, match="consistency_weight: needs the model's part heads"):
        TrainConfig.from_dict({"loss": {"consistency_weight": 0.5}, "model": {"preset": "tiny", "part_heads": False}})
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig().override(["loss.margin_wieght=0.1"])
    plain = SignModel(ModelConfig.preset("tiny", num_classes=2))
    with pytest.raises(ConfigError, match="the model has no part heads"):
        Remedies(TrainConfig(loss=LossConfig(consistency_weight=0.1)), plain, None, ["a", "b"], 10, 10,
                 torch.device("cpu"))
    ok = TrainConfig().override(["loss.margin_weight=0.1", "loss.focal_schedule=cosine", "ema_decay=0.99",
                                 "loss.distill_weight=0.2"])
    assert ok.loss.margin_weight == 0.1 and ok.loss.focal_schedule == "cosine"


# ---- end to end: all four on, then a stage that takes over from it -----------------------------------------------
ALL_FOUR = ["loss.mixup_prob=0.5", "loss.focal_schedule=cosine", "loss.focal_gamma=2.0", "loss.margin_weight=0.2",
            "loss.distill_weight=0.5", "loss.consistency_weight=0.1"]


def test_runs_with_every_remedy_resume_and_hand_over(small_store, small_args, tmp_path, monkeypatch):
    """A run with all four on records each component; killed mid-epoch and resumed it ends as the uninterrupted
    run did (weights, confusion matrix, components); a second stage starts from its weights and confusion."""
    from slr_fast.cli.main import main
    from slr_fast.train import loop
    from slr_fast.train.checkpoint import load_checkpoint

    run = tmp_path / "stage1"
    args = ("--epochs", "1", "--save-every-steps", "1", *[a for s in ALL_FOUR for a in ("--set", s)])
    assert main(small_args(small_store, run, *args)) == 0
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("loss_main", "loss_aux0", "loss_margin", "loss_distill", "loss_part", "loss_consistency"):
        assert math.isfinite(rec[key]) and rec[key] >= 0, key
    assert rec["focal_gamma"] == 0.0  # the cosine curriculum starts from focal_gamma_start
    assert json.loads((run / "config.json").read_text())["model"]["part_heads"] is True
    st = load_checkpoint(run / "last.pt", fields=("model", "model_config"))
    assert st["model_config"]["part_heads"] and any(k.startswith("part_heads.") for k in st["model"])
    assert float(st["remedies"]["confusion"].sum()) > 0 and "Loss components" in (run / "report.md").read_text()

    # killed after step 2 of 4 and resumed: the same end as the uninterrupted run
    save = loop.Trainer._save

    def killed_after_step_2(self, name):
        save(self, name)
        if self.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "_save", killed_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        main(small_args(small_store, tmp_path / "killed", *args))
    monkeypatch.setattr(loop.Trainer, "_save", save)
    assert main(["train", "--resume", str(tmp_path / "killed"), "--no-progress"]) == 0
    resumed = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert all(torch.equal(st["model"][k], resumed["model"][k]) for k in st["model"])
    assert torch.equal(st["remedies"]["confusion"], resumed["remedies"]["confusion"])
    rec_r = json.loads((tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()[0])
    keys = ("loss_main", "loss_margin", "loss_distill", "loss_part", "loss_consistency", "focal_gamma")
    assert [rec[k] for k in keys] == [rec_r[k] for k in keys]

    # stage 2: from stage 1's weights and confusion, its best weights as the teacher, without the part heads
    taken, take_over = [], Remedies.take_over

    def recording(self, state, path):
        taken.append(state)
        take_over(self, state, path)

    monkeypatch.setattr(Remedies, "take_over", recording)
    run2 = tmp_path / "stage2"
    assert main(small_args(small_store, run2, "--epochs", "1", "--init-from", str(run / "best.pt"), "--set",
                           "loss.margin_weight=0.2", "--set", "loss.distill_weight=0.5", "--set",
                           "loss.distill_teacher=init")) == 0
    st2 = load_checkpoint(run2 / "last.pt", fields=("model",))
    assert not any(k.startswith("part_heads.") for k in st2["model"])
    assert torch.equal(taken[0]["confusion"], load_checkpoint(run / "best.pt")["remedies"]["confusion"])
    rec2 = json.loads((run2 / "metrics.jsonl").read_text().splitlines()[0])
    assert rec2["loss_distill"] >= 0 and "loss_part" not in rec2
