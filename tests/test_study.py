"""The generalization study: its metric functions on hand-made curves, and `study` end to end at a toy size."""

import json
import math

import numpy as np
import pytest

from slr_fast.errors import UserInputError
from slr_fast.study import (
    ORIGINAL,
    RECOMMENDED,
    StudySize,
    assemble,
    epochs_to_target,
    final_gap,
    goals,
    max_gap,
    overfit_epoch,
    run_study,
    scaled_recipe,
    signer_table,
    summarize,
)


def test_gaps():
    h = [{"train_acc": 0.5, "val_acc": 0.4}, {"train_acc": 0.9, "val_acc": 0.5}, {"train_acc": 0.95, "val_acc": 0.7}]
    assert final_gap(h) == pytest.approx(0.25)
    assert max_gap(h) == pytest.approx(0.4)
    assert final_gap([]) is None and max_gap([{"train_acc": 0.5}]) is None


def test_overfit_epoch_finds_the_divergence():
    train = [3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.6, 0.4]
    val = [3.1, 2.7, 2.4, 2.3, 2.35, 2.5, 2.7, 2.9]  # lowest at 3, then rises while train falls
    assert overfit_epoch(train, val) == 3


def test_overfit_epoch_ignores_bumps_plateaus_and_joint_rises():
    train = [3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.6, 0.4]
    bump = [3.1, 2.7, 2.4, 2.5, 2.3, 2.2, 2.1, 2.0]  # one epoch up, then lower again: no onset
    assert overfit_epoch(train, bump) is None
    flat = [3.1, 2.7, 2.4, 2.45, 2.44, 2.46, 2.47, 2.48]  # above the minimum but by < 5 %: a plateau
    assert overfit_epoch(train, flat) is None
    rising_train = [3.0, 2.5, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5]  # both rise (a rate too high): not overfitting
    assert overfit_epoch(rising_train, [3.1, 2.7, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9]) is None
    assert overfit_epoch([1.0, 0.9], [1.0, 1.1]) is None  # too short to tell
    # A later, lasting rise after the bump is found.
    late = [3.1, 2.7, 2.4, 2.5, 2.3, 2.2, 2.4, 2.6, 2.8]
    assert overfit_epoch([3 - 0.3 * i for i in range(9)], late) == 5
    # A three-epoch rise of 8 % the curve then recovers from (a stage's warm-up, say) is no onset...
    long_bump = [3.1, 2.7, 2.4, 2.6, 2.6, 2.6, 2.3, 2.1, 2.0, 2.0, 2.0]
    assert overfit_epoch([3 - 0.2 * i for i in range(11)], long_bump) is None
    # ...while a rise that lasts to the end counts even if it comes part of the way back.
    partial = [3.0, 2.5, 2.0, 2.3, 2.6, 2.9, 2.5, 2.4, 2.3]
    assert overfit_epoch([3 - 0.3 * i for i in range(9)], partial) == 2
    assert overfit_epoch(train, [3.1, 2.7, 2.4, 2.3, float("nan"), 2.5, 2.7, 2.9]) is None  # a broken run
    assert overfit_epoch(train, [3.1, 2.7, 2.4, 2.3, None, 2.5, 2.7, 2.9]) is None  # a missing value
    with pytest.raises(ValueError):
        overfit_epoch([1.0], [1.0, 2.0])


def test_epochs_to_target():
    acc = [0.1, 0.4, 0.6, 0.55, 0.8]
    assert epochs_to_target(acc, 0.6, [1.0, 2.0, 3.0, 4.0, 5.0]) == (3, 6.0)
    assert epochs_to_target(acc, 0.05) == (1, None)
    assert epochs_to_target(acc, 0.9, [1.0] * 5) == (None, None)
    assert epochs_to_target(acc, None) == (None, None)


def _run(name, seed, val, train, test):
    history = [{"epoch": i, "val_acc": v, "train_acc": t, "val_loss": 1 - v, "train_loss": 1 - t,
                "epoch_time_s": 2.0} for i, (v, t) in enumerate(zip(val, train, strict=True))]
    return {"name": name, "seed": seed, "run_dir": f"runs/{name}/seed{seed}", "history": history,
            "test": {"top1": test}}


