"""Reading user-named files safely, and wording the OS failures a user can act on.

Only regular files are read: a FIFO, a socket or a device named as a csv, a class map or a keypoint file would
block a reader forever (or read without end), so it is refused up front with a message naming the path. A full
disk is reported as one line naming the filesystem and the file being written, not as a library's traceback.

Nothing here imports torch, zarr or pyarrow: every stage can use it.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# errno values that mean "the filesystem is full" (ENOSPC) or "this user's share of it is" (EDQUOT).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory"}


def regular_file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a file ("file not found", "is a FIFO (named pipe), not a regular file", ...),
    or None when it is a regular file (symlinks followed). Never opens the path, so it never blocks."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except NotADirectoryError:
        return "file not found (a parent of it is not a folder)"
    except OSError as e:
        return f"cannot access: {e.strerror or e}"
    if stat.S_ISREG(mode):
        return None
    return f"is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file"


def filesystem_of(path: str | os.PathLike) -> str:
    """The mount point of the filesystem that holds (or would hold) `path`, e.g. "/" or "/mnt/data"."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        dev = p.stat().st_dev
    except OSError:
        return str(p)
    while p != p.parent:
        try:
            if p.parent.stat().st_dev != dev:
                break
        except OSError:
            break
        p = p.parent
    return str(p)


def is_no_space(exc: BaseException | None) -> bool:
    """True if `exc`, or an exception it was raised from, is an OSError meaning the disk (or quota) is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def no_space_error(path: str | os.PathLike) -> OSError:
    """The OSError to raise when writing `path` failed for lack of space: its message is the one line the CLI
    prints ("no space left on /mnt/data writing /mnt/data/x.zarr")."""
    where = filesystem_of(path)
    return OSError(errno.ENOSPC, f"no space left on {where} writing {os.fspath(path)}", os.fspath(path))


# A write that failed with less free space than this left beside what it still had to write is taken as a full
# disk even when the writer (torch's zip writer, say) lost the errno on the way up: filesystems keep a few blocks
# back, so "full" rarely reads as exactly zero bytes free.
FULL_DISK_SLACK_BYTES = 1 << 20


def looks_full(folder: str | os.PathLike, still_needed: int = 0) -> bool:
    """True if the filesystem holding `folder` has less room than `still_needed` bytes (plus a little slack)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return False
    return free < max(int(still_needed), 0) + FULL_DISK_SLACK_BYTES


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Within this block a full disk (or quota) while writing `path` raises `no_space_error(path)`: the one line
    the CLI prints names the filesystem and the file instead of an errno without a file name."""
    try:
        yield
    except OSError as e:
        if is_no_space(e):
            raise no_space_error(path) from e
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None], size_hint: int = 0) -> Path:
    """Write `path` through `write(f)` atomically: a temporary file in the same folder, fsync, then rename.

    A reader sees the old file or the new one, never half of one. Whatever stops the write (a full disk, an
    exception of `write`, Ctrl-C) removes the temporary file. A failure is reported as `no_space_error(path)` when
    its errno says so, or when the writer lost the errno (torch's zip writer raises RuntimeError "unexpected pos")
    but the disk has less room left than the `size_hint` bytes the file needed.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            written = os.stat(tmp).st_size
        except OSError:
            written = 0
        full = isinstance(e, OSError | RuntimeError) and (
            is_no_space(e) or looks_full(path.parent, size_hint - written))
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise no_space_error(path) from e
        raise
    return path


def remove_temp_files(folder: str | os.PathLike, name: str) -> list[Path]:
    """Delete the temporary files `write_atomic` left for `folder/name` when its process was killed mid-write."""
    removed = []
    for p in Path(folder).glob(f".{glob.escape(name)}.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed
