"""`slr-fast study`: the generalization study — original vs recommended recipe, and each remedy alone."""

from __future__ import annotations

import argparse

from slr_fast.cli.main import at_least


def signer_counts(text: str) -> tuple[int, int, int]:
    """An argparse type: three positive signer counts TRAIN,VAL,TEST, e.g. `15,5,20`."""
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not three integers TRAIN,VAL,TEST") from None
    if len(counts) != 3 or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not three positive signer counts TRAIN,VAL,TEST")
    return counts


def cmd_study(args) -> int:
    from pathlib import Path

    from slr_fast.errors import UserInputError, user_input
    from slr_fast.study import ORIGINAL, RECOMMENDED, StudySize, recipe_name, run_study, scaled_recipe
    from slr_fast.train.runtime import resolve_device

    with user_input(f"--device {args.device}: "):  # before any data is made
        device = resolve_device(args.device)
    jobs = args.jobs or (2 if device.type == "cpu" else 1)
    size = StudySize.full() if args.full else StudySize.default()
    if args.classes:
        size.classes = args.classes
    if args.signers:
        size.signers = args.signers
    if args.family_size:
        size.synth["family_size"] = args.family_size
    size.vary_data = not args.one_draw
    if args.epoch_scale is not None:
        if not 0 < args.epoch_scale <= 100:
            raise UserInputError(f"--epoch-scale {args.epoch_scale}: not a number in (0, 100]")
        size.epoch_scale = args.epoch_scale
    extra: dict[str, dict] = {}
    for source in args.recipe or []:  # each checked (file and keys) before any data is made
        name = recipe_name(source)
        if name in extra or name in (ORIGINAL, RECOMMENDED):
            raise UserInputError(f"--recipe {source}: a recipe named {name!r} is already in the study")
        extra[name] = scaled_recipe(source, size)
    run_study(args.out, size, seeds=args.seeds, ablation_seeds=args.ablation_seeds, device=args.device,
              jobs=jobs, threads=args.threads, first_seed=args.first_seed, extra=extra)
    print((Path(args.out) / "study.md").read_text())
    return 0


def register(sub) -> None:
    p = sub.add_parser("study", help="generalization study: original vs recommended recipe, each remedy alone",
                       description="Makes Slovo-shaped synthetic data (signer-independent: 15 train, 5 validation, "
                                   "5 test signers, one sequence each per class; a new draw of signers per "
                                   "seed), trains the shipped original and "
                                   "recommended recipes (slr_fast/recipes/) with several seeds and the original "
                                   "with each remedy alone (and any recipe of yours, --recipe), and writes "
                                   "OUT/study.json, OUT/study.md, curves.png "
                                   "and gap.png. Runs are kept under OUT/runs: a killed study called again "
                                   "continues where it stopped.")
    p.add_argument("--out", required=True, help="output folder (data, runs, study.json, study.md, plots)")
    p.add_argument("--full", action="store_true",
                   help="Slovo's shape: 1,001 classes, the recipes' own epochs (a GPU); default: 20 classes, a "
                        "two fifths of the epochs (2 CPU cores)")
    p.add_argument("--seeds", type=at_least(1), default=3, help="seeds per recipe (default: %(default)s)")
    p.add_argument("--first-seed", type=at_least(0), default=0,
                   help="the first seed (seed k trains on draw 1 + k): a later first seed gives draws of signers "
                        "no earlier call used, to check a recipe on draws it was not chosen on (with --one-draw: "
                        "other training seeds on the same draw); the same --out keeps the runs of every call "
                        "(default: %(default)s)")
    p.add_argument("--recipe", action="append", metavar="FILE",
                   help="also train this recipe (a YAML or JSON file, as for `train --recipe`), scaled like the "
                        "shipped ones, with the same seeds and draws, compared with the original seed by seed and "
                        "judged by the same goals; named after its file; repeatable")
    p.add_argument("--ablation-seeds", type=at_least(0), default=1,
                   help="seeds per remedy ablation; 0 skips the ablations (default: %(default)s)")
    p.add_argument("--classes", type=at_least(2), help="number of classes instead of the size's")
    p.add_argument("--signers", type=signer_counts, metavar="TR,VA,TE",
                   help="train, validation and test signers (default: 15,5,5; more test signers measure test "
                        "top-1 more finely at little cost: only training signers add training time)")
    p.add_argument("--family-size", type=at_least(1, 4),
                   help="signs per family told apart only by temporal order (default: the generator's 2; 4 is "
                        "harder data)")
    p.add_argument("--epoch-scale", type=float, help="factor on the recipes' epochs instead of the size's")
    p.add_argument("--one-draw", action="store_true",
                   help="train and test every seed on one draw of synthetic signers (data seed 1); default: a new "
                        "draw per seed (seed k: data seed 1 + k), so the seeds' spread includes who happens to be "
                        "in the train, validation and test splits, both recipes paired on each draw")
    p.add_argument("--jobs", type=at_least(1),
                   help="runs trained side by side, a torch thread each when --threads is 0 (default: 2 on a CPU, "
                        "where two one-thread runs outpace one two-thread run; else 1)")
    p.add_argument("--threads", type=at_least(0), default=0, help="torch threads per run (0: automatic)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.set_defaults(func=cmd_study)
