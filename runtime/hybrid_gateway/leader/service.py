"""Leader-only work: route ownership and the CiliumVTEPConfig, while the lease is valid.

Two independent lanes, one for the VPC routes and one for the CiliumVTEPConfig, each on its own
thread: on acquisition, on a wake-up and every resync period each re-checks its part and
repairs drift, and retries on its own until converged. They do not wait for each other: hybrid
to cloud traffic follows the VTEP config alone, so EC2 throttling (the SDK backing off for
seconds) must not delay it. Nothing is written unless the term's `valid()` holds at that moment
(the EC2 and VTEP adapters check it before every HTTP attempt, retries included).

EC2 cannot refuse a write from a deposed holder (it has no conditional write), so a write of the
previous holder sent at the end of its validity may reach EC2 after this replica acquired. The
routes lane therefore re-checks soon after acquiring, until the latest moment such a write can
arrive (`late_write_window_s` after the acquisition; timings.py), and while leading it keeps the
write client's connection open (`keep_warm`) so its own writes need no new connection.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from hybrid_gateway.adapters.kube_events import EventSink, ObjectRef
from hybrid_gateway.adapters.kube_vtep import VtepWriteNotAllowedError
from hybrid_gateway.core.backoff import Backoff
from hybrid_gateway.core.routes import Refusal
from hybrid_gateway.leader.elector import Term
from hybrid_gateway.leader.routes import SyncResult
from hybrid_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """How one sync of a lane ended."""

    CONVERGED = "converged"
    SUPPRESSED = "suppressed"  # a write was needed but the lease check withheld it
    FAILED = "failed"  # an API error, a missing table or CRD, a refused write


# One sync of a lane: takes the term's write guard and whether it is the term's first sync;
# never raises.
LaneSync = Callable[[Callable[[], bool], bool], Outcome]

#: Re-checks of the routes within the late-write window after acquiring (the last one at its end).
RECHECKS_PER_WINDOW = 2


class RouteSyncer(Protocol):
    """What leader work needs of the route owner (leader/routes.RouteOwner); `takeover` marks
    a term's first sync (it may plan from tables described before the term)."""

    def sync(self, may_write: Callable[[], bool], *, takeover: bool = False) -> SyncResult: ...


class VtepSyncer(Protocol):
    """What leader work needs of the VTEP owner (leader/vtep.VtepOwner)."""

    def sync(self, may_write: Callable[[], bool]) -> bool: ...


class _Lane:
    """One part of leader work (routes or VTEP config) with its own loop state."""

    def __init__(self, name: str, sync: LaneSync, retry_s: float, max_backoff_s: float) -> None:
        self.name = name
        self.sync = sync
        self.wake = threading.Event()
        self.converged_term = 0  # the term whose latest sync converged; 0: none (terms start at 1)
        self.heartbeat = time.monotonic()
        # Failures back off from a retry period up to the resync period, so a stale table ID,
        # a missing permission or a missing CRD costs one attempt per back-off, not per second.
        self.backoff = Backoff(initial_s=retry_s, maximum_s=max(retry_s, max_backoff_s))
        self.failures = 0  # consecutive failed syncs
        self.term = -1  # the term this lane last synced in
        self.next_at = 0.0  # when the next sync is due (monotonic)
        self.keep_warm: Callable[[], None] | None = None  # called while idle in a valid term
        self.why_not_converged: str | None = None  # the latest sync's reason, for readiness
        self.warm_at = 0.0  # when keep_warm is due next (monotonic)


@dataclass(frozen=True)
class WorkRole:
    """What this work is called in logs and Events, and what its start and stop set: the
    leader's in active-standby mode, one shard's in active-active mode."""

    name: str
    started_reason: str
    started_text: str  # formatted with {identity}
    lost_reason: str
    lost_text: str  # formatted with {identity} and {why}
    on_active: Callable[[GatewayMetrics, bool], None]


def _leader_active(metrics: GatewayMetrics, active: bool) -> None:
    metrics.leader_is_active.set(1 if active else 0)


LEADER_ROLE = WorkRole(
    "leader",
    "LeaderElected",
    "{identity} became the gateway leader",
    "LeaderLost",
    "{identity} stopped leading: {why}",
    _leader_active,
)


class LeaderWork:
    """Leader-only work, driven by the elector's callbacks (`LeadershipCallbacks`).

    A term's writes are guarded by that term's `valid()`, so nothing from an ended term can
    be written even while the next one runs. Tested on a fake clock in
    tests/runtime/leader/test_leader_work.py.
    """

    def __init__(
        self,
        *,
        routes: RouteSyncer,
        vtep: VtepSyncer,
        resync_period_s: float,
        retry_period_s: float,
        metrics: GatewayMetrics,
        events: EventSink,
        subject: ObjectRef,
        identity: str,
        clock: Callable[[], float] = time.monotonic,
        role: WorkRole = LEADER_ROLE,
        fence: Callable[[Term], bool] | None = None,
        late_write_window_s: float = 0.0,
        keep_warm: Callable[[], None] | None = None,
        keep_warm_every_s: float = 5.0,
    ) -> None:
        self._role = role
        # Part of every write guard besides the term's validity: one regime at a time
        # (leader/regime.py). Checked first, so `valid()` stays the last check before a write.
        self._fence = fence
        self._late_write_window = late_write_window_s
        self._keep_warm_every = keep_warm_every_s
        self._in_flight = 0  # lane syncs past their term check (hand-over waits for 0)
        self._idle = threading.Condition()
        self._routes = routes
        self._vtep = vtep
        self._resync = resync_period_s
        self._retry = retry_period_s
        self._metrics = metrics
        self._events = events
        self._subject = subject
        self._identity = identity
        self._clock = clock
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._active = False
        self._term_count = 0
        self._term: Term | None = None  # the elector's term while leading
        self._wanted: Term | None = None  # set by the callbacks, applied by `run`
        self._setup_reported = False
        self._routes_lane = _Lane("routes", self._sync_routes, retry_period_s, resync_period_s)
        self._routes_lane.keep_warm = keep_warm
        self._vtep_lane = _Lane("vtep", self._sync_vtep, retry_period_s, resync_period_s)
        self._lanes = (self._routes_lane, self._vtep_lane)
        self._heartbeat = clock()
        self._last_failure: dict[str, str] = {}  # lane -> message of its latest failure
        self._last_reported: dict[str, str] = {}  # lane -> failure message sent as an Event

    # -- LeadershipCallbacks (from the elector's thread: record and wake, nothing more) --------
    def started_leading(self, term: Term) -> None:
        with self._lock:
            self._wanted = term
        self._wake.set()

    def stopped_leading(self) -> None:
        with self._lock:
            self._wanted = None
        self._wake.set()

    def new_leader(self, holder: str | None) -> None:
        log.info("the lease holder is now %s", holder or "nobody")

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
        """Re-check leadership now."""
        self._wake.set()

    def wake_routes(self) -> None:
        """Re-check the routes now (the shard's forward prefixes moved)."""
        self._routes_lane.wake.set()

    def wake_vtep(self) -> None:
        """Re-check the VTEP config now (it was created, edited or deleted)."""
        self._vtep_lane.wake.set()

    def converged(self) -> bool:
        return self._active and self.routes_converged and self.vtep_converged

    def lane_problem(self, name: str) -> str | None:
        """Why the lane named `name` ("routes" or "vtep") has not converged in this term, for
        readiness; None if it has (or no term runs)."""
        lane = next(candidate for candidate in self._lanes if candidate.name == name)
        with self._lock:
            if not self._active or lane.converged_term == self._term_count:
                return None
            if lane.term != self._term_count:
                return "first sync of the term not done yet"
            return lane.why_not_converged or "first sync of the term not done yet"

    def _valid(self) -> bool:
        term = self._term
        return term is not None and term.valid()

    def term_valid(self) -> bool:
        """True while this work's current term may write: its lease is valid and, like every
        write guard of the term, the regime fence lets it write."""
        with self._lock:
            active, term = self._active, self._term
        return active and term is not None and self._guard(term)()

    def run(self, stop: threading.Event) -> None:
        """Start/stop leader work as terms start and end; the lanes do the writing.

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
                self._heartbeat = self._clock()
                self._wake.clear()
                self.step()
                self._wake.wait(max(0.01, self._retry))
        finally:
            lane_stop.set()
            for lane in self._lanes:
                lane.wake.set()
            for thread in threads:
                thread.join()
        if self._active:
            self._stop("shutting down")

    def step(self) -> None:
        """Apply the latest leadership callback: start or stop a term."""
        with self._lock:
            wanted = self._wanted
        if wanted is not None and wanted is not self._term:
            if self._active:
                self._stop("a new term started")
            self._start(wanted)
        elif wanted is None and self._active:
            self._stop("lease no longer held")

    def _run_lane(self, lane: _Lane, stop: threading.Event) -> None:
        while not stop.is_set():
            self._lane_once(lane)
            lane.wake.wait(max(0.01, self._lane_wait(lane)))

    def tick(self, lane: str) -> None:
        """One tick of the lane named `lane` ("routes" or "vtep"), as its thread runs it."""
        self._lane_once(next(candidate for candidate in self._lanes if candidate.name == lane))

    def _lane_once(self, lane: _Lane) -> None:
        """One tick of a lane: sync when a term started, when woken, when due, or while not
        converged and its back-off has passed."""
        lane.heartbeat = self._clock()
        woken = lane.wake.is_set()
        lane.wake.clear()
        with self._idle:
            self._in_flight += 1  # before the term check: a hand-over waits for this sync
        try:
            self._lane_sync(lane, woken)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no lane sync is in flight; True if none is. Called after the term ended,
        so no new sync passes its check: afterwards nothing of the term can be written."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)

    def _lane_sync(self, lane: _Lane, woken: bool) -> None:
        with self._lock:
            active, term, number = self._active, self._term, self._term_count
        if not (active and term is not None and term.valid()):
            return
        first = lane.term != number
        if first:
            lane.term, lane.next_at = number, 0.0  # a new term: check at once
            lane.warm_at = self._clock() + self._keep_warm_every
        if not (woken or self._clock() >= lane.next_at):
            self._keep_lane_warm(lane)
            return
        started = self._clock()
        outcome = lane.sync(self._guard(term), first)
        self._record(lane, outcome)
        with self._lock:
            if self._term_count != number:  # a result from an earlier term
                return
            lane.converged_term = number if outcome is Outcome.CONVERGED else 0
            lane.why_not_converged = self._why_not(lane, outcome)
            if outcome is Outcome.CONVERGED:
                lane.next_at = self._next_check(lane, term, started)
            elif outcome is Outcome.FAILED:
                delay = lane.backoff.next_delay()
                self._metrics.leader_sync_retry_delay.labels(lane.name).set(delay)
                lane.next_at = self._clock() + delay
            else:
                lane.next_at = self._clock() + self._retry
            self._report_setup_locked(number, term)

    def _guard(self, term: Term) -> Callable[[], bool]:
        fence = self._fence
        if fence is None:
            return term.valid
        return lambda: fence(term) and term.valid()

    def _next_check(self, lane: _Lane, term: Term, started: float) -> float:
        """After a converged sync: a resync period later; but (routes only) a sync that began
        within the late-write window of its term is followed by another, the last one
        beginning at or after the window's end."""
        now = self._clock()
        due = now + self._resync
        if lane is self._routes_lane:
            until = term.acquired_at + self._late_write_window
            if started < until:
                step = self._late_write_window / RECHECKS_PER_WINDOW
                due = min(due, max(now, min(started + step, until)))
        return due

    def _keep_lane_warm(self, lane: _Lane) -> None:
        """Between syncs of a valid term: the lane's keep-warm call, every keep-warm period."""
        if lane.keep_warm is None or self._clock() < lane.warm_at:
            return
        lane.warm_at = self._clock() + self._keep_warm_every
        try:
            lane.keep_warm()
        except Exception as exc:  # only a cost saving: never a reason to stop the lane
            log.debug("%s keep-warm failed: %s", lane.name, exc)

    def _why_not(self, lane: _Lane, outcome: Outcome) -> str | None:
        if outcome is Outcome.FAILED:
            return self._last_failure.get(lane.name, "sync failed")
        if outcome is Outcome.SUPPRESSED:
            return (
                "writes withheld: the lease ran out of validity during the sync (renewal pending)"
            )
        return None

    def _lane_wait(self, lane: _Lane) -> float:
        if not self._active:
            return self._retry
        due = lane.next_at if lane.keep_warm is None else min(lane.next_at, lane.warm_at)
        wait = due - self._clock()
        if wait <= 0:  # due but not allowed (a renewal in flight): look again soon
            return self._retry / 4
        return min(self._resync, wait)

    def _lane_converged(self, lane: _Lane) -> bool:
        with self._lock:
            return self._active and lane.converged_term == self._term_count

    def _start(self, term: Term) -> None:
        with self._lock:
            self._active = True
            self._term = term
            self._term_count += 1
            self._setup_reported = False
        self._role.on_active(self._metrics, True)
        log.info("%s work started (term %d)", self._role.name, term.number)
        for lane in self._lanes:
            lane.wake.set()
        self._events.emit(
            self._subject,
            self._role.started_reason,
            self._role.started_text.format(identity=self._identity),
            warning=False,
        )

    def _stop(self, why: str) -> None:
        with self._lock:
            self._active = False
            self._term = None
            self._term_count += 1
        self._role.on_active(self._metrics, False)
        log.warning("%s work stopped: %s", self._role.name, why)
        self._events.emit(
            self._subject,
            self._role.lost_reason,
            self._role.lost_text.format(identity=self._identity, why=why),
        )

    def _sync_routes(self, guard: Callable[[], bool], first: bool) -> Outcome:
        try:
            result = self._routes.sync(guard, takeover=first)
        except Exception as exc:
            return self._failed("routes", f"route sync failed: {exc}")
        if result.refusals_changed:
            self._report_refusals(result.plan.refused)
        if result.converged:
            return Outcome.CONVERGED
        if result.failed or result.missing_tables:
            problems = [f"{k.destination} in {k.table_id}: {e}" for k, e in result.failed[:3]]
            problems += [f"route table {table} not found" for table in result.missing_tables]
            return self._failed("routes", "; ".join(problems))
        return Outcome.SUPPRESSED

    def _sync_vtep(self, guard: Callable[[], bool], _first: bool) -> Outcome:
        try:
            converged = self._vtep.sync(guard)
        except VtepWriteNotAllowedError:
            return Outcome.SUPPRESSED
        except Exception as exc:
            return self._failed("vtep", f"CiliumVTEPConfig sync failed: {exc}")
        return Outcome.CONVERGED if converged else Outcome.SUPPRESSED

    def _failed(self, lane: str, message: str) -> Outcome:
        self._last_failure[lane] = message
        return Outcome.FAILED

    def _record(self, lane: _Lane, outcome: Outcome) -> None:
        """Report failures loudly but not once per second: a log line per attempt (attempts
        are backed off), a counter, and an Event when a lane starts failing or the failure
        changes; one Event and a log line when it recovers."""
        if outcome is Outcome.FAILED:
            message = self._last_failure.get(lane.name, "failed")
            lane.failures += 1
            self._metrics.leader_sync_failures.labels(lane.name).inc()
            log.warning("%s (failure %d in a row, retrying with back-off)", message, lane.failures)
            if self._last_reported.get(lane.name) != message:
                self._last_reported[lane.name] = message
                self._events.emit(self._subject, "LeaderSyncFailing", message)
            return
        if outcome is Outcome.CONVERGED and lane.failures:
            log.info("%s sync recovered after %d failure(s)", lane.name, lane.failures)
            self._events.emit(
                self._subject,
                "LeaderSyncRecovered",
                f"{lane.name} converged after {lane.failures} failed attempt(s)",
                warning=False,
            )
            lane.failures = 0
            self._last_reported.pop(lane.name, None)
        if outcome is Outcome.CONVERGED:
            lane.backoff.reset()
            self._metrics.leader_sync_retry_delay.labels(lane.name).set(0)

    def _report_refusals(self, refusals: Sequence[Refusal]) -> None:
        text = "; ".join(r.describe() for r in refusals[:5])
        more = f" (and {len(refusals) - 5} more)" if len(refusals) > 5 else ""
        self._events.emit(self._subject, "RouteTakeoverRefused", text + more)

    def _report_setup_locked(self, number: int, term: Term) -> None:
        """Record how long this term took to converge, once, when both lanes first have.

        Called with the lock held, so readiness is never reported before this figure."""
        if self._setup_reported or not all(lane.converged_term == number for lane in self._lanes):
            return
        self._setup_reported = True
        took = self._clock() - term.acquired_at
        self._metrics.leader_setup_duration.observe(took)
        log.info("%s setup converged in %.3fs", self._role.name, took)
