"""One daemon against the test API server: the CiliumVTEPConfig is created, corrected when
edited and recreated when deleted through its WATCH (the periodic resync is set far away), and
leadership and takeover refusals are reported as Kubernetes Events and metrics."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.ec2emu import INTERNAL_BODY, THROTTLE_BODY, Ec2Proxy, VpcWorld
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

NAMESPACE = "eks-hybrid-nodes-gateway"
NODE_IP = "10.0.1.10"
VTEP = ("cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_daemon(
    kube_api: ApiServer, world: VpcWorld, ec2_proxy: Ec2Proxy, tmp_path: Path, **extra: str
) -> tuple[subprocess.Popen[bytes], Path, int, int]:
    metrics_port, health_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KUBECONFIG": str(kube_api.kubeconfig("gw-a")),
        "POD_NAME": "gw-a",
        "POD_NAMESPACE": NAMESPACE,
        "NODE_IP": NODE_IP,
        "VPC_CIDR": "10.0.0.0/16,10.1.0.0/16",
        "POD_CIDRS": ",".join(world.pod_cidrs),
        "ROUTE_TABLE_IDS": ",".join(world.table_ids),
        "AWS_REGION": "us-east-1",
        "AWS_INSTANCE_ID": world.instances["a"],
        "AWS_ENDPOINT_URL_EC2": ec2_proxy.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "LEASE_DURATION": "1",
        "RENEW_DEADLINE": "0.6",
        "RETRY_PERIOD": "0.15",
        "RESYNC_PERIOD": "300",  # only the watch can trigger a repair within the test
        "LOG_FORMAT": "json",
        "HEALTH_ADDR": f"127.0.0.1:{health_port}",
        "METRICS_ADDR": f"127.0.0.1:{metrics_port}",
        **extra,
    }
    log_path = tmp_path / "gw.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hybrid_gateway", "run", "--no-dataplane"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, log_path, metrics_port, health_port


@pytest.fixture
def daemon(
    kube_api: ApiServer, world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    tgw = direct.create_transit_gateway()["TransitGateway"]["TransitGatewayId"]
    direct.create_route(
        RouteTableId=world.table_ids[0], DestinationCidrBlock="10.80.0.0/16", TransitGatewayId=tgw
    )
    proc, log_path, metrics_port, _ = start_daemon(kube_api, world, ec2_proxy, tmp_path)
    try:
        yield proc, log_path, metrics_port
    finally:
        proc.kill()
        proc.wait(10)


def test_vtep_config_is_kept_and_events_are_recorded(
    daemon: tuple[subprocess.Popen[bytes], Path, int], kube_api: ApiServer
) -> None:
    proc, log_path, metrics_port = daemon
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    custom = client.CustomObjectsApi(api)
    mac = vxlan_device_mac(NODE_IP)
    want = [
        {"name": "vpc-gateway-0", "tunnelEndpoint": NODE_IP, "cidr": "10.0.0.0/16", "mac": mac},
        {"name": "vpc-gateway-1", "tunnelEndpoint": NODE_IP, "cidr": "10.1.0.0/16", "mac": mac},
    ]

    def endpoints() -> list[dict[str, str]] | None:
        try:
            return list(custom.get_cluster_custom_object(*VTEP)["spec"]["endpoints"])
        except client.ApiException:
            return None

    # created
    wait_until("VTEP config created", lambda: endpoints() == want, 10.0)
    # corrected after an edit (someone points hybrid nodes elsewhere)
    obj = custom.get_cluster_custom_object(*VTEP)
    obj["spec"]["endpoints"][1]["tunnelEndpoint"] = "10.9.9.9"
    custom.replace_cluster_custom_object(*VTEP, obj)
    wait_until("VTEP config corrected", lambda: endpoints() == want, 10.0)
    # recreated after deletion
    custom.delete_cluster_custom_object(*VTEP)
    wait_until("VTEP config recreated", lambda: endpoints() == want, 10.0)

    # Events: leadership and the refused transit-gateway route
    core = client.CoreV1Api(api)

    def reasons() -> set[str]:
        return {e.reason for e in core.list_namespaced_event(NAMESPACE).items}

    wait_until(
        "leadership and refusal Events",
        lambda: {"LeaderElected", "RouteTakeoverRefused"} <= reasons(),
        10.0,
    )
    refusal = next(
        e for e in core.list_namespaced_event(NAMESPACE).items if e.reason == "RouteTakeoverRefused"
    )
    assert "transit-gateway" in refusal.message and refusal.type == "Warning"
    assert refusal.involved_object.kind == "Pod" and refusal.involved_object.name == "gw-a"

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as reply:
        text = reply.read().decode()
    assert "hybrid_gateway_route_takeover_refused 1.0" in text
    assert "hybrid_gateway_leader_is_active 1.0" in text
    assert 'hybrid_gateway_info{node_ip="10.0.1.10"' in text

    # structured logs: every line is one JSON object
    proc.terminate()
    assert proc.wait(15) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert {"time", "level", "logger", "msg"} <= set(lines[0])
    assert any("not replaced" in line["msg"] for line in lines)
    assert any(line["msg"] == "released the lease" for line in lines)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()
    except OSError:
        return 0, ""


def test_daemon_rides_out_ec2_throttling_and_errors(
    kube_api: ApiServer, world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy, tmp_path: Path
) -> None:
    """Every EC2 call fails (throttled or 5xx) for a while: the daemon stays alive and unready,
    then converges once EC2 answers again."""
    failing = [True]

    def fault(action: str, seq: int) -> tuple[int, bytes] | None:
        if not failing[0]:
            return None
        return (503, THROTTLE_BODY) if seq % 4 == 0 else (500, INTERNAL_BODY)

    ec2_proxy.fault = fault
    proc, _log, _, health_port = start_daemon(
        kube_api, world, ec2_proxy, tmp_path, RESYNC_PERIOD="1"
    )
    try:
        wait_until("healthz", lambda: get(health_port, "/healthz")[0] == 200, 10.0)
        wait_until("EC2 traffic", lambda: ec2_proxy.count() >= 4, 10.0)
        assert get(health_port, "/readyz")[0] == 503
        assert get(health_port, "/healthz")[0] == 200 and proc.poll() is None
        failing[0] = False
        wait_until(
            "ready as leader",
            lambda: get(health_port, "/readyz") == (200, "ready (leader)\n"),
            40.0,
        )
        assert world.all_point_at(direct, "a")
        assert proc.poll() is None
        assert any(c.injected for c in ec2_proxy.snapshot())
    finally:
        proc.kill()
        proc.wait(10)


def test_source_dest_check_on_is_unready_logged_and_an_event_naming_the_eni(
    kube_api: ApiServer, world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy, tmp_path: Path
) -> None:
    """Forwarded packets would be dropped at this node: resolved at start (without leading
    first), the replica is not ready, logs an error and records an Event naming the ENI; once
    the check is turned off it becomes ready without a restart."""
    eni = world.enis["a"]
    direct.modify_network_interface_attribute(
        NetworkInterfaceId=eni, SourceDestCheck={"Value": True}
    )
    proc, log_path, metrics_port, health_port = start_daemon(kube_api, world, ec2_proxy, tmp_path)
    core = client.CoreV1Api(
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    )
    try:

        def unready_naming_the_eni() -> str | None:
            status, body = get(health_port, "/readyz")
            return body if status == 503 and eni in body else None

        def event_naming_the_eni() -> Any:
            return next(
                (
                    e
                    for e in core.list_namespaced_event(NAMESPACE).items
                    if e.reason == "RouteTablesNotUsable" and eni in e.message
                ),
                None,
            )

        body = wait_until("unready naming the ENI", unready_naming_the_eni, 15.0)
        assert body is not None and "source/destination check" in body
        event = wait_until("an Event naming the ENI", event_naming_the_eni, 15.0)
        assert event.type == "Warning" and event.involved_object.name == "gw-a"
        errors = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        assert any(line["level"] == "error" and eni in line["msg"] for line in errors)
        assert (
            "hybrid_gateway_primary_eni_source_dest_check 1.0" in get(metrics_port, "/metrics")[1]
        )
        direct.modify_network_interface_attribute(
            NetworkInterfaceId=eni, SourceDestCheck={"Value": False}
        )
        wait_until("ready once fixed", lambda: get(health_port, "/readyz")[0] == 200, 20.0)
    finally:
        proc.kill()
        proc.wait(10)
