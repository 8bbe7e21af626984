"""`slr-fast ingest gislr | pose`: keypoint sources into a Zarr keypoint store."""

from __future__ import annotations

import argparse

from slr_fast.cli.main import at_least, three_numbers
from slr_fast.layout import LAYOUT_NAMES, get_layout
from slr_fast.store.schema import compression_names


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="STORE", help="store to write (folder or fsspec URL)")
    p.add_argument("--layout", default="default", choices=LAYOUT_NAMES,
                   help="keypoint layout: default = lips 40 + hands 2x21 + pose 5 (nose, shoulders, elbows), "
                        "arm = GISLR-notebook arm points; _z adds the z coordinate (default: %(default)s)")
    p.add_argument("--classes", metavar="FILE",
                   help="class map fixing the class ids: JSON {sign: id} (GISLR sign_to_prediction_index_map.json), "
                        "JSON list, or text one sign per line (default: signs sorted by name)")
    p.add_argument("--workers", type=at_least(1), default=None, metavar="N",
                   help="reader threads (default: one per core, at most 8)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable/invalid files and list each with its reason at the end (default: stop at "
                        "the first, naming the file)")
    p.add_argument("--split-by-signer", type=int, default=None, metavar="SEED",
                   help="make a signer-independent train/val/test split with this seed (sources without a split)")
    p.add_argument("--split-fractions", type=three_numbers, default=(0.8, 0.1, 0.1), metavar="TR,VA,TE",
                   help="signer fractions for --split-by-signer, summing to 1 (default: 0.8,0.1,0.1)")
    p.add_argument("--unknown-signers", default="error", choices=["error", "none", "train", "val", "test"],
                   help="with --split-by-signer: where sequences of unknown signer go (default: error)")
    p.add_argument("--compression", choices=compression_names(), default=None, metavar="PRESET",
                   help="codec preset of the frames (default: the store's, blosc-zstd3-shuffle+time); e.g. "
                        "blosc-lz4-shuffle+time writes ~5x faster for a ~15%% bigger store")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _finish(report) -> int:
    print(report.summary())
    return 0


def cmd_gislr(args: argparse.Namespace) -> int:
    """Run `ingest gislr`."""
    from slr_fast.ingest import ingest_gislr

    max_frames = {} if args.max_frames is None else {"max_frames": args.max_frames}
    report = ingest_gislr(args.source, args.out, layout=get_layout(args.layout), classes=args.classes,
                          workers=args.workers, skip_bad=args.skip_bad, split_by_signer=args.split_by_signer,
                          split_fractions=args.split_fractions, unknown_signers=args.unknown_signers,
                          limit=args.limit, verify=not args.no_verify, overwrite=args.overwrite,
                          progress=not args.no_progress, compression=args.compression, **max_frames)
    return _finish(report)


def cmd_pose(args: argparse.Namespace) -> int:
    """Run `ingest pose`."""
    from slr_fast.ingest import ingest_pose

    report = ingest_pose(args.files, args.labels, args.out, layout=get_layout(args.layout), classes=args.classes,
                         coords=args.coords, missing_points=args.missing_points, workers=args.workers,
                         skip_bad=args.skip_bad, split_by_signer=args.split_by_signer,
                         split_fractions=args.split_fractions, unknown_signers=args.unknown_signers,
                         overwrite=args.overwrite, progress=not args.no_progress, compression=args.compression)
    return _finish(report)


def register(subparsers) -> None:
    """Add `ingest gislr` and `ingest pose` to the `slr-fast` command."""
    ingest = subparsers.add_parser("ingest", help="convert keypoint files into a keypoint store",
                                   description="Convert keypoint files into a Zarr keypoint store.")
    sub = ingest.add_subparsers(dest="source_format", metavar="FORMAT", required=True)

    g = sub.add_parser("gislr", help="Kaggle GISLR parquet corpus (train.csv + one parquet per sequence)",
                       description="Read train.csv (path, participant_id, sequence_id, sign; optional split) and "
                                   "its parquet files columnar and in parallel. Signer = participant_id, sequence "
                                   "id = sequence_id.")
    g.add_argument("source", metavar="DIR", help="folder holding train.csv, or the csv itself")
    _common(g)
    g.add_argument("--limit", type=at_least(1), default=None, metavar="N", help="only the first N csv rows")
    g.add_argument("--no-verify", action="store_true",
                   help="trust the 543-row order instead of checking every row's type/landmark_index "
                        "(~30%% less CPU per file)")
    g.add_argument("--max-frames", type=at_least(1), default=None, metavar="N",
                   help="refuse files declaring more frames than this, before reading them (default: 20000)")
    g.set_defaults(func=cmd_gislr)

    p = sub.add_parser("pose", help="pose-format .pose files (MediaPipe Holistic)",
                       description="Read .pose files (MediaPipe Holistic components; full or reduced face; pixel or "
                                   "normalized coordinates; first person only) labelled by a CSV with columns "
                                   "file,sign[,signer][,split][,seq_id], file relative to the CSV's folder.")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help=".pose files or folders searched for *.pose (default: every file the labels CSV lists)")
    p.add_argument("--labels", required=True, metavar="CSV", help="labels CSV: file,sign[,signer][,split][,seq_id]")
    _common(p)
    p.add_argument("--coords", default="auto", choices=("auto", "pixel", "normalized"),
                   help="coordinate units; auto detects pixels (divided by the header width/height) "
                        "(default: %(default)s)")
    p.add_argument("--missing-points", default="error", choices=("error", "nan"),
                   help="layout points absent from a file: error, or fill with NaN (default: %(default)s)")
    p.set_defaults(func=cmd_pose)
