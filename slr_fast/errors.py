"""The project's user-facing errors: one base class the `slr-fast` command turns into one line and exit code 2.

`UserInputError` is raised where the input is bad — a value, a file, a store, a checkpoint, a config — never for a
broken invariant inside slr_fast (those stay ValueError, TypeError, ... and keep their traceback in the CLI). Its
subclasses live beside the code that raises them (`ConfigError`, `CheckpointError`, `IngestError`, `StoreError`).
It is a ValueError, so Python callers that catch ValueError keep working.

Nothing here imports anything: every layer of the house (store, ingest, model, train, cli) may use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UserInputError(ValueError):
    """Bad input the user can fix: the message names the value or file and the problem, on one line."""


class TrainingDiverged(UserInputError, FloatingPointError):
    """Training produced a non-finite loss: the settings (learning rate, precision) need changing, not the code."""


@contextlib.contextmanager
def user_input(prefix: str = "") -> Iterator[None]:
    """Within the block, a ValueError raised by a routine that checks a value the user gave (a kernel spec, an
    augmentation pipeline, a device name) becomes a UserInputError, its message led by `prefix`.

    For calls into modules that are not allowed to know slr_fast (kernels/) or whose checks raise plain ValueError;
    keep the block to the one call that checks the user's value, so a bug elsewhere keeps its traceback."""
    try:
        yield
    except UserInputError:
        raise
    except ValueError as e:
        raise UserInputError(f"{prefix}{e}") from e
