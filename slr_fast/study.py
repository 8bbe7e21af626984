"""The generalization study: the original recipe against the recommended one, and each remedy alone, on
Slovo-shaped synthetic data — does a recipe narrow the train − test gap by lifting test accuracy?

Data: synthetic signers, signer-independent, every class signed once by each of 25 signers: 15 train, 5 validation
and 5 test signers (Slovo's 15 train / 5 test per class, plus 5 unseen signers whose curves stand for the test
curves the original work plotted, so the held-out test split is read once per run, with the weights the last
stage hands on). Each seed gets its own draw of signers (and both recipes the same draw for the same seed), so
the seeds' spread includes who happens to be in which split. The scaled default (StudySize.default) fits 2 CPU
cores; `full` is Slovo's 1,001 classes.

Per run (one recipe, one seed), from the curves joined across stages (epochs counted across stages):
- `test_top1`: top-1 on the test signers with the last stage's best.pt;
- `final_gap`, `max_gap`: clean-train − validation top-1 at the last epoch and at its worst (both splits measured
  the same way: un-augmented, no MixUp, eval mode; validation signers are unseen like the test ones);
- `overfit_epoch`: slr_fast.train.report.overfit_epoch (as the run reports mark it); None when the curves
  never diverge;
- `epochs_to_target` / `seconds_to_target`: epochs (and training seconds) until the validation top-1 first reaches
  the original recipe's best validation top-1 with the same seed (None if never).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slr_fast.errors import UserInputError
from slr_fast.train.report import overfit_epoch

ORIGINAL, RECOMMENDED = "original", "recommended"
METRICS = ("test_top1", "final_gap", "max_gap", "overfit_epoch", "epochs_to_target", "seconds_to_target")

# Each remedy alone on top of the original recipe: (overrides for every stage, overrides for the stages after the
# first). Switch names: slr_fast/train/config.py (LossConfig) and slr_fast/model/config.py (global_pattern).
ABLATIONS: dict[str, tuple[dict, dict]] = {
    # Not a new remedy: today's strongest augmentation (mirror, rotations, crops, part distortions, dropout), to
    # weigh the remedies against.
    "+augment_full": ({"data": {"augment": "full"}}, {}),
    # The teacher is the previous stage's best checkpoint, so the first stage trains as in the original.
    "+self_distill": ({}, {"loss": {"distill_weight": 1.0, "distill_temperature": 2.0, "distill_teacher": "init"}}),
    "+consistency": ({"loss": {"consistency_weight": 0.1, "part_weight": 0.3}}, {}),
    "+curriculum_focal": ({"loss": {"focal_schedule": "linear", "focal_gamma_start": 0.0, "focal_ramp": 0.5}}, {}),
    "+pair_margin": ({"loss": {"margin_weight": 0.1, "margin": 1.0, "margin_pairs": 3}}, {}),
    "+dilated_global": ({"model": {"global_pattern": "dilated:2"}}, {}),
}


@dataclass
class StudySize:
    """The data and the scale of a study."""

    classes: int = 20
    signers: tuple[int, int, int] = (15, 5, 5)  # train / validation / test signers; each signs every class once
    frames: int = 32
    epoch_scale: float = 0.4  # factor on every stage's epochs of the shipped recipes (rounded, at least 1)
    model: dict = field(default_factory=dict)  # ModelConfig overrides on the recipes' preset
    train_eval_samples: int = 1024
    batch_size: int = 0  # 0: the recipes' own
    data_seed: int = 1
    # True: seed k gets its own draw of signers (data_seed + k), so the seeds' spread includes which people happen
    # to be in each split; the recipes stay paired (the same seed, the same draw). False: every seed trains and is
    # tested on one draw (data_seed), so the spread is the training's alone — a recipe chosen on one draw looked
    # better there than on the next draws (benchmarks/results/generalization.md).
    vary_data: bool = True
    # SynthConfig overrides (e.g. {"family_size": 4}: harder data); the size sets classes, signers and the split.
    synth: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.signers) != 3 or any(not isinstance(n, int) or n < 1 for n in self.signers):
            raise UserInputError(f"StudySize.signers: three positive counts (train, validation, test signers), got "
                                 f"{self.signers!r}")
        owned = {"classes", "per_class", "signers", "split", "seed"} & set(self.synth)
        if owned:
            raise UserInputError(f"StudySize.synth: {sorted(owned)} are set by the study size (classes, signers, "
                                 "data_seed), not by synth overrides")
        self.synth_config()  # unknown fields and bad values fail here, before any data is made

    def data_seed_of(self, seed: int) -> int:
        """The data draw a training seed trains and is tested on."""
        return self.data_seed + seed if self.vary_data else self.data_seed

    def synth_config(self, data_seed: int | None = None):
        """The SynthConfig of the study's data (of draw `data_seed`, default the size's): every signer signs every
        class once."""
        from slr_fast.synth import SynthConfig

        n = sum(self.signers)  # from_dict refuses unknown fields in one line
        return SynthConfig.from_dict({**self.synth, "classes": self.classes, "per_class": n, "signers": n,
                                      "split": [float(s) for s in self.signers],
                                      "seed": self.data_seed if data_seed is None else data_seed})

    @classmethod
    def default(cls) -> StudySize:
        """The scaled-down default: 20 classes (300 / 100 / 100 sequences), the recipes at two fifths of their
        epochs (the original: 24 + 16 + 40 = 80). Fewer epochs stop the runs before they converge (at a fifth the
        validation accuracy of both recipes is still rising at the end, so the study measured speed of learning,
        not generalization); at two fifths the original fits its training signers (clean-train top-1 → 1.00) and
        its validation accuracy has levelled off, as in the original work's fine-tuning stages."""
        return cls()

    @classmethod
    def full(cls) -> StudySize:
        """Slovo's shape: 1,001 classes, 15,015 train / 5,005 validation / 5,005 test sequences, the recipes'
        own epochs (a GPU)."""
        return cls(classes=1001, frames=64, epoch_scale=1.0, train_eval_samples=5005)


