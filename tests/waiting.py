"""Waiting for something a test needs to see happen, instead of sleeping for it.

A test that sleeps and then asserts an upper bound ("at most 4 items were produced")
passes when the thing it watches never ran at all, and a fixed sleep is too short on a
loaded machine. So a bound is checked in two steps: ``wait_until`` the producer has
reached it (fails, saying what it waited for, if it never does), then ``holds_for`` a
short while, which fails at the first moment the producer goes past it. Deadlines are
generous because only a broken program reaches them, never a slow machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object], what: str, timeout_s: float = 60.0, poll_s: float = 0.01
) -> None:
    """Return as soon as ``condition()`` is true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:.0f}s for {what}")
        time.sleep(poll_s)


def holds_for(
    condition: Callable[[], object], what: str, seconds: float = 0.3, poll_s: float = 0.005
) -> None:
    """Check ``condition()`` for ``seconds``; fail with ``what`` the first time it is false.

    Only meaningful after ``wait_until`` has seen the producer arrive: it gives a
    producer that ignores its bound the time to show it, and cannot fail a correct one.
    """
    deadline = time.monotonic() + seconds
    while True:
        if not condition():
            raise AssertionError(f"no longer true: {what}")
        if time.monotonic() >= deadline:
            return
        time.sleep(poll_s)
