"""A background thread that runs a producer ahead of the consumer through a bounded queue.

The thread is the only place a loader makes batches; the engine itself serializes its parallel Numba calls across
threads (slr_fast.engine.PARALLEL_LOCK), so a training and a validation loader alive together need nothing more.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_DONE = object()  # end-of-stream marker


class _Failure:
    """Carries a worker exception (with its traceback) across the queue."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Iterate `make_items()` in a daemon thread, at most `depth` items ahead; `close()` stops and joins it."""

    def __init__(self, make_items: Callable[[], Iterator[Any]], depth: int, name: str = "slr-fast-prefetch"):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._make_items = make_items
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        # Bounded waits so a stop request is noticed even when the consumer has gone away with the queue full.
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        items = None
        try:
            items = self._make_items()
            for item in items:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as e:  # noqa: BLE001 - everything goes to the consumer, who re-raises it
            self._put(_Failure(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # runs the producer's own clean-up (e.g. its read-ahead pool) in this thread

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    # Only reachable after close(): the thread always enqueues _DONE or a failure otherwise.
                    self._finished = True
                    raise StopIteration from None
        if item is _DONE:
            self._finished = True
            self._thread.join()
            raise StopIteration
        if isinstance(item, _Failure):
            self._finished = True
            self._thread.join()
            # The original exception object keeps its traceback from the worker; raising it appends ours.
            raise item.error
        return item

    @property
    def alive(self) -> bool:
        """Whether the worker thread is still running."""
        return self._thread.is_alive()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker, drop queued items and join the thread."""
        self._finished = True
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"prefetch thread {self._thread.name} did not stop within {timeout} s")

    def __del__(self) -> None:
        if getattr(self, "_thread", None) is not None and self._thread.is_alive():
            self._stop.set()