@dataclass
class RunMetrics:
    recipe: str
    seed: int
    run_dir: str
    test_top1: float | None
    final_gap: float | None
    max_gap: float | None
    overfit_epoch: int | None
    epochs_to_target: int | None
    seconds_to_target: float | None
    epochs: int
    best_val_acc: float | None
    train_seconds: float
    test_per_signer: dict | None = None  # signer id → {"accuracy", "support"} on the test split
    data_seed: int | None = None  # the data draw the run trained and was tested on


# ---- metric functions (pure; tested on hand-made curves) -----------------------------------------------------------
def gaps(history: list[dict]) -> list[float]:
    """Clean-train − validation top-1 of every epoch that has both."""
    return [h["train_acc"] - h["val_acc"] for h in history if h.get("train_acc") is not None
            and h.get("val_acc") is not None]


def final_gap(history: list[dict]) -> float | None:
    g = gaps(history[-1:]) if history else []
    return g[0] if g else None


def max_gap(history: list[dict]) -> float | None:
    g = gaps(history)
    return max(g) if g else None


def epochs_to_target(val_acc: list[float], target: float | None, epoch_seconds: list[float] | None = None
                     ) -> tuple[int | None, float | None]:
    """(epochs, training seconds) until the validation top-1 first reaches `target`; (None, None) if never."""
    if target is None:
        return None, None
    for i, acc in enumerate(val_acc):
        if acc >= target - 1e-12:
            return i + 1, (sum(epoch_seconds[:i + 1]) if epoch_seconds is not None else None)
    return None, None


def summarize(runs: list[dict]) -> dict:
    """Mean, standard deviation (n − 1; 0 for one run), min and max of every metric over the runs that have it, and
    how many runs have it (`n`)."""
    out: dict = {"mean": {}, "std": {}, "min": {}, "max": {}, "n": {}}
    for key in METRICS:
        vals = [r[key] for r in runs if r.get(key) is not None]
        out["n"][key] = len(vals)
        out["mean"][key] = statistics.fmean(vals) if vals else None
        out["std"][key] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
        out["min"][key] = min(vals) if vals else None
        out["max"][key] = max(vals) if vals else None
    return out


