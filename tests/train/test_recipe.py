"""Staged recipes: parsing and one-line errors, the hand-off between stages, resume in the middle of a stage."""

import json

import pytest
import torch

from slr_fast.cli.main import main
from slr_fast.train.checkpoint import load_checkpoint
from slr_fast.train.recipe import RecipeError, load_recipe, resume_recipe, run_recipe, shipped_recipes


def _write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse_merges_base_stage_and_overrides(tmp_path):
    path = _write(tmp_path, """
name: two
base:
  batch_size: 16
  loss: {focal_gamma: 2.0}
  optim.lr: 1.0e-3
  model: {drop_path: 0.1}
stages:
  - {name: first, epochs: 3}
  - name: second
    epochs: 2
    optim: {lr: 5.0e-4, group_lrs: {"^head": 2.0}}
""")
    r = load_recipe(path, {"seed": 7, "optim.weight_decay": 0.01}, ["loss.label_smoothing=0.2"])
    assert r.name == "two" and [s.name for s in r.stages] == ["first", "second"]
    assert [s.init_from for s in r.stages] == ["none", "previous"]
    a, b = (s.config for s in r.stages)
    assert (a.epochs, b.epochs, a.batch_size, b.batch_size) == (3, 2, 16, 16)
    assert (a.optim.lr, b.optim.lr, b.optim.group_lrs) == (1e-3, 5e-4, {"^head": 2.0})
    assert a.model == {"preset": "tiny", "drop_path": 0.1} and a.loss.focal_gamma == 2.0
    assert a.seed == b.seed == 7 and b.optim.weight_decay == 0.01 and b.loss.label_smoothing == 0.2
    assert a.loss.mixup_prob == 0.0  # untouched fields keep TrainConfig's defaults
    assert (a.init_from, b.init_from) == ("", "previous")  # the previous stage's checkpoint, once it exists


def test_previous_stage_counts_as_init_from_for_checks():
    # A distillation teacher "init" needs an init_from: a later stage has one (the previous stage's), the first not.
    later = {"loss": {"distill_weight": 1.0, "distill_teacher": "init"}}
    r = load_recipe({"stages": [{}, later]})
    assert r.stages[1].config.loss.distill_teacher == "init"
    with pytest.raises(RecipeError, match=r"stages\[0\] \(stage1\): config.loss.distill_teacher"):
        load_recipe({"stages": [later]})


def test_shipped_recipes_parse():
    assert {"original", "recommended"} <= set(shipped_recipes())
    for name in shipped_recipes():
        r = load_recipe(name)
        assert len(r.stages) >= 2 and r.stages[0].init_from == "none"
    original = load_recipe("original")
    assert len(original.stages) == 3
    c = original.stages[0].config
    assert (c.batch_size, c.schedule.name, c.loss.mixup_prob > 0, c.loss.focal_gamma > 0,
            c.loss.label_smoothing > 0, c.data.augment) == (32, "cyclic", True, True, True, "default")


