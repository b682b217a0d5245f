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
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from hybrid_gateway.adapters.ec2 import KEEP_WARM_S
from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_cilium import CiliumAgentReader
from hybrid_gateway.adapters.kube_lease import LeaseStore, lease_watch, record_from_json
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.adapters.kube_watch import ListWatch
from hybrid_gateway.core.lease import LeaseRecord, Observation, observe
from hybrid_gateway.core.routes import RoutePlan
from hybrid_gateway.core.shards import ShardCoordination, ShardDecision, ShardOwnership
from hybrid_gateway.health import Check
from hybrid_gateway.leader.assembly import (
    OwnershipInputs,
    WatchHealth,
    cilium_match_task,
    config_elector,
    deferred_routes,
    elector_task,
    readiness_problem,
    regime_fence,
    route_start_task,
    vtep_watch,
    work_task,
)
from hybrid_gateway.leader.cilium_match import CiliumMatch
from hybrid_gateway.leader.deferred_routes import DeferredRoutes
from hybrid_gateway.leader.elector import LeaseBackend, LeaseElector, NoCallbacks
from hybrid_gateway.leader.lease_health import ReportedLease
from hybrid_gateway.leader.regime import feed_event, feed_list
from hybrid_gateway.leader.routes import SyncResult
from hybrid_gateway.leader.service import LeaderWork, WorkRole
from hybrid_gateway.leader.spread import ForwardPrefixes
from hybrid_gateway.leader.vtep import ReplicaVtepWriter
from hybrid_gateway.metrics import GatewayMetrics, ShardMetrics
from hybrid_gateway.supervisor import Supervisor, Task
from hybrid_gateway.timings import Timings
from hybrid_gateway_contract.plans import PLAN_LABEL, plan_digest, shard_regime
from hybrid_gateway_contract.sharding import (
    LEASE_GROUP_LABEL,
    ShardPlan,
    member_lease_name,
    shard_lease_name,
)
from hybrid_gateway_contract.spread import with_forward_prefixes

log = logging.getLogger("hybrid_gateway")

#: A donor hands over at most one shard per this many lease durations (no flapping: the
#: receiver has taken the last one and the views have settled before the next).
HANDOVER_SPACING_LEASES = 2.0
COORDINATOR = "shard-coordinator"
FORWARD_PREFIXES = "forward-prefixes"
#: After its release a replica waits at most this long for its shards to move: within the
#: chart's 30 s termination grace period, after up to 10 s of shard work joins and before the
#: 2 x 3 s of stopping the rest.
DRAIN_MAX_S = 12.0
DRAIN_POLL_S = 0.25
MEMBER_ELECTOR = "member-elector"


@dataclass(frozen=True)
class ShardRoutes:
    """One shard's forward prefixes (the current spread's), synced through the replica's one
    route owner, and the routes it retires when its prefixes moved."""

    routes: DeferredRoutes
    forward: ForwardPrefixes
    index: int

    def sync(self, may_write: Callable[[], bool]) -> SyncResult:
        spread = self.forward.current()
        if spread is None:  # the CiliumNodes are not listed yet: nothing to write
            return SyncResult(RoutePlan(), suppressed=True)
        # The spread's prefixes are the plan: a route of an earlier cut (another shard count,
        # an earlier spread, an active-standby leader's) is retired once they are written.
        return self.routes.sync(
            may_write, spread.prefixes[self.index], self.forward.retire(self.index)
        )


class _Recorded:
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


def _shard_role(index: int, metrics: ShardMetrics) -> WorkRole:
    def on_active(gateway: GatewayMetrics, active: bool) -> None:
        metrics.shard_held.labels(str(index)).set(1 if active else 0)

    return WorkRole(
        f"shard {index}",
        "ShardAcquired",
        f"{{identity}} now owns shard {index}",
        "ShardLost",
        f"{{identity}} no longer owns shard {index}: {{why}}",
        on_active,
    )


