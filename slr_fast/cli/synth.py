"""`slr-fast synth OUT.zarr`: write the synthetic signer dataset (the embedded default) to a keypoint store."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import fields

from slr_fast.cli.main import at_least, finite, three_numbers
from slr_fast.layout import LAYOUT_NAMES
from slr_fast.synth.config import SynthConfig


def cmd_synth(args: argparse.Namespace) -> int:
    """Run `synth`: generate, write, and print a one-paragraph summary."""
    import numpy as np

    from slr_fast.synth import synth_store

    config = SynthConfig(
        classes=args.classes, per_class=args.per_class, signers=args.signers, seed=args.seed, layout=args.layout,
        family_size=args.family_size, length_median=args.length_median, min_length=args.min_length,
        max_length=args.max_length, hand_miss_rate=args.hand_miss_rate, jitter=args.jitter,
        left_handed=args.left_handed, split=args.split,
    )
    total = config.classes * config.per_class
    # Processes pay off only for large sets: each one starts a fresh interpreter.
    workers = args.workers if args.workers is not None else (min(os.cpu_count() or 1, 8) if total >= 5000 else 1)
    start = time.perf_counter()
    store = synth_store(args.out, config, overwrite=args.overwrite, progress=not args.no_progress, workers=workers)
    elapsed = time.perf_counter() - start
    counts = store.split_counts()
    lengths = store.lengths
    print(f"wrote {len(store)} sequences ({int(lengths.sum())} frames, {config.classes} classes, {config.signers} "
          f"signers; train/val/test {counts['train']}/{counts['val']}/{counts['test']} sequences; "
          f"length median {int(np.median(lengths))}, max {int(lengths.max())}) to {args.out} in {elapsed:.1f} s "
          f"({len(store) / max(elapsed, 1e-9):.0f} sequences/s)")
    return 0


def register(subparsers) -> None:
    """Add `synth` to the `slr-fast` command."""
    d = {f.name: f.default for f in fields(SynthConfig)}  # help shows the library's defaults
    p = subparsers.add_parser(
        "synth", help="generate the synthetic signer dataset into a keypoint store",
        description="Generate MediaPipe-like keypoints of an invented sign vocabulary performed by synthetic "
                    "signers (articulated hands, mouthing, arms; signer, tempo and detector variation; hands "
                    "missed in bursts) into a keypoint store, split by signer. Deterministic for a seed. "
                    "Slovo's shape is --classes 1001 --per-class 20.")
    p.add_argument("out", metavar="OUT.zarr", help="store to write (folder or fsspec URL)")
    p.add_argument("--classes", type=int, default=d["classes"], help="number of signs (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=d["per_class"],
                   help="sequences per sign, spread evenly over the signers (default: %(default)s)")
    p.add_argument("--signers", type=int, default=d["signers"], help="number of signers (default: %(default)s)")
    p.add_argument("--seed", type=at_least(0), default=d["seed"], help="the same seed gives the same data (default: 0)")
    p.add_argument("--layout", default="default", choices=LAYOUT_NAMES,
                   help="keypoint layout; _z adds MediaPipe-style depth (default: %(default)s)")
    p.add_argument("--family-size", type=int, default=d["family_size"], choices=(1, 2, 3, 4),
                   help="signs per family told apart only by temporal order; larger is harder (default: 2)")
    p.add_argument("--length-median", type=finite(), default=d["length_median"],
                   help="median frames per sequence before signer tempo (default: %(default)s)")
    p.add_argument("--min-length", type=int, default=d["min_length"], help="shortest sequence (default: 3)")
    p.add_argument("--max-length", type=int, default=d["max_length"], help="longest sequence (default: 320)")
    p.add_argument("--hand-miss-rate", type=finite(), default=d["hand_miss_rate"],
                   help="chance the detector misses a raised hand in a frame, in bursts (default: %(default)s)")
    p.add_argument("--jitter", type=finite(), default=d["jitter"],
                   help="detector noise in shoulder half-widths (default: %(default)s)")
    p.add_argument("--left-handed", type=finite(), default=d["left_handed"],
                   help="share of left-handed signers, who mirror every sign (default: %(default)s)")
    p.add_argument("--split", type=three_numbers, default=d["split"], metavar="TR,VA,TE",
                   help="shares of the signers in train/val/test (default: 0.7,0.15,0.15)")
    p.add_argument("--workers", type=at_least(1), default=None, metavar="N",
                   help="render in N processes (default: one per core, at most 8, for >= 5000 sequences)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)
