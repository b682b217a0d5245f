"""Leader-only work: route ownership and the CiliumVTEPConfig, while the lease is valid.

One loop: on acquisition, on a VTEP-config event and every resync period it re-checks
everything and repairs drift. Nothing is written unless `elector.valid()` holds at that moment
(the EC2 adapter re-checks before every HTTP attempt, retries included).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from hybrid_gateway.adapters.kube_events import EventRecorder, ObjectRef
from hybrid_gateway.core.routes import Refusal
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.leader.vtep import VtepOwner
from hybrid_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class AsyncEvents:
    """Records Events from a queue on its own thread: a slow or partitioned API server must
    never block the elector or leader work."""

    def __init__(self, recorder: EventRecorder | None, capacity: int = 100) -> None:
        self._recorder = recorder
        self._queue: queue.Queue[tuple[ObjectRef, str, str, bool] | None] = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        if recorder is not None:
            self._thread.start()

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        if self._recorder is None:
            return
        try:
            self._queue.put_nowait((obj, reason, message, warning))
        except queue.Full:
            log.warning("event queue full, dropped %s: %s", reason, message)

    def close(self) -> None:
        if self._recorder is not None:
            self._queue.put(None)
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        assert self._recorder is not None
        while (item := self._queue.get()) is not None:
            obj, reason, message, warning = item
            self._recorder.emit(obj, reason, message, warning=warning)


class LeaderWork:
    def __init__(
        self,
        *,
        valid: Callable[[], bool],
        acquired_at: Callable[[], float | None],
        routes: RouteOwner,
        vtep: VtepOwner,
        resync_period_s: float,
        retry_period_s: float,
        metrics: GatewayMetrics,
        events: AsyncEvents,
        subject: ObjectRef,
        identity: str,
    ) -> None:
        self._valid = valid
        self._acquired_at = acquired_at
        self._routes = routes
        self._vtep = vtep
        self._resync = resync_period_s
        self._retry = retry_period_s
        self._metrics = metrics
        self._events = events
        self._subject = subject
        self._identity = identity
        self._wake = threading.Event()
        self._active = False
        self._setup_reported = False
        self.routes_converged = False
        self.vtep_converged = False
        self.heartbeat = time.monotonic()

    @property
    def active(self) -> bool:
        return self._active

    def wake(self) -> None:
        """Re-check now (leadership changed, or the VTEP config was touched)."""
        self._wake.set()

    def report_refusals(self, refusals: Sequence[Refusal]) -> None:
        text = "; ".join(r.describe() for r in refusals[:5])
        more = f" (and {len(refusals) - 5} more)" if len(refusals) > 5 else ""
        self._events.emit(self._subject, "RouteTakeoverRefused", text + more)

    def converged(self) -> bool:
        return self._active and self.routes_converged and self.vtep_converged

    def run(self, stop: threading.Event) -> None:
        next_full = 0.0
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            woken = self._wake.is_set()
            self._wake.clear()
            if self._valid():
                if not self._active:
                    self._start()
                    next_full = 0.0
                if woken or time.monotonic() >= next_full or not self._all_converged():
                    self._sync_once()
                    next_full = time.monotonic() + self._resync
            elif self._active:
                self._stop("lease no longer held")
            # Wake up on events, for the next resync, and at least every retry period so that a
            # lapsed lease is noticed promptly (writes are guarded regardless).
            timeout = self._retry
            if self._active and self._all_converged():
                timeout = min(self._retry, max(0.0, next_full - time.monotonic()))
            self._wake.wait(max(0.01, timeout))
        if self._active:
            self._stop("shutting down")

    def _all_converged(self) -> bool:
        return self.routes_converged and self.vtep_converged

    def _start(self) -> None:
        self._active = True
        self._setup_reported = False
        self.routes_converged = self.vtep_converged = False
        self._metrics.leader_is_active.set(1)
        log.info("leader work started")
        self._events.emit(
            self._subject,
            "LeaderElected",
            f"{self._identity} became the gateway leader",
            warning=False,
        )

    def _stop(self, why: str) -> None:
        self._active = False
        self.routes_converged = self.vtep_converged = False
        self._metrics.leader_is_active.set(0)
        log.warning("leader work stopped: %s", why)
        self._events.emit(self._subject, "LeaderLost", f"{self._identity} stopped leading: {why}")

    def _sync_once(self) -> None:
        try:
            result = self._routes.sync(self._valid)
            self.routes_converged = result.converged
        except Exception as exc:
            self.routes_converged = False
            log.warning("route sync failed (retrying): %s", exc)
        try:
            self.vtep_converged = self._vtep.sync(self._valid)
        except Exception as exc:
            self.vtep_converged = False
            log.warning("CiliumVTEPConfig sync failed (retrying): %s", exc)
        acquired = self._acquired_at()
        if self._all_converged() and not self._setup_reported and acquired is not None:
            self._setup_reported = True
            took = time.monotonic() - acquired
            self._metrics.leader_setup_duration.set(took)
            log.info("leader setup converged in %.3fs", took)
