"""`slr-fast extract`: videos -> MediaPipe Holistic keypoints -> a Zarr keypoint store (the video extra)."""

from __future__ import annotations

import argparse

from slr_fast.cli.main import at_least, three_numbers
from slr_fast.layout import LAYOUT_NAMES, get_layout
from slr_fast.store.schema import compression_names


def cmd_extract(args: argparse.Namespace) -> int:
    """Run `extract`."""
    from slr_fast.video import extract_videos

    report = extract_videos(args.files, args.labels, args.out, layout=get_layout(args.layout), classes=args.classes,
                            split_by_signer=args.split_by_signer, split_fractions=args.split_fractions,
                            unknown_signers=args.unknown_signers, trim=args.trim, workers=args.workers,
                            skip_bad=args.skip_bad, overwrite=args.overwrite, progress=not args.no_progress,
                            compression=args.compression, cache_dir=args.cache_dir, keep_cache=args.keep_cache)
    print(report.summary())
    return 0


def register(subparsers) -> None:
    """Add `extract` to the `slr-fast` command."""
    p = subparsers.add_parser(
        "extract", help="videos -> keypoint store (MediaPipe Holistic; needs the video extra)",
        description="Extract MediaPipe Holistic keypoints from videos (one worker process per video on every core) "
                    "into a Zarr keypoint store. Labels CSV as for `ingest pose`: file,sign[,signer][,split][,seq_id]"
                    "[,begin,end], file relative to the CSV's folder. Results are cached per video in "
                    "STORE.extract-cache, so a stopped run continues where it stopped; the cache is removed once "
                    "the store is written. Needs: pip install -e '.[video]'.")
    p.add_argument("files", nargs="*", metavar="VIDEO",
                   help="video files, or folders searched for .mp4/.mov/.m4v/.avi/.mkv/.webm/.mpg/.mpeg (default: "
                        "every file the labels CSV lists)")
    p.add_argument("--labels", required=True, metavar="CSV",
                   help="labels CSV: file,sign[,signer][,split][,seq_id][,begin,end]")
    p.add_argument("--out", required=True, metavar="STORE", help="store to write (folder or fsspec URL)")
    p.add_argument("--layout", default="default", choices=LAYOUT_NAMES,
                   help="keypoint layout: default = lips 40 + hands 2x21 + pose 5 (x, y normalized 0..1 by the "
                        "frame's width and height), arm, hands; _z keeps MediaPipe's z (default: %(default)s)")
    p.add_argument("--classes", metavar="FILE",
                   help="class map fixing the class ids: JSON {sign: id}, JSON list, or text one sign per line "
                        "(default: signs sorted by name)")
    p.add_argument("--workers", type=at_least(1), default=None, metavar="N",
                   help="worker processes, one video each at a time (default: one per core)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable videos (damaged, truncated, not a video, no person, missing) and list each "
                        "with its reason at the end (default: stop at the first, naming the file)")
    p.add_argument("--trim", action="store_true",
                   help="keep frames begin..end-1 of each video from the labels CSV's begin and end columns (the "
                        "whole video is still tracked and cached)")
    p.add_argument("--split-by-signer", type=int, default=None, metavar="SEED",
                   help="make a signer-independent train/val/test split with this seed (labels without a split)")
    p.add_argument("--split-fractions", type=three_numbers, default=(0.8, 0.1, 0.1), metavar="TR,VA,TE",
                   help="signer fractions for --split-by-signer, summing to 1 (default: 0.8,0.1,0.1)")
    p.add_argument("--unknown-signers", default="error", choices=["error", "none", "train", "val", "test"],
                   help="with --split-by-signer: where sequences of unknown signer go (default: error)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="per-video extraction cache, so a stopped run resumes (default: STORE.extract-cache)")
    p.add_argument("--keep-cache", action="store_true",
                   help="keep the cache after the store is written (e.g. to write another store with other labels "
                        "or trims without extracting again)")
    p.add_argument("--compression", choices=compression_names(), default=None, metavar="PRESET",
                   help="codec preset of the frames (default: the store's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract)