@pytest.mark.parametrize("text, says", [
    ("stages:\n  - {epoch: 3}\n", "stages[0] (stage1): unknown key 'epoch'"),
    ("stages:\n  - {optim: {lrr: 1}}\n", "stages[0] (stage1): unknown key 'optim.lrr'"),
    ("stages:\n  - {optim: {lr: -1}}\n", "stages[0] (stage1): config.optim.lr: -1 is not a finite positive number"),
    ("stages:\n  - {}\n  - {init_from: missing.pt}\n", "stages[1] (stage2): init_from: missing.pt:"),
    ("stages:\n  - {init_from: previous}\n", "stages[0] (stage1): init_from: the first stage has no previous stage"),
    ("stages: []\n", "stages: expected a non-empty list of stages, got an empty list"),
    ("stage:\n  - {}\n", "unknown key 'stage'; valid: name, base, stages"),
    ("base: {run_dir: x}\nstages:\n  - {}\n", "base: run_dir: set by the recipe runner"),
    ("stages:\n  - {name: a}\n  - {name: a}\n", "stages[1]: name: 'a' is used by an earlier stage"),
    ("stages:\n  - {model: {dimm: 3}}\n", "stages[0] (stage1): config.model: unknown ModelConfig fields ['dimm']"),
    ("stages:\n  - [1, 2]\n", "stages[0]: expected a mapping"),
    ("stages: [\n", "not valid YAML"),
    ("- 1\n", "a recipe is a mapping"),
])
def test_bad_recipe_is_one_line_naming_file_and_key(tmp_path, capsys, text, says):
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value) and "\n" not in str(e.value)
    assert main(["train", "--recipe", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert says in err and str(path) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_recipe_refuses_flags_it_cannot_apply(tmp_path, capsys):
    path = _write(tmp_path, "stages:\n  - {}\n")
    assert main(["train", "--recipe", str(path), "--init-from", "x.pt"]) == 2
    assert "--init-from does not combine with a recipe" in capsys.readouterr().err
    assert main(["train", "--recipe", "no_such_recipe.yaml"]) == 2
    assert "no_such_recipe.yaml: file not found" in capsys.readouterr().err


# The small model of conftest.py's runs.
SMALL_MODEL = ["model.dim=32", "model.heads=2", "model.part_dim=32", "model.part_hidden=32", "model.pool_queries=1"]


class _Killed(Exception):
    pass


def _recipe(store):
    return load_recipe({"base": {"batch_size": 8, "data": {"frames": 16, "store": store}, "threads": 1,
                                 "save_every_steps": 1, "ema_decay": 0.9, "progress": False,
                                 "loss": {"mixup_prob": 0.5}},
                        "stages": [{"name": "a", "epochs": 2}, {"name": "b", "epochs": 2, "optim": {"lr": 5e-4}}]},
                       set_args=SMALL_MODEL)


def test_stage_handoff_and_resume_mid_stage_two(small_store, tmp_path, monkeypatch):
    full = run_recipe(_recipe(small_store), tmp_path / "full")
    a, b = tmp_path / "full" / "1-a", tmp_path / "full" / "2-b"
    # Stage b starts from stage a's best checkpoint.
    assert json.loads((b / "config.json").read_text())["init_from"] == str((a / "best.pt").resolve())
    assert json.loads((a / "config.json").read_text())["init_from"] == ""
    assert [(h["epoch"], h["stage"], h["stage_epoch"]) for h in full.history] == [(0, 0, 0), (1, 0, 1), (2, 1, 0),
                                                                                 (3, 1, 1)]
    for name in ("recipe.json", "report.md", "summary.json", "loss.png", "accuracy.png", "lr.png"):
        assert (tmp_path / "full" / name).exists(), name
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["a", "b"] and summary["test"] == full.test

    # The same recipe killed in the middle of stage b's second epoch, then resumed.
    from slr_fast.train import loop

    save = loop.Trainer._save

    def save_then_die(self, name):
        save(self, name)
        if self.run_dir.name == "2-b" and name == "last.pt" and self.step == self.steps_per_epoch + 1:
            raise _Killed

    monkeypatch.setattr(loop.Trainer, "_save", save_then_die)
    with pytest.raises(_Killed):
        run_recipe(_recipe(small_store), tmp_path / "killed")
    monkeypatch.setattr(loop.Trainer, "_save", save)
    killed = tmp_path / "killed"
    assert (killed / "1-a" / "summary.json").exists() and not (killed / "2-b" / "summary.json").exists()
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    for stage in ("1-a", "2-b"):
        wa = load_checkpoint(tmp_path / "full" / stage / "last.pt")["model"]
        wb = load_checkpoint(killed / stage / "last.pt")["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), stage
    resumed = resume_recipe(killed)  # everything finished: read back, nothing trained again
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    assert [resumed.test[k] for k in ("top1", "top5", "loss")] == [full.test[k] for k in ("top1", "top5", "loss")]
    assert (killed / "2-b" / "lr.csv").read_text() == (b / "lr.csv").read_text()
