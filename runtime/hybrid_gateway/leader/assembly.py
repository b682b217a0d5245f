"""The leader side of a replica, assembled: the elector, route and VTEP ownership, and the
Lease and CiliumVTEPConfig watches that speed them up, as supervised tasks in start order.

Each part is built once, before anything starts, in dependency order: route ownership, leader
work, then the elector that calls leader work back (started/stopped leading, new leader).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hybrid_gateway.adapters.ec2 import KEEP_WARM_S, Ec2Routes, WriteTimeouts, make_client
from hybrid_gateway.adapters.kube_cilium import CiliumAgentReader
from hybrid_gateway.adapters.kube_lease import LeaseStore, lease_watch
from hybrid_gateway.adapters.kube_regime import WriterLeases
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.adapters.kube_watch import ListWatch
from hybrid_gateway.config import Config
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.core.pacing import SHARD_WRITE_BURST, SHARD_WRITE_RATE_PER_S, TokenBucket
from hybrid_gateway.core.regime import FenceDecision
from hybrid_gateway.leader.cilium_match import CiliumMatch
from hybrid_gateway.leader.deferred_routes import DeferredRoutes, resolve_identity
from hybrid_gateway.leader.elector import LeadershipCallbacks, LeaseBackend, LeaseElector
from hybrid_gateway.leader.eligibility import Eligibility, GatedCallbacks
from hybrid_gateway.leader.lease_health import ReportedLease
from hybrid_gateway.leader.regime import RegimeFence, group_watch
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.leader.service import LeaderWork
from hybrid_gateway.leader.vtep import VtepOwner
from hybrid_gateway.reporting import Reporting
from hybrid_gateway.supervisor import Task
from hybrid_gateway.timings import Timings
from hybrid_gateway.watch_health import WatchHealth
from hybrid_gateway_contract.plans import ACTIVE_STANDBY_REGIME
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL

log = logging.getLogger("hybrid_gateway")

__all__ = ["WatchHealth"]  # re-exported: the shard group builds its watches with it

LEADER_WORK = "leader-work"
ELECTOR = "elector"
ELIGIBILITY = "eligibility"


@dataclass(frozen=True)
class OwnershipInputs:
    """What the leader side (active-standby) or the shard group (active-active) is built from."""

    config: Config
    timings: Timings
    api_client: Any
    reporting: Reporting
    mac: str
    dataplane_ready: Callable[[], bool]


class ProblemSource(Protocol):
    def problem(self) -> str | None: ...


def readiness_problem(
    dataplane_ready: Callable[[], bool] | None,
    routes: ProblemSource,
    lease: ProblemSource,
    watches: Sequence[tuple[str, WatchHealth]],
    timings: Timings,
) -> str | None:
    """What keeps any replica from being ready, in either mode: the data plane, route
    ownership, its Lease, or a watch failing for longer than a replica may go without it."""
    if dataplane_ready is not None and not dataplane_ready():
        return "data plane not ready"
    for source in (routes, lease):
        problem = source.problem()
        if problem is not None:
            return problem
    for what, health in watches:
        down = health.reporter.failing_for()
        if down > timings.holder_loss_s:
            return f"{what} failing for {down:.0f}s ({health.reporter.last_error})"
    return None


def route_start_task(routes: DeferredRoutes, timings: Timings) -> Task:
    """Route ownership's one-shot start-up (IMDS, primary ENI, tables), with retries."""
    return Task(
        "route-start",
        routes.run,
        heartbeat=lambda: routes.heartbeat,
        stale_after_s=timings.stale_route_start_s,
        one_shot=True,
    )


def elector_task(name: str, elector: LeaseElector, timings: Timings) -> Task:
    return Task(
        name,
        elector.run,
        heartbeat=lambda: elector.heartbeat,
        stale_after_s=timings.stale_elector_s,
        wake=elector.wake,
    )


def work_task(name: str, work: LeaderWork, timings: Timings) -> Task:
    return Task(
        name,
        work.run,
        heartbeat=lambda: work.heartbeat,
        stale_after_s=timings.stale_leader_work_s,
        wake=work.wake,
    )


