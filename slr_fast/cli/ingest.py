"""`slr-fast ingest gislr | pose | slovo`: keypoint sources (and Slovo's videos) into a Zarr keypoint store."""

from __future__ import annotations

import argparse

from slr_fast.cli.main import at_least, finite, three_numbers
from slr_fast.layout import LAYOUT_NAMES, get_layout
from slr_fast.store.schema import compression_names


def _common(p: argparse.ArgumentParser, signer_split: bool = True, layout: str | None = "default",
            layout_default: str = "%(default)s") -> None:
    p.add_argument("--out", required=True, metavar="STORE", help="store to write (folder or fsspec URL)")
    p.add_argument("--layout", default=layout, choices=LAYOUT_NAMES,
                   help="keypoint layout: default = lips 40 + hands 2x21 + pose 5 (nose, shoulders, elbows), "
                        "arm = GISLR-notebook arm points, hands = the two hands only; _z adds the z coordinate "
                        f"(default: {layout_default})")
    p.add_argument("--classes", metavar="FILE",
                   help="class map fixing the class ids: JSON {sign: id} (GISLR sign_to_prediction_index_map.json), "
                        "JSON list, or text one sign per line (default: signs sorted by name)")
    p.add_argument("--workers", type=at_least(1), default=None, metavar="N",
                   help="reader threads (default: one per core, at most 8)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable/invalid files and list each with its reason at the end (default: stop at "
                        "the first, naming the file)")
    if signer_split:  # sources without a split of their own
        p.add_argument("--split-by-signer", type=int, default=None, metavar="SEED",
                       help="make a signer-independent train/val/test split with this seed (sources without a "
                            "split)")
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


def cmd_slovo(args: argparse.Namespace) -> int:
    """Run `ingest slovo`."""
    from slr_fast.ingest.slovo import ingest_slovo

    report = ingest_slovo(args.source, args.out, keypoints=args.keypoints,
                          layout=None if args.layout is None else get_layout(args.layout), classes=args.classes,
                          trim=args.trim, val_fraction=args.val_fraction, val_seed=args.val_seed,
                          workers=args.workers, skip_bad=args.skip_bad, overwrite=args.overwrite,
                          progress=not args.no_progress, compression=args.compression, cache_dir=args.cache_dir,
                          keep_cache=args.keep_cache)
    return _finish(report)


def register(subparsers) -> None:
    """Add `ingest gislr`, `ingest pose` and `ingest slovo` to the `slr-fast` command."""
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

    s = sub.add_parser("slovo", help="Slovo (Russian Sign Language): annotations.csv and its videos, or its released "
                                     "hand keypoints",
                       description="Read Slovo's tab-separated annotations.csv (label = text, the no_event rows are "
                                   "class ---; signer = user_id; split = the train column, True: train, False: test) "
                                   "and extract its videos DIR/train|test/<attachment_id>.mp4 with MediaPipe "
                                   "Holistic (the video extra; layout default), or with --keypoints read Slovo's "
                                   "slovo_mediapipe.json instead, no video needed (layout hands).")
    s.add_argument("source", metavar="DIR", help="Slovo folder holding annotations.csv, train/ and test/ (or the csv)")
    _common(s, signer_split=False, layout=None, layout_default="default for videos, hands with --keypoints")
    s.add_argument("--keypoints", metavar="JSON",
                   help="Slovo's released hand keypoints (slovo_mediapipe.json, streamed): hands only, no extraction")
    s.add_argument("--trim", action="store_true",
                   help="keep frames begin..end-1 of each video (begin/end of annotations.csv; they locate the sign "
                        "in the original, untrimmed videos)")
    s.add_argument("--val-fraction", type=finite(0, 1, lo_open=True), default=None, metavar="F",
                   help="move this share of the train signers to a validation split (signer-disjoint; default: "
                        "no validation split)")
    s.add_argument("--val-seed", type=int, default=0, metavar="SEED",
                   help="seed choosing the validation signers (default: %(default)s)")
    s.add_argument("--cache-dir", metavar="DIR",
                   help="per-video extraction cache, so a stopped run resumes (default: STORE.extract-cache)")
    s.add_argument("--keep-cache", action="store_true",
                   help="keep the extraction cache after the store is written (e.g. to ingest again with --trim)")
    s.set_defaults(func=cmd_slovo)