def run_metrics(name: str, seed: int, run_dir: Path, history: list[dict], test: dict | None,
                target: float | None) -> dict:
    """The study's numbers for one finished recipe run."""
    val_acc = [h.get("val_acc", math.nan) for h in history]
    secs = [h.get("epoch_time_s", 0.0) for h in history]
    tl = [h.get("train_loss") for h in history]
    vl = [h.get("val_loss") for h in history]
    onset = overfit_epoch(tl, vl)  # None when a loss is missing
    e_t, s_t = epochs_to_target(val_acc, target, secs)
    return asdict(RunMetrics(
        recipe=name, seed=seed, run_dir=str(run_dir), test_top1=(test or {}).get("top1"),
        final_gap=final_gap(history), max_gap=max_gap(history), overfit_epoch=onset, epochs_to_target=e_t,
        seconds_to_target=s_t, epochs=len(history), best_val_acc=max(val_acc) if val_acc else None,
        train_seconds=sum(secs), test_per_signer=(test or {}).get("per_signer")))


# ---- recipes ---------------------------------------------------------------------------------------------------------
def scaled_recipe(name: str | Path, size: StudySize, extra_all: dict | None = None,
                  extra_later: dict | None = None) -> dict:
    """A recipe (a shipped recipe's name or a recipe file) as a mapping, its stages' epochs scaled by
    `size.epoch_scale`, the size's model overrides and the `extra_*` overrides merged into its base / its stages
    after the first."""
    from slr_fast.train.recipe import load_recipe, read_recipe_file, recipe_path

    data = read_recipe_file(name)
    # Every problem of the file is one error naming it and the key, before anything is scaled (the mapping already
    # read, not the file again).
    load_recipe(data, where=str(recipe_path(name)))
    base = _deep_merge(data.get("base") or {}, {"model": dict(size.model), "data": {"frames": size.frames},
                                                "train_eval_samples": size.train_eval_samples})
    if size.batch_size:
        base["batch_size"] = size.batch_size
    stages = [{**st, "epochs": max(1, round(st.get("epochs", 30) * size.epoch_scale))} for st in data["stages"]]
    return _with({"name": data.get("name", recipe_name(name)), "base": base, "stages": stages}, extra_all or {},
                 extra_later or {})


def recipe_name(source: str | Path) -> str:
    """The name a recipe goes by in a study: a shipped recipe's name, or its file's name without the suffix."""
    return Path(source).stem


def _with(recipe: dict, every: dict, later: dict) -> dict:
    """`recipe` with `every` merged into its base and `later` into its stages after the first."""
    return {**recipe, "base": _deep_merge(recipe.get("base") or {}, every),
            "stages": [_deep_merge(st, later) if i and later else st for i, st in enumerate(recipe["stages"])]}


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _data_name(size: StudySize, data_seed: int) -> str:
    return f"data-seed{data_seed}" if size.vary_data else "data"


def study_store(out: Path, size: StudySize, data_seed: int | None = None, workers: int = 1) -> Path:
    """The study's synthetic store of draw `data_seed` (default the size's): `data.zarr`, or `data-seed<N>.zarr` when
    the size varies the data per seed. Made once; a store of another size is refused, not mixed; one left
    unfinished by a killed call (its `.partial` marker still there) is made again."""
    from slr_fast.synth import synth_store

    name = _data_name(size, size.data_seed if data_seed is None else data_seed)
    path, marker, partial = out / f"{name}.zarr", out / f"{name}.json", out / f"{name}.partial"
    cfg = size.synth_config(data_seed)
    if path.exists() and not partial.exists():
        if not marker.exists() or json.loads(marker.read_text()) != cfg.to_dict():
            raise UserInputError(f"{path}: holds data of another study size; use another --out or remove it")
        return path
    partial.touch()
    synth_store(path, cfg, progress=False, workers=workers, overwrite=True)
    marker.write_text(json.dumps(cfg.to_dict()))
    partial.unlink()
    return path