def test_assemble_means_targets_and_goals():
    results = [
        _run(ORIGINAL, 0, [0.2, 0.5, 0.6, 0.6], [0.3, 0.8, 0.95, 1.0], 0.55),
        _run(ORIGINAL, 1, [0.2, 0.4, 0.5, 0.5], [0.3, 0.7, 0.90, 1.0], 0.45),
        _run(RECOMMENDED, 0, [0.4, 0.7], [0.5, 0.8], 0.70),
        _run(RECOMMENDED, 1, [0.3, 0.6], [0.4, 0.7], 0.65),
    ]
    study = assemble(results, [ORIGINAL, RECOMMENDED])
    o, r = study["recipes"][ORIGINAL], study["recipes"][RECOMMENDED]
    # The target of each seed is the original's best validation top-1 with that seed (0.6 and 0.5).
    assert [run["epochs_to_target"] for run in o["runs"]] == [3, 3]
    assert [run["epochs_to_target"] for run in r["runs"]] == [2, 2]
    assert [run["seconds_to_target"] for run in r["runs"]] == [4.0, 4.0]
    assert o["mean"]["final_gap"] == pytest.approx((0.4 + 0.5) / 2)
    assert r["mean"]["final_gap"] == pytest.approx(0.1)
    assert o["mean"]["max_gap"] == pytest.approx((0.4 + 0.5) / 2)
    assert r["mean"]["test_top1"] == pytest.approx(0.675) and r["std"]["test_top1"] == pytest.approx(
        math.sqrt(2 * 0.025**2))
    g = study["goals"]
    assert g["gap_at_most_half"]["met"] and g["test_higher_beyond_spread"]["met"]
    assert not g["third_of_the_epochs"]["met"]  # 2 epochs against 4 / 3
    # Seed by seed: test +0.15 and +0.20, both better; the gap 0.4 → 0.1 and 0.5 → 0.1, both better (lower).
    pt, pg = study["paired"][RECOMMENDED]["test_top1"], study["paired"][RECOMMENDED]["final_gap"]
    assert pt["mean"] == pytest.approx(0.175) and (pt["better"], pt["tied"], pt["worse"], pt["seeds"]) == (2, 0, 0, 2)
    assert pg["mean"] == pytest.approx(-0.35) and pg["better"] == 2
    # A gap halved while test top-1 fell is no narrowing ("with test top-1 higher").
    low = [{**r, "test": {"top1": 0.40}} if r["name"] == RECOMMENDED else r for r in results]
    g_low = goals(assemble(low, [ORIGINAL, RECOMMENDED])["recipes"])["gap_at_most_half"]
    assert not g_low["met"] and not g_low["test_top1_higher"] and g_low["recommended_final_gap"] == pytest.approx(0.1)
    # Overlapping seeds are not "beyond the spread".
    results[3]["test"]["top1"] = 0.5
    assert not goals(assemble(results, [ORIGINAL, RECOMMENDED])["recipes"])["test_higher_beyond_spread"]["met"]
    results[3]["test"]["top1"] = 0.40
    again = assemble(results, [ORIGINAL, RECOMMENDED])["paired"][RECOMMENDED]["test_top1"]
    assert (again["better"], again["tied"], again["worse"]) == (1, 0, 1)
    results[3]["test"]["top1"] = 0.45
    assert assemble(results, [ORIGINAL, RECOMMENDED])["paired"][RECOMMENDED]["test_top1"]["tied"] == 1
    # An ablation trained with fewer seeds is compared on the seeds it has.
    results.append(_run(ORIGINAL + "+x", 1, [0.5, 0.6], [0.5, 0.7], 0.50))
    px = assemble(results, [ORIGINAL, RECOMMENDED, ORIGINAL + "+x"])["paired"][ORIGINAL + "+x"]["test_top1"]
    assert px["seeds"] == 1 and px["mean"] == pytest.approx(0.05) and px["better"] == 1


