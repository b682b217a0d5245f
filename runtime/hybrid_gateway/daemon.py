"""The daemon: the data plane (every replica) and the ownership of the traffic (`Ownership`: the
leader side in active-standby mode, the shard group in active-active mode, one interface),
composed as named loops under one `Supervisor`.

Start-up waits for nothing remote: the health and metrics listeners bind without DNS, the data plane
starts without IMDS or EC2 (route ownership resolves them in the background), and every remote call
has a timeout. Shutdown order matters for a planned failover: leader work is invalidated and joined
first (no EC2 or VTEP write can land after this point), THEN the lease is released, so the standby
can take over at once without racing our in-flight writes, THEN the rest stops. The data-plane state
is left in place: this node keeps forwarding until the routes have moved
(docs/design.md#failover-measurement). Only the node filter's nftables table
(`dataplane.nodefilter`) is removed, last, once the Leases are released and this node has stopped
forwarding (bounded).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from kubernetes import client as kclient
from kubernetes import config as kconfig

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_events import AsyncEvents, EventRecorder, ObjectRef
from hybrid_gateway.adapters.nftables import Nft
from hybrid_gateway.config import Config
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.core.nodefilter import CounterPrefix, shard_counters, standby_counters
from hybrid_gateway.dataplane.nodefilter import NodeFilter
from hybrid_gateway.gc_tuning import HeapFreezer
from hybrid_gateway.gc_tuning import configure as configure_gc
from hybrid_gateway.health import Check, HttpEndpoints
from hybrid_gateway.logging_setup import setup_logging
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.reporting import Reporting
from hybrid_gateway.supervisor import Supervisor, Task
from hybrid_gateway.timings import Timings
from hybrid_gateway.watch_health import WatchHealth
from hybrid_gateway_contract import VXLAN_DEVICE
from hybrid_gateway_contract.sharding import ShardPlan

if TYPE_CHECKING:  # imported where used: boto3 and the leader's modules load while the
    # CiliumNode list already runs (`run`), not before it starts
    from hybrid_gateway.leader.assembly import Leader, OwnershipInputs
    from hybrid_gateway.leader.service import LeaderWork
    from hybrid_gateway.leader.shards import ShardGroup

log = logging.getLogger("hybrid_gateway")

#: Stopped last, so the Events of the steps before can still be recorded.
EVENTS_TASK = "events"
#: How long a thread that wants the GIL waits before the running one must hand it over (CPython's
#: default: 5 ms). A probe or scrape takes the GIL again after each socket call; while a pass
#: keeps the interpreter busy, each of those waits up to this long.
GIL_SWITCH_INTERVAL_S = 0.001


class DataPlaneLike(Protocol):
    heartbeat: float
    passes: int
    node_watch: WatchHealth | None

    def setup(self) -> None: ...
    def run(self, stop: threading.Event) -> None: ...
    def ready(self) -> bool: ...
    def watch_task(self, timings: Timings) -> Task: ...
    @property
    def device_mac(self) -> str: ...


def kube_api_client(path: str | None) -> kclient.ApiClient:
    """The kubeconfig file if given (--kubeconfig, else KUBECONFIG), else the in-cluster
    service account; one HTTP attempt per call (kube_attempts.py: the daemon's loops retry,
    urllib3 does not)."""
    if path:
        return single_attempt(kconfig.new_client_from_config(config_file=path))
    configuration = kclient.Configuration()
    kconfig.load_incluster_config(client_configuration=configuration)
    return single_attempt(kclient.ApiClient(configuration))


def start_dataplane(config: Config, api_client: Any, reporting: Reporting) -> DataPlaneLike:
    """Create or adopt the VXLAN device; raises on failure (the daemon cannot forward)."""
    # Imported lazily: `--no-dataplane` runs need neither pyroute2 nor netlink rights.
    dataplane_module = importlib.import_module("hybrid_gateway.dataplane")
    dataplane: DataPlaneLike = dataplane_module.DataPlane(
        node_ip=config.node_ip,
        vpc_cidrs=list(config.vpc_cidrs),
        mtu=config.vxlan_mtu,
        resync_period_s=config.resync_period_s,
        api_client=api_client,
        events=reporting.events,
        metrics=reporting.metrics,
        node_watch=WatchHealth(
            reporting.reporter(
                "CiliumNode watch",
                "ciliumnode",
                "CiliumNodeWatchFailed",
                "tunnels follow no node change meanwhile; grant list and watch on "
                "ciliumnodes.cilium.io and check the CRD exists",
            )
        ),
    )
    dataplane.setup()
    return dataplane


def plan_counters(plan: ShardPlan) -> list[CounterPrefix]:
    """The node filter's counters of a shard plan: per shard, its forward-path pod prefixes
    and its return-path VTEP endpoint CIDRs (whatever the current plan's shards are)."""
    return shard_counters(
        (shard.index, shard.pod_prefixes, [cidr for _, cidr in shard.vtep_endpoints])
        for shard in plan.shards
    )


def start_node_filter(config: Config, reporting: Reporting) -> NodeFilter:
    """The daemon's nftables table (notrack for forwarded pod <-> VPC traffic, counters),
    installed now if it can be; the task keeps it in place and retries a failure."""
    node_filter = NodeFilter(
        nft=Nft(),
        pod_cidrs=config.pod_cidrs,
        vpc_cidrs=config.vpc_cidrs,
        counters=lambda: standby_counters(config.pod_cidrs, config.vpc_cidrs),
        reporting=reporting,
    )
    node_filter.check()
    return node_filter


def node_filter_task(node_filter: NodeFilter, timings: Timings) -> Task:
    return Task(
        "node-filter",
        node_filter.run,
        heartbeat=lambda: node_filter.heartbeat,
        stale_after_s=timings.stale_dataplane_s,
    )


def gateway_metrics(config: Config) -> GatewayMetrics:
    metrics = GatewayMetrics()
    metrics.set_info(
        {
            "node_ip": config.node_ip,
            "node_name": config.node_name or "",
            "vxlan_interface": VXLAN_DEVICE,
            "vpc_cidr": ",".join(map(str, config.vpc_cidrs)),
            "pod_cidr": ",".join(map(str, config.pod_cidrs)),
        }
    )
    metrics.leader_is_active.set(0)
    return metrics


def dataplane_task(dataplane: DataPlaneLike, timings: Timings) -> Task:
    return Task(
        "dataplane",
        dataplane.run,
        heartbeat=lambda: dataplane.heartbeat,
        stale_after_s=timings.stale_dataplane_s,
    )


class _WaitingForOtherRegime:
    """The Lease's problem, except "no live holder" while writers of another regime hold
    live Leases (a rollback waiting for the shard owners, however long the rollout takes):
    those are live holders, and an unready new replica would stall a surge rollout."""

    def __init__(self, leader: Leader) -> None:
        self._leader = leader

    def problem(self) -> str | None:
        fence = self._leader.fence
        if fence is not None and fence.blocked():
            return None
        return self._leader.lease.problem()


def readiness(
    dataplane_ready: Callable[[], bool] | None,
    leader: Leader,
    timings: Timings,
    node_watch: WatchHealth | None = None,
) -> Check:
    """`/readyz`: the data plane is ready, this replica could do a leader's whole job (it can
    own the VPC routes), it can take part in the election, and on the leader the routes and the
    CiliumVTEPConfig have converged. Says what it waits for."""
    watches = [("CiliumVTEPConfig watch", leader.vtep_watch)]
    if node_watch is not None:
        watches.append(("CiliumNode watch", node_watch))
    if leader.fence_health is not None:
        watches.append(("Lease group watch", leader.fence_health))

    from hybrid_gateway.leader.assembly import readiness_problem

    def ready() -> tuple[bool, str]:
        problem = readiness_problem(
            dataplane_ready,
            leader.routes,
            _WaitingForOtherRegime(leader),
            watches,
            timings,
        )
        unable = leader.eligibility.leading_unable
        if unable is not None:  # the last one left: loud, and never "ready"
            return False, f"leader WITHOUT the whole job (no replica that can took over): {unable}"
        if problem is None and leader.cilium is not None:
            problem = leader.cilium.problem()
        if problem is not None:
            return False, problem
        ownership = leader.routes.ownership_problem()
        if ownership is not None and not leader.work.active:  # could not move routes if it led
            return False, f"standby cannot own routes: {ownership}"
        routes_wait = leader.routes.waiting_for
        work = leader.work
        if work.active:
            pending = not_converged(work, routes_wait)
            if pending:
                return False, "leader: not converged yet: " + "; ".join(pending)
            return True, "ready (leader)"
        if leader.fence is not None:
            waiting = leader.fence.decision()
            if not waiting.may_write:
                return True, f"ready (standby; waiting for {waiting.describe()} to stop)"
        return True, "ready (standby)"

    return ready


def not_converged(work: LeaderWork, routes_wait: str | None) -> list[str]:
    """Each lane of leader work that has not converged in this term, with its latest reason
    (what route ownership still waits for, the failure the lane retries, writes withheld, or
    its first sync still running)."""
    pending = []
    for lane, what in (("routes", "routes"), ("vtep", "CiliumVTEPConfig")):
        problem = work.lane_problem(lane)
        if problem is not None:
            if lane == "routes" and routes_wait:
                problem = f"waiting for {routes_wait}"
            pending.append(f"{what} ({problem})")
    return pending


def install_signal_handlers() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def stop_the_rest(supervisor: Supervisor, timings: Timings) -> None:
    """Every task not stopped yet, then the Events (last, so the steps before are recorded)."""
    supervisor.stop(supervisor.running(exclude=[EVENTS_TASK]), timings.shutdown_rest_s)
    supervisor.stop([EVENTS_TASK], timings.shutdown_rest_s)


def shut_down(supervisor: Supervisor, leader: Leader, timings: Timings, identity: str) -> None:
    """Leader work, then the lease release, then the rest (Events last)."""
    from hybrid_gateway.leader.assembly import ELECTOR, LEADER_WORK

    was_leader = leader.work.active
    leader.elector.shutdown()  # no leader write passes and no term starts after this
    stuck = supervisor.stop([LEADER_WORK, ELECTOR], timings.shutdown_join_s)
    if LEADER_WORK in stuck:
        log.error("leader work still running; not releasing the lease")
    elif was_leader or leader.elector.holder == identity:
        leader.elector.release(timeout_s=timings.api_timeout_s)
    stop_the_rest(supervisor, timings)


class Ownership(Protocol):
    """The side of a replica that owns traffic, whichever the mode: the active-standby leader
    side, or the active-active shard group. The daemon starts its tasks, serves its /readyz
    and, on SIGTERM, lets it stop its work and release its Leases before the rest stops."""

    def tasks(self) -> list[Task]: ...
    def readiness(self) -> Check: ...
    def shut_down(self, supervisor: Supervisor) -> None: ...


@dataclass(frozen=True)
class ActiveStandbyOwnership:
    """One Lease; its holder carries all the traffic."""

    leader: Leader
    timings: Timings
    identity: str
    dataplane_ready: Callable[[], bool] | None
    node_watch: WatchHealth | None

    def tasks(self) -> list[Task]:
        return self.leader.tasks(self.timings)

    def readiness(self) -> Check:
        return readiness(self.dataplane_ready, self.leader, self.timings, self.node_watch)

    def shut_down(self, supervisor: Supervisor) -> None:
        shut_down(supervisor, self.leader, self.timings, self.identity)


@dataclass(frozen=True)
class ActiveActiveOwnership:
    """A Lease per shard; every member replica carries the shards it holds."""

    group: ShardGroup
    timings: Timings
    dataplane_ready: Callable[[], bool] | None
    node_watch: WatchHealth | None

    def tasks(self) -> list[Task]:
        return self.group.tasks(self.timings)

    def readiness(self) -> Check:
        watches = [("CiliumNode watch", self.node_watch)] if self.node_watch is not None else []
        return self.group.readiness(self.dataplane_ready, watches)

    def shut_down(self, supervisor: Supervisor) -> None:
        self.group.shut_down(
            supervisor, self.timings, stop_rest=lambda: stop_the_rest(supervisor, self.timings)
        )


def build_ownership(
    inputs: OwnershipInputs,
    dataplane_ready: Callable[[], bool] | None,
    node_watch: WatchHealth | None,
    node_filter: NodeFilter | None,
) -> Ownership:
    """The mode's ownership, built before anything starts. In active-active mode the node
    filter counts per shard of the plan the group routes now."""
    from hybrid_gateway.leader.assembly import build_leader
    from hybrid_gateway.leader.shard_assembly import build_shard_group

    config, timings = inputs.config, inputs.timings
    if config.active_active:
        group = build_shard_group(inputs)
        if node_filter is not None:
            node_filter.counters = lambda: plan_counters(group.forward_plan())
        return ActiveActiveOwnership(group, timings, dataplane_ready, node_watch)
    return ActiveStandbyOwnership(
        build_leader(inputs), timings, config.identity, dataplane_ready, node_watch
    )


def run(config: Config) -> int:
    configure_gc()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    setup_logging(json_format=config.log_format == "json", debug=config.debug)
    log.info(
        "starting: identity=%s node_ip=%s tables=%s pod_cidrs=%s dataplane=%s",
        config.identity,
        config.node_ip,
        ",".join(config.route_table_ids) or "-",
        ",".join(map(str, config.pod_cidrs)),
        config.dataplane,
    )
    timings = Timings.from_config(config)
    stop = install_signal_handlers()
    try:
        api_client = kube_api_client(config.kubeconfig)
    except Exception as exc:
        log.error("cannot configure the Kubernetes client: %s", exc)
        return 1
    metrics = gateway_metrics(config)
    events = AsyncEvents(
        EventRecorder(kclient.CoreV1Api(api_client), host=config.node_name or config.identity)
    )
    reporting = Reporting(
        events, ObjectRef("v1", "Pod", config.identity, config.namespace), metrics
    )
    supervisor = Supervisor()
    supervisor.add(
        Task(
            EVENTS_TASK,
            events.run,
            heartbeat=lambda: events.heartbeat,
            stale_after_s=timings.stale_events_s,
        )
    )
    dataplane: DataPlaneLike | None = None
    node_filter: NodeFilter | None = None
    dataplane_ready: Callable[[], bool] | None = None
    if config.dataplane:
        try:
            dataplane = start_dataplane(config, api_client, reporting)
        except Exception as exc:
            log.error("data plane set-up failed: %s", exc)
            return 1
        supervisor.add(dataplane_task(dataplane, timings))
        supervisor.add(dataplane.watch_task(timings))
        # The CiliumNode list starts now: the first pass waits for it, and nothing else waits
        # for the first pass (the leader side is built while the list runs).
        supervisor.start()
        node_filter = start_node_filter(config, reporting)
        supervisor.add(node_filter_task(node_filter, timings))
        tunnels, table = dataplane, node_filter

        def dataplane_ready() -> bool:
            return tunnels.ready() and table.ready()

    from hybrid_gateway.leader.assembly import OwnershipInputs

    mac = dataplane.device_mac if dataplane is not None else vxlan_device_mac(config.node_ip)
    log.info("VTEP MAC %s", mac)
    inputs = OwnershipInputs(
        config,
        timings,
        api_client,
        reporting,
        mac,
        dataplane_ready if dataplane_ready is not None else lambda: True,
    )
    node_watch = dataplane.node_watch if dataplane is not None else None
    ownership = build_ownership(inputs, dataplane_ready, node_watch, node_filter)
    for task in ownership.tasks():
        supervisor.add(task)
    try:
        endpoints = HttpEndpoints(
            health_addr=(config.health_addr.host, config.health_addr.port),
            metrics_addr=(config.metrics_addr.host, config.metrics_addr.port),
            alive=supervisor.alive,
            ready=ownership.readiness(),
            registry=metrics.registry,
        )
    except OSError as exc:
        log.error("cannot listen on %s / %s: %s", config.health_addr, config.metrics_addr, exc)
        return 1
    endpoints.start()
    supervisor.start()
    log.info("running (health %s, metrics %s)", config.health_addr, config.metrics_addr)
    # the data plane's long-lived state leaves the collector's work after its first full pass
    freezer = HeapFreezer(lambda: dataplane.passes if dataplane is not None else 0)
    while not stop.wait(1.0):
        freezer.tick()
    ownership.shut_down(supervisor)
    if node_filter is not None:
        # Last: the Leases are released and every task has stopped (none re-installs it); the
        # node keeps forwarding until the routes have moved, so the table waits for that too.
        node_filter.remove_when_drained()
    endpoints.stop()
    log.info("stopped")
    return 0
