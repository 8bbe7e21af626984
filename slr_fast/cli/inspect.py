"""`slr-fast info STORE` (statistics) and `slr-fast show STORE --index I --out FILE.png` (skeleton frames)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slr_fast.cli.main import at_least, readable_file_problem
from slr_fast.errors import UserInputError, user_input
from slr_fast.fileio import writing


def cmd_info(args: argparse.Namespace) -> int:
    """Run `info`: print the store's statistics as text or JSON."""
    from slr_fast.inspect import format_stats, store_stats
    from slr_fast.store import KeypointStore

    stats = store_stats(KeypointStore.open(args.store))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def _frame_ids(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{value!r}: expected frame numbers like 0,10,20") from e


def cmd_show(args: argparse.Namespace) -> int:
    """Run `show`: draw a sequence's skeleton on a few frames into a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    from slr_fast.store import KeypointStore
    from slr_fast.viz import draw_sequence

    out = image_path(args.out)
    if args.augment is not None:
        problem = readable_file_problem(args.augment, "--augment")
        if problem:
            raise UserInputError(problem)
    store = KeypointStore.open(args.store)
    n = len(store)
    if not -n <= args.index < n:
        raise UserInputError(f"--index {args.index} out of range: {args.store} holds {n} sequences (0..{n - 1})")
    i = args.index % n
    frames, label = store[i]
    if frames.shape[0] == 0:
        raise UserInputError(f"sequence {i} of {args.store} has no frames to draw")
    if args.augment is not None:
        # Before/after rows of the engine's preview (frames after hand-less dropping and normalization).
        from slr_fast.augment import load_pipeline
        from slr_fast.engine import augment_preview
        from slr_fast.viz import draw_comparison

        with user_input("--augment: "):
            pipeline = load_pipeline(args.augment)
        before, after = augment_preview(frames, store.layout, pipeline, seed=args.seed, epoch=args.epoch,
                                        sample_id=i)
        fig = draw_comparison({"original": before, "augmented": after}, store.layout, args.frame_ids,
                              count=args.frames, aspect=args.aspect)
    else:
        fig = draw_sequence(frames, store.layout, args.frame_ids, count=args.frames, aspect=args.aspect)
    split = {-1: "no split", 0: "train", 1: "val", 2: "test"}.get(int(store.splits[i]), "?")
    fig.suptitle(f"#{i} {store.seq_ids[i]}  class {store.classes[label]}  signer {int(store.signers[i])}  "
                 f"{split}  {frames.shape[0]} frames", fontsize=9)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=args.dpi)
    plt.close(fig)
    print(f"wrote {out}")
    return 0


def aspect_ratio(text: str) -> float:
    """An argparse type: a video frame's width / height as W:H, W/H or a number (16:9, 4/3, 1.78)."""
    import math

    w, sep, h = text.replace("/", ":").partition(":")
    try:
        value = float(w) / float(h) if sep else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a width:height ratio like 16:9") from None
    if not (math.isfinite(value) and 0.05 <= value <= 20):
        raise argparse.ArgumentTypeError(f"{text!r} is not a width:height ratio between 1:20 and 20:1")
    return value


def image_path(value: str) -> Path:
    """The file `show --out VALUE` writes: VALUE, or VALUE.png when it has no extension (what matplotlib would
    write); a folder or a format matplotlib cannot write is refused before anything is drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(value)
    if out.is_dir():
        raise UserInputError(f"--out {value}: is a folder; name the image file, e.g. {out / 'sequence.png'}")
    formats = FigureCanvasAgg.get_supported_filetypes()
    if not out.suffix:
        return out.with_name(out.name + ".png")
    if out.suffix[1:].lower() not in formats:
        raise UserInputError(f"--out {value}: matplotlib cannot write {out.suffix!r} images; use one of "
                             f"{', '.join('.' + f for f in sorted(formats))}")
    return out


def register(subparsers) -> None:
    """Add `info` and `show` to the `slr-fast` command."""
    p = subparsers.add_parser("info", help="statistics of a keypoint store",
                              description="Sequences, classes, signers, frames, length percentiles, how often "
                                          "each part is missing, frames without hands, and split sizes.")
    p.add_argument("store", metavar="STORE", help="keypoint store (folder or fsspec URL)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON instead of text")
    p.set_defaults(func=cmd_info)

    s = subparsers.add_parser("show", help="draw a sequence's skeleton on a few frames (PNG)",
                              description="Draw hands, lips and pose of one sequence on evenly spread frames; "
                                          "undetected points are left out.")
    s.add_argument("store", metavar="STORE", help="keypoint store (folder or fsspec URL)")
    s.add_argument("--index", type=int, required=True, metavar="I", help="sequence number (negative counts back)")
    s.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    s.add_argument("--frames", type=at_least(1, 100), default=6, metavar="K",
                   help="frames to draw, evenly spread (default: 6)")
    s.add_argument("--frame-ids", type=_frame_ids, default=None, metavar="A,B,..",
                   help="draw these frame numbers instead of --frames evenly spread ones")
    s.add_argument("--augment", metavar="PIPELINE", default=None,
                   help="also draw the sequence after augmentation: a pipeline name (default, full), a .json/.yaml "
                        "file or JSON text; rows show the engine's frames before/after")
    s.add_argument("--seed", type=int, default=0, help="augmentation seed for --augment (default: 0)")
    s.add_argument("--epoch", type=int, default=0, help="augmentation epoch for --augment (default: 0)")
    s.add_argument("--aspect", type=aspect_ratio, default=1.0, metavar="W:H",
                   help="the video's width:height, e.g. 16:9: MediaPipe divides x by the width and y by the height, "
                        "so this draws the shapes as filmed (default: 1, the stored numbers as they are)")
    s.add_argument("--dpi", type=at_least(10, 1200), default=110,
                   help="image resolution, 10 to 1200 (default: %(default)s)")
    s.set_defaults(func=cmd_show)
