"""Staged recipes: several training stages run as one, each starting from the previous stage's best checkpoint.

A recipe file (YAML or JSON) holds a mapping:

    name: original            # optional, printed and recorded
    base:                     # TrainConfig overrides every stage starts from (optional)
      batch_size: 32
      loss: {focal_gamma: 2.0, label_smoothing: 0.1}
    stages:                   # a non-empty list, run in order
      - name: initial         # the stage's folder under the recipe's run folder (default stage1, stage2, ...)
        epochs: 40
        optim: {lr: 2.0e-3}
      - name: finetune
        epochs: 20
        optim: {lr: 5.0e-4, group_lrs: {"^part_embed": 0.1}}
        init_from: previous   # the default for every stage after the first; or a checkpoint file; or none

Overrides are nested mappings of TrainConfig fields (`optim: {lr: ...}`) or dotted keys (`optim.lr: ...`), merged in
the order: the TrainConfig defaults, `base`, the stage, then the caller's overrides (the command line's flags and
`--set`, which so apply to every stage). Every stage's config is built and checked before anything is trained: a bad
key or value is one error naming the file, the stage and the key.

`init_from: previous` takes the previous stage's best.pt (its best validation epoch), or its last.pt when that stage
had no validation split. The recipe's run folder holds `recipe.json` (the resolved stage configs), one ordinary run
folder per stage, and a report over all stages (`report.md`, `summary.json`, `loss.png`, `accuracy.png`, `lr.png`:
the curves joined across stages, the stage boundaries drawn). `resume_recipe` continues a killed recipe where it
stopped: finished stages (those with a summary.json) are kept, a stage with a last.pt resumes as a single run does,
and the stages after it run as new — so on CPU a resumed recipe ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from slr_fast.errors import UserInputError
from slr_fast.fileio import regular_file_problem, writing
from slr_fast.train.config import ConfigError, TrainConfig

RECIPE_KEYS = ("name", "base", "stages")
STAGE_KEYS = ("name", "init_from")  # beside TrainConfig fields
PREVIOUS, NONE = "previous", "none"
RECIPE_FILE = "recipe.json"
STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Fields that belong to the recipe's run, not to a stage: the runner sets them.
RUNNER_FIELDS = ("run_dir",)


class RecipeError(ConfigError):
    """A recipe file or mapping that cannot be run; the message names the file, the stage and the key."""


@dataclass
class Stage:
    name: str
    config: TrainConfig  # init_from "previous" until the previous stage has run
    init_from: str  # PREVIOUS, NONE or a checkpoint path


@dataclass
class Recipe:
    name: str
    stages: list[Stage]
    source: str = ""  # the file it came from, for messages

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source,
                "stages": [{"name": s.name, "init_from": s.init_from, "config": s.config.to_dict()}
                           for s in self.stages]}


@dataclass
class RecipeResult:
    run_dir: Path
    stages: list = field(default_factory=list)  # FitResult per stage run by this call (or read back)
    history: list[dict] = field(default_factory=list)  # every epoch of every stage, epochs numbered across stages
    test: dict | None = None  # the last stage's test evaluation


SHIPPED = Path(__file__).resolve().parent.parent / "recipes"  # package data: original.yaml, recommended.yaml


def shipped_recipes() -> dict[str, Path]:
    """Name → file of the recipes that come with slr_fast."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def recipe_path(name: str | Path) -> Path:
    """A recipe file the user names: a path, or the name of a shipped recipe when no such file exists."""
    path = Path(name)
    if not path.exists() and str(name) in shipped_recipes():
        return shipped_recipes()[str(name)]
    return path


def read_recipe_file(path: str | Path) -> dict:
    """The mapping in a YAML or JSON recipe file; every problem is one RecipeError naming the file."""
    path = recipe_path(path)
    problem = regular_file_problem(path)
    if problem:
        raise RecipeError(f"--recipe {path}: {problem}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not a text (UTF-8) file ({e.reason} at byte {e.start})") from e
    if Path(path).suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecipeError(f"{path}: not valid JSON ({e})") from e
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from e
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with a 'stages' list, got {type(data).__name__}")
    return data


