"""Entry point of the `slr-fast` command: one parser, a module per command group, one place that words errors."""

from __future__ import annotations

import argparse
import errno
import importlib
import math
import os
import sys

from slr_fast import __version__
from slr_fast.errors import UserInputError
from slr_fast.fileio import is_no_space, no_space_error

# Each module defines register(subparsers), adding its sub-commands with `set_defaults(func=...)`.
# func(args) returns an exit code (0 = success).
COMMAND_MODULES = (
    "slr_fast.cli.synth",  # synth
    "slr_fast.cli.ingest",  # ingest gislr | pose
    "slr_fast.cli.extract",  # extract: videos -> keypoints (MediaPipe Holistic)
    "slr_fast.cli.inspect",  # info, show
    "slr_fast.cli.store",  # split, verify
    "slr_fast.cli.train",  # train, eval, predict
    "slr_fast.cli.demo",  # demo: the main job
    "slr_fast.cli.ablate",  # ablate: kernel backends side by side
    "slr_fast.cli.study",  # study: generalization of the training recipes
)
# The module of each command: a command line naming one imports only that module (some import NumPy, the
# synthetic generator or the training config to register their options, ~0.1-0.3 s that other commands skip).
COMMANDS = {"synth": "slr_fast.cli.synth", "ingest": "slr_fast.cli.ingest", "extract": "slr_fast.cli.extract",
            "info": "slr_fast.cli.inspect",
            "show": "slr_fast.cli.inspect", "split": "slr_fast.cli.store", "verify": "slr_fast.cli.store",
            "train": "slr_fast.cli.train", "eval": "slr_fast.cli.train", "predict": "slr_fast.cli.train",
            "demo": "slr_fast.cli.demo", "ablate": "slr_fast.cli.ablate",
            "study": "slr_fast.cli.study"}

# OSErrors that come from the user's files and machine, not from a bug: printed as one line naming the file.
USER_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
                         errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                         errno.EIO, errno.ENXIO, errno.ENOTEMPTY, errno.EMFILE, errno.ENFILE})
MAX_LINE = 2000  # a message quoting a hostile file's contents is cut, never a screenful
# What `slr-fast --help` says above the command list.
DESCRIPTION = ("Sign-language recognition from keypoints: turn GISLR parquet or .pose files into a keypoint store "
               "(or synthesize one), inspect it, train the hierarchical transformer, evaluate and predict. "
               "`slr-fast demo` runs the whole chain on a synthetic dataset; `slr-fast COMMAND --help` describes "
               "a command.")
# Exit code when the reader of our output went away (`slr-fast eval --json | head`): 128 + SIGPIPE, what a shell
# reports for a program SIGPIPE stopped.
EXIT_BROKEN_PIPE = 141


class Parser(argparse.ArgumentParser):
    """argparse whose rejections are one line (`slr-fast train: error: … (see slr-fast train --help)`), exit 2,
    like every other input problem; sub-command parsers are made of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of blanks folded into single spaces, cut at MAX_LINE characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + " …"


def at_least(lo: int, hi: int | None = None):
    """An argparse type: an integer >= `lo` (and <= `hi`), refused in one line naming the value."""
    expected = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is not {expected}")
        return value

    parse.__name__ = expected
    return parse


def finite(lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    """An argparse type: a finite number in [lo, hi] (`lo_open`: above lo), refused in one line naming the value."""
    low = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
    expected = (f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]" if lo is not None and hi is not None
                else f"a finite number {low}".strip())

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        bad = not math.isfinite(value) or (lo is not None and (value < lo or (lo_open and value == lo))) or (
            hi is not None and value > hi)
        if bad:
            raise argparse.ArgumentTypeError(f"{text} is not {expected}")
        return value

    parse.__name__ = expected
    return parse


def three_numbers(text: str) -> tuple[float, float, float]:
    """An argparse type: three finite comma-separated numbers, e.g. train,val,test shares `0.8,0.1,0.1`; what they
    must add up to is checked by the code that uses them (a split's fractions, the synthetic signers' shares)."""
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers (train,val,test), got {len(parts)}")
    if not all(math.isfinite(v) and v >= 0 for v in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: the three numbers must be finite and non-negative")
    return parts  # type: ignore[return-value]


def readable_file_problem(spec: str, what: str) -> str | None:
    """For an option that takes a file or a name: why `spec`, if it names an existing path, cannot be read as a
    file (a FIFO would block the reader, a folder fails obscurely); None for a regular file or no file at all."""
    import os

    from slr_fast.fileio import regular_file_problem

    if not os.path.lexists(spec):
        return None
    problem = regular_file_problem(spec)
    return f"{what} {spec}: {problem}" if problem else None


def user_error_line(e: BaseException) -> str | None:
    """The one line to print for an error the user can act on, or None for a bug (which keeps its traceback)."""
    if isinstance(e, OSError):
        if is_no_space(e):
            if e.strerror and e.strerror.startswith("no space left on"):
                return one_line(e.strerror)  # already slr_fast.fileio.no_space_error's wording
            return one_line(no_space_error(e.filename).strerror if e.filename else f"no space left on device: {e}")
        if e.errno is None:
            return one_line(str(e))  # raised by slr_fast with a message of its own
        if e.errno in USER_ERRNOS:
            where = f"{e.filename} -> {e.filename2}" if e.filename2 else e.filename
            return one_line(f"{where}: {e.strerror}" if where else f"{e.strerror}")
        return None
    if isinstance(e, UserInputError):  # the project's own errors; any other ValueError is a bug
        return one_line(str(e))
    registry = sys.modules.get("kernels.registry")  # loaded by whatever could raise its error
    if registry is not None and isinstance(e, registry.KernelUnavailableError):
        return one_line(str(e))
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `slr-fast` parser: with every command, or only `command`'s module when one is named."""
    parser = Parser(prog="slr-fast", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"slr-fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)  # the only top-level options are flags
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so a closed pipe is seen now rather than at interpreter exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except Exception as e:
        # Input problems (bad files, bad values, a full disk) end with a line naming the culprit; bugs keep
        # their traceback.
        line = user_error_line(e)
        if line is None:
            raise
        print(f"slr-fast {args.command}: error: {line}", file=sys.stderr)
        return 2


def _stdout_gone() -> int:
    """The reader of stdout went away: stop quietly like `cat` or `grep` do, without a traceback, and keep Python's
    final flush of the unwritable buffer from raising again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (captured in tests)
        pass
    return EXIT_BROKEN_PIPE
