"""Running the `slr-fast` command in tests, and the README's promise about bad input checked in one place.

In-process (`call_cli`) is fast and is what most cases use; a child process (`run_cli`) is for what only a
process shows: a signal (segfault), a hang (the timeout), the exit code of the real entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def call_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `slr-fast ARGV` in this process; returns (exit code, stdout, stderr)."""
    from slr_fast.cli.main import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse rejects a value
        rc = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def run_cli(*args, timeout: float = 120, cwd: str | os.PathLike | None = None,
            env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m slr_fast ARGS` in a child process with a timeout (a hang fails the test, never the run)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "slr_fast", *map(str, args)], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def assert_one_line_error(rc: int, err: str, *names: str) -> str:
    """The README's promise: exit code 2, one line on stderr, no traceback, naming each of `names`.

    Returns the line. A negative exit code is a signal (e.g. -11, a segfault) and fails here with the output."""
    assert rc == 2, f"exit code {rc}, expected 2; stderr:\n{err[-2000:]}"
    assert "Traceback" not in err, f"a traceback instead of one line:\n{err[-2000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[-2000:]}"
    for name in names:
        assert str(name) in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]
