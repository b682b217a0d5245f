"""Bounded waiting for tests: poll a condition until it holds or a deadline passes.

Tests cannot import each other (pytest's importlib mode), so the one helper lives here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    what: str,
    check: Callable[[], T],
    timeout_s: float = 15.0,
    *,
    poll_s: float = 0.05,
    detail: Callable[[], object] | None = None,
) -> T:
    """Return `check()`'s first truthy value; AssertionError naming `what` after `timeout_s`,
    with `detail()` (e.g. the logs of the processes waited on) appended when given."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll_s)
    message = f"timed out after {timeout_s:g} s waiting for {what} (last: {last!r})"
    raise AssertionError(message if detail is None else f"{message}: {detail()}")


@contextmanager
def running(loop: Callable[[threading.Event], object], join_s: float = 10.0) -> Iterator[None]:
    """Run `loop(stop)` in a daemon thread for the body of the `with`; then stop and join it."""
    stop = threading.Event()
    thread = threading.Thread(target=loop, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=join_s)
