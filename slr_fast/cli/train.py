"""`slr-fast train | eval | predict`: the training workflow."""

from __future__ import annotations

import json
import os
from pathlib import Path

from slr_fast.cli.main import at_least
from slr_fast.errors import UserInputError
from slr_fast.fileio import regular_file_problem
from slr_fast.train.config import PRECISIONS, SCHEDULES, ConfigError, TrainConfig, class_list_problem


def _classes_arg(value: str | None) -> list[str] | None:
    """`--classes`: a file with one class name per line (or a JSON list), or a comma-separated list."""
    if not value:
        return None
    looks_like_file = "," not in value and Path(value).suffix.lower() in (".txt", ".json", ".csv", ".lst")
    if os.path.lexists(value) or looks_like_file:
        problem = regular_file_problem(value)
        if problem:
            raise UserInputError(f"--classes {value}: {problem}")
        try:
            text = Path(value).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserInputError(f"--classes {value}: not a text (UTF-8) file ({e.reason} at byte {e.start})") from e
        if text.lstrip().startswith("["):
            try:
                names = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserInputError(f"--classes {value}: not a valid JSON list ({e})") from e
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise UserInputError(f"--classes {value}: a JSON list of class names (strings) expected")
        else:
            names = text.splitlines()
    else:
        names = value.split(",")
    names = [n for n in (s.strip() for s in names) if n]
    problem = class_list_problem(names)
    if problem:
        raise UserInputError(f"--classes {value}: {'no class names' if not names else problem}")
    return names


# Flag → (section or None, field). The error for a bad flag value names the flag, not only the field.
FLAGS = {
    "--store": ("data", "store"), "--frames": ("data", "frames"), "--augment": ("data", "augment"),
    "--classes": ("data", "classes"), "--preset": ("model", "preset"), "--lr": ("optim", "lr"),
    "--schedule": ("schedule", "name"), "--mixup": ("loss", "mixup_prob"), "--kernels": (None, "kernels"),
    "--epochs": (None, "epochs"), "--batch-size": (None, "batch_size"), "--precision": (None, "precision"),
    "--ema": (None, "ema_decay"), "--seed": (None, "seed"), "--early-stop": (None, "early_stop_patience"),
    "--run-dir": (None, "run_dir"), "--init-from": (None, "init_from"), "--threads": (None, "threads"),
    "--device": (None, "device"), "--save-every-steps": (None, "save_every_steps"),
}


def _flag_value(args, flag: str):
    value = getattr(args, flag[2:].replace("-", "_"))
    return _classes_arg(value) if flag == "--classes" else value


def config_from_args(args) -> TrainConfig:
    """The TrainConfig a `train` command line describes: --config file, then flags, then --set overrides."""
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    d = cfg.to_dict()
    given = {flag: v for flag in FLAGS if (v := _flag_value(args, flag)) is not None}
    for flag, value in given.items():
        section, key = FLAGS[flag]
        (d[section] if section else d)[key] = value
    if args.new_head:
        d["new_head"] = True
    if args.no_progress:
        d["progress"] = False
    try:
        cfg = TrainConfig.from_dict(d)
    except ConfigError as e:
        for flag, (section, key) in FLAGS.items():
            if flag in given and e.expected and e.field == ".".join(["config", *([section] if section else []), key]):
                raise ConfigError(f"{flag} {given[flag]}: not {e.expected} ({e.field})", e.field, e.value,
                                  e.expected) from e
        raise
    return cfg.override(args.set or [])


def _recipe_overrides(args) -> dict:
    """The flags given beside --recipe, as TrainConfig overrides for every stage (--run-dir is the recipe's)."""
    refused = [f for f in ("--config", "--init-from", "--new-head") if getattr(args, f[2:].replace("-", "_"))]
    if refused:
        raise UserInputError(f"--recipe {args.recipe}: {refused[0]} does not combine with a recipe; set it in the "
                             "recipe's stages (base, init_from, new_head)")
    out: dict = {}
    for flag, (section, key) in FLAGS.items():
        value = _flag_value(args, flag)
        if value is not None and flag != "--run-dir":
            out[f"{section}.{key}" if section else key] = value
    if args.no_progress:
        out["progress"] = False
    return out