def test_signer_table_means_over_seeds():
    def run(per):
        return {"test_per_signer": {s: {"accuracy": a, "support": 5} for s, a in per.items()}}

    study = {"recipes": {ORIGINAL: {"runs": [run({"3": 0.6, "10": 1.0}), run({"3": 0.8, "10": 0.9})]},
                         RECOMMENDED: {"runs": [run({"3": 0.9, "10": 1.0}), {"test_per_signer": None}]}}}
    lines = signer_table(study)
    assert lines[0] == "| recipe | signer 3 | signer 10 |"  # numeric order, not string order
    assert lines[2] == "| original | 0.70 | 0.95 |" and lines[3] == "| recommended | 0.90 | 1.00 |"
    assert signer_table({"recipes": {ORIGINAL: {"runs": [{"test_per_signer": None}]}}}) == []
    # Runs from several data draws: signer 3 of draw 1 and of draw 2 are different people, so they are not averaged.
    study = {"recipes": {ORIGINAL: {"runs": [{**run({"3": 0.6}), "data_seed": 1}, {**run({"3": 0.8}), "data_seed": 2},
                                             {**run({"3": 1.0}), "data_seed": 2}]}}}
    assert signer_table(study)[0] == "| recipe | signer 1/3 | signer 2/3 |"
    assert signer_table(study)[2] == "| original | 0.60 | 0.90 |"


def test_summarize_skips_missing_values():
    s = summarize([{"test_top1": 0.5, "epochs_to_target": None}, {"test_top1": 0.7, "epochs_to_target": 4}])
    assert s["mean"]["test_top1"] == pytest.approx(0.6) and s["n"]["test_top1"] == 2
    assert s["mean"]["epochs_to_target"] == 4 and s["n"]["epochs_to_target"] == 1 and s["std"]["epochs_to_target"] == 0


def test_scaled_recipe_of_a_users_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("base: {batch_size: 8}\nstages:\n  - {name: a, epochs: 50}\n  - {name: b, epochs: 10}\n")
    r = scaled_recipe(f, StudySize(epoch_scale=0.2))
    assert r["name"] == "mine" and [s["epochs"] for s in r["stages"]] == [10, 2] and r["base"]["batch_size"] == 8
    f.write_text("stages:\n  - {epochs: 5, optim: {lr2: 1}}\n")  # one error naming the file and the key
    with pytest.raises(UserInputError, match=r"mine.yaml: stages\[0\] \(stage1\): unknown key 'optim.lr2'"):
        scaled_recipe(f, StudySize())


def test_scaled_recipe():
    size = StudySize(epoch_scale=0.1, frames=24, batch_size=8, model={"dim": 32})
    r = scaled_recipe(ORIGINAL, size, {"loss": {"margin": 2.0}}, {"optim": {"lr": 1e-4}})
    assert [s["epochs"] for s in r["stages"]] == [6, 4, 10]  # 60, 40, 100 in original.yaml
    assert r["base"]["data"] == {"augment": "default", "frames": 24} and r["base"]["batch_size"] == 8
    assert r["base"]["loss"]["margin"] == 2.0 and r["base"]["loss"]["focal_gamma"] == 2.0
    assert "optim" not in r["base"] and [s["optim"]["lr"] for s in r["stages"]] == [2e-3, 1e-4, 1e-4]


def test_study_end_to_end_toy(tmp_path):
    size = StudySize(classes=3, signers=(3, 2, 2), frames=16, epoch_scale=0.01, batch_size=4,
                     model={"dim": 32, "heads": 2, "part_dim": 32, "part_hidden": 32, "pool_queries": 1})
    # One-stage, one-epoch stand-ins for the shipped recipes (which the recipe tests parse).
    recipes = {name: {**scaled_recipe(name, size), "stages": [{"name": "only", "epochs": 1}]}
               for name in (ORIGINAL, RECOMMENDED)}
    kw = dict(seeds=1, ablation_seeds=0, device="cpu", threads=1, log=lambda *a: None, recipes=recipes)
    study = run_study(tmp_path, size, **kw)
    on_disk = json.loads((tmp_path / "study.json").read_text())
    assert list(on_disk["recipes"]) == list(study["recipes"]) == [ORIGINAL, RECOMMENDED]
    for name, rec in on_disk["recipes"].items():
        assert len(rec["runs"]) == 1 and rec["runs"][0]["seed"] == 0
        run = rec["runs"][0]
        for key in ("test_top1", "final_gap", "max_gap", "overfit_epoch", "epochs_to_target"):
            assert key in run and key in rec["mean"], (name, key)
        assert 0 <= run["test_top1"] <= 1 and -1 <= run["final_gap"] <= 1
        assert (tmp_path / "runs" / name / "seed0" / "report.md").exists()
    text = (tmp_path / "study.md").read_text()
    assert "| original | 1 |" in text and "| recommended | 1 |" in text
    assert "Goals (recommended vs original):" in text
    # Each run's test top-1 per test signer: the 2 test signers, their supports adding up to the test split.
    for rec in on_disk["recipes"].values():
        per = rec["runs"][0]["test_per_signer"]
        assert len(per) == 2 and sum(v["support"] for v in per.values()) == 2 * 3
        hits = sum(v["accuracy"] * v["support"] for v in per.values())
        assert hits / 6 == pytest.approx(rec["runs"][0]["test_top1"])
    assert "| recipe | signer " in text
    assert (tmp_path / "curves.png").exists() and (tmp_path / "gap.png").exists()
    # Called again, the finished runs are read back, not trained again.
    mtime = (tmp_path / "runs" / ORIGINAL / "seed0" / "summary.json").stat().st_mtime
    again = run_study(tmp_path, size, **kw)
    assert again["recipes"][ORIGINAL]["runs"] == study["recipes"][ORIGINAL]["runs"]
    assert (tmp_path / "runs" / ORIGINAL / "seed0" / "summary.json").stat().st_mtime == mtime
    assert study["setup"]["runs_read_back"] == 0 and again["setup"]["runs_read_back"] == 2
    assert "read 2 finished run(s) back from earlier calls" in (tmp_path / "study.md").read_text()