class ShardGroup:
    """The active-active side of a replica: membership, the shards, the group watch."""

    def __init__(
        self, inputs: OwnershipInputs, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        config, timings, api_client = inputs.config, inputs.timings, inputs.api_client
        reporting, mac = inputs.reporting, inputs.mac
        self._config = config
        self._timings = timings
        self._clock = clock
        self._identity = config.identity
        self._reporting = reporting
        self.plan: ShardPlan = config.shard_plan()
        self.metrics = ShardMetrics(reporting.metrics.registry)
        self._lock = threading.Lock()
        self._records: dict[str, Observation] = {}  # Lease name -> as last seen (group watch)
        # orphan ages and stalled receivers; grace: one lease duration (a live receiver
        # claims a shard given to it within one elector round)
        self._coordination = ShardCoordination(config.identity, grace_s=config.lease_duration_s)
        self._last_handover = -float("inf")
        self._ineligible_since: float | None = None
        self._shards_given_up = False
        self._wake = threading.Event()
        self.heartbeat = clock()
        self.plan_digest = plan_digest(config.pod_cidrs, config.vpc_cidrs, config.shards)
        # Every Lease of ours names our plan; the fence keeps other modes and plans out.
        labels = {LEASE_GROUP_LABEL: config.lease_name, PLAN_LABEL: self.plan_digest}
        self.fence = regime_fence(inputs, shard_regime(self.plan_digest))
        self._plans: dict[str, str | None] = {}  # Lease name -> its plan label (group watch)
        ns = config.namespace
        self.routes = deferred_routes(inputs)
        self._dataplane_ready = inputs.dataplane_ready

        self.member_lease_name = member_lease_name(config.lease_name, config.identity)
        owner = None
        pod_uid = config.pod_uid
        if pod_uid:  # garbage-collected with the Pod (the chart passes metadata.uid)
            owner = client.V1OwnerReference(
                api_version="v1", kind="Pod", name=config.identity, uid=pod_uid
            )
        self.membership = ReportedLease(
            LeaseStore(api_client, ns, self.member_lease_name, labels=labels, owner=owner),
            reporting.reporter(
                f"Lease {ns}/{self.member_lease_name}",
                "lease",
                "LeaseUnavailable",
                "check POD_NAMESPACE and that the service account may get, create, update, "
                "list and watch Leases in it",
            ),
            holder_loss_s=timings.holder_loss_s,
        )
        self.member = config_elector(
            self.membership, config, callbacks=NoCallbacks(), can_acquire=self.eligible
        )
        shard_reporter = reporting.reporter(
            f"shard Leases {ns}/{config.lease_name}-shard-*",
            "lease",
            "ShardLeaseUnavailable",
            "grant get, create and update on Leases in the gateway's namespace",
        )
        vtep_store = VtepStore(api_client, settings=timings.kube, owner_namespace=ns)
        self._vtep_store = vtep_store
        self.nodes_health = WatchHealth(
            reporting.reporter(
                "CiliumNode watch (forward prefixes)",
                "kubernetes",
                "CiliumNodeWatchFailed",
                "grant list and watch on ciliumnodes.cilium.io",
            )
        )
        self.forward = ForwardPrefixes(
            api_client,
            pod_cidrs=config.pod_cidrs,
            shards=config.shards,
            # every table holds one local route per VPC CIDR besides the shard routes
            route_budget=config.max_routes_per_table - len(config.vpc_cidrs),
            table_ids=config.route_table_ids,
            metrics=self.metrics,
            on_error=self.nodes_health.on_error,
            on_listed=self.nodes_health.reporter.succeeded,
            settings=timings.kube,
        )
        # one CiliumVTEPConfig write covers every shard this replica holds
        self.vtep_writer = ReplicaVtepWriter(
            vtep_store,
            plan=self.plan,
            node_ip=config.node_ip,
            mac=mac,
            fresh_s=config.resync_period_s / 2,
            terms=lambda: {slot.index: slot.work.term_valid for slot in self.slots},
            plan_digest=self.plan_digest,
        )
        self.slots: list[ShardSlot] = []
        for shard in self.plan.shards:
            name = shard_lease_name(config.lease_name, shard.index)
            work = LeaderWork(
                routes=ShardRoutes(self.routes, self.forward, shard.index),
                vtep=self.vtep_writer.lane(shard.index),
                resync_period_s=config.resync_period_s,
                retry_period_s=config.retry_period_s,
                metrics=reporting.metrics,
                events=reporting.events,
                subject=reporting.subject,
                identity=config.identity,
                role=_shard_role(shard.index, self.metrics),
                fence=self.fence.guard,
                late_write_window_s=timings.late_write_window_s,
                keep_warm=self.routes.keep_warm,  # one write client: used once per period
                keep_warm_every_s=KEEP_WARM_S,
            )
            elector = config_elector(
                _Recorded(
                    ReportedLease(
                        LeaseStore(api_client, ns, name, labels=labels),
                        shard_reporter,
                        holder_loss_s=timings.holder_loss_s,
                    ),
                    name,
                    self._record_only,
                ),
                config,
                callbacks=work,
                can_acquire=functools.partial(self.may_claim, shard.index),
                # the group watch wakes it on every change and at expiry; polling is the net
                follow_poll_s=config.lease_duration_s,
                log_refusals=False,
            )
            self.fence.protect(elector, work.wait_idle)
            self.metrics.shard_held.labels(str(shard.index)).set(0)
            self.slots.append(ShardSlot(shard.index, name, elector, work))
        self._by_lease = {slot.lease_name: slot for slot in self.slots}
        # Whether the hybrid Cilium agents' one VTEP mask matches the plan's endpoint length.
        self.cilium = CiliumMatch(
            CiliumAgentReader(api_client, settings=timings.kube),
            vpc_cidrs=config.vpc_cidrs,
            plan_endpoints=[c for s in self.plan.shards for _name, c in s.vtep_endpoints],
            reporting=reporting,
            period_s=config.resync_period_s,
        )
        self.forward.on_change(self._wake_route_lanes)
        self.group_health = WatchHealth(
            reporting.reporter(
                f"Lease group watch {ns} {LEASE_GROUP_LABEL}={config.lease_name}",
                "lease",
                "LeaseWatchFailed",
                "grant list and watch on Leases in the gateway's namespace",
            )
        )
        self.group_watch = ListWatch(
            f"Lease group watch {ns}",
            client.CoordinationV1Api(single_attempt(api_client)).list_namespaced_lease,
            args=(ns,),
            label_selector=f"{LEASE_GROUP_LABEL}={config.lease_name}",
            on_list=self._on_list,
            on_event=self._on_event,
            on_error=self.group_health.on_error,
            settings=timings.kube,
        )
        self.vtep_health, self.vtep_watch = vtep_watch(
            vtep_store, reporting, timings, self._wake_vtep_lanes
        )
        # Migration from active-standby: while its leader (the Lease named LEADER_ELECTION_ID
        # itself) is alive, no shard is claimed, so the two modes never write the routes and
        # the CiliumVTEPConfig at once during a rolling update; its SIGTERM release (or its
        # expiry) hands everything to the shards.
        self._standby_leader: Observation | None = None
        self.standby_leader_health = WatchHealth(
            reporting.reporter(
                f"Lease watch {ns}/{config.lease_name}",
                "lease",
                "LeaseWatchFailed",
                "grant list and watch on Leases in the gateway's namespace",
            )
        )
        self.standby_leader_watch = lease_watch(
            api_client,
            ns,
            config.lease_name,
            on_seen=self._seen_standby_leader,
            on_listed=self.standby_leader_health.reporter.succeeded,
            on_error=self.standby_leader_health.on_error,
            settings=timings.kube,
        )

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
        now = self._clock()
        if problem is None:
            if self._ineligible_since is not None:
                log.info("eligible again: joining as a member")
                self._reporting.events.emit(
                    self._reporting.subject,
                    "MemberEligible",
                    f"{self._identity} can forward again and rejoins the members",
                    warning=False,
                )
            self._ineligible_since = None
            self._shards_given_up = False
            return
        if self._ineligible_since is None:
            self._ineligible_since = now
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
        if self.member.leading:
            self.member.request_handover(lambda _timeout_s: True)  # no write rides on it
        if self._shards_given_up or now - self._ineligible_since < (
            self._timings.ineligible_shards_after_s
        ):
            return
        held = [slot for slot in self.slots if slot.elector.leading]
        if held:
            self._shards_given_up = True
            log.error(
                "still cannot forward (%s): handing over shards %s",
                problem,
                ",".join(str(slot.index) for slot in held),
            )
            for slot in held:
                slot.elector.request_handover(slot.work.wait_idle)

    def _live(self, observation: Observation | None, now: float) -> str | None:
        if observation is None or observation.record.released:
            return None
        if now >= observation.observed_at + observation.record.lease_duration_s:
            return None
        return observation.record.holder

    def view(self) -> ShardOwnership:
        now = self._clock()
        prefix = f"{self._config.lease_name}-member-"
        with self._lock:
            records = dict(self._records)
        with self._lock:
            plans = dict(self._plans)
        members = {
            holder
            for name, observation in records.items()
            if name.startswith(prefix)
            and plans.get(name) == self.plan_digest  # a member of another plan owns none of ours
            and (holder := self._live(observation, now))
        }
        members.discard(self._identity)
        if self.member.valid():
            members.add(self._identity)
        holders: dict[int, str | None] = {}
        lapsed: dict[int, str] = {}
        for slot in self.slots:
            observation = records.get(slot.lease_name)
            holders[slot.index] = (
                self._identity if slot.elector.leading else self._live(observation, now)
            )
            if holders[slot.index] is None and observation is not None:
                last = observation.record.holder
                if last:  # expired, not released: its holder stopped renewing
                    lapsed[slot.index] = last
        return ShardOwnership(len(self.slots), frozenset(members), holders, lapsed)

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

    def _seen_standby_leader(self, record: LeaseRecord | None) -> None:
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
        return self._live(observation, self._clock())

    def may_claim(self, index: int) -> bool:
        """The gate of shard `index`'s elector, evaluated fresh at each of its rounds."""
        if self.fence.blocked():
            return False  # another mode or plan still writes: claim nothing
        decision = self._decide(self.view())
        return index in decision.claim and self.eligible()

    # -- the group watch ---------------------------------------------------------------------
    def _record_only(self, name: str, record: LeaseRecord | None) -> None:
        now = self._clock()
        with self._lock:
            if record is None:
                self._records.pop(name, None)
            else:
                self._records[name] = observe(self._records.get(name), record, now)

    def _seen(self, name: str, record: LeaseRecord | None) -> None:
        self._record_only(name, record)
        slot = self._by_lease.get(name)
        if slot is not None:
            slot.elector.notice(record)
        self._wake.set()

    def _on_list(self, items: Iterator[dict[str, Any]]) -> None:
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

    def _on_event(self, kind: str, item: dict[str, Any]) -> None:
        name = str((item.get("metadata") or {}).get("name") or "")
        self._note_plans([item], full=False)
        feed_event(self.fence, kind, item)
        self._seen(name, None if kind == "DELETED" else record_from_json(item))

    def _wake_route_lanes(self) -> None:
        """The forward prefixes moved: every owned shard writes its new ones now."""
        for slot in self.slots:
            slot.work.wake_routes()

    def _wake_vtep_lanes(self) -> None:
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
        now = self._clock()
        spacing = HANDOVER_SPACING_LEASES * self._config.lease_duration_s
        if now - self._last_handover < spacing or not slot.work.converged():
            return
        self._last_handover = now
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
        now = self._clock()
        wait = self._config.retry_period_s
        with self._lock:
            for observation in self._records.values():
                if observation.record.released or observation.record.holder == self._identity:
                    continue
                expiry = observation.observed_at + observation.record.lease_duration_s
                if expiry > now:
                    wait = min(wait, expiry - now + 0.01)
        return max(0.01, wait)

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
        self.drain([s.index for s in releasable])
        stop_rest()

    def drain(self, released: Sequence[int]) -> None:
        """Keep the process (and with it the node, in a drain) until the released shards'
        routes and VTEP endpoints point elsewhere, or DRAIN_MAX_S: the
        kernel forwards for whatever still points here, and a node that goes away first
        blackholes it until the new owners' writes land."""
        if not released:
            return
        started = self._clock()
        deadline = started + DRAIN_MAX_S
        left = self._still_here(released)
        while left is not None and self._clock() < deadline:
            time.sleep(DRAIN_POLL_S)
            left = self._still_here(released)
        took = self._clock() - started
        if left is None:
            log.info("shards %s moved in %.2fs", ",".join(map(str, released)), took)
        else:
            log.warning("stopping with %s after %.1fs", left, took)

    def _still_here(self, released: Sequence[int]) -> str | None:
        """What of the released shards still points at this replica, or None.

        While other members of our plan live, they take the released shards' Leases, and a
        shard without a new holder is still ours to cover. Without them (the last replica of
        a plan: a shard-count change, a switch back to active-standby, a rollback), the
        successors work under another regime, whose cut need not have our shards at all
        (4 -> 2 shards: no one ever takes shards 2 and 3): then only what still points here
        counts, the VTEP endpoints and the routes, which the successor's writes move or retire."""
        view = self.view()
        if view.members - {self._identity}:
            orphans = [i for i in released if view.holder(i) in (None, self._identity)]
            if orphans:
                return f"shard(s) {','.join(map(str, orphans))} without a new owner"
        names = {n for i in released for n, _cidr in self.plan.shards[i].vtep_endpoints}
        try:
            observed = self._vtep_store.get()
        except Exception as exc:
            return f"CiliumVTEPConfig unreadable ({exc})"
        spec = (observed or {}).get("spec") or {}
        ours = [
            str(e.get("name"))
            for e in spec.get("endpoints") or []
            if isinstance(e, dict)
            and e.get("name") in names
            and e.get("tunnelEndpoint") == self._config.node_ip
        ]
        if ours:
            return f"VTEP endpoint(s) {','.join(sorted(ours))} still pointing here"
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