def load_recipe(source: str | Path | dict, overrides: dict | None = None, set_args: list[str] | None = None,
                where: str | None = None) -> Recipe:
    """Parse and check a recipe (a file or a mapping). `overrides` (nested or dotted TrainConfig fields) and
    `set_args` (`a.b=value` strings) apply to every stage after the recipe's own values."""
    if isinstance(source, dict):
        data, where = copy.deepcopy(source), where or "recipe"
    else:
        source = recipe_path(source)
        data, where = read_recipe_file(source), where or str(source)
    unknown = sorted(set(data) - set(RECIPE_KEYS), key=str)
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(RECIPE_KEYS)}")
    name = data.get("name", Path(where).stem if not isinstance(source, dict) else "recipe")
    if not isinstance(name, str):
        raise RecipeError(f"{where}: name: {name!r} is not a string")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise RecipeError(f"{where}: base: expected a mapping of TrainConfig fields, got {type(base).__name__}")
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        got = "nothing" if stages is None else "an empty list" if stages == [] else type(stages).__name__
        raise RecipeError(f"{where}: stages: expected a non-empty list of stages, got {got}")
    out, seen = [], set()
    for i, raw in enumerate(stages):
        here = f"{where}: stages[{i}]"
        if not isinstance(raw, dict):
            raise RecipeError(f"{here}: expected a mapping of TrainConfig fields, got {type(raw).__name__}")
        raw = dict(raw)
        sname = raw.pop("name", f"stage{i + 1}")
        if not isinstance(sname, str) or not STAGE_NAME.fullmatch(sname):
            raise RecipeError(f"{here}: name: {sname!r} is not a folder name (letters, digits, _ . -)")
        if sname in seen:
            raise RecipeError(f"{here}: name: {sname!r} is used by an earlier stage")
        seen.add(sname)
        here = f"{where}: stages[{i}] ({sname})"
        init = raw.pop("init_from", PREVIOUS if i else NONE)
        if not isinstance(init, str) or not init:
            raise RecipeError(f"{here}: init_from: {init!r} is not 'previous', 'none' or a checkpoint file")
        if init == PREVIOUS and i == 0:
            raise RecipeError(f"{here}: init_from: the first stage has no previous stage")
        if init not in (PREVIOUS, NONE):
            problem = regular_file_problem(init)
            if problem:
                raise RecipeError(f"{here}: init_from: {init}: {problem}")
        for layer, label, keys in ((base, f"{where}: base", (*RUNNER_FIELDS, "init_from")),
                                   (raw, here, RUNNER_FIELDS)):
            taken = [k for k in keys if k in layer]
            if taken:
                raise RecipeError(f"{label}: {taken[0]}: set by the recipe runner (per stage), not the recipe")
        d = TrainConfig().to_dict()
        # `previous` stands in for the previous stage's checkpoint until it exists (so checks that need an
        # init_from, like a distillation teacher "init", see one).
        d["init_from"] = "" if init == NONE else init
        try:
            for layer, label in ((base, "base: "), (raw, ""), (overrides or {}, "the command line's flags: ")):
                _merge(d, layer, label)
            cfg = TrainConfig.from_dict(d)
            cfg = cfg.override(set_args or [])
        except ConfigError as e:
            raise RecipeError(f"{here}: {e}", e.field, e.value, e.expected) from e
        out.append(Stage(sname, cfg, init))
    return Recipe(name, out, "" if isinstance(source, dict) else str(source))


def _merge(d: dict, layer: dict, label: str, prefix: str = "") -> None:
    """Merge `layer` (nested mappings or dotted keys) into the TrainConfig dict `d`; an unknown key is an error
    naming it. Free-form mappings (model, data.preprocess, optim.group_lrs) take any key (checked later)."""
    free = ("model", "data.preprocess", "optim.group_lrs")
    for key, value in layer.items():
        if not isinstance(key, str):
            raise ConfigError(f"{label}key {key!r} is not a field name")
        parts = [*(prefix.split(".") if prefix else []), *key.split(".")]
        node, path = d, ""
        for p in parts[:-1]:
            path = f"{path}.{p}" if path else p
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"{label}{path}: not a section of the config", path)
            node = node[p]
        leaf = parts[-1]
        path = f"{path}.{leaf}" if path else leaf
        if path not in free and leaf not in node and not any(path.startswith(f + ".") for f in free):
            raise ConfigError(f"{label}unknown key {path!r}; valid here: {', '.join(sorted(node))}", path)
        if isinstance(value, dict) and isinstance(node.get(leaf), dict) and path not in free:
            _merge(d, value, label, path)
        elif isinstance(value, dict) and path in free and isinstance(node.get(leaf), dict):
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = value