def test_study_cli_refuses_bad_values_before_any_data(tmp_path, capsys):
    from slr_fast.cli.main import main

    assert main(["study", "--out", str(tmp_path / "s"), "--epoch-scale", "0"]) == 2
    assert "--epoch-scale 0.0: not a number in (0, 100]" in capsys.readouterr().err
    assert main(["study", "--out", str(tmp_path / "s"), "--device", "tpu"]) == 2
    assert "--device 'tpu': not one of" in capsys.readouterr().err
    bad = tmp_path / "mine.yaml"
    bad.write_text("stages:\n  - {epochs: 5, loss: {focal_gama: 1}}\n")
    assert main(["study", "--out", str(tmp_path / "s"), "--recipe", str(bad)]) == 2
    assert "mine.yaml: stages[0] (stage1): unknown key 'loss.focal_gama'" in capsys.readouterr().err
    assert main(["study", "--out", str(tmp_path / "s"), "--recipe", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: file not found" in capsys.readouterr().err
    assert main(["study", "--out", str(tmp_path / "s"), "--recipe", "recommended"]) == 2
    assert "--recipe recommended: a recipe named 'recommended' is already in the study" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_study_size_data_overrides():
    cfg = StudySize(classes=4, signers=(3, 2, 6), synth={"family_size": 4, "jitter": 0.05}).synth_config()
    assert (cfg.classes, cfg.per_class, cfg.signers, cfg.family_size, cfg.jitter) == (4, 11, 11, 4, 0.05)
    from slr_fast.synth import make_signers

    splits = [s.split for s in make_signers(cfg)]
    assert [splits.count(k) for k in range(3)] == [3, 2, 6]  # whole signers per split, as asked
    with pytest.raises(UserInputError, match=r"StudySize.synth: \['classes'\] are set by the study size"):
        StudySize(synth={"classes": 3})
    with pytest.raises(UserInputError, match=r"unknown SynthConfig field\(s\) \['famliy_size'\]"):
        StudySize(synth={"famliy_size": 3})
    with pytest.raises(UserInputError, match="family_size must be 1..4, got 5"):
        StudySize(synth={"family_size": 5})
    with pytest.raises(UserInputError, match=r"StudySize.signers: three positive counts"):
        StudySize(signers=(15, 0, 5))


def test_study_cli_refuses_bad_data_options(tmp_path, capsys):
    from slr_fast.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["study", "--out", str(tmp_path / "s"), "--signers", "15,5"])
    assert e.value.code == 2 and "'15,5' is not three positive signer counts" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["study", "--out", str(tmp_path / "s"), "--family-size", "5"])
    assert e.value.code == 2 and "5 is not an integer in [1, 4]" in capsys.readouterr().err
    # Too few training sequences for the recipes' batches: refused before any data is made, not 2 failed runs.
    assert main(["study", "--out", str(tmp_path / "s"), "--classes", "2", "--signers", "2,1,3"]) == 2
    assert ("original, stage initial: batch size 32 is more than the study's 4 training sequences (2 classes × 2 "
            "training signers)") in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_study_store_per_draw_and_after_a_kill(tmp_path):
    from slr_fast.store import KeypointStore
    from slr_fast.study import study_store

    size = StudySize(classes=2, signers=(2, 1, 1), frames=16, vary_data=True)
    assert [size.data_seed_of(k) for k in range(3)] == [1, 2, 3]
    a, b = study_store(tmp_path, size, 1), study_store(tmp_path, size, 2)
    assert (a.name, b.name) == ("data-seed1.zarr", "data-seed2.zarr")
    xa, xb = KeypointStore.open(str(a)), KeypointStore.open(str(b))
    assert len(xa) == len(xb) == 8 and not all(
        np.array_equal(np.nan_to_num(xa[i][0]), np.nan_to_num(xb[i][0])) for i in range(8))  # other signers
    # A call killed while making the data leaves its .partial marker: the next call makes the data again.
    (tmp_path / "data-seed2.partial").touch()
    (tmp_path / "data-seed2.json").unlink()
    assert study_store(tmp_path, size, 2) == b and not (tmp_path / "data-seed2.partial").exists()
    assert len(KeypointStore.open(str(b))) == 8
    # Data without its marker (not the study's) is refused, not overwritten.
    (tmp_path / "data-seed1.json").unlink()
    with pytest.raises(UserInputError, match="data-seed1.zarr: holds data of another study size"):
        study_store(tmp_path, size, 1)
    assert StudySize().data_seed_of(5) == 6 and StudySize(vary_data=False).data_seed_of(5) == 1


