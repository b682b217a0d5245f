"""Leader-only work: route ownership and the CiliumVTEPConfig, while the lease is valid.

Two independent lanes, one for the VPC routes and one for the CiliumVTEPConfig, each on its own
thread: on acquisition, on a wake-up and every resync period each re-checks its part and
repairs drift, and retries on its own until converged. They do not wait for each other: hybrid
to cloud traffic follows the VTEP config alone, so EC2 throttling (the SDK backing off for
seconds) must not delay it. Nothing is written unless `elector.valid()` holds at that moment
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


class _Lane:
    """One part of leader work (routes or VTEP config) with its own loop state."""

    def __init__(self, name: str, sync: Callable[[], bool]) -> None:
        self.name = name
        self.sync = sync
        self.wake = threading.Event()
        self.converged_term = 0  # the term whose latest sync converged; 0: none (terms start at 1)
        self.heartbeat = time.monotonic()


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
        self._lock = threading.Lock()
        self._active = False
        self._term = 0
        self._setup_reported = False
        self._routes_lane = _Lane("routes", self._sync_routes)
        self._vtep_lane = _Lane("vtep", self._sync_vtep)
        self._lanes = (self._routes_lane, self._vtep_lane)
        self._heartbeat = time.monotonic()

    @property
    def active(self) -> bool:
        return self._active

    @property
    def routes_converged(self) -> bool:
        return self._lane_converged(self._routes_lane)

    @property
    def vtep_converged(self) -> bool:
        return self._lane_converged(self._vtep_lane)

    @property
    def heartbeat(self) -> float:
        """The oldest tick of the coordinating loop and both lanes (for liveness)."""
        return min(self._heartbeat, *(lane.heartbeat for lane in self._lanes))

    def wake(self) -> None:
        """Re-check leadership now (it changed); starting a term wakes both lanes."""
        self._wake.set()

    def wake_vtep(self) -> None:
        """Re-check the VTEP config now (it was created, edited or deleted)."""
        self._vtep_lane.wake.set()

    def report_refusals(self, refusals: Sequence[Refusal]) -> None:
        text = "; ".join(r.describe() for r in refusals[:5])
        more = f" (and {len(refusals) - 5} more)" if len(refusals) > 5 else ""
        self._events.emit(self._subject, "RouteTakeoverRefused", text + more)

    def converged(self) -> bool:
        return self._active and self.routes_converged and self.vtep_converged

    def run(self, stop: threading.Event) -> None:
        """Start/stop leader work as the lease comes and goes; the lanes do the writing.

        Returns only after both lanes have returned, so no write is in flight afterwards.
        """
        lane_stop = threading.Event()
        threads = [
            threading.Thread(
                target=self._run_lane,
                args=(lane, lane_stop),
                name=f"leader-{lane.name}",
                daemon=True,
            )
            for lane in self._lanes
        ]
        for thread in threads:
            thread.start()
        try:
            while not stop.is_set():
                self._heartbeat = time.monotonic()
                self._wake.clear()
                if self._valid():
                    if not self._active:
                        self._start()
                elif self._active:
                    self._stop("lease no longer held")
                # Wake up on events and at least every retry period so that a lapsed lease is
                # noticed promptly (writes are guarded regardless).
                self._wake.wait(max(0.01, self._retry))
        finally:
            lane_stop.set()
            for lane in self._lanes:
                lane.wake.set()
            for thread in threads:
                thread.join()
        if self._active:
            self._stop("shutting down")

    def _run_lane(self, lane: _Lane, stop: threading.Event) -> None:
        next_full = 0.0
        term = -1
        while not stop.is_set():
            lane.heartbeat = time.monotonic()
            woken = lane.wake.is_set()
            lane.wake.clear()
            with self._lock:
                active, current = self._active, self._term
            if active and self._valid():
                if current != term:
                    term, next_full = current, 0.0  # a new term: check at once
                if woken or time.monotonic() >= next_full or not self._lane_converged(lane):
                    converged = lane.sync()
                    next_full = time.monotonic() + self._resync
                    with self._lock:
                        if self._term == term:  # not a result from an earlier term
                            lane.converged_term = term if converged else 0
                            self._report_setup_locked(term)
            timeout = self._retry
            if active and self._lane_converged(lane):
                timeout = max(0.0, next_full - time.monotonic())  # at most the resync period
            lane.wake.wait(max(0.01, timeout))

    def _lane_converged(self, lane: _Lane) -> bool:
        with self._lock:
            return self._active and lane.converged_term == self._term

    def _start(self) -> None:
        with self._lock:
            self._active = True
            self._term += 1
            self._setup_reported = False
        self._metrics.leader_is_active.set(1)
        log.info("leader work started")
        for lane in self._lanes:
            lane.wake.set()
        self._events.emit(
            self._subject,
            "LeaderElected",
            f"{self._identity} became the gateway leader",
            warning=False,
        )

    def _stop(self, why: str) -> None:
        with self._lock:
            self._active = False
            self._term += 1
        self._metrics.leader_is_active.set(0)
        log.warning("leader work stopped: %s", why)
        self._events.emit(self._subject, "LeaderLost", f"{self._identity} stopped leading: {why}")

    def _sync_routes(self) -> bool:
        try:
            return self._routes.sync(self._valid).converged
        except Exception as exc:
            log.warning("route sync failed (retrying): %s", exc)
            return False

    def _sync_vtep(self) -> bool:
        try:
            return self._vtep.sync(self._valid)
        except Exception as exc:
            log.warning("CiliumVTEPConfig sync failed (retrying): %s", exc)
            return False

    def _report_setup_locked(self, term: int) -> None:
        """Record how long this term took to converge, once, when both lanes first have.

        Called with the lock held, so readiness is never reported before this figure."""
        if self._setup_reported or not all(lane.converged_term == term for lane in self._lanes):
            return
        acquired = self._acquired_at()
        if acquired is None:
            return
        self._setup_reported = True
        took = time.monotonic() - acquired
        self._metrics.leader_setup_duration.observe(took)
        log.info("leader setup converged in %.3fs", took)
