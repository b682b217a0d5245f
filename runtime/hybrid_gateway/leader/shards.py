"""Active-active mode: every replica owns a share of the shards, each fenced by its own Lease.

One shard is one small active-standby gateway: a `LeaseElector` on the shard's Lease and a
`LeaderWork` that writes only the shard's routes (`ShardRoutes`) and VTEP endpoints (through
the replica's one `ReplicaVtepWriter`), every write guarded by the shard term's `valid()` right
before each HTTP attempt, exactly as the leader's writes are. What is added is the choice of
WHICH shards a replica may take (`core/shards.decide`): each replica holds a membership Lease
while it is ready to forward, watches every Lease of its group (one label-selected list-watch),
and lets a shard's elector acquire only the shards the decision gives it. A balancing hand-over
ends the shard's term, waits until no write of it is in flight, then releases the Lease (from
the elector's own thread, so no renewal races it); at most one every `HANDOVER_SPACING_LEASES`
lease durations, so a returning replica gets its share back gradually.

The decisions are pure (`core.shards`, `core.shard_group`); this module runs them on the
group's threads, and `shard_assembly.build_shard_group` builds the group and its parts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hybrid_gateway.adapters.kube_lease import record_from_json
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.adapters.kube_watch import ListWatch
from hybrid_gateway.config import Config
from hybrid_gateway.core.lease import LeaseRecord, Observation, observe
from hybrid_gateway.core.pacing import SHARD_WRITE_RATE_PER_S, drain_budget
from hybrid_gateway.core.routes import RoutePlan
from hybrid_gateway.core.shard_group import (
    HANDOVER_SPACING_LEASES,
    EligibilityWatch,
    HandoverPacing,
    SlotState,
    endpoints_still_here,
    live_holder,
    next_wait,
    ownership_view,
    shards_without_new_owner,
)
from hybrid_gateway.core.shards import ShardCoordination, ShardDecision, ShardOwnership
from hybrid_gateway.health import Check
from hybrid_gateway.leader.assembly import (
    WatchHealth,
    cilium_match_task,
    elector_task,
    readiness_problem,
    route_start_task,
    work_task,
)
from hybrid_gateway.leader.cilium_match import CiliumMatch
from hybrid_gateway.leader.deferred_routes import DeferredRoutes
from hybrid_gateway.leader.elector import LeaseBackend, LeaseElector
from hybrid_gateway.leader.lease_health import ReportedLease
from hybrid_gateway.leader.regime import RegimeFence, feed_event, feed_list
from hybrid_gateway.leader.routes import SyncResult
from hybrid_gateway.leader.service import LeaderWork
from hybrid_gateway.leader.spread import ForwardPrefixes
from hybrid_gateway.leader.vtep import ReplicaVtepWriter
from hybrid_gateway.metrics import ShardMetrics
from hybrid_gateway.reporting import Reporting
from hybrid_gateway.supervisor import Supervisor, Task
from hybrid_gateway.timings import Timings
from hybrid_gateway_contract import TERMINATION_GRACE_PERIOD_S
from hybrid_gateway_contract.plans import PLAN_LABEL
from hybrid_gateway_contract.sharding import ShardPlan
from hybrid_gateway_contract.spread import with_forward_prefixes

log = logging.getLogger("hybrid_gateway")

COORDINATOR = "shard-coordinator"
FORWARD_PREFIXES = "forward-prefixes"
#: After its release a replica waits for its shards to move (core/pacing.drain_budget): the
#: takeover (DRAIN_TAKEOVER_LEASES lease durations) plus the time the new owner's write pacing
#: needs for their routes, at least DRAIN_FLOOR_S, and at most what the pod's termination
#: grace period (TERMINATION_GRACE_PERIOD_S from SIGTERM) leaves after the 2 x
#: `shutdown_rest_s` of stopping the rest and DRAIN_MARGIN_S.
DRAIN_FLOOR_S = 12.0
DRAIN_TAKEOVER_LEASES = 2.0
DRAIN_MARGIN_S = 1.0
DRAIN_POLL_S = 0.25
MEMBER_ELECTOR = "member-elector"


@dataclass(frozen=True)
class ShardRoutes:
    """One shard's forward prefixes (the current spread's), synced through the replica's one
    route owner, and the routes it retires when its prefixes moved."""

    routes: DeferredRoutes
    forward: ForwardPrefixes
    index: int

    def sync(self, may_write: Callable[[], bool], *, takeover: bool = False) -> SyncResult:
        spread = self.forward.current()
        if spread is None:  # the CiliumNodes are not listed yet: nothing to write
            return SyncResult(RoutePlan(), suppressed=True)
        # The spread's prefixes are the plan: a route of an earlier cut (another shard count,
        # an earlier spread, an active-standby leader's) is retired once they are written.
        return self.routes.sync(
            may_write,
            spread.prefixes[self.index],
            self.forward.retire(self.index),
            takeover=takeover,
        )


class RecordedLease:
    """A shard Lease backend whose reads and writes also feed the group's view, so the view
    stays informed by polling while the group watch is down."""

    def __init__(
        self, backend: LeaseBackend, name: str, seen: Callable[[str, LeaseRecord | None], None]
    ) -> None:
        self._backend = backend
        self._name = name
        self._seen = seen

    def get(self, timeout_s: float) -> LeaseRecord | None:
        record = self._backend.get(timeout_s)
        self._seen(self._name, record)
        return record

    def write(
        self,
        previous: LeaseRecord | None,
        holder: str | None,
        lease_duration_s: float,
        timeout_s: float,
    ) -> LeaseRecord:
        record = self._backend.write(previous, holder, lease_duration_s, timeout_s)
        self._seen(self._name, record)
        return record


@dataclass
class ShardSlot:
    index: int
    lease_name: str
    elector: LeaseElector
    work: LeaderWork

    @property
    def elector_task(self) -> str:
        return f"shard-{self.index}-elector"

    @property
    def work_task(self) -> str:
        return f"shard-{self.index}-work"

    def tasks(self, timings: Timings) -> list[Task]:
        """The shard's elector and its leader work, as supervised loops."""
        return [
            elector_task(self.elector_task, self.elector, timings),
            work_task(self.work_task, self.work, timings),
        ]