def test_study_varying_the_data_per_seed(tmp_path):
    size = StudySize(classes=3, signers=(3, 2, 2), frames=16, epoch_scale=0.01, batch_size=4, vary_data=True,
                     model={"dim": 32, "heads": 2, "part_dim": 32, "part_hidden": 32, "pool_queries": 1})
    recipes = {name: {**scaled_recipe(name, size), "stages": [{"name": "only", "epochs": 1}]}
               for name in (ORIGINAL, RECOMMENDED)}
    # A user's own recipe beside the original (`study --recipe mine.yaml`), on the same seeds and draws; from seed
    # 3 on: draws 4 and 5, which a call with the first seeds (draws 1, 2, 3) never saw.
    mine = {**recipes[ORIGINAL], "base": {**recipes[ORIGINAL]["base"], "loss": {"label_smoothing": 0.2}}}
    kw = dict(seeds=2, ablation_seeds=0, device="cpu", threads=1, log=lambda *a: None,
              recipes={ORIGINAL: recipes[ORIGINAL]}, first_seed=3)
    study = run_study(tmp_path, size, **kw, extra={"mine": mine})
    assert list(study["recipes"]) == [ORIGINAL, "mine"] and set(study["paired"]) == {"mine"}
    assert study["goals"] == {} and set(study["goals_of"]) == {"mine"}
    assert set(study["goals_of"]["mine"]["gap_at_most_half"]) == {"met", "mine_final_gap", "original_final_gap",
                                                                   "test_top1_higher"}
    for rec in study["recipes"].values():  # each seed on its own draw, both recipes paired on it
        assert [(r["seed"], r["data_seed"]) for r in rec["runs"]] == [(3, 4), (4, 5)]
    assert sorted(p.name for p in tmp_path.glob("data-seed*.zarr")) == ["data-seed4.zarr", "data-seed5.zarr"]
    assert sorted(p.name for p in (tmp_path / "runs" / ORIGINAL).iterdir()) == ["seed3", "seed4"]
    assert not (tmp_path / "data.zarr").exists()
    text = (tmp_path / "study.md").read_text()
    assert "| recipe | signer 4/" in text and "a new draw of signers per seed: data seed 1 + seed" in text
    assert "2 seeds for the recipes (seeds 3–4)" in text and study["setup"]["first_seed"] == 3
    assert "Goals (mine vs original):" in text
    with pytest.raises(UserInputError, match="first seed -1: not a whole number"):
        run_study(tmp_path, size, recipes=recipes, first_seed=-1)
    with pytest.raises(UserInputError, match="recipe 'original': a recipe of that name is already in the study"):
        run_study(tmp_path, size, **{**kw, "extra": {ORIGINAL: mine}})