def _one_run(job: dict) -> dict:
    """Run (or finish, or read back) one recipe run; in a worker process."""
    import torch

    from slr_fast.train.recipe import (
        RECIPE_FILE,
        joined_history,
        load_recipe,
        resume_recipe,
        run_recipe,
        stage_dirs,
    )

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    run_dir = Path(job["run_dir"])
    overrides = {"seed": job["seed"], "data.store": job["store"], "device": job["device"], "progress": False,
                 "threads": job["threads"]}
    recipe = load_recipe(job["recipe"], overrides, where=job["name"])
    t0 = time.perf_counter()
    if (run_dir / RECIPE_FILE).exists():
        def comparable(cfgs):  # what the run trains, not where or how fast
            return [{k: v for k, v in c.items() if k not in ("threads", "device", "progress")} for c in cfgs]

        saved = [st["config"] for st in json.loads((run_dir / RECIPE_FILE).read_text())["stages"]]
        wanted = json.loads(json.dumps([{**st.config.to_dict(), "data": {**st.config.to_dict()["data"],
                                                                         "store": job["store"]}}
                                        for st in recipe.stages]))
        if comparable(saved) != comparable(wanted):
            raise UserInputError(f"{run_dir}: trained with another recipe than {job['name']} seed {job['seed']} is "
                                 "now; remove it (or use another --out) to train it again")
    read_back = (run_dir / "summary.json").exists()  # finished by an earlier call
    if not read_back and (run_dir / RECIPE_FILE).exists():
        resume_recipe(run_dir, progress=False)
    elif not read_back:
        run_recipe(recipe, run_dir, progress=False)
    history, _ = joined_history(stage_dirs(run_dir, recipe))
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"name": job["name"], "seed": job["seed"], "run_dir": str(run_dir), "history": history,
            "test": summary.get("test"), "wall_s": time.perf_counter() - t0, "recipe_wall_s": _recipe_seconds(run_dir),
            "read_back": read_back, "data_seed": job.get("data_seed")}


def _recipe_seconds(run_dir: Path) -> float:
    """Seconds from the recipe's start (recipe.json written) to its end (summary.json written): the wall time of
    a run, also when read back by a later call."""
    return (run_dir / "summary.json").stat().st_mtime - (run_dir / "recipe.json").stat().st_mtime


