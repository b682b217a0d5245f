"""Who may lead in active-standby mode: a replica that can do the whole job goes first.

A leader must forward (data plane ready, primary ENI source/destination check off) AND point
the VPC route tables at itself (instance identity, primary ENI and tables resolved when
ROUTE_TABLE_IDS is set). A replica that forwards but cannot own routes would move the
CiliumVTEPConfig to itself and leave the VPC routes on the old, possibly dead, leader: hybrid to
VPC through the new leader, VPC to hybrid into the dead node. So:

- it is not ready (`/readyz` names what it waits for);
- it gives a replica that can own routes a head start: it acquires a free or expired Lease only
  after wanting it continuously for `head_start_s` (one lease duration) without anyone else
  taking it. A replica that can own routes is woken by the release or the expiry and acquires
  within a round, so it always wins; if none does, this replica is the last one left and takes
  over, loudly: `/readyz` and the metric at once, an error log and the Event
  `LeaderCannotOwnRoutes` once it has lasted a head start (a replica whose EC2 start-up is only
  slow is whole a moment later, and a fresh deployment should not cry wolf);
- a leader that becomes unable (the source/destination check turned back on, re-read every few
  seconds) or leads as the last one left releases the Lease, once at once and then every
  `yield_retry_s`, after its writes in flight are done (`LeaseElector.request_handover`). A
  ready standby takes it in one round. If none does, nothing moved meanwhile (the
  CiliumVTEPConfig and the routes stay as they are until a new holder writes them) and this
  replica takes the Lease back after the head start.

Why not publish "I can own routes" per replica: that takes one more object and write stream per
replica and Lease rights beyond the one named Lease; the head start needs neither and costs a
lease duration only when no replica can own routes, when routes cannot move anyway.

A replica whose data plane is not ready never acquires (it could not forward anything); a
leader whose data plane stops being ready hands over once that has lasted a head start (a
device the next pass recreates is not worth a failover).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from hybrid_gateway.leader.elector import LeadershipCallbacks, LeaseElector, Term
from hybrid_gateway.reporting import Reporting

log = logging.getLogger("hybrid_gateway")

DATAPLANE_NOT_READY = "data plane not ready"


class RouteOwnership(Protocol):
    def ownership_problem(self) -> str | None: ...


class Work(Protocol):
    @property
    def active(self) -> bool: ...
    def wait_idle(self, timeout_s: float) -> bool: ...


class Eligibility:
    """The acquisition gate, the leader's hand-over when it cannot own routes, and the state
    that readiness and metrics show. `run` is its loop (every retry period)."""

    def __init__(
        self,
        *,
        identity: str,
        dataplane_ready: Callable[[], bool],
        routes: RouteOwnership,
        reporting: Reporting,
        head_start_s: float,
        yield_retry_s: float,
        retry_period_s: float,
        renew_deadline_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._identity = identity
        self._dataplane_ready = dataplane_ready
        self._routes = routes
        self._reporting = reporting
        self._head_start = head_start_s
        self._yield_retry = yield_retry_s
        self._retry = retry_period_s
        # rounds of a follower that wants the lease come at least every retry period (plus a
        # read that may take a renew deadline): a longer gap means it stopped wanting it
        self._continuity = 2 * retry_period_s + renew_deadline_s
        self._clock = clock
        self._lock = threading.Lock()
        self._wanted_since: float | None = None
        self._last_asked = float("-inf")
        self._refusal_logged = False
        self._last_yield = float("-inf")
        self._last_resort_at = float("-inf")
        self._leading_unable: str | None = None  # the problem while leading unable
        self._unable_since: float | None = None  # leading unable since (monotonic)
        self._reported: str | None = None  # the problem reported loudly in this episode
        self._wake = threading.Event()
        self.heartbeat = clock()
        self.elector: LeaseElector | None = None  # set once built (it takes `can_acquire`)
        self.work: Work | None = None

    def problem(self) -> str | None:
        """Why this replica cannot do a leader's whole job, or None."""
        if not self._dataplane_ready():
            return DATAPLANE_NOT_READY
        routes = self._routes.ownership_problem()
        return None if routes is None else f"cannot own routes: {routes}"

    @property
    def leading_unable(self) -> str | None:
        """What this leader cannot do, while it leads without being able to (else None)."""
        return self._leading_unable

    # -- the elector's gate -------------------------------------------------------------------
    def can_acquire(self) -> bool:
        """Start a term now? Yes when able; never without a data plane; otherwise only after
        the head start (see the module docstring)."""
        if not self._dataplane_ready():
            return False
        problem = self._routes.ownership_problem()
        now = self._clock()
        with self._lock:
            if problem is None:
                self._wanted_since, self._refusal_logged = None, False
                return True
            if self._wanted_since is None or now - self._last_asked > self._continuity:
                self._wanted_since = now
            self._last_asked = now
            waited = now - self._wanted_since
            log_refusal = not self._refusal_logged
            self._refusal_logged = True
        if waited < self._head_start:
            if log_refusal:
                log.warning(
                    "the lease is free but this replica cannot own routes (%s): leaving it to a "
                    "replica that can for %.1fs",
                    problem,
                    self._head_start,
                )
            return False
        log.warning(
            "no replica that can own routes took the lease in %.1fs: taking it as the last one "
            "left, WITHOUT route ownership (%s)",
            waited,
            problem,
        )
        with self._lock:
            self._last_resort_at = now  # no hand-over attempt right away: nobody else came
        return True

    def holder_seen(self, holder: str | None) -> None:
        """Someone else took the lease: the head start starts again next time it is free."""
        if holder is not None and holder != self._identity:
            with self._lock:
                self._wanted_since = None

    # -- the loop ----------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.heartbeat = self._clock()
            self._wake.clear()
            self.step()
            self._wake.wait(self._retry)

    def step(self) -> None:
        """Publish the state; a leader that cannot do the whole job hands over (see above)."""
        problem = self.problem()
        metrics = self._reporting.metrics
        metrics.replica_eligible.set(0 if problem else 1)
        work, elector = self.work, self.elector
        leading = work is not None and work.active
        unable = problem if leading else None
        metrics.leader_without_route_ownership.set(1 if unable else 0)
        now = self._clock()
        if unable is None:
            if leading:  # a whole leader (again): the next episode starts afresh
                if self._reported is not None:
                    log.info("leader can do its whole job again")
                    self._reporting.events.emit(
                        self._reporting.subject,
                        "LeaderCanOwnRoutes",
                        f"{self._identity} leads and can do the whole job again",
                        warning=False,
                    )
                with self._lock:
                    self._last_yield = self._last_resort_at = float("-inf")
            self._leading_unable, self._unable_since, self._reported = None, None, None
            return
        self._leading_unable = unable
        if self._unable_since is None:
            self._unable_since = now
        # Loud once it lasts: a leader whose EC2 start-up is merely slow is whole a moment later.
        if self._reported != unable and now - self._unable_since >= self._head_start:
            self._reported = unable
            text = f"{self._identity} leads WITHOUT being able to do the whole job: {unable}"
            log.error("%s", text)
            self._reporting.events.emit(self._reporting.subject, "LeaderCannotOwnRoutes", text)
        if elector is None or work is None:
            return
        if unable == DATAPLANE_NOT_READY and now - self._unable_since < self._head_start:
            return  # a device being recreated by the next pass is not worth a failover
        with self._lock:
            last_attempt = max(self._last_yield, self._last_resort_at)
        if now - last_attempt < self._yield_retry:
            return
        with self._lock:
            self._last_yield = now
        log.warning("leader cannot do its whole job (%s): releasing the lease", unable)
        self._reporting.events.emit(
            self._reporting.subject,
            "LeaderYielding",
            f"{self._identity} releases the gateway lease ({unable}); a standby that can own "
            f"routes takes it now, else {self._identity} takes it back in "
            f"{self._head_start:.0f}s",
        )
        elector.request_handover(work.wait_idle)


class GatedCallbacks:
    """Leader work's callbacks, with the holders seen passed to the eligibility gate too."""

    def __init__(self, inner: LeadershipCallbacks, eligibility: Eligibility) -> None:
        self._inner = inner
        self._eligibility = eligibility

    def started_leading(self, term: Term) -> None:
        self._inner.started_leading(term)
        self._eligibility.wake()

    def stopped_leading(self) -> None:
        self._inner.stopped_leading()
        self._eligibility.wake()

    def new_leader(self, holder: str | None) -> None:
        self._eligibility.holder_seen(holder)
        self._inner.new_leader(holder)