def cmd_train(args) -> int:
    from slr_fast.train.loop import fit
    from slr_fast.train.recipe import is_recipe_run, load_recipe, resume_recipe, run_recipe

    if args.recipe and not args.resume:
        recipe = load_recipe(args.recipe, _recipe_overrides(args), args.set)
        result = run_recipe(recipe, args.run_dir or f"runs/{recipe.name}", progress=False if args.no_progress
                            else None)
        if result.test:
            print(f"test top-1 {result.test['top1']:.4f} top-5 {result.test['top5']:.4f} after {len(recipe.stages)} "
                  f"stages — report: {result.run_dir / 'report.md'}")
        return 0
    if args.resume and is_recipe_run(args.resume):
        ignored = [f for f in (*FLAGS, "--config", "--set", "--new-head", "--recipe") if f not in ("--resume",
                   "--store") and getattr(args, f[2:].replace("-", "_")) not in (None, False)]
        if ignored:
            raise UserInputError(f"--resume {args.resume} continues the recipe with its saved stages; drop "
                                 f"{', '.join(ignored)}")
        result = resume_recipe(args.resume, progress=False if args.no_progress else None, store=args.store)
        if result.test:
            print(f"test top-1 {result.test['top1']:.4f} top-5 {result.test['top5']:.4f} — report: "
                  f"{result.run_dir / 'report.md'}")
        return 0
    if args.resume:
        # The run continues with its saved config: a flag that would change it is refused, not silently ignored.
        # --store may name the run's store at another place (checked to hold the same data).
        ignored = [f for f in (*FLAGS, "--config", "--set", "--new-head") if f not in ("--resume", "--store")
                   and getattr(args, f[2:].replace("-", "_")) not in (None, False)]
        if ignored:
            raise UserInputError(f"--resume {args.resume} continues the run with its saved config; drop "
                                 f"{', '.join(ignored)} (or start a new run with --init-from)")
        result = fit(TrainConfig(), resume=args.resume, progress=False if args.no_progress else None,
                     store=args.store)
    else:
        result = fit(config_from_args(args))
    if result.test and result.is_main:  # under torchrun: once, not once per process
        print(f"test top-1 {result.test['top1']:.4f} top-5 {result.test['top5']:.4f} with "
              f"{result.test['checkpoint']} — report: {result.run_dir / 'report.md'}")
    return 0


def cmd_eval(args) -> int:
    from slr_fast.train.inference import evaluate_checkpoint
    from slr_fast.train.metrics import signer_summary

    r = evaluate_checkpoint(args.checkpoint, args.store, split=args.split, batch_size=args.batch_size,
                            device=args.device, kernels=args.kernels, use_ema=args.ema)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"checkpoint {r['checkpoint']} on {r['store']} split {r['split']}: {r['samples']} sequences")
    print(f"top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}  loss {r['loss']:.4f}")
    worst = sorted(r["per_class"].items(), key=lambda kv: kv[1]["accuracy"])[:5]
    print("lowest per-class accuracy: " + ", ".join(f"{c} {v['accuracy']:.2f}" for c, v in worst))
    if r.get("per_signer"):  # unseen signers: is the shortfall even, or one signer far below the rest?
        print(signer_summary(r["per_signer"]))
    for p in r["confused_pairs"][:5]:
        print(f"  {p['true']} → {p['predicted']}: {p['count']} ({p['rate']:.0%} of {p['true']})")
    return 0