def run_study(out: str | Path, size: StudySize | None = None, seeds: int = 3, ablation_seeds: int = 1,
              ablations: dict[str, tuple[dict, dict]] | None = None, device: str = "cpu", jobs: int = 1,
              threads: int = 0, log=print, recipes: dict[str, dict] | None = None, first_seed: int = 0,
              extra: dict[str, dict] | None = None) -> dict:
    """Run the study into `out` (resumable: finished runs are read back) and write study.json, study.md and the
    plots; returns the study.json mapping. `recipes` replaces the shipped original and recommended recipes (name →
    recipe mapping, as `scaled_recipe` makes them; the ablations then go on top of its original); `extra` adds
    recipes to them, trained with the same seeds and judged by the same goals. Seeds run from `first_seed` (seed k
    trains on data draw data_seed + k): a later first seed gives draws no earlier call has seen, e.g. to check a
    recipe on draws it was not chosen on."""
    size = size or StudySize.default()
    if not isinstance(first_seed, int) or first_seed < 0:
        raise UserInputError(f"first seed {first_seed!r}: not a whole number ≥ 0")
    if jobs > 1 and not threads:
        threads = 1  # runs side by side: a torch thread each
    ablations = {} if not ablation_seeds else ABLATIONS if ablations is None else ablations
    out = Path(out)
    t0 = time.perf_counter()
    seeds_used = range(first_seed, first_seed + max(seeds, ablation_seeds))
    stores = {seed: str((out / f"{_data_name(size, size.data_seed_of(seed))}.zarr").resolve()) for seed in seeds_used}
    recipes = dict(recipes or {name: scaled_recipe(name, size) for name in (ORIGINAL, RECOMMENDED)})
    for name, recipe in (extra or {}).items():
        if name in recipes or name in {ORIGINAL + a for a in ablations}:
            raise UserInputError(f"recipe {name!r}: a recipe of that name is already in the study")
        recipes[name] = recipe
    mine = range(first_seed, first_seed + seeds)
    plan: list[tuple[str, dict, list[int]]] = [(name, recipe, list(mine)) for name, recipe in recipes.items()]
    for name, (every, later) in ablations.items():
        plan.append((ORIGINAL + name, _with(recipes[ORIGINAL], every, later),
                     list(range(first_seed, first_seed + ablation_seeds))))
    jobs_list = [{"name": name, "recipe": recipe, "seed": seed, "store": stores[seed],
                  "data_seed": size.data_seed_of(seed), "device": device,
                  "threads": threads, "run_dir": str(out / "runs" / name / f"seed{seed}")}
                 for name, recipe, seed_list in plan for seed in seed_list]
    from slr_fast.train.recipe import load_recipe

    n_train = size.classes * size.signers[0]
    for j in jobs_list:  # every recipe is checked before any data is made or a run starts
        for st in load_recipe(j["recipe"], {"data.store": j["store"]}, where=j["name"]).stages:
            if st.config.batch_size > n_train:
                raise UserInputError(
                    f"{j['name']}, stage {st.name}: batch size {st.config.batch_size} is more than the study's "
                    f"{n_train} training sequences ({size.classes} classes × {size.signers[0]} training signers); "
                    "use more classes or training signers")
    out.mkdir(parents=True, exist_ok=True)
    sequences = size.classes * sum(size.signers)
    workers = min(os.cpu_count() or 1, 8) if sequences >= 5000 else 1  # processes pay off for large draws only
    for data_seed in sorted({size.data_seed_of(seed) for seed in seeds_used}):
        study_store(out, size, data_seed, workers=workers)
    log(f"study: {len(jobs_list)} runs ({', '.join(f'{n} ×{len(s)}' for n, _, s in plan)}) on {size.classes} "
        f"classes into {out}")
    results: list[dict] = []
    failed: list[dict] = []

    def collect(job, get):
        try:
            r = get()
        except Exception as e:  # one failed run is reported in the study, not a lost study
            failed.append({"recipe": job["name"], "seed": job["seed"], "error": f"{type(e).__name__}: {e}"[:500]})
            log(f"  {job['name']} seed {job['seed']}: FAILED ({failed[-1]['error']})")
            return
        log(f"  {r['name']} seed {r['seed']}: test top-1 {(r['test'] or {}).get('top1', math.nan):.3f} "
            f"({r['wall_s']:.0f} s)")
        results.append(r)

    if jobs > 1:
        import multiprocessing

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(j, pool.submit(_one_run, j)) for j in jobs_list]
            for j, fut in futures:
                collect(j, fut.result)
    else:
        for j in jobs_list:
            collect(j, lambda j=j: _one_run(j))
    study = assemble(results, [name for name, _, _ in plan], list(recipes))
    study["failed"] = failed
    study["setup"] = {"size": asdict(size), "seeds": seeds, "first_seed": first_seed,
                      "ablation_seeds": ablation_seeds, "device": device,
                      "jobs": jobs, "ablations": {k: {"every_stage": a, "later_stages": b}
                                                  for k, (a, b) in ablations.items()},
                      "recipes": {name: recipe for name, recipe, _ in plan},
                      "wall_s": time.perf_counter() - t0, "cpu_count": os.cpu_count(),
                      "runs_wall_s": sum(r.get("recipe_wall_s") or 0.0 for r in results),
                      "runs_read_back": sum(bool(r.get("read_back")) for r in results)}
    write_study(study, results, out)
    return study


def assemble(results: list[dict], order: list[str], compared: list[str] | None = None) -> dict:
    """study.json's recipes: per recipe its runs' metrics and their summary (the target of epochs_to_target is the
    original recipe's best validation top-1 with the same seed); the goals of the recommended recipe (`goals`) and
    of the other recipes in `compared` (`goals_of`, recipes a user added to the study)."""
    targets = {r["seed"]: max(h["val_acc"] for h in r["history"]) for r in results
               if r["name"] == ORIGINAL and r["history"] and "val_acc" in r["history"][0]}
    recipes: dict = {}
    for name in order:
        runs = [run_metrics(name, r["seed"], Path(r["run_dir"]), r["history"], r["test"], targets.get(r["seed"]))
                for r in results if r["name"] == name]
        for run, r in zip(runs, [r for r in results if r["name"] == name], strict=True):
            run["wall_s"] = r.get("recipe_wall_s")
            run["data_seed"] = r.get("data_seed")
        recipes[name] = {"runs": runs, **summarize(runs)}
    out = {"recipes": recipes, "goals": goals(recipes), "paired": paired(recipes)}
    others = [n for n in compared or [] if n not in (ORIGINAL, RECOMMENDED)]
    if others:
        out["goals_of"] = {n: goals(recipes, n) for n in others}
    return out


