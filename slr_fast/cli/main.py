"""Entry point of the `slr-fast` command."""

from __future__ import annotations

import argparse
import importlib
import sys

from slr_fast import __version__

# Each module defines register(subparsers), adding its sub-commands with `set_defaults(func=...)`.
# func(args) returns an exit code (0 = success).
COMMAND_MODULES = (
    "slr_fast.cli.synth",  # synth
    "slr_fast.cli.ingest",  # ingest gislr | pose
    "slr_fast.cli.inspect",  # info, show
    "slr_fast.cli.store",  # split, verify
    "slr_fast.cli.train",  # train, eval, predict
    "slr_fast.cli.demo",  # demo: the main job
    "slr_fast.cli.ablate",  # ablate: kernel backends side by side
)


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slr-fast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"slr-fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as e:
        # Input problems (bad files, bad values) end with a message naming the culprit, not a traceback.
        print(f"slr-fast {args.command}: error: {e}", file=sys.stderr)
        return 2
