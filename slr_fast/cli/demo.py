"""`slr-fast demo`: the main job on the embedded synthetic dataset — synth → store → train tiny → eval → report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from slr_fast.cli.main import at_least

# Demo training settings, chosen by measurement on 2 CPU cores (README: "The main job").
DEMO_TRAIN = {
    "epochs": 30,
    "batch_size": 32,
    "frames": 32,
    "lr": 3e-3,
}


def cmd_demo(args) -> int:
    from slr_fast.inspect import format_stats, store_stats
    from slr_fast.store import KeypointStore
    from slr_fast.synth import SynthConfig, synth_store
    from slr_fast.train.config import TrainConfig
    from slr_fast.train.inference import evaluate_checkpoint
    from slr_fast.train.loop import fit

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "synthetic.zarr"
    run_dir = out / "run"
    if store_path.exists() and not args.fresh:
        store = KeypointStore.open(store_path)
        print(f"[1/4] reusing {store_path} ({len(store)} sequences; --fresh regenerates)")
    else:
        print(f"[1/4] synth → {store_path}")
        store = synth_store(store_path, SynthConfig(seed=args.seed), overwrite=True, progress=not args.no_progress)
    print("[2/4] store info")
    print(format_stats(store_stats(store)))
    print(f"[3/4] train tiny → {run_dir}")
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # the demo always trains afresh; real runs refuse to overwrite
    cfg = TrainConfig(run_dir=str(run_dir), seed=args.seed, epochs=args.epochs or DEMO_TRAIN["epochs"],
                      batch_size=DEMO_TRAIN["batch_size"], progress=not args.no_progress, kernels=args.kernels)
    cfg.data.store = str(store_path)
    cfg.data.frames = DEMO_TRAIN["frames"]
    cfg.optim.lr = DEMO_TRAIN["lr"]
    fit(cfg)
    print("[4/4] evaluate the best checkpoint on held-out signers (test split)")
    r = evaluate_checkpoint(str(run_dir / "best.pt"), str(store_path), split="test", device="cpu")
    (run_dir / "eval_test.json").write_text(json.dumps(r, indent=2))
    elapsed = time.perf_counter() - t0
    print(f"test top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f} on {r['samples']} sequences of unseen signers")
    print(f"report {run_dir / 'report.md'}, plots {run_dir}/*.png; demo took {elapsed:.0f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job on the embedded synthetic dataset: synth, train, eval, report")
    p.add_argument("--out", default="demo", help="folder for the store and the run (default: ./demo)")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--epochs", type=at_least(1), help=f"training epochs (default {DEMO_TRAIN['epochs']})")
    p.add_argument("--kernels", default="auto")
    p.add_argument("--fresh", action="store_true", help="regenerate the synthetic store even if present")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