def paired(recipes: dict) -> dict:
    """Every recipe against the original seed by seed (the same seed: the same data draw and initial weights): per
    recipe and metric the mean and standard deviation of the differences over the seeds both have, and on how many
    seeds it was better, tied, worse. Finer than comparing spreads, where a draw that is easy for both lifts both;
    and fair to recipes trained with fewer seeds than the original (the ablations)."""
    o = recipes.get(ORIGINAL)
    if not o:
        return {}
    out: dict = {}
    for name, rec in recipes.items():
        if name == ORIGINAL:
            continue
        for key, higher_is_better in (("test_top1", True), ("final_gap", False)):
            a = {run["seed"]: run[key] for run in o["runs"] if run.get(key) is not None}
            b = {run["seed"]: run[key] for run in rec["runs"] if run.get(key) is not None}
            diffs = [b[k] - a[k] for k in sorted(a.keys() & b.keys())]
            if not diffs:
                continue
            tol = 1e-9
            better = sum((d > tol) if higher_is_better else (d < -tol) for d in diffs)
            tied = sum(abs(d) <= tol for d in diffs)
            out.setdefault(name, {})[key] = {
                "mean": statistics.fmean(diffs), "std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
                "better": better, "tied": tied, "worse": len(diffs) - better - tied, "seeds": len(diffs),
                "differences": diffs}
    return out


def goals(recipes: dict, name: str = RECOMMENDED) -> dict:
    """The issue's goals for recipe `name` (the recommended one by default) against the original, each with the
    numbers it was judged on (keys named after the recipe)."""
    o, r = recipes.get(ORIGINAL), recipes.get(name)
    if not o or not r or not o["runs"] or not r["runs"]:
        return {}
    om, rm = o["mean"], r["mean"]
    out = {}
    if om["final_gap"] is not None and rm["final_gap"] is not None:
        # The issue's goal is a gap halved "with test top-1 higher": a gap that shrinks because training accuracy
        # fell to the test's (or two gaps of 0) is no narrowing.
        higher = om["test_top1"] is not None and rm["test_top1"] is not None and rm["test_top1"] > om["test_top1"]
        out["gap_at_most_half"] = {"met": bool(rm["final_gap"] <= 0.5 * om["final_gap"] and higher),
                                   f"{name}_final_gap": rm["final_gap"], "original_final_gap": om["final_gap"],
                                   "test_top1_higher": higher}
    if om["test_top1"] is not None and rm["test_top1"] is not None:
        # Beyond the seeds' spread: every seed of the recipe above every original seed.
        out["test_higher_beyond_spread"] = {"met": r["min"]["test_top1"] > o["max"]["test_top1"],
                                            name: [rm["test_top1"], r["min"]["test_top1"], r["max"]["test_top1"]],
                                            "original": [om["test_top1"], o["min"]["test_top1"],
                                                         o["max"]["test_top1"]],
                                            "as": "mean, min, max over seeds"}
    epochs_o = statistics.fmean(run["epochs"] for run in o["runs"])
    reached = r["n"]["epochs_to_target"] == len(r["runs"])
    out["third_of_the_epochs"] = {"met": bool(reached and rm["epochs_to_target"] <= epochs_o / 3),
                                  f"{name}_epochs_to_target": rm["epochs_to_target"],
                                  f"{name}_runs_reaching_target": r["n"]["epochs_to_target"],
                                  "original_epochs": epochs_o}
    return out


def _fmt(summary: dict, key: str, fmt: str) -> str:
    m, s = summary["mean"][key], summary["std"][key]
    if m is None:
        return "never"
    text = format(m, fmt)
    n, total = summary["n"][key], len(summary["runs"])
    if total > 1 and s:
        text += f" ± {format(s, fmt.lstrip('+'))}"
    if n < total:
        text += f" ({n}/{total} runs)"
    return text