def stage_dirs(run_dir: str | Path, recipe: Recipe) -> list[Path]:
    return [Path(run_dir) / f"{i + 1}-{s.name}" for i, s in enumerate(recipe.stages)]


def _stage_done(folder: Path) -> bool:
    return (folder / "summary.json").exists()


def _handoff(previous: Path) -> Path:
    """The checkpoint a `previous` stage hands on: its best.pt, or last.pt when it had no validation split."""
    best = previous / "best.pt"
    if best.exists():
        return best
    last = previous / "last.pt"
    if last.exists():
        return last
    raise UserInputError(f"{previous}: the previous stage left no best.pt or last.pt to start from")


def run_recipe(recipe: Recipe, run_dir: str | Path, progress: bool | None = None) -> RecipeResult:
    """Run every stage of `recipe` under `run_dir` (a new folder, or one this recipe was started in: then it
    continues as `resume_recipe`)."""
    from slr_fast.train.data import absolute_location

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserInputError(f"--run-dir {run_dir}: exists and is not a folder")
    if (run_dir / RECIPE_FILE).exists():
        raise UserInputError(f"{run_dir} already holds a recipe run ({RECIPE_FILE}); use --resume {run_dir} to "
                             "continue it or choose another --run-dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserInputError(f"--run-dir {run_dir}: not empty; a recipe needs a folder of its own")
    for s in recipe.stages:  # recorded as absolute paths, so the recipe resumes from any folder
        s.config.data.store = absolute_location(s.config.data.store)
        if s.config.init_from and s.init_from != PREVIOUS:
            s.config.init_from = absolute_location(s.config.init_from)
    with writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    with writing(run_dir / RECIPE_FILE):
        (run_dir / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2))
    return _run(recipe, run_dir, progress)


def resume_recipe(run_dir: str | Path, progress: bool | None = None, store: str | None = None) -> RecipeResult:
    """Continue the recipe run in `run_dir` from where it stopped (see the module docstring)."""
    run_dir = Path(run_dir)
    path = run_dir / RECIPE_FILE
    if not path.exists():
        raise UserInputError(f"--resume {run_dir}: no {RECIPE_FILE} (not a recipe run folder)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        stages = [Stage(s["name"], TrainConfig.from_dict(s["config"]), s["init_from"]) for s in saved["stages"]]
    except (ValueError, KeyError, TypeError) as e:
        raise RecipeError(f"{path}: not a recipe record ({type(e).__name__}: {str(e)[:200]})") from e
    if store:
        from slr_fast.train.data import absolute_location

        for s in stages:
            s.config.data.store = absolute_location(store)
    return _run(Recipe(saved.get("name", "recipe"), stages, saved.get("source", "")), run_dir, progress, store)


def is_recipe_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RECIPE_FILE).exists()


def _run(recipe: Recipe, run_dir: Path, progress: bool | None, store: str | None = None) -> RecipeResult:
    from slr_fast.train.loop import fit

    folders = stage_dirs(run_dir, recipe)
    result = RecipeResult(run_dir)
    for i, (stage, folder) in enumerate(zip(recipe.stages, folders, strict=True)):
        if _stage_done(folder):
            continue
        if (folder / "last.pt").exists():
            print(f"recipe {recipe.name}: resuming stage {i + 1}/{len(folders)} ({stage.name}) in {folder}")
            result.stages.append(fit(TrainConfig(), resume=str(folder), progress=progress, store=store))
            continue
        d = stage.config.to_dict()
        d["run_dir"] = str(folder)
        if stage.init_from == PREVIOUS:
            d["init_from"] = str(_handoff(folders[i - 1]).resolve())
        cfg = TrainConfig.from_dict(d)
        print(f"recipe {recipe.name}: stage {i + 1}/{len(folders)} ({stage.name}) in {folder}"
              + (f", from {cfg.init_from}" if cfg.init_from else ""))
        result.stages.append(fit(cfg, progress=progress))
    result.history, bounds = joined_history(folders)
    summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
    result.test = summaries[-1].get("test")
    write_recipe_report(recipe, run_dir, folders, result.history, bounds, summaries)
    return result


def joined_history(folders: list[Path]) -> tuple[list[dict], list[int]]:
    """Every epoch record of every stage with `epoch` counted across stages (and `stage`, `stage_epoch`), and the
    first joined epoch of each stage."""
    from slr_fast.train.report import read_metrics

    out, bounds = [], []
    for i, folder in enumerate(folders):
        bounds.append(len(out))
        for h in read_metrics(folder / "metrics.jsonl"):
            out.append({**h, "stage": i, "stage_epoch": h["epoch"], "epoch": len(out)})
    return out, bounds