@dataclass
class Leader:
    elector: LeaseElector
    lease: ReportedLease
    routes: DeferredRoutes
    work: LeaderWork
    vtep_watch: WatchHealth
    watches: tuple[Task, Task]  # the Lease watch, the CiliumVTEPConfig watch
    eligibility: Eligibility
    fence: RegimeFence | None = None  # one regime at a time (shard owners of active-active)
    fence_watch: Task | None = None  # the shard Leases, into the fence
    fence_health: WatchHealth | None = None
    cilium: CiliumMatch | None = None  # what the hybrid nodes' Cilium agents can match

    def tasks(self, timings: Timings) -> list[Task]:
        """In start order: IMDS/EC2 start-up first (it may take retries), the Lease watch
        before the elector (an early release is seen), the VTEP watch last; the periodic read of
        the Cilium agents' configuration right after the start-up."""
        lease_watch_task, vtep_watch_task = self.watches
        fence_watch = [self.fence_watch] if self.fence_watch is not None else []
        tasks = [
            route_start_task(self.routes, timings),
            lease_watch_task,
            *fence_watch,  # before the elector: live shard owners are known before it acquires
            elector_task(ELECTOR, self.elector, timings),
            work_task(LEADER_WORK, self.work, timings),
            Task(
                ELIGIBILITY,
                self.eligibility.run,
                heartbeat=lambda: self.eligibility.heartbeat,
                stale_after_s=timings.stale_elector_s,
                wake=self.eligibility.wake,
            ),
            vtep_watch_task,
        ]
        if self.cilium is not None:  # early: the first VTEP write then already uses its cut
            tasks.insert(1, cilium_match_task(self.cilium, timings))
        return tasks


def cilium_match_task(match: CiliumMatch, timings: Timings) -> Task:
    return Task(
        "cilium-match",
        match.run,
        heartbeat=lambda: match.heartbeat,
        stale_after_s=timings.stale_leader_work_s + match.period_s,
    )


def build_leader(inputs: OwnershipInputs) -> Leader:
    """The elector, route and VTEP ownership, and the two watches that speed them up."""
    config, timings, api_client = inputs.config, inputs.timings, inputs.api_client
    reporting, mac, dataplane_ready = inputs.reporting, inputs.mac, inputs.dataplane_ready
    where = f"{config.namespace}/{config.lease_name}"
    lease = ReportedLease(
        LeaseStore(api_client, config.namespace, config.lease_name),
        reporting.reporter(
            f"Lease {where}",
            "lease",
            "LeaseUnavailable",
            "check POD_NAMESPACE and that the service account may get, create and update it",
        ),
        holder_loss_s=timings.holder_loss_s,
    )
    routes = deferred_routes(inputs)
    vtep_store = VtepStore(api_client, settings=timings.kube, owner_namespace=config.namespace)
    fence = regime_fence(inputs, ACTIVE_STANDBY_REGIME)
    cilium = CiliumMatch(
        CiliumAgentReader(api_client, settings=timings.kube),
        vpc_cidrs=config.vpc_cidrs,
        plan_endpoints=None,
        reporting=reporting,
        period_s=config.resync_period_s,
    )
    work = LeaderWork(
        routes=routes,
        vtep=VtepOwner(
            vtep_store,
            vpc_cidrs=config.vpc_cidrs,
            node_ip=config.node_ip,
            mac=mac,
            endpoint_cidrs=cilium.endpoint_cidrs,
        ),
        resync_period_s=config.resync_period_s,
        retry_period_s=config.retry_period_s,
        metrics=reporting.metrics,
        events=reporting.events,
        subject=reporting.subject,
        identity=config.identity,
        fence=fence.guard,
        late_write_window_s=timings.late_write_window_s,
        keep_warm=routes.keep_warm,
        keep_warm_every_s=KEEP_WARM_S,
    )

    eligibility = Eligibility(
        identity=config.identity,
        dataplane_ready=dataplane_ready,
        routes=routes,
        reporting=reporting,
        head_start_s=timings.head_start_s,
        yield_retry_s=timings.yield_retry_s,
        retry_period_s=config.retry_period_s,
        renew_deadline_s=config.renew_deadline_s,
    )
    elector = config_elector(
        lease,
        config,
        callbacks=GatedCallbacks(work, eligibility),
        # and never while an active-active shard owner holds a live shard Lease (a rollback:
        # the last shard owner must stop first; one mode at a time, leader/regime.py)
        can_acquire=lambda: eligibility.can_acquire() and not fence.blocked(),
        on_pause=lambda message: reporting.events.emit(
            reporting.subject, "LeaseChangedDuringTerm", message
        ),
    )
    eligibility.elector, eligibility.work = elector, work
    fence.protect(elector, work.wait_idle)
    fence_health = WatchHealth(
        reporting.reporter(
            f"Lease group watch {config.namespace} {LEASE_GROUP_LABEL}={config.lease_name}",
            "lease",
            "LeaseWatchFailed",
            "grant list and watch on Leases in the gateway's namespace",
        )
    )
    fence_list_watch = group_watch(
        api_client,
        config.namespace,
        config.lease_name,
        fence,
        on_listed=fence_health.reporter.succeeded,
        on_error=fence_health.on_error,
        settings=timings.kube,
    )
    lease_watch_health = WatchHealth(
        reporting.reporter(
            f"Lease watch {where}",
            "lease",
            "LeaseWatchFailed",
            "the standby notices a release only when it polls; grant list and watch on leases",
        )
    )

    def on_lease_seen(record: LeaseRecord | None) -> None:
        lease.seen(record)
        elector.notice(record)

    lease_list_watch = lease_watch(
        api_client,
        config.namespace,
        config.lease_name,
        on_seen=on_lease_seen,
        on_listed=lease_watch_health.reporter.succeeded,
        on_error=lease_watch_health.on_error,
        settings=timings.kube,
    )
    vtep_watch_health, vtep_list_watch = vtep_watch(vtep_store, reporting, timings, work.wake_vtep)
    watches = (
        lease_watch_health.task("lease-watch", lease_list_watch, timings),
        vtep_watch_health.task("vtep-watch", vtep_list_watch, timings),
    )
    cilium.on_endpoints_changed = work.wake_vtep
    return Leader(
        elector,
        lease,
        routes,
        work,
        vtep_watch_health,
        watches,
        eligibility,
        fence=fence,
        fence_watch=fence_health.task("lease-group-watch", fence_list_watch, timings),
        fence_health=fence_health,
        cilium=cilium,
    )


