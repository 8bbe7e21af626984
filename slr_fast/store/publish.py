"""Publishing a local store atomically, and recovering from a writer killed in the middle of it.

A local store is written into a hidden sibling `.NAME.writing-PID-XXXX` and published by rename. Replacing an
existing store takes two renames: the old store moves aside to `.NAME.replaced-PID-XXXX`, then the new one moves
into place, then the old one is deleted. A writer killed between the two renames leaves no store at NAME and the
only copy of the old one under the `.replaced-` name: `recover` renames it back (the state before the command that
was killed; the new store never reported success), and `clean_stale` never deletes a `.replaced-` folder unless a
complete store stands at NAME.

Writers are told apart by process id: a folder whose writer process is gone is stale. (Two machines writing one
store on a shared filesystem cannot see each other's processes; that is not supported.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from slr_fast.store.schema import ATTRS_KEY, StoreError

TMP_TAG = ".writing-"
OLD_TAG = ".replaced-"


def pid_alive(pid: int) -> bool:
    """True if a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def local_state(path: Path) -> str:
    """What is at a local path: absent, empty, complete, incomplete (an slr_fast store) or foreign."""
    if not os.path.lexists(path):
        return "absent"
    if not path.is_dir():
        return "foreign"
    meta_file = path / "zarr.json"
    if not meta_file.is_file():
        return "empty" if not any(path.iterdir()) else "foreign"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return "foreign"
    ours = meta.get("attributes", {}).get(ATTRS_KEY) if isinstance(meta, dict) else None
    if not isinstance(ours, dict):
        return "foreign"
    return "complete" if ours.get("complete") is True else "incomplete"


def sibling(final: Path, tag: str) -> Path:
    """A new hidden sibling name for this process: `.NAME<tag>PID-XXXXXXXX`."""
    return final.parent / f".{final.name}{tag}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def siblings(final: Path, tag: str) -> list[tuple[Path, int]]:
    """(path, writer pid) of every `.NAME<tag>PID-...` folder next to `final`."""
    prefix = f".{final.name}{tag}"
    out = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return out
    for sib in entries:
        if sib.name.startswith(prefix):
            pid = sib.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit():
                out.append((sib, int(pid)))
    return out


def remove_tree(path: Path) -> None:
    """Delete a folder we own; tolerate it being gone or changing while we delete it."""
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return


def clean_stale(final: Path) -> None:
    """Remove what killed writers to this path left behind, except a copy of the store that might be the only one."""
    for sib, pid in siblings(final, TMP_TAG):
        if not pid_alive(pid):
            remove_tree(sib)
    if local_state(final) == "complete":  # the replacing store was published: the old copy is garbage
        for sib, pid in siblings(final, OLD_TAG):
            if not pid_alive(pid):
                remove_tree(sib)


def recover(final: Path, where: str) -> Path | None:
    """If no store stands at `final` but a killed writer left the previous one aside, rename it back.

    Returns the folder that was restored (saying so on the "slr_fast.store" logger), or None when there was nothing
    to restore. Raises StoreError when there
    is something to restore but it cannot be done here (a writer is in the middle of replacing it, or the rename
    fails, e.g. on a read-only filesystem), naming the folder that holds the previous store.
    """
    if os.path.lexists(final):
        return None
    found = [(sib, pid) for sib, pid in siblings(final, OLD_TAG) if local_state(sib) == "complete"]
    if not found:
        return None
    alive = [(sib, pid) for sib, pid in found if pid_alive(pid)]
    if alive:
        sib, pid = alive[0]
        raise StoreError(f"{where}: no store there right now: writer process {pid} is replacing it (the previous "
                         f"store is at {sib}); retry in a moment")
    sib, pid = max(found, key=lambda f: f[0].stat().st_mtime)
    try:
        os.rename(sib, final)
    except OSError as e:
        if local_state(final) == "complete":  # another process restored it (or a writer published) meanwhile
            return None
        raise StoreError(f"{where}: no store there, but {sib} holds the previous complete store (its writer, "
                         f"process {pid}, was killed while replacing it) and it could not be restored: "
                         f"{e.strerror or e}; rename it to {final.name} to restore it") from e
    logging.getLogger("slr_fast.store").warning(
        "%s: restored the previous store from %s: its writer (process %d) was killed while replacing it", where,
        sib.name, pid)
    return sib


def publish(tmp: Path, final: Path, *, overwrite: bool, where: str) -> None:
    """Move the complete store at `tmp` to `final`, replacing a store there only if `overwrite`."""
    state = local_state(final)
    if state == "foreign":
        raise StoreError(f"{where}: something that is not an slr_fast store appeared there while writing")
    if state == "complete" and not overwrite:  # another writer published first
        raise StoreError(f"{where}: a complete store appeared there while writing; pass overwrite=True to "
                         f"replace it")
    if state == "empty":
        final.rmdir()
    if state in ("complete", "incomplete"):
        old = sibling(final, OLD_TAG)
        os.rename(final, old)
        # A kill here leaves no store at `final`: the next writer or reader restores `old` (see recover).
        os.rename(tmp, final)
        remove_tree(old)
    else:
        os.rename(tmp, final)