#: A watch of the group and its failure reporting, run as one task.
Watched = tuple[WatchHealth, ListWatch]


class ShardGroup:
    """The active-active side of a replica: membership, the shards, the group watch.

    Built by `shard_assembly.build_shard_group`: first with the parts that need nothing of
    the group, then `bind` adds those that call it back (the electors' gates, the watches)."""

    member: LeaseElector
    slots: list[ShardSlot]
    vtep_writer: ReplicaVtepWriter
    group_health: WatchHealth
    group_watch: ListWatch
    standby_leader_health: WatchHealth
    standby_leader_watch: ListWatch
    vtep_health: WatchHealth
    vtep_watch: ListWatch

    def __init__(
        self,
        *,
        config: Config,
        timings: Timings,
        reporting: Reporting,
        plan: ShardPlan,
        plan_digest: str,
        metrics: ShardMetrics,
        fence: RegimeFence,
        routes: DeferredRoutes,
        forward: ForwardPrefixes,
        vtep_store: VtepStore,
        membership: ReportedLease,
        member_lease_name: str,
        nodes_health: WatchHealth,
        cilium: CiliumMatch,
        dataplane_ready: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`clock` and `sleep` go together: the drain's polls wait with `sleep` and measure
        its budget with `clock`."""
        self._config = config
        self._timings = timings
        self._clock = clock
        self._sleep = sleep
        self._identity = config.identity
        self._reporting = reporting
        self.plan = plan
        self.plan_digest = plan_digest
        self.metrics = metrics
        self.fence = fence
        self.routes = routes
        self.forward = forward
        self._vtep_store = vtep_store
        self.membership = membership
        self.member_lease_name = member_lease_name
        self.nodes_health = nodes_health
        self.cilium = cilium
        self._dataplane_ready = dataplane_ready
        self._lock = threading.Lock()
        self._records: dict[str, Observation] = {}  # Lease name -> as last seen (group watch)
        self._plans: dict[str, str | None] = {}  # Lease name -> its plan label (group watch)
        # orphan ages and stalled receivers; grace: one lease duration (a live receiver
        # claims a shard given to it within one elector round)
        self._coordination = ShardCoordination(config.identity, grace_s=config.lease_duration_s)
        self._pacing = HandoverPacing(HANDOVER_SPACING_LEASES * config.lease_duration_s)
        self._eligibility = EligibilityWatch(timings.ineligible_shards_after_s)
        # Migration from active-standby: while its leader (the Lease named LEADER_ELECTION_ID
        # itself) is alive, no shard is claimed, so the two modes never write the routes and
        # the CiliumVTEPConfig at once during a rolling update; its SIGTERM release (or its
        # expiry) hands everything to the shards.
        self._standby_leader: Observation | None = None
        self._wake = threading.Event()
        self.heartbeat = clock()

    def bind(
        self,
        *,
        member: LeaseElector,
        slots: list[ShardSlot],
        vtep_writer: ReplicaVtepWriter,
        group_watch: Watched,
        standby_leader_watch: Watched,
        vtep_watch: Watched,
    ) -> None:
        """The parts that call the group back: the membership elector (gated by `eligible`),
        the shards (gated by `may_claim`), and the watches that feed the view."""
        self.member = member
        self.slots = slots
        self._by_lease = {slot.lease_name: slot for slot in slots}
        self.vtep_writer = vtep_writer
        self.group_health, self.group_watch = group_watch
        self.standby_leader_health, self.standby_leader_watch = standby_leader_watch
        self.vtep_health, self.vtep_watch = vtep_watch
        self.forward.on_change(self._wake_route_lanes)

    def forward_plan(self) -> ShardPlan:
        """The shard plan with the forward prefixes routed now (the current spread), e.g. for
        the node filter's per-shard counters; the equal cut before the first CiliumNode list."""
        spread = self.forward.current()
        return self.plan if spread is None else with_forward_prefixes(self.plan, spread)

    # -- the view ----------------------------------------------------------------------------
    def eligible(self) -> bool:
        """Proven able to forward: the data plane is up and route ownership is usable (the
        primary ENI is known and its source/destination check off, as last read, and every
        table readable). Stricter than the active-standby leader's gate, which lets a replica
        that cannot own routes take a lease nobody else took: here a member is handed shards by
        the others' decisions, so it must not join before it is known to forward. Checked at
        every coordinator step, not only when a Lease is taken (`_enforce_eligibility`)."""
        return self.ineligibility() is None

    def ineligibility(self) -> str | None:
        """Why this replica may not be a member, or None."""
        if not self._dataplane_ready():
            return "data plane not ready"
        problem = self.routes.ownership_problem()
        return None if problem is None else f"cannot own routes: {problem}"

    def _enforce_eligibility(self) -> None:
        """An ineligible replica gives up its membership at once (the others stop handing it
        shards and place orphans elsewhere) and, once ineligible for
        `ineligible_shards_after_s`, hands over every shard it holds (the others take them as
        orphans); a data plane that recovers within that bound keeps its shards. Membership
        and shards are taken again through the usual gates once eligible."""
        problem = self.ineligibility()
        step = self._eligibility.step(problem, self._clock())
        if step.rejoined:
            log.info("eligible again: joining as a member")
            self._reporting.events.emit(
                self._reporting.subject,
                "MemberEligible",
                f"{self._identity} can forward again and rejoins the members",
                warning=False,
            )
        if step.fell_out:
            log.error(
                "cannot forward (%s): giving up membership; shards go in %.1fs unless it recovers",
                problem,
                self._timings.ineligible_shards_after_s,
            )
            self._reporting.events.emit(
                self._reporting.subject,
                "MemberIneligible",
                f"{self._identity} cannot forward ({problem}): gives up its membership; its "
                f"shards move in {self._timings.ineligible_shards_after_s:.0f}s unless it "
                "recovers",
            )
        if step.leave_membership and self.member.leading:
            self.member.request_handover(lambda _timeout_s: True)  # no write rides on it
        if not step.give_up_shards:
            return
        held = [slot for slot in self.slots if slot.elector.leading]
        if held:
            self._eligibility.handed_over()
            log.error(
                "still cannot forward (%s): handing over shards %s",
                problem,
                ",".join(str(slot.index) for slot in held),
            )
            for slot in held:
                slot.elector.request_handover(slot.work.wait_idle)

    def view(self) -> ShardOwnership:
        with self._lock:
            records, plans = dict(self._records), dict(self._plans)
        return ownership_view(
            me=self._identity,
            me_member=self.member.valid(),
            member_prefix=f"{self._config.lease_name}-member-",
            plan_digest=self.plan_digest,
            records=records,
            plans=plans,
            slots=[SlotState(s.index, s.lease_name, s.elector.leading) for s in self.slots],
            now=self._clock(),
        )

    def _decide(self, view: ShardOwnership) -> ShardDecision:
        """The coordination's decision on `view`; a member newly passed over is reported."""
        with self._lock:
            before = self._coordination.stalled(self._clock())
            decision = self._coordination.decide(view, self._clock())
            stalled = self._coordination.stalled(self._clock())
        self.metrics.stalled_members.set(len(stalled))
        for member in sorted(stalled - before):
            log.warning(
                "member %s did not take a shard it was given within %.1fs: passing it over",
                member,
                self._config.lease_duration_s,
            )
        return decision

    def seen_standby_leader(self, record: LeaseRecord | None) -> None:
        self.fence.seen(self._config.lease_name, record, {})
        with self._lock:
            self._standby_leader = (
                None if record is None else observe(self._standby_leader, record, self._clock())
            )
        self._wake.set()
        if record is None or record.released:
            for slot in self.slots:
                slot.elector.wake()

    def standby_leader(self) -> str | None:
        """The active-standby leader still holding its Lease (a mode migration), or None."""
        with self._lock:
            observation = self._standby_leader
        return live_holder(observation, self._clock())

    def may_claim(self, index: int) -> bool:
        """The gate of shard `index`'s elector, evaluated fresh at each of its rounds."""
        if self.fence.blocked():
            return False  # another mode or plan still writes: claim nothing
        decision = self._decide(self.view())
        return index in decision.claim and self.eligible()

    # -- the group watch ---------------------------------------------------------------------
    def record_only(self, name: str, record: LeaseRecord | None) -> None:
        now = self._clock()
        with self._lock:
            if record is None:
                self._records.pop(name, None)
            else:
                self._records[name] = observe(self._records.get(name), record, now)

    def _seen(self, name: str, record: LeaseRecord | None) -> None:
        self.record_only(name, record)
        slot = self._by_lease.get(name)
        if slot is not None:
            slot.elector.notice(record)
        self._wake.set()

    def on_group_list(self, items: Iterator[dict[str, Any]]) -> None:
        listed: dict[str, LeaseRecord] = {}
        every = list(items)
        self._note_plans(every, full=True)
        feed_list(self.fence, every)
        for item in every:
            name = str((item.get("metadata") or {}).get("name") or "")
            listed[name] = record_from_json(item)
        with self._lock:
            gone = set(self._records) - set(listed)
        for name in gone:
            self._seen(name, None)
        for name, record in listed.items():
            self._seen(name, record)
        self.group_health.reporter.succeeded()

    def _note_plans(self, items: list[dict[str, Any]], *, full: bool) -> None:
        with self._lock:
            if full:
                self._plans.clear()
            for item in items:
                metadata = item.get("metadata") or {}
                labels = metadata.get("labels") or {}
                self._plans[str(metadata.get("name") or "")] = labels.get(PLAN_LABEL)

    def on_group_event(self, kind: str, item: dict[str, Any]) -> None:
        name = str((item.get("metadata") or {}).get("name") or "")
        self._note_plans([item], full=False)
        feed_event(self.fence, kind, item)
        self._seen(name, None if kind == "DELETED" else record_from_json(item))

    def _wake_route_lanes(self) -> None:
        """The forward prefixes moved: every owned shard writes its new ones now."""
        for slot in self.slots:
            slot.work.wake_routes()

    def wake_vtep_lanes(self) -> None:
        self.vtep_writer.changed()
        for slot in self.slots:
            slot.work.wake_vtep()

    # -- the coordinator loop ------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Publish the view, wake the electors of claimable shards, start hand-overs; again at
        every Lease change, at the next expiry, and every retry period."""
        while not stop.is_set():
            self.heartbeat = self._clock()
            self._wake.clear()
            try:
                self.step()
            except Exception:  # a bug here must not stop the loop silently
                log.exception("shard coordination step failed")
            self._wake.wait(self._next_wait())

    def step(self) -> None:
        self._enforce_eligibility()
        view = self.view()
        self._publish(view)
        if self.fence.blocked():
            # another mode or plan still writes (an active-standby leader, another plan's
            # owners): claim and hand over nothing yet, and judge nobody stalled for shards
            # nobody may take
            return
        decision = self._decide(view)
        for index in decision.claim:
            self.slots[index].elector.wake()
        if decision.release is None:
            return
        slot = self.slots[decision.release]
        if not self._pacing.allow(self._clock(), slot.work.converged()):
            return
        self.metrics.handovers.inc()
        log.info("handing shard %d over to even out the load", slot.index)
        self._reporting.events.emit(
            self._reporting.subject,
            "ShardHandedOver",
            f"{self._identity} hands shard {slot.index} over to even out the load",
            warning=False,
        )
        slot.elector.request_handover(slot.work.wait_idle)

    def _next_wait(self) -> float:
        """Until the next foreign Lease may expire (its shard becomes free, or a member is
        gone), or a retry period."""
        with self._lock:
            records = dict(self._records)
        return next_wait(records, self._identity, self._clock(), self._config.retry_period_s)

    def _publish(self, view: ShardOwnership) -> None:
        self.metrics.members.set(len(view.members))
        self.metrics.shards_held.set(sum(1 for slot in self.slots if slot.work.active))
        self.metrics.shard_owner.clear()
        for index in range(view.shard_count):
            self.metrics.shard_owner.labels(str(index), view.holder(index) or "").set(1)
        self._reporting.metrics.leader_is_active.set(
            1 if any(slot.work.active for slot in self.slots) else 0
        )

    # -- wiring ----------------------------------------------------------------------------------
    def tasks(self, timings: Timings) -> list[Task]:
        """Route start-up first, the group watch before the electors (expiries are seen on
        our own clock from the first list), then membership, the shards and the coordinator."""
        tasks = [
            route_start_task(self.routes, timings),
            cilium_match_task(self.cilium, timings),
            # Its own name: the data plane's CiliumNode watch runs beside it as "ciliumnode-watch".
            self.nodes_health.task(
                "forward-prefixes-ciliumnode-watch", self.forward.nodes.watch, timings
            ),
            Task(
                FORWARD_PREFIXES,
                self.forward.run,
                heartbeat=lambda: self.forward.heartbeat,
                stale_after_s=timings.stale_elector_s,
                wake=self.forward.wake,
            ),
            self.group_health.task("lease-group-watch", self.group_watch, timings),
            self.standby_leader_health.task(
                "standby-leader-watch", self.standby_leader_watch, timings
            ),
            elector_task(MEMBER_ELECTOR, self.member, timings),
        ]
        for slot in self.slots:
            tasks += slot.tasks(timings)
        tasks.append(
            Task(
                COORDINATOR,
                self.run,
                heartbeat=lambda: self.heartbeat,
                stale_after_s=timings.stale_elector_s,
                wake=self._wake.set,
            )
        )
        tasks.append(self.vtep_health.task("vtep-watch", self.vtep_watch, timings))
        return tasks

    def readiness(
        self,
        dataplane_ready: Callable[[], bool] | None,
        watches: Sequence[tuple[str, WatchHealth]] = (),
    ) -> Check:
        """`/readyz` in active-active mode: the data plane is ready, route ownership is usable,
        the membership Lease works, every watch works (`watches`: the data plane's), and every
        shard this replica owns has converged."""

        def ready() -> tuple[bool, str]:
            # Ready means "member, or about to be": a replica that cannot join (route ownership
            # not prepared, not eligible) is not ready, so a rolling update does not take the
            # last owner away while its successor can own nothing. Its cause comes first: the
            # membership Lease's silence that follows from it would only hide it.
            if not self.member.valid() and not self.eligible():
                why = self.ineligibility() or "not eligible"
                return False, f"cannot own shards yet: {why}"
            problem = readiness_problem(
                dataplane_ready,
                self.routes,
                self.membership,
                [
                    ("CiliumVTEPConfig watch", self.vtep_health),
                    ("Lease group watch", self.group_health),
                    ("CiliumNode watch", self.nodes_health),
                    *watches,
                ],
                self._timings,
            )
            problem = problem or self.cilium.problem()
            if problem is not None:
                return False, problem
            owned = [slot for slot in self.slots if slot.work.active]
            pending = []
            for slot in owned:
                lanes = [
                    f"{what}: {problem}"
                    for lane, what in (("routes", "routes"), ("vtep", "CiliumVTEPConfig"))
                    if (problem := slot.work.lane_problem(lane)) is not None
                ]
                if lanes:
                    pending.append(f"shard {slot.index} ({', '.join(lanes)})")
            if pending:
                return False, "not converged yet: " + "; ".join(pending)
            if not owned:
                member = "member" if self.member.valid() else "not a member yet"
                waiting = self.fence.decision()
                if not waiting.may_write:
                    member += f", waiting for {waiting.describe()} to stop"
                return True, f"ready ({member}, owns no shard)"
            return True, "ready (owns shards " + ",".join(str(s.index) for s in owned) + ")"

        return ready

    def shut_down(
        self, supervisor: Supervisor, timings: Timings, stop_rest: Callable[[], None]
    ) -> None:
        """Shard work first, then the shard Leases are released (all at once, so the others
        take them over at once), then the membership, then the wait for the shards' routes
        and VTEP endpoints to move (`drain`), then the rest."""
        stopping_since = self._clock()
        held = [s for s in self.slots if s.work.active or s.elector.holder == self._identity]
        for slot in self.slots:
            slot.elector.shutdown()
        self.member.shutdown()
        names = [COORDINATOR, MEMBER_ELECTOR]
        for slot in self.slots:
            names += [slot.work_task, slot.elector_task]
        stuck = set(supervisor.stop(names, timings.shutdown_join_s))
        releasable = [s for s in held if s.work_task not in stuck]
        for slot in held:
            if slot.work_task in stuck:
                log.error("shard %d work still running; not releasing its lease", slot.index)
        if releasable:
            with ThreadPoolExecutor(max_workers=len(releasable)) as pool:
                list(
                    pool.map(
                        lambda s: s.elector.release(timeout_s=timings.api_timeout_s), releasable
                    )
                )
        self.member.release(timeout_s=timings.api_timeout_s)
        grace_left = TERMINATION_GRACE_PERIOD_S - (self._clock() - stopping_since)
        self.drain(
            [s.index for s in releasable],
            takeover_s=DRAIN_TAKEOVER_LEASES * timings.lease_duration_s,
            limit_s=grace_left - 2 * timings.shutdown_rest_s - DRAIN_MARGIN_S,
        )
        stop_rest()

    def route_writes_to_move(self, released: Sequence[int]) -> int:
        """The route writes the new owners make to move the released shards: every forward
        prefix of theirs in every route table."""
        spread = self.forward.current()
        if spread is None:
            return 0
        prefixes = sum(len(spread.prefixes[i]) for i in released)
        return prefixes * len(self._config.route_table_ids)

    def drain(self, released: Sequence[int], *, takeover_s: float, limit_s: float) -> None:
        """Keep the process (and with it the node, in a drain) until the released shards'
        routes and VTEP endpoints point elsewhere: the kernel forwards for whatever still
        points here, and a node that goes away first blackholes it until the new owners'
        writes land. For `drain_budget`'s budget at most; when the takeover and the new
        owner's pacing may need more than `limit_s`, said at once (the routes left move after
        the exit)."""
        if not released:
            return
        writes = self.route_writes_to_move(released)
        move = drain_budget(writes, takeover_s=takeover_s, floor_s=DRAIN_FLOOR_S, limit_s=limit_s)
        budget = move.budget_s
        if move.too_short:
            text = (
                f"moving {writes} route write(s) may take {move.needed_s:.0f}s at the new "
                f"owner's write pacing ({SHARD_WRITE_RATE_PER_S:g}/s), but the termination grace "
                f"period leaves {budget:.0f}s: routes still pointing here when the pod exits move "
                "after it"
            )
            log.warning("%s", text)
            self._reporting.events.emit(self._reporting.subject, "ShardDrainTooShort", text)
        started = self._clock()
        deadline = started + budget
        left = self._still_here(released)
        while left is not None and self._clock() < deadline:
            self._sleep(DRAIN_POLL_S)
            left = self._still_here(released)
        took = self._clock() - started
        if left is None:
            log.info("shards %s moved in %.2fs", ",".join(map(str, released)), took)
        else:
            log.warning("stopping with %s after %.1fs", left, took)
            self._reporting.events.emit(
                self._reporting.subject,
                "ShardDrainIncomplete",
                f"{self._identity} stops with {left} after {took:.1f}s; they move when the "
                "new owners' writes land",
            )

    def _still_here(self, released: Sequence[int]) -> str | None:
        """What of the released shards still points at this replica, or None.

        While other members of our plan live, they take the released shards' Leases, and a
        shard without a new holder is still ours to cover. Without them (the last replica of
        a plan: a shard-count change, a switch back to active-standby, a rollback), the
        successors work under another regime, whose cut need not have our shards at all
        (4 -> 2 shards: no one ever takes shards 2 and 3): then only what still points here
        counts, the VTEP endpoints and the routes, which the successor's writes move or retire."""
        orphans = shards_without_new_owner(self.view(), self._identity, released)
        if orphans:
            return f"shard(s) {','.join(map(str, orphans))} without a new owner"
        names = {n for i in released for n, _cidr in self.plan.shards[i].vtep_endpoints}
        try:
            observed = self._vtep_store.get()
        except Exception as exc:
            return f"CiliumVTEPConfig unreadable ({exc})"
        ours = endpoints_still_here(observed, names, self._config.node_ip)
        if ours:
            return f"VTEP endpoint(s) {','.join(ours)} still pointing here"
        spread = self.forward.current()
        if spread is None:
            return None
        prefixes = [p for i in released for p in spread.prefixes[i]]
        try:
            here = self.routes.pointing_here(prefixes)
        except Exception as exc:
            return f"route tables unreadable ({exc})"
        if here:
            return f"{len(here)} route(s) still pointing here"
        return None
