"""Reading user-named files safely, and wording the OS failures a user can act on.

Only regular files are read: a FIFO, a socket or a device named as a csv, a class map or a keypoint file would
block a reader forever (or read without end), so it is refused up front with a message naming the path. A full
disk is reported as one line naming the filesystem and the file being written, not as a library's traceback.

Nothing here imports torch, zarr or pyarrow: every stage can use it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

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
