"""The daemon: the data plane (every replica) and the leader work (lease holder only), composed
as named loops under one `Supervisor`.

Start-up waits for nothing remote: the health and metrics listeners bind without DNS, the data
plane starts without IMDS or EC2 (route ownership resolves them in the background), and every
remote call has a timeout. Shutdown order matters for a planned failover: leader work is
invalidated and joined first (no EC2 or VTEP write can land after this point), THEN the lease is
released, so the standby can take over at once without racing our in-flight writes, THEN the
rest stops. The data-plane state is left in place: this node keeps forwarding until the routes
have moved (SPEC §12).
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.ec2 import Ec2Routes, make_client
from hybrid_gateway.adapters.kube_events import AsyncEvents, EventRecorder, ObjectRef
from hybrid_gateway.adapters.kube_lease import LeaseStore
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.config import Config
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.health import Check, HttpEndpoints
from hybrid_gateway.leader.deferred_routes import DeferredRoutes, resolve_identity
from hybrid_gateway.leader.elector import LeaseElector
from hybrid_gateway.leader.lease_health import ReportedLease
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.leader.service import LeaderWork, emit_refusals
from hybrid_gateway.leader.vtep import VtepOwner
from hybrid_gateway.logging_setup import setup_logging
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.reporting import FailureReporter
from hybrid_gateway.supervisor import Beat, Supervisor, Task
from hybrid_gateway.timings import Timings
from hybrid_gateway_contract import VXLAN_DEVICE

log = logging.getLogger("hybrid_gateway")

HTTP_GONE = 410
#: Leader work and the elector stop first; the lease is released after them.
LEADER_TASKS = ("leader-work", "elector")
#: Stopped last, so the Events of the steps before can still be recorded.
EVENTS_TASK = "events"


class DataPlaneLike(Protocol):
    heartbeat: float

    def setup(self) -> None: ...
    def run(self, stop: threading.Event) -> None: ...
    def ready(self) -> bool: ...
    @property
    def device_mac(self) -> str: ...


def kube_api_client(environ: Mapping[str, str]) -> kclient.ApiClient:
    """KUBECONFIG if set, else the in-cluster service account."""
    path = environ.get("KUBECONFIG")
    if path:
        return kconfig.new_client_from_config(config_file=path)
    configuration = kclient.Configuration()
    kconfig.load_incluster_config(client_configuration=configuration)
    return kclient.ApiClient(configuration)


@dataclass(frozen=True)
class Reporting:
    """Where failures go: Events (asynchronous) about this pod, and the metrics."""

    events: AsyncEvents
    subject: ObjectRef
    metrics: GatewayMetrics

    def reporter(self, what: str, api: str, reason: str, hint: str = "") -> FailureReporter:
        def count(operation: str) -> None:
            self.metrics.api_errors.labels(api=api, operation=operation).inc()

        return FailureReporter(
            what, reason=reason, events=self.events, subject=self.subject, count=count, hint=hint
        )


def watch_failure(reporter: FailureReporter) -> Any:
    """`on_error` for a watch: report everything but 410 Gone, which only means "relist"."""

    def on_error(exc: Exception) -> None:
        if isinstance(exc, ApiException) and exc.status == HTTP_GONE:
            return
        reporter.failed("list/watch", exc)

    return on_error


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
    )
    dataplane.setup()
    return dataplane


@dataclass
class LeaderParts:
    elector: LeaseElector
    lease: ReportedLease
    lease_watch: Task
    routes: DeferredRoutes
    work: LeaderWork
    vtep_watch: Task
    vtep_watch_reporter: FailureReporter


def build_leader(
    config: Config,
    *,
    environ: Mapping[str, str],
    timings: Timings,
    api_client: Any,
    reporting: Reporting,
    supervisor: Supervisor,
    mac: str,
) -> LeaderParts:
    """The elector, route and VTEP ownership, and the two watches that speed them up."""
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
    elector = LeaseElector(
        lease,
        identity=config.identity,
        lease_duration_s=config.lease_duration_s,
        renew_deadline_s=config.renew_deadline_s,
        retry_period_s=config.retry_period_s,
        on_change=lambda _leading: supervisor.wake("leader-work"),
    )

    def build_routes(region: str, instance_id: str) -> RouteOwner:
        log.info("region %s, instance %s", region, instance_id)
        return RouteOwner(
            Ec2Routes(make_client(region), write_guard=elector.valid),
            instance_id=instance_id,
            table_ids=config.route_table_ids,
            pod_cidrs=[str(c) for c in config.pod_cidrs],
            allow_takeover=config.allow_route_takeover,
            metrics=reporting.metrics,
            on_refusals=functools.partial(emit_refusals, reporting.events, reporting.subject),
        )

    routes = DeferredRoutes(
        table_ids=config.route_table_ids,
        resolve=lambda: resolve_identity(config, environ),
        build=build_routes,
        reporter=reporting.reporter(
            "route ownership start-up",
            "aws",
            "InstanceIdentityUnavailable",
            "set AWS_REGION and AWS_INSTANCE_ID, or allow IMDSv2 (hop limit 2 for pods)",
        ),
        max_backoff_s=timings.start_retry_max_s,
    )
    vtep_store = VtepStore(api_client, timeout_s=timings.api_timeout_s)
    work = LeaderWork(
        valid=elector.valid,
        acquired_at=lambda: elector.acquired_at,
        routes=routes,
        vtep=VtepOwner(vtep_store, vpc_cidrs=config.vpc_cidrs, node_ip=config.node_ip, mac=mac),
        resync_period_s=config.resync_period_s,
        retry_period_s=config.retry_period_s,
        metrics=reporting.metrics,
        events=reporting.events,
        subject=reporting.subject,
        identity=config.identity,
    )
    lease_watch_reporter = reporting.reporter(
        f"Lease watch {where}",
        "lease",
        "LeaseWatchFailed",
        "the standby notices a release only when it polls; grant list and watch on leases",
    )

    def on_lease_seen(record: LeaseRecord | None) -> None:
        lease.seen(record)
        elector.notice(record)

    lease_watch_beat = Beat()
    lease_watch = Task(
        "lease-watch",
        lambda stop: LeaseStore(api_client, config.namespace, config.lease_name).watch(
            stop,
            on_lease_seen,
            timeout_s=timings.api_timeout_s,
            window_s=timings.watch_window_s,
            max_backoff_s=timings.watch_max_backoff_s,
            on_error=watch_failure(lease_watch_reporter),
            on_listed=lease_watch_reporter.succeeded,
            beat=lease_watch_beat,
        ),
        heartbeat=lease_watch_beat.last,
        stale_after_s=timings.stale_watch_s,
    )
    vtep_watch_reporter = reporting.reporter(
        f"CiliumVTEPConfig watch {vtep_store.name}",
        "ciliumvtepconfig",
        "VtepConfigWatchFailed",
        "grant get, list and watch on ciliumvtepconfigs.cilium.io and check the CRD exists",
    )
    vtep_watch_beat = Beat()
    vtep_watch = Task(
        "vtep-watch",
        lambda stop: vtep_store.watch(
            stop,
            lambda _type: work.wake_vtep(),
            window_s=timings.watch_window_s,
            max_backoff_s=timings.watch_max_backoff_s,
            on_error=watch_failure(vtep_watch_reporter),
            on_listed=vtep_watch_reporter.succeeded,
            beat=vtep_watch_beat,
        ),
        heartbeat=vtep_watch_beat.last,
        stale_after_s=timings.stale_watch_s,
    )
    return LeaderParts(elector, lease, lease_watch, routes, work, vtep_watch, vtep_watch_reporter)


def readiness(dataplane: DataPlaneLike | None, leader: LeaderParts, timings: Timings) -> Check:
    """`/readyz`: the data plane is ready, this replica can take part in the election, and on
    the leader the routes and the CiliumVTEPConfig have converged. Says what it waits for."""

    def ready() -> tuple[bool, str]:
        if dataplane is not None and not dataplane.ready():
            return False, "data plane not ready"
        problem = leader.lease.problem()
        if problem is not None:
            return False, problem
        watch_down = leader.vtep_watch_reporter.failing_for()
        if watch_down > timings.holder_loss_s:
            error = leader.vtep_watch_reporter.last_error
            return False, f"CiliumVTEPConfig watch failing for {watch_down:.0f}s ({error})"
        routes_wait = leader.routes.waiting_for
        work = leader.work
        if work.active:
            pending = [
                part
                for part, done in (
                    (
                        "routes" + (f" (waiting for {routes_wait})" if routes_wait else ""),
                        work.routes_converged,
                    ),
                    ("CiliumVTEPConfig", work.vtep_converged),
                )
                if not done
            ]
            if pending:
                return False, "leader: not converged yet: " + ", ".join(pending)
            return True, "ready (leader)"
        if routes_wait:
            return True, f"ready (standby; routes waiting for {routes_wait})"
        return True, "ready (standby)"

    return ready


def install_signal_handlers() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def shut_down(supervisor: Supervisor, leader: LeaderParts, timings: Timings, identity: str) -> None:
    """Leader work, then the lease release, then the rest (Events last)."""
    was_leader = leader.work.active
    leader.elector.stop_leading()  # no leader write passes after this
    stuck = supervisor.stop(LEADER_TASKS, timings.shutdown_join_s)
    if "leader-work" in stuck:
        log.error("leader work still running; not releasing the lease")
    elif was_leader or leader.elector.holder == identity:
        leader.elector.release(timeout_s=timings.api_timeout_s)
    supervisor.stop(supervisor.running(exclude=[EVENTS_TASK]), timings.shutdown_rest_s)
    supervisor.stop([EVENTS_TASK], timings.shutdown_rest_s)


def run(config: Config, environ: Mapping[str, str]) -> int:
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
        api_client = kube_api_client(environ)
    except Exception as exc:
        log.error("cannot configure the Kubernetes client: %s", exc)
        return 1
    metrics = GatewayMetrics()
    metrics.info.info(
        {
            "node_ip": config.node_ip,
            "node_name": config.node_name or "",
            "vxlan_interface": VXLAN_DEVICE,
            "vpc_cidr": ",".join(map(str, config.vpc_cidrs)),
            "pod_cidr": ",".join(map(str, config.pod_cidrs)),
        }
    )
    metrics.leader_is_active.set(0)
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
    if config.dataplane:
        try:
            dataplane = start_dataplane(config, api_client, reporting)
        except Exception as exc:
            log.error("data plane set-up failed: %s", exc)
            return 1
        supervisor.add(
            Task(
                "dataplane",
                dataplane.run,
                heartbeat=lambda: dataplane.heartbeat if dataplane else 0.0,
                stale_after_s=timings.stale_dataplane_s,
            )
        )
    mac = dataplane.device_mac if dataplane is not None else vxlan_device_mac(config.node_ip)
    log.info("VTEP MAC %s", mac)
    leader = build_leader(
        config,
        environ=environ,
        timings=timings,
        api_client=api_client,
        reporting=reporting,
        supervisor=supervisor,
        mac=mac,
    )
    supervisor.add(
        Task(
            "route-start",
            leader.routes.run,
            heartbeat=lambda: leader.routes.heartbeat,
            stale_after_s=timings.stale_dataplane_s,
            one_shot=True,
        )
    )
    supervisor.add(leader.lease_watch)
    supervisor.add(
        Task(
            "elector",
            leader.elector.run,
            heartbeat=lambda: leader.elector.heartbeat,
            stale_after_s=timings.stale_elector_s,
            wake=leader.elector.wake,
        )
    )
    supervisor.add(
        Task(
            "leader-work",
            leader.work.run,
            heartbeat=lambda: leader.work.heartbeat,
            stale_after_s=timings.stale_leader_work_s,
            wake=leader.work.wake,
        )
    )
    supervisor.add(leader.vtep_watch)
    try:
        endpoints = HttpEndpoints(
            health_addr=(config.health_addr.host, config.health_addr.port),
            metrics_addr=(config.metrics_addr.host, config.metrics_addr.port),
            alive=supervisor.alive,
            ready=readiness(dataplane, leader, timings),
            registry=metrics.registry,
        )
    except OSError as exc:
        log.error("cannot listen on %s / %s: %s", config.health_addr, config.metrics_addr, exc)
        return 1
    endpoints.start()
    supervisor.start()
    log.info("running (health %s, metrics %s)", config.health_addr, config.metrics_addr)
    while not stop.wait(1.0):
        pass
    shut_down(supervisor, leader, timings, config.identity)
    endpoints.stop()
    log.info("stopped")
    return 0
