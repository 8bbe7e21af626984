"""`slr-fast split | verify`: store maintenance."""

from __future__ import annotations

from slr_fast.cli.main import three_numbers


def cmd_split(args) -> int:
    from slr_fast.store import write_signer_split

    store = write_signer_split(args.store, fractions=args.fractions, seed=args.seed,
                               unknown=args.unknown_signers)
    counts = store.split_counts()
    print(f"{args.store}: signer-independent split (seed {args.seed}): " +
          ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_verify(args) -> int:
    """Deep-check a store; damage ends in one line naming the store and the chunk (exit 2, via main)."""
    from slr_fast.store import KeypointStore

    store = KeypointStore.open(args.store)
    r = store.verify()
    stats = (f"no infinite values; {r['nan_fraction']:.1%} of values undetected (NaN), {r['empty_frames']} frames "
             f"with no point")
    if r["checksums"]:
        print(f"{args.store}: OK — {r['sequences']} sequences, {r['frames']} frames: all {r['chunks']} chunks of "
              f"every array present, {r['chunks_checked']} frames chunks decoded and matching their crc32c "
              f"checksums, index arrays matching theirs; {stats}")
    else:
        present = f"all {r['chunks']} chunks present"
        if r["absent"]:  # such stores left out chunks of fill values only: maybe damage, maybe not
            shown = "; ".join(r["absent"][:3]) + (f"; {len(r['absent']) - 3} more" if len(r["absent"]) > 3 else "")
            present = (f"{len(r['absent'])} of {r['chunks']} chunks ABSENT, read as fill values (NaN frames, zero "
                       f"labels) — a store of that age left out such chunks, so this may or may not be damage: "
                       f"{shown}")
        print(f"{args.store}: checksums NOT checked — the store was written without them (before slr_fast recorded "
              f"checksums; re-ingest to add them). {r['sequences']} sequences, {r['frames']} frames: {present}; "
              f"{r['frames_chunks']} frames chunks decoded; {stats}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("split", help="give a store a deterministic signer-independent train/val/test split")
    p.add_argument("store")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fractions", type=three_numbers, default=(0.8, 0.1, 0.1), metavar="TR,VA,TE",
                   help="train,val,test fractions of the signers, summing to 1 (default: 0.8,0.1,0.1)")
    p.add_argument("--unknown-signers", default="error", choices=["error", "none", "train", "val", "test"],
                   help="where sequences of unknown signer (-1) go: error (default), none (no split), or a split")
    p.set_defaults(func=cmd_split)
    v = sub.add_parser("verify", help="check every chunk of a store against its checksum (deep check beyond open)")
    v.add_argument("store")
    v.set_defaults(func=cmd_verify)
