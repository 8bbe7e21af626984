"""`slr-fast ablate`: time or train the same model under a grid of kernel configurations."""

from __future__ import annotations

from slr_fast.cli.main import at_least
from slr_fast.errors import user_input
from slr_fast.train.config import MAX_FRAMES


def cmd_ablate(args) -> int:
    from kernels.registry import KernelConfig
    from slr_fast.ablate import AblationSetup, parse_grid, run_ablation
    from slr_fast.train.runtime import resolve_device

    grid = parse_grid(args.kernels_grid)
    with user_input(f"--reference {args.reference}: "):  # before a store is read or a model built
        KernelConfig.parse(args.reference)
    with user_input():
        resolve_device(args.device)
    setup = AblationSetup(store=args.store, preset=args.preset, frames=args.frames, batch_size=args.batch_size,
                          steps=args.steps, warmup=args.warmup, epochs=args.epochs, seed=args.seed,
                          device=args.device, reference=args.reference)
    run_ablation(setup, grid, mode=args.mode, out_dir=args.out)
    print((__import__("pathlib").Path(args.out) / "ablation.md").read_text())
    return 0


def register(sub) -> None:
    p = sub.add_parser("ablate", help="compare kernel backends: samples/s, memory, accuracy, logit differences",
                       description="Runs every KernelConfig of --kernels-grid with the same seed, weights and data "
                                   "and writes OUT/ablation.md and OUT/ablation.json.")
    p.add_argument("--store", required=True)
    p.add_argument("--kernels-grid", required=True,
                   help="e.g. 'attention=torch|native|triton;rmsnorm=native|triton' (cartesian product)")
    p.add_argument("--mode", choices=["time", "train"], default="time",
                   help="time: fixed training steps per config; train: a full training run per config")
    p.add_argument("--out", default="ablation", help="output folder (default ./ablation)")
    p.add_argument("--preset", default="tiny", choices=["tiny", "base"])
    p.add_argument("--frames", type=at_least(1, MAX_FRAMES), default=32)
    p.add_argument("--batch-size", type=at_least(1), default=32)
    p.add_argument("--steps", type=at_least(1), default=20, help="timed steps per config (time mode)")
    p.add_argument("--warmup", type=at_least(0), default=3)
    p.add_argument("--epochs", type=at_least(1), default=5, help="epochs per config (train mode)")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--reference", default="torch", help="KernelConfig the logit differences are measured against")
    p.set_defaults(func=cmd_ablate)