def _joined_lr(folders: list[Path]) -> tuple[list[int], list[float], list[int]]:
    """The learning rate of every recorded step across stages, steps counted across stages, and the first step
    of each stage."""
    from slr_fast.train.records import read_lr

    steps, lrs, bounds, offset = [], [], [], 0
    for folder in folders:
        bounds.append(offset)
        s, lr = read_lr(folder) or ([], [])
        steps += [offset + int(x) for x in s]
        lrs += list(lr)
        offset = steps[-1] + 1 if steps else offset
    return steps, lrs, bounds


def plot_recipe(history: list[dict], bounds: list[int], names: list[str], run_dir: Path,
                folders: list[Path]) -> list[Path]:
    """loss.png, accuracy.png and lr.png over all stages, a dashed line at each stage's first epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ep = [h["epoch"] for h in history]
    for fname, keys, ylabel in (("loss.png", ("train_loss", "val_loss", "ema_val_loss"), "loss"),
                                ("accuracy.png", ("train_acc", "val_acc", "ema_val_acc"), "top-1 accuracy")):
        fig, ax = plt.subplots(figsize=(7, 4))
        for k in keys:
            ys = [h.get(k) for h in history]
            if any(y is not None for y in ys):
                ax.plot(ep, [math.nan if y is None else y for y in ys], marker="o", ms=2, label=k)
        _boundaries(ax, [b - 0.5 for b in bounds], names)
        ax.set_xlabel("epoch (all stages)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run_dir / fname, dpi=100)
        plt.close(fig)
        paths.append(run_dir / fname)
    steps, lrs, step_bounds = _joined_lr(folders)
    if steps:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot(steps, lrs, lw=1)
        _boundaries(ax, step_bounds, names)
        ax.set_xlabel("optimizer step (all stages)")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / "lr.png", dpi=100)
        plt.close(fig)
        paths.append(run_dir / "lr.png")
    return paths


def _boundaries(ax, xs, names) -> None:
    for x, name in zip(xs, names, strict=True):
        ax.axvline(x, color="grey", ls="--", lw=1)
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=7, ha="left", va="top",
                    rotation=90, color="grey")


def write_recipe_report(recipe: Recipe, run_dir: Path, folders: list[Path], history: list[dict], bounds: list[int],
                        summaries: list[dict]) -> Path:
    """summary.json, report.md and the joined plots of a finished recipe."""
    from slr_fast.train.report import overfit_analysis

    names = [s.name for s in recipe.stages]
    rows = []
    for i, (stage, folder, summary) in enumerate(zip(recipe.stages, folders, summaries, strict=True)):
        part = [h for h in history if h["stage"] == i]
        info = overfit_analysis(part)
        cfg = json.loads((folder / "config.json").read_text())
        rows.append({"stage": stage.name, "folder": folder.name, "epochs": len(part), "first_epoch": bounds[i],
                     "init_from": cfg.get("init_from", ""), "best_val_acc": info.get("best_val_acc"),
                     "final_gap": info.get("final_acc_gap"), "test": summary.get("test")})
    summary = {"recipe": recipe.name, "source": recipe.source, "stages": rows, "test": summaries[-1].get("test"),
               "epochs": len(history)}
    with writing(run_dir / "summary.json"):
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    with writing(run_dir / "report.md"):
        plot_recipe(history, bounds, names, run_dir, folders)

        def f(v, fmt="."):
            return "–" if v is None else format(v, fmt)

        lines = [f"# Recipe report: {recipe.name}", "", f"{len(rows)} stages, {len(history)} epochs in all"
                 + (f" (recipe file {recipe.source})" if recipe.source else "") + ".", "",
                 "| stage | folder | epochs | starts from | best val top-1 | final train − val gap | test top-1 |",
                 "|---|---|---:|---|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['stage']} | {r['folder']} | {r['epochs']} | {r['init_from'] or '(new weights)'} | "
                         f"{f(r['best_val_acc'], '.4f')} | {f(r['final_gap'], '+.4f')} | "
                         f"{f((r['test'] or {}).get('top1'), '.4f')} |")
        lines += ["", "Curves over all stages (dashed: stage starts): `loss.png`, `accuracy.png`, `lr.png`; each "
                  "stage's own report is in its folder.", ""]
        (run_dir / "report.md").write_text("\n".join(lines))
    return run_dir / "report.md"
