"""How the store talks to zarr: a failed call leaves nothing running behind it, and a missing chunk is an error.

Zarr runs every read and write as asyncio tasks on one background event loop, gathered per call. When one task
fails (a chunk that does not decode, a full disk), `asyncio.gather` hands that exception to the caller at once and
the sibling tasks keep running. Left alone they print "Task was destroyed but it is pending!" (and "Exception
ignored ...") by the dozen when the interpreter shuts down, and a writer's leftover tasks go on creating chunk
files — and the folders above them — after the writer has removed its temporary store. `settle()` waits for them.

A chunk missing from the store reads as the array's fill value (NaN frames, zero labels), silently. Stores written
with checksums have every chunk written (`write_empty_chunks`), so for them `ChunkCheckedStore` turns a missing
chunk into `MissingChunkError` instead.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

# Rounds of waiting in settle(): a failed gather's siblings may start tasks of their own (a chunk read starts its
# decode), so the loop is looked at again until it is quiet; other threads' reads can keep it busy, hence a bound.
_SETTLE_ROUNDS = 8


def settle(timeout: float = 30.0) -> None:
    """Wait until the tasks left on zarr's event loop by a failed call have finished (at most `timeout` s)."""
    from zarr.core import sync as zsync

    loop = zsync.loop[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    deadline = time.monotonic() + timeout

    async def quiet() -> None:
        me = asyncio.current_task()
        for _ in range(_SETTLE_ROUNDS):
            pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                return
            await asyncio.wait(pending, timeout=left)

    try:
        asyncio.run_coroutine_threadsafe(quiet(), loop).result(timeout + 1.0)
    except Exception:  # a loop shutting down, or a timeout: nothing more can be done here
        pass


class MissingChunkError(Exception):
    """A chunk that a store with checksums must hold is not there."""

    def __init__(self, key: str):
        super().__init__(f"chunk {key} is missing")
        self.key = key


def missing_chunk_in(exc: BaseException | None) -> MissingChunkError | None:
    """The MissingChunkError that `exc` is, or was raised from, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MissingChunkError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def checked_store(store: Any, arrays: tuple[str, ...]):
    """Wrap a zarr store so that, once `.strict` is set, reading an absent chunk of `arrays` raises."""
    return _checked_store_class()(store, arrays)


@functools.cache
def _checked_store_class():
    from zarr.storage import WrapperStore  # zarr is imported on first use, never at import time

    class ChunkCheckedStore(WrapperStore):
        strict = False

        def __init__(self, store, arrays: tuple[str, ...] = ()):
            super().__init__(store)
            self.arrays = tuple(arrays)

        def _with_store(self, inner):
            out = type(self)(inner, self.arrays)
            out.strict = self.strict
            return out

        async def get(self, key, prototype, byte_range=None):
            value = await self._store.get(key, prototype, byte_range)
            if value is None and self.strict:
                parts = key.split("/")
                # Chunk keys are NAME/c/...; metadata probes (zarr.json, .zarray, ...) may be absent.
                if len(parts) >= 2 and parts[0] in self.arrays and parts[1] == "c":
                    raise MissingChunkError(key)
            return value

    return ChunkCheckedStore