def regime_fence(inputs: OwnershipInputs, regime: str) -> RegimeFence:
    """The replica's one-regime-at-a-time fence; handing over is reported as an Event."""
    config, reporting = inputs.config, inputs.reporting

    def on_yield(decision: FenceDecision) -> None:
        reporting.events.emit(
            reporting.subject,
            "RegimeYielded",
            f"{config.identity} ({regime}) hands its Lease(s) over: {decision.describe()} "
            "also hold(s) live Leases, and only one mode and plan may write at a time",
        )

    return RegimeFence(
        regime=regime,
        lease_name=config.lease_name,
        reader=WriterLeases(inputs.api_client, config.namespace, config.lease_name),
        read_timeout_s=inputs.timings.kube.request_timeout_s,
        on_yield=on_yield,
    )


def config_elector(
    backend: LeaseBackend,
    config: Config,
    *,
    callbacks: LeadershipCallbacks,
    can_acquire: Callable[[], bool],
    follow_poll_s: float | None = None,
    log_refusals: bool = True,
    on_pause: Callable[[str], None] = lambda _message: None,
) -> LeaseElector:
    """An elector on `backend` with this replica's identity and lease timings."""
    return LeaseElector(
        backend,
        identity=config.identity,
        lease_duration_s=config.lease_duration_s,
        renew_deadline_s=config.renew_deadline_s,
        retry_period_s=config.retry_period_s,
        callbacks=callbacks,
        can_acquire=can_acquire,
        follow_poll_s=follow_poll_s,
        log_refusals=log_refusals,
        on_pause=on_pause,
    )


def vtep_watch(
    store: VtepStore, reporting: Reporting, timings: Timings, on_change: Callable[[], None]
) -> tuple[WatchHealth, ListWatch]:
    """The CiliumVTEPConfig watch that wakes the owner(s) on every change, with its health."""
    health = WatchHealth(
        reporting.reporter(
            f"CiliumVTEPConfig watch {store.name}",
            "ciliumvtepconfig",
            "VtepConfigWatchFailed",
            "grant get, list and watch on ciliumvtepconfigs.cilium.io and check the CRD exists",
        )
    )
    watch = store.watcher(
        on_change=lambda _type: on_change(),
        on_listed=health.reporter.succeeded,
        on_error=health.on_error,
    )
    return health, watch


def deferred_routes(inputs: OwnershipInputs) -> DeferredRoutes:
    """Route ownership, resolved in the background (IMDS, primary ENI, tables)."""
    config, reporting, timings = inputs.config, inputs.reporting, inputs.timings

    def build_routes(region: str, instance_id: str) -> RouteOwner:
        pacing = None
        if config.active_active:  # S times the writes of a failover: spare the account bucket
            pacing = TokenBucket(
                burst=SHARD_WRITE_BURST, rate_per_s=SHARD_WRITE_RATE_PER_S, clock=time.monotonic
            )
        return RouteOwner(
            Ec2Routes(
                make_client(region),
                write_timeouts=WriteTimeouts(
                    timings.ec2_write_connect_timeout_s, timings.ec2_write_read_timeout_s
                ),
                pacing=pacing,
            ),
            instance_id=instance_id,
            table_ids=config.route_table_ids,
            pod_cidrs=[str(c) for c in config.pod_cidrs],
            allow_takeover=config.allow_route_takeover,
            metrics=reporting.metrics,
            report=lambda reason, message, warning=True: reporting.events.emit(
                reporting.subject, reason, message, warning=warning
            ),
        )

    return DeferredRoutes(
        table_ids=config.route_table_ids,
        resolve=lambda: resolve_identity(config),
        build=build_routes,
        reporter=reporting.reporter(
            "route ownership start-up",
            "aws",
            "InstanceIdentityUnavailable",
            "set AWS_REGION and AWS_INSTANCE_ID, or allow IMDSv2 (hop limit 2 for pods)",
        ),
        max_backoff_s=timings.start_retry_max_s,
        recheck_s=timings.eni_check_s,
    )