def cmd_predict(args) -> int:
    from slr_fast.train.inference import predict_files

    results = predict_files(args.checkpoint, args.files, top_k=args.top_k, device=args.device, kernels=args.kernels,
                            use_ema=args.ema, coords=args.coords, missing_points=args.missing_points)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"checkpoint {results[0]['checkpoint']}")
    for r in results:
        print(r["file"] + ": " + ", ".join(f"{t['sign']} {t['prob']:.3f}" for t in r["top"]))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model on a store (or --resume a run)",
                       description="Train the hierarchical transformer. Flags override --config; --set a.b=v "
                                   "overrides any config field (see slr_fast/train/config.py).")
    p.add_argument("--store", help="store path or URL (recorded as an absolute path); with --resume: the run's "
                                   "store moved to another place (it must hold the same data)")
    p.add_argument("--run-dir", help="run directory (checkpoints, metrics.jsonl, plots, report.md)")
    p.add_argument("--config", help="TrainConfig JSON (e.g. a previous run's config.json)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. optim.lr=1e-3")
    p.add_argument("--preset", choices=["tiny", "base"], help="model size preset")
    p.add_argument("--kernels", help="kernel backends, e.g. 'auto' or 'attention=triton,rmsnorm=native'")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--frames", type=int, help="T, frames per resampled sequence")
    # The names of slr_fast.augment.pipeline.NAMED (not imported here: ~0.15 s that `--help` would pay).
    p.add_argument("--augment", metavar="PIPELINE",
                   help="augmentation: 'default' (time warp, scale, noise), 'full' (every op: crops, speed changes, "
                        "mirror, rotations, part distortions, dropout, detector noise), 'none', or a pipeline "
                        ".json/.yaml file (default: default)")
    p.add_argument("--mixup", type=float, metavar="P", help="fraction of batches mixed with MixUp")
    p.add_argument("--classes", help="class subset: a file (one name per line / JSON list) or comma-separated names")
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--ema", type=float, metavar="DECAY", help="EMA decay of the weights (0 disables)")
    p.add_argument("--early-stop", type=int, metavar="PATIENCE")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--save-every-steps", type=int, help="also checkpoint every N steps mid-epoch")
    p.add_argument("--recipe", metavar="FILE",
                   help="a staged recipe (.yaml/.json: stages of config overrides, each starting from the previous "
                        "stage's best.pt; see slr_fast/train/recipe.py) or a shipped recipe's name: original, "
                        "recommended (slr_fast/recipes/); other flags and --set apply to every stage")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run (or recipe run) from where it stopped")
    p.add_argument("--init-from", metavar="CKPT", help="start a fine-tuning stage from a checkpoint's weights")
    p.add_argument("--new-head", action="store_true", help="with --init-from: fresh classifier for new classes")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    def common(q):
        q.add_argument("--checkpoint", required=True,
                       help="a checkpoint file, or a run folder: its best.pt (the best validation epoch, what the "
                            "run's report evaluates), else its last.pt; the file used is printed")
        q.add_argument("--device", default="cpu")
        q.add_argument("--kernels", default="auto")
        q.add_argument("--ema", action="store_true", help="use the EMA weights of the checkpoint")
        q.add_argument("--json", action="store_true")

    e = sub.add_parser("eval", help="evaluate a checkpoint on a store split")
    common(e)
    e.add_argument("--store", required=True)
    e.add_argument("--split", default="test", help="train | val | test | '' for all sequences")
    e.add_argument("--batch-size", type=at_least(1), default=256)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("predict", help="top-k signs for GISLR parquet, .pose or video files")
    common(r)
    r.add_argument("files", nargs="+", metavar="FILE",
                   help="GISLR .parquet, .pose or video files (.mp4, .mov, ...: keypoints extracted with MediaPipe "
                        "Holistic in the checkpoint's layout, one process per video; the video extra), or folders "
                        "(each stands for those files in it, sorted by name)")
    # The choices of slr_fast.ingest.pose (COORD_MODES, MISSING_MODES), as `ingest pose` offers them.
    r.add_argument("--coords", default="auto", choices=("auto", "pixel", "normalized"),
                   help=".pose coordinate units; auto detects pixels (divided by the header width/height) "
                        "(default: %(default)s)")
    r.add_argument("--missing-points", default="error", choices=("error", "nan"),
                   help="points of the checkpoint's layout absent from a .pose file: error, or fill with NaN "
                        "(undetected) (default: %(default)s)")
    r.add_argument("--top-k", type=at_least(1), default=5, help="signs listed per file (default: 5; at most the "
                   "checkpoint's number of classes)")
    r.set_defaults(func=cmd_predict)
