"""A replica that cannot use its Lease or watch the CiliumVTEPConfig says so everywhere an
operator looks: a rate-limited warning in the log, `hybrid_gateway_api_errors_total`, a Warning
Event about its pod, and /readyz once it lasts. A real `hybrid-gateway run --no-dataplane`
against the test API server, which answers its requests with injected 403s (missing RBAC) or
404s (a namespace that does not exist)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway_testkit.daemon import DaemonProcess, daemon_env
from hybrid_gateway_testkit.ec2emu import DRY_RUN_PREFIX, UNAUTHORIZED_BODY, Ec2Proxy, seed_world
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

pytestmark = pytest.mark.slow

NAMESPACE = "eks-hybrid-nodes-gateway"
IDENTITY = "gw-a"
LEASE = f"Lease {NAMESPACE}/hybrid-gateway-leader"
#: With 1 s leases a replica is not ready after 5 s without a live holder (several durations).
FOREVER = 1_000_000


def start_daemon(kube_api: ApiServer, tmp_path: Path, namespace: str = NAMESPACE) -> DaemonProcess:
    daemon = DaemonProcess(
        env=daemon_env(
            kubeconfig=kube_api.kubeconfig(IDENTITY),
            identity=IDENTITY,
            namespace=namespace,
            node_ip="10.0.1.10",
            pod_cidrs=["10.80.0.0/16"],
            resync_period="1",
        ),
        args=("--no-dataplane",),
        log_path=tmp_path / "gw.log",
    ).start()
    daemon.wait_serving()
    return daemon


@pytest.fixture
def events_api(kube_api: ApiServer) -> client.CoreV1Api:
    return client.CoreV1Api(
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    )


@pytest.fixture
def daemon(kube_api: ApiServer, tmp_path: Path) -> Iterator[DaemonProcess]:
    process = start_daemon(kube_api, tmp_path)
    try:
        yield process
    finally:
        process.stop()


def pod_events(api: client.CoreV1Api, reason: str) -> list[client.CoreV1Event]:
    return [
        e
        for e in api.list_namespaced_event(NAMESPACE).items
        if e.reason == reason and e.involved_object.name == IDENTITY
    ]


def warnings(daemon: DaemonProcess, text: str) -> list[str]:
    return [line for line in daemon.log(200_000).splitlines() if "WARNING" in line and text in line]


def test_a_replica_denied_its_lease_is_loud_and_not_ready(
    kube_api: ApiServer, daemon: DaemonProcess, events_api: client.CoreV1Api
) -> None:
    wait_until("ready as leader", lambda: daemon.readyz() == (200, "ready (leader)\n"))
    kube_api.inject_errors(IDENTITY, code=403, count=FOREVER, resource="leases")
    try:
        _, body = daemon.wait_readyz(lambda status, _: status == 503, "not ready")
        assert "no live Lease holder seen for" in body and "403" in body, body
        assert daemon.healthz()[0] == 200  # its loops turn: no restart would help
        failed = daemon.metric("hybrid_gateway_api_errors_total", 'api="lease"') or 0.0
        logged = warnings(daemon, f"{LEASE}: ")
        assert logged and "403" in logged[0], daemon.log()
        assert failed >= 10 and len(logged) <= 2  # every failure counted, not every one logged
        events = wait_until("Warning Event", lambda: pod_events(events_api, "LeaseUnavailable"))
        assert events[0].type == "Warning" and "403" in events[0].message
    finally:
        kube_api.inject_errors(IDENTITY, count=0, resource="leases")
    wait_until("ready again", lambda: daemon.readyz() == (200, "ready (leader)\n"), 30.0)
    assert "working again after" in daemon.log(200_000)


def test_a_replica_in_a_namespace_that_does_not_exist_is_loud_and_not_ready(
    kube_api: ApiServer, tmp_path: Path
) -> None:
    daemon = start_daemon(kube_api, tmp_path, namespace="no-such-namespace")
    try:
        _, body = daemon.wait_readyz(lambda status, _: status == 503, "not ready")
        assert "no live Lease holder seen for" in body and "404" in body, body
        assert warnings(daemon, "Lease no-such-namespace/hybrid-gateway-leader: create failed")
        failed = daemon.metric("hybrid_gateway_api_errors_total", 'operation="create"')
        assert failed is not None and failed >= 1
    finally:
        daemon.stop()


def test_a_failing_vtep_config_watch_is_loud_and_not_ready(
    kube_api: ApiServer, daemon: DaemonProcess, events_api: client.CoreV1Api
) -> None:
    """Before: the watch logged its failures at DEBUG and nothing else."""
    wait_until("ready as leader", lambda: daemon.readyz() == (200, "ready (leader)\n"))
    kube_api.inject_errors(IDENTITY, code=403, count=FOREVER, resource="ciliumvtepconfigs")
    try:
        status, body = daemon.wait_readyz(
            lambda _, body: "watch failing" in body, "names the failing watch"
        )
        assert status == 503 and "403" in body, body
        failed = daemon.metric("hybrid_gateway_api_errors_total", 'api="ciliumvtepconfig"')
        assert failed is not None and failed >= 1
        assert warnings(daemon, "CiliumVTEPConfig watch hybrid-gateway: list/watch failed")
        events = wait_until(
            "Warning Event", lambda: pod_events(events_api, "VtepConfigWatchFailed")
        )
        assert "403" in events[0].message
    finally:
        kube_api.inject_errors(IDENTITY, count=0, resource="ciliumvtepconfigs")
    wait_until("ready again", lambda: daemon.readyz() == (200, "ready (leader)\n"), 30.0)


def test_a_replica_that_may_not_write_routes_says_so_as_standby_and_as_leader(
    kube_api: ApiServer,
    moto_addr: tuple[str, int],
    direct: Any,
    tmp_path: Path,
    events_api: client.CoreV1Api,
) -> None:
    """IAM denies the route writes: the replica finds out at start (EC2 DryRun), not at its
    first failover, and says so on /readyz and with an Event, as standby and as leader."""
    world = seed_world(direct, tables=2, pod_cidrs=["10.80.0.0/16"], instance_names=("a",))
    denied = [True]
    proxy = Ec2Proxy(
        moto_addr,
        label="gw-a",
        # EC2 denies the dry runs and the writes alike
        fault=lambda action, seq: (
            (403, UNAUTHORIZED_BODY)
            if denied[0] and action.removeprefix(DRY_RUN_PREFIX) in ("CreateRoute", "ReplaceRoute")
            else None
        ),
    ).start()
    leases = client.CoordinationV1Api(
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    )
    leases.create_namespaced_lease(  # another replica leads: this one starts as standby
        NAMESPACE,
        {
            "metadata": {"name": "hybrid-gateway-leader"},
            "spec": {
                "holderIdentity": "gw-other",
                "leaseDurationSeconds": 3600,
                "renewTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        },
    )
    daemon = DaemonProcess(
        env=daemon_env(
            kubeconfig=kube_api.kubeconfig(IDENTITY),
            identity=IDENTITY,
            namespace=NAMESPACE,
            node_ip="10.0.1.10",
            pod_cidrs=world.pod_cidrs,
            route_table_ids=world.table_ids,
            instance_id=world.instances["a"],
            ec2_url=proxy.url,
            resync_period="1",
        ),
        args=("--no-dataplane",),
        log_path=tmp_path / "gw.log",
    ).start()
    try:
        daemon.wait_serving()
        status, body = daemon.wait_readyz(
            lambda _, body: "may not write routes" in body, "names the missing permission"
        )
        assert status == 503 and world.table_ids[0] in body and "ec2:CreateRoute" in body, body
        events = wait_until(
            "Warning Event", lambda: pod_events(events_api, "RouteWritesNotAllowed")
        )
        assert "ReplaceRoute in " + world.table_ids[1] in events[0].message
        assert daemon.metric("hybrid_gateway_leader_is_active") == 0
        # the leader goes away (its Lease is deleted): this replica leads and still says so
        leases.delete_namespaced_lease("hybrid-gateway-leader", NAMESPACE)
        wait_until("leading", lambda: daemon.metric("hybrid_gateway_leader_is_active") == 1)
        status, body = daemon.readyz()
        assert status == 503 and "may not write routes" in body, body
        wait_until("a refused write", lambda: proxy.count("CreateRoute", "ReplaceRoute") > 0)
        assert set(world.routes(direct).values()) == {"absent"}
        # the permission is granted: the next preparation passes and the routes follow
        denied[0] = False
        wait_until("ready as leader", lambda: daemon.readyz() == (200, "ready (leader)\n"), 30.0)
        assert set(world.routes(direct).values()) == {world.enis["a"]}
    finally:
        daemon.stop()
        proxy.stop()
