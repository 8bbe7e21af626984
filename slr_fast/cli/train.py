"""`slr-fast train | eval | predict`: the training workflow."""

from __future__ import annotations

import json
from pathlib import Path

from slr_fast.train.config import PRECISIONS, SCHEDULES, TrainConfig


def _classes_arg(value: str | None) -> list[str] | None:
    """`--classes`: a file with one class name per line (or a JSON list), or a comma-separated list."""
    if not value:
        return None
    p = Path(value)
    if p.exists():
        text = p.read_text()
        names = json.loads(text) if text.lstrip().startswith("[") else [ln.strip() for ln in text.splitlines()]
    else:
        names = value.split(",")
    names = [n for n in (s.strip() for s in names) if n]
    if not names:
        raise ValueError(f"--classes {value!r}: no class names")
    return names


def config_from_args(args) -> TrainConfig:
    """The TrainConfig a `train` command line describes: --config file, then flags, then --set overrides."""
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    d = cfg.to_dict()
    flags = {
        ("data", "store"): args.store, ("data", "frames"): args.frames, ("data", "augment"): args.augment,
        ("data", "classes"): _classes_arg(args.classes), ("model", "preset"): args.preset,
        ("optim", "lr"): args.lr, ("schedule", "name"): args.schedule, ("loss", "mixup_prob"): args.mixup,
        (None, "kernels"): args.kernels, (None, "epochs"): args.epochs, (None, "batch_size"): args.batch_size,
        (None, "precision"): args.precision, (None, "ema_decay"): args.ema, (None, "seed"): args.seed,
        (None, "early_stop_patience"): args.early_stop, (None, "run_dir"): args.run_dir,
        (None, "init_from"): args.init_from, (None, "threads"): args.threads, (None, "device"): args.device,
        (None, "save_every_steps"): args.save_every_steps,
    }
    for (section, key), value in flags.items():
        if value is not None:
            (d[section] if section else d)[key] = value
    if args.new_head:
        d["new_head"] = True
    if args.no_progress:
        d["progress"] = False
    return TrainConfig.from_dict(d).override(args.set or [])


def cmd_train(args) -> int:
    from slr_fast.train.loop import fit

    if args.resume:
        result = fit(TrainConfig(), resume=args.resume)
    else:
        result = fit(config_from_args(args))
    if result.test:
        print(f"test top-1 {result.test['top1']:.4f} top-5 {result.test['top5']:.4f} — report: "
              f"{result.run_dir / 'report.md'}")
    return 0


def cmd_eval(args) -> int:
    from slr_fast.train.inference import evaluate_checkpoint

    r = evaluate_checkpoint(args.checkpoint, args.store, split=args.split, batch_size=args.batch_size,
                            device=args.device, kernels=args.kernels, use_ema=args.ema)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['store']} split {r['split']}: {r['samples']} sequences")
    print(f"top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}  loss {r['loss']:.4f}")
    worst = sorted(r["per_class"].items(), key=lambda kv: kv[1]["accuracy"])[:5]
    print("lowest per-class accuracy: " + ", ".join(f"{c} {v['accuracy']:.2f}" for c, v in worst))
    for p in r["confused_pairs"][:5]:
        print(f"  {p['true']} → {p['predicted']}: {p['count']} ({p['rate']:.0%} of {p['true']})")
    return 0


def cmd_predict(args) -> int:
    from slr_fast.train.inference import predict_files

    results = predict_files(args.checkpoint, args.files, top_k=args.top_k, device=args.device, kernels=args.kernels,
                            use_ema=args.ema)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(r["file"] + ": " + ", ".join(f"{t['sign']} {t['prob']:.3f}" for t in r["top"]))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model on a store (or --resume a run)",
                       description="Train the hierarchical transformer. Flags override --config; --set a.b=v "
                                   "overrides any config field (see slr_fast/train/config.py).")
    p.add_argument("--store", help="store path or URL")
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
    p.add_argument("--augment", help="'default', 'none' or an augmentation pipeline JSON file")
    p.add_argument("--mixup", type=float, metavar="P", help="fraction of batches mixed with MixUp")
    p.add_argument("--classes", help="class subset: a file (one name per line / JSON list) or comma-separated names")
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--ema", type=float, metavar="DECAY", help="EMA decay of the weights (0 disables)")
    p.add_argument("--early-stop", type=int, metavar="PATIENCE")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--save-every-steps", type=int, help="also checkpoint every N steps mid-epoch")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last.pt")
    p.add_argument("--init-from", metavar="CKPT", help="start a fine-tuning stage from a checkpoint's weights")
    p.add_argument("--new-head", action="store_true", help="with --init-from: fresh classifier for new classes")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    def common(q):
        q.add_argument("--checkpoint", required=True, help="a checkpoint file or a run directory")
        q.add_argument("--device", default="cpu")
        q.add_argument("--kernels", default="auto")
        q.add_argument("--ema", action="store_true", help="use the EMA weights of the checkpoint")
        q.add_argument("--json", action="store_true")

    e = sub.add_parser("eval", help="evaluate a checkpoint on a store split")
    common(e)
    e.add_argument("--store", required=True)
    e.add_argument("--split", default="test", help="train | val | test | '' for all sequences")
    e.add_argument("--batch-size", type=int, default=256)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("predict", help="top-k signs for GISLR parquet or .pose files")
    common(r)
    r.add_argument("files", nargs="+")
    r.add_argument("--top-k", type=int, default=5)
    r.set_defaults(func=cmd_predict)
