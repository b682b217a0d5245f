"""A replica that cannot use its Lease or watch the CiliumVTEPConfig says so everywhere an
operator looks: a rate-limited warning in the log, `hybrid_gateway_api_errors_total`, a Warning
Event about its pod, and /readyz once it lasts. A real `hybrid-gateway run --no-dataplane`
against the test API server, which answers its requests with injected 403s (missing RBAC) or
404s (a namespace that does not exist)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from hybrid_gateway_testkit.apiserver import ApiServer
from hybrid_gateway_testkit.daemon import DaemonProcess, daemon_env
from hybrid_gateway_testkit.waiting import wait_until

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
