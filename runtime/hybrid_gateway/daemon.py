"""The daemon: wires the data plane (every replica) and the leader work (lease holder only).

Shutdown order matters for a planned failover: leader work is invalidated and joined first (no
EC2 or VTEP write can land after this point), THEN the lease is released, so the standby can
take over at once without racing our in-flight writes. The data-plane state is left in place:
this node keeps forwarding until the routes have moved (SPEC §12).
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any, Protocol

from kubernetes import client as kclient
from kubernetes import config as kconfig

from hybrid_gateway.adapters.ec2 import Ec2Routes, make_client
from hybrid_gateway.adapters.imds import ImdsError, fetch_identity
from hybrid_gateway.adapters.kube_events import EventRecorder, ObjectRef
from hybrid_gateway.adapters.kube_lease import LeaseStore
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.config import Config
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.health import HttpEndpoints
from hybrid_gateway.leader.elector import LeaseElector
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.leader.service import AsyncEvents, LeaderWork
from hybrid_gateway.leader.vtep import VtepOwner
from hybrid_gateway.logging_setup import setup_logging
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_contract import VXLAN_DEVICE

log = logging.getLogger("hybrid_gateway")

SHUTDOWN_JOIN_S = 10.0


class DataPlaneLike(Protocol):
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


def resolve_identity(config: Config, environ: Mapping[str, str]) -> tuple[str, str]:
    """Region and instance id: from the config when both are given, else from IMDSv2."""
    if config.aws_region and config.aws_instance_id:
        return config.aws_region, config.aws_instance_id
    identity = fetch_identity(environ)
    return config.aws_region or identity.region, config.aws_instance_id or identity.instance_id


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
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        region, instance_id = resolve_identity(config, environ)
    except ImdsError as exc:
        log.error("cannot determine region/instance: %s", exc)
        return 1
    try:
        api_client = kube_api_client(environ)
    except Exception as exc:
        log.error("cannot configure the Kubernetes client: %s", exc)
        return 1

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
    recorder = EventRecorder(
        kclient.CoreV1Api(api_client), host=config.node_name or config.identity
    )
    events = AsyncEvents(recorder)

    dataplane: DataPlaneLike | None = None
    mac = vxlan_device_mac(config.node_ip)
    threads: list[threading.Thread] = []
    if config.dataplane:
        try:
            # Imported lazily: `--no-dataplane` runs need neither pyroute2 nor netlink rights.
            dataplane_module = importlib.import_module("hybrid_gateway.dataplane")
            dp: Any = dataplane_module.DataPlane(
                node_ip=config.node_ip,
                vpc_cidrs=list(config.vpc_cidrs),
                mtu=config.vxlan_mtu,
                resync_period_s=config.resync_period_s,
                api_client=api_client,
                events=recorder,
                metrics=metrics,
            )
            dp.setup()
        except Exception as exc:
            log.error("data plane set-up failed: %s", exc)
            return 1
        dataplane = dp
        mac = dp.device_mac
        threads.append(threading.Thread(target=dp.run, args=(stop,), name="dataplane", daemon=True))
    log.info("VTEP MAC %s, region %s, instance %s", mac, region, instance_id)

    subject = ObjectRef("v1", "Pod", config.identity, config.namespace)
    elector_stop = threading.Event()
    work_stop = threading.Event()
    api_timeout_s = max(0.5, config.renew_deadline_s)
    watch_window_s = max(5.0, min(60.0, config.resync_period_s))
    vtep_store = VtepStore(api_client, timeout_s=api_timeout_s)
    routes = RouteOwner(
        Ec2Routes(make_client(region)),
        instance_id=instance_id,
        table_ids=config.route_table_ids,
        pod_cidrs=[str(c) for c in config.pod_cidrs],
        allow_takeover=config.allow_route_takeover,
        metrics=metrics,
        report=lambda reason, message: events.emit(subject, reason, message),
    )
    work = LeaderWork(
        routes=routes,
        vtep=VtepOwner(
            vtep_store,
            vpc_cidrs=config.vpc_cidrs,
            node_ip=config.node_ip,
            mac=mac,
        ),
        resync_period_s=config.resync_period_s,
        retry_period_s=config.retry_period_s,
        metrics=metrics,
        events=events,
        subject=subject,
        identity=config.identity,
    )

    def can_acquire() -> bool:
        """Take the lease only where forwarding works: the data plane is ready and the primary
        ENI is not known to drop forwarded packets (a held lease is kept regardless)."""
        return (dataplane is None or dataplane.ready()) and routes.forwarding_allowed()

    elector = LeaseElector(
        LeaseStore(api_client, config.namespace, config.lease_name),
        identity=config.identity,
        lease_duration_s=config.lease_duration_s,
        renew_deadline_s=config.renew_deadline_s,
        retry_period_s=config.retry_period_s,
        callbacks=work,
        can_acquire=can_acquire,
    )
    metrics.leader_is_active.set(0)

    lease_watch = LeaseStore(api_client, config.namespace, config.lease_name)
    threads += [
        # Resolves the primary ENI and checks every route table at start, in the background
        # (the data plane never waits on EC2), retried until it succeeds.
        threading.Thread(
            target=routes.prepare_until_ready,
            args=(stop,),
            kwargs={"max_backoff_s": config.resync_period_s},
            name="route-prepare",
            daemon=True,
        ),
        threading.Thread(target=elector.run, args=(elector_stop,), name="elector", daemon=True),
        threading.Thread(target=work.run, args=(work_stop,), name="leader-work", daemon=True),
        threading.Thread(
            target=vtep_store.watch,
            args=(stop, lambda _type: work.wake_vtep()),
            kwargs={"window_s": watch_window_s},
            name="vtep-watch",
            daemon=True,
        ),
        threading.Thread(
            target=lease_watch.watch,
            args=(stop, elector.notice),
            kwargs={
                "timeout_s": api_timeout_s,
                "window_s": watch_window_s,
                "max_backoff_s": max(1.0, config.retry_period_s),
            },
            name="lease-watch",
            daemon=True,
        ),
    ]
    stale_elector_s = 10 * config.retry_period_s + 10.0
    stale_work_s = config.resync_period_s + 120.0

    def alive() -> tuple[bool, str]:
        now = time.monotonic()
        if now - elector.heartbeat > stale_elector_s:
            return False, "elector loop stuck"
        if now - work.heartbeat > stale_work_s:
            return False, "leader work loop stuck"
        dead = [
            t.name
            for t in threads
            if t.name in ("dataplane", "elector", "leader-work") and not t.is_alive()
        ]
        if dead and not stop.is_set():
            return False, "thread exited: " + ",".join(dead)
        return True, "ok"

    def ready() -> tuple[bool, str]:
        if dataplane is not None and not dataplane.ready():
            return False, "data plane not ready"
        problem = routes.problem()
        if problem is not None:
            return False, problem
        if work.active:
            if not work.converged():
                return False, "leader: routes or CiliumVTEPConfig not converged yet"
            return True, "ready (leader)"
        return True, "ready (standby)"

    try:
        endpoints = HttpEndpoints(
            health_addr=(config.health_addr.host, config.health_addr.port),
            metrics_addr=(config.metrics_addr.host, config.metrics_addr.port),
            alive=alive,
            ready=ready,
            registry=metrics.registry,
        )
    except OSError as exc:
        log.error("cannot listen on %s / %s: %s", config.health_addr, config.metrics_addr, exc)
        return 1
    endpoints.start()
    for thread in threads:
        thread.start()
    log.info("running (health %s, metrics %s)", config.health_addr, config.metrics_addr)

    while not stop.wait(1.0):
        pass

    # Planned shutdown: end the term for good (no write passes, no new term starts), stop
    # leader work, THEN release, so no write can follow the release.
    was_leader = work.active
    elector.shutdown()
    elector_stop.set()
    elector.wake()
    work_stop.set()
    work.wake()
    by_name = {t.name: t for t in threads}
    by_name["leader-work"].join(SHUTDOWN_JOIN_S)
    by_name["elector"].join(SHUTDOWN_JOIN_S)
    if by_name["leader-work"].is_alive():
        log.error("leader work did not stop in %ss; not releasing the lease", SHUTDOWN_JOIN_S)
    elif was_leader or elector.holder == config.identity:
        elector.release()
    endpoints.stop()
    events.close()
    log.info("stopped")
    return 0
