"""The micro-batcher: one thread that answers queued requests in batches, in arrival order.

:class:`MicroBatcher` takes items from :meth:`MicroBatcher.submit` (any thread) and hands them,
in arrival order and at most ``max_batch`` at a time, to ``answer(items) -> results`` (one
result per item: a value, or an exception to raise to that item's caller). When the thread was
idle, it waits at most ``max_wait`` seconds for more items to join the first; items that queued
up while it was answering a batch are taken at once. A cancelled future is skipped. The queue is
not bounded here: the HTTP layer's admission check bounds what is in flight.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Answer submitted items in batches on one daemon thread (module docstring).

    Parameters
    ----------
    answer : callable
        ``answer(items) -> results``, one result per item (an exception instance is raised to
        that item's caller).
    max_batch : int
        Most items per call (>= 1).
    max_wait : float
        Seconds the idle thread waits for companions of a first item (>= 0).
    """

    def __init__(self, answer: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int, max_wait: float):
        self.answer = answer
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait))
        self._queue: deque[tuple[Any, Future]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="trustrec-batcher", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        """Queue ``item``.

        Parameters
        ----------
        item : object
            What ``answer`` is given.

        Returns
        -------
        concurrent.futures.Future
            Its result (or exception).
        """
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("MicroBatcher: closed")
            self._queue.append((item, future))
            self._cond.notify()
        return future

    def close(self, timeout: float | None = 10.0) -> None:
        """Answer what is queued, then stop the thread.

        Parameters
        ----------
        timeout : float or None
            Seconds to wait for the thread.
        """
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _take(self) -> list[tuple[Any, Future]] | None:
        """The next batch (None: closed and drained)."""
        with self._cond:
            waited = False
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
                waited = True
            if waited and self.max_wait > 0:  # idle until now: give companions a moment to arrive
                deadline = time.monotonic() + self.max_wait
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            n = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = list(self.answer([item for item, _ in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"MicroBatcher: {len(results)} results for {len(live)} items")
            except BaseException as exc:  # noqa: BLE001 - the thread must survive; each caller sees the error
                for _, f in live:
                    f.set_exception(exc)
                continue
            for (_, f), result in zip(live, results):
                if isinstance(result, BaseException):
                    f.set_exception(result)
                else:
                    f.set_result(result)