def study_table(study: dict) -> list[str]:
    lines = ["| recipe | seeds | test top-1 | final gap | max gap | overfit epoch | epochs to target | "
             "train s to target | epochs |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rec in study["recipes"].items():
        epochs = f"{statistics.fmean(r['epochs'] for r in rec['runs']):.0f}" if rec["runs"] else "–"
        lines.append(f"| {name} | {len(rec['runs'])} | {_fmt(rec, 'test_top1', '.3f')} | "
                     f"{_fmt(rec, 'final_gap', '+.3f')} | {_fmt(rec, 'max_gap', '+.3f')} | "
                     f"{_fmt(rec, 'overfit_epoch', '.1f')} | {_fmt(rec, 'epochs_to_target', '.1f')} | "
                     f"{_fmt(rec, 'seconds_to_target', '.0f')} | {epochs} |")
    return lines


def signer_table(study: dict) -> list[str]:
    """Test top-1 of each test signer, mean over a recipe's seeds (runs that recorded it): is a recipe's shortfall
    on unseen signers even, or one signer's? When the runs come from several data draws, a signer is named
    `draw/id` (signer 6 of one draw is another person than signer 6 of the next)."""
    draws = {r.get("data_seed") for rec in study["recipes"].values() for r in rec["runs"]}

    def keyed(run: dict) -> dict:
        per = run["test_per_signer"]
        return {f"{run.get('data_seed')}/{s}": v for s, v in per.items()} if len(draws) > 1 else per

    per = {name: [keyed(r) for r in rec["runs"] if r.get("test_per_signer")] for name, rec in study["recipes"].items()}

    def order(s: str):
        return tuple((not p.isdigit(), p.zfill(9)) for p in s.split("/"))

    signers = sorted({s for runs in per.values() for r in runs for s in r}, key=order)
    if not signers:
        return []
    lines = ["| recipe | " + " | ".join(f"signer {s}" for s in signers) + " |",
             "|---|" + "---:|" * len(signers)]
    for name, runs in per.items():
        if runs:
            cells = [statistics.fmean(r[s]["accuracy"] for r in runs if s in r) if any(s in r for r in runs)
                     else None for s in signers]
            lines.append(f"| {name} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells) + " |")
    return lines


def write_study(study: dict, results: list[dict], out: Path) -> None:
    """study.json, study.md and the plots (curves.png, gap.png) in `out`."""
    from slr_fast.fileio import writing

    with writing(out / "study.json"):
        (out / "study.json").write_text(json.dumps(study, indent=2))
    plots = plot_study(results, list(study["recipes"]), out)
    setup = study.get("setup", {})
    size = setup.get("size", {})
    lines = ["# Generalization study", "",
             f"{size.get('classes')} classes, signer-independent ({'/'.join(map(str, size.get('signers', [])))} "
             f"train/validation/test signers, one sequence per signer and class"
             f"{_data_note(size)}), T {size.get('frames')}, "
             f"epochs × {size.get('epoch_scale')} of the recipes; {_n(setup.get('seeds'), 'seed')} for the "
             f"recipes{_first_seed_note(setup)}, {setup.get('ablation_seeds')} per ablation; "
             f"{setup.get('wall_s', math.nan) / 60:.1f} min "
             f"wall on {setup.get('cpu_count')} CPU cores (device {setup.get('device')}, {setup.get('jobs')} "
             f"jobs){_read_back_note(setup)}.", "",
             *study_table(study), "",
             "Means ± standard deviation over seeds. Gaps: clean-train − validation top-1 (validation signers are "
             "unseen). Overfit epoch: the epoch (counted across stages, from 0) of the lowest validation loss, "
             "when the last 3 epochs' validation loss averages more than 5 % above it while their train loss is lower "
             "(slr_fast/train/report.py `overfit_epoch`). Epochs / train seconds to "
             "target: until validation top-1 reached the original recipe's best with the same seed.", ""]
    by_signer = signer_table(study)
    if by_signer:
        lines += ["Test top-1 per test signer (mean over seeds; `slr-fast eval` gives it for any checkpoint):", "",
                  *by_signer, ""]
    pair = study.get("paired", {})
    if pair:
        lines += ["Each recipe against the original seed by seed (difference ± its standard deviation over the seeds "
                  "both have; better / tied / worse seeds; the same seed trains both on the same data):", "",
                  "| recipe | seeds | test top-1 | final gap |", "|---|---:|---:|---:|"]
        for name, metrics in pair.items():
            cells = [f"{v['mean']:+.3f} ± {v['std']:.3f} ({v['better']} / {v['tied']} / {v['worse']})"
                     if (v := metrics.get(key)) else "" for key in ("test_top1", "final_gap")]
            seeds = max(v["seeds"] for v in metrics.values())
            lines.append(f"| {name} | {seeds} | {cells[0]} | {cells[1]} |")
        lines.append("")
    for name, g in [(RECOMMENDED, study.get("goals", {})), *study.get("goals_of", {}).items()]:
        if g:
            lines += [f"Goals ({name} vs original):", ""]
            for key, v in g.items():
                numbers = ", ".join(f"{k} {_short(x)}" for k, x in v.items() if k != "met")
                lines.append(f"- {key.replace('_', ' ')}: {'met' if v['met'] else 'NOT met'} ({numbers})")
            lines.append("")
    for f in study.get("failed", []):
        lines.append(f"- FAILED: {f['recipe']} seed {f['seed']}: {f['error']}")
    lines += ["Plots: " + ", ".join(f"`{p.name}`" for p in plots), ""]
    with writing(out / "study.md"):
        (out / "study.md").write_text("\n".join(lines))


def _n(count, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _first_seed_note(setup: dict) -> str:
    first = setup.get("first_seed") or 0
    n = setup.get("seeds", 1)
    return "" if not first else f" (seed {first})" if n == 1 else f" (seeds {first}–{first + n - 1})"


def _data_note(size: dict) -> str:
    """What data the seeds trained on, when it is more than one draw or not the generator's default signs."""
    notes = [f"{k.replace('_', ' ')} {v}" for k, v in (size.get("synth") or {}).items()]
    if size.get("vary_data"):
        notes.append(f"a new draw of signers per seed: data seed {size.get('data_seed')} + seed")
    return "".join(f"; {n}" for n in notes)


def _read_back_note(setup: dict) -> str:
    """Where this call read finished runs back, its wall time is not the study's: say so, with the runs' own."""
    n = setup.get("runs_read_back") or 0
    if not n:
        return ""
    return (f" for this call, which read {n} finished run(s) back from earlier calls; the runs' own wall times add "
            f"up to {setup.get('runs_wall_s', math.nan) / 60:.1f} min")


def _short(x) -> str:
    if isinstance(x, float):
        return f"{x:.3f}"
    if isinstance(x, list):
        return "[" + ", ".join(_short(v) for v in x) + "]"
    return str(x)


def plot_study(results: list[dict], order: list[str], out: Path) -> list[Path]:
    """curves.png: clean-train and validation top-1 per recipe (mean over seeds) across stages; gap.png: the gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean_curve(name, key):
        curves = [[h.get(key) for h in r["history"]] for r in results if r["name"] == name]
        n = min((len(c) for c in curves), default=0)
        return [statistics.fmean(c[i] for c in curves if c[i] is not None) if any(c[i] is not None for c in curves)
                else math.nan for i in range(n)]

    paths = []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(order):
        c = colors[i % len(colors)]
        main = name in (ORIGINAL, RECOMMENDED)
        ax.plot(mean_curve(name, "val_acc"), color=c, lw=2 if main else 1, label=f"{name} validation")
        if main:
            ax.plot(mean_curve(name, "train_acc"), color=c, lw=1, ls=":", label=f"{name} clean train")
    for r in results[:1]:
        for b in [i for i, h in enumerate(r["history"]) if h.get("stage_epoch") == 0][1:]:
            ax.axvline(b - 0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("epoch (all stages; dashed: stage starts of the first run)")
    ax.set_ylabel("top-1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
    paths.append(out / "curves.png")
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(order):
        tr, va = mean_curve(name, "train_acc"), mean_curve(name, "val_acc")
        ax.plot([a - b for a, b in zip(tr, va, strict=False)], color=colors[i % len(colors)],
                lw=2 if name in (ORIGINAL, RECOMMENDED) else 1, label=name)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("epoch (all stages)")
    ax.set_ylabel("clean train − validation top-1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gap.png", dpi=100)
    plt.close(fig)
    paths.append(out / "gap.png")
    return paths
