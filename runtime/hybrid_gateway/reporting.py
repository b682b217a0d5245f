"""Loud, not noisy: one kind of failure reported in the log, a metric and an Event.

A failure that repeats every retry period (RBAC missing, a wrong namespace) must be impossible
to miss and must not flood the log or the Event stream: the first failure of a streak is logged
at WARNING and recorded as an Event; repeats are counted every time, logged at most once per
`interval_s` with how many happened in between, and recorded as an Event at most once per
`event_interval_s`. The recovery is logged once. `failing_for` lets readiness turn false when a
streak lasts too long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hybrid_gateway.adapters.kube_events import EventSink, ObjectRef
from hybrid_gateway.metrics import GatewayMetrics

log = logging.getLogger("hybrid_gateway")

LOG_INTERVAL_S = 60.0
EVENT_INTERVAL_S = 300.0


class FailureReporter:
    def __init__(
        self,
        what: str,
        *,
        reason: str,
        events: EventSink,
        subject: ObjectRef,
        count: Callable[[str], None],
        hint: str = "",
        interval_s: float = LOG_INTERVAL_S,
        event_interval_s: float = EVENT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._reason = reason
        self._events = events
        self._subject = subject
        self._count = count
        self._hint = hint
        self._interval_s = interval_s
        self._event_interval_s = event_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}  # operation -> start of its failure streak
        self._last_log = float("-inf")
        self._last_event = float("-inf")
        self._suppressed = 0
        self.last_error: str | None = None

    def failed(self, operation: str, error: object) -> None:
        """One failed call (`operation`: get, update, list/watch ...)."""
        now = self._clock()
        text = f"{self.what}: {operation} failed: {error}"
        self._count(operation)
        with self._lock:
            self.last_error = text
            self._since.setdefault(operation, now)
            log_now = now - self._last_log >= self._interval_s
            event_now = now - self._last_event >= self._event_interval_s
            suppressed = self._suppressed
            if log_now:
                self._last_log, self._suppressed = now, 0
            else:
                self._suppressed += 1
            if event_now:
                self._last_event = now
        if log_now:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("%s%s%s", text, more, f"; {self._hint}" if self._hint else "")
        if event_now:
            self._events.emit(
                self._subject, self._reason, text + (f"; {self._hint}" if self._hint else "")
            )

    def succeeded(self, *operations: str) -> None:
        """These operations (all if none named) work again. The streak ends, and the next
        failure is logged at once, only when no operation is failing any more: a read that
        works does not hide a write that keeps failing."""
        with self._lock:
            cleared = [
                self._since.pop(op) for op in operations or list(self._since) if op in self._since
            ]
            recovered = bool(cleared) and not self._since
            if recovered:
                self._last_log = float("-inf")
                self._suppressed = 0
        if recovered:
            took = self._clock() - min(cleared)
            log.info("%s: working again after %.1fs of failures", self.what, took)

    def failing_for(self) -> float:
        """Seconds since the oldest failure streak still running began (0 when none is)."""
        with self._lock:
            return self._clock() - min(self._since.values()) if self._since else 0.0


@dataclass(frozen=True)
class Reporting:
    """Where failures go: Events (asynchronous) about this pod, and the metrics."""

    events: EventSink
    subject: ObjectRef
    metrics: GatewayMetrics

    def reporter(self, what: str, api: str, reason: str, hint: str = "") -> FailureReporter:
        def count(operation: str) -> None:
            self.metrics.api_errors.labels(api=api, operation=operation).inc()

        return FailureReporter(
            what, reason=reason, events=self.events, subject=self.subject, count=count, hint=hint
        )
