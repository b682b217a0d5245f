"""The one back-off of the runtime: every retry loop (watches, reconcile, leader work) paces its
failed attempts with it, so they all behave alike under a struggling API server or kernel."""

from __future__ import annotations


class Backoff:
    """Delay between failed attempts: doubled each time up to a maximum, reset on success."""

    def __init__(self, initial_s: float = 0.5, maximum_s: float = 30.0) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self._next = initial_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s
