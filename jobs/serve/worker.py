"""The one generation thread: questions answered in turn, off the event loop.

Design decisions:

* One model answers one question at a time (generation holds the CPU/GPU; two at once
  would only slow both), so the asker runs on a single worker thread and the event
  loop awaits its future: search and page loads go on while an answer is generated.
* The queue is bounded: past ``capacity`` questions waiting or running, a new one is
  refused at once (:class:`Busy`, a 503 with a readable message) rather than left to
  wait without end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["AskWorker", "Busy"]

T = TypeVar("T")


class Busy(Exception):
    """The ask queue is full."""


class AskWorker:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videomem-ask")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Questions waiting or being answered now."""
        return self._pending

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the generation thread; raises :class:`Busy` when full."""
        with self._lock:
            if self._pending >= self.capacity:
                raise Busy(
                    f"busy: {self._pending} question(s) are being answered or waiting; "
                    "try again in a moment"
                )
            self._pending += 1
        # counted down when the answer is done, not when its client stops waiting
        future = self._pool.submit(fn)
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _: object) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
