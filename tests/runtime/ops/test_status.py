"""`hybrid-gateway status`: leader, Lease, routes per table and pod CIDR, the VTEP config,
hybrid nodes configured per replica (metrics when reachable, else Kubernetes), Events."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from hybrid_gateway_testkit.ops_world import POD_CIDRS, OpsWorld

from .conftest import Run


def test_status_of_a_healthy_world(run: Run, world: OpsWorld) -> None:
    ran = run("status", "--no-scrape", "--output", "json")
    assert ran.code == 0, ran.out
    status = ran.json()
    assert status["leader"] == world.pods["a"]
    assert status["lease"]["transitions"] == 1 and status["lease"]["heldForSeconds"] >= 299
    assert {(r["routeTableId"], r["destination"], r["points_at"]) for r in status["routes"]} == {
        (t, c, "leader") for t in world.owned_tables for c in POD_CIDRS
    }
    assert status["vtepConfig"][0]["tunnelEndpoint"] == world.ips["a"]
    replicas = {r["pod"]: r for r in status["replicas"]}
    assert replicas[world.pods["a"]]["leader"] and not replicas[world.pods["b"]]["leader"]
    assert {(r["hybridNodesConfigured"], r["source"]) for r in replicas.values()} == {
        (1, "kubernetes")
    }
    assert [e["reason"] for e in status["events"]] == ["LeaderElected"]


def test_status_table_shows_a_route_on_the_standby(run: Run, world: OpsWorld, ec2: Any) -> None:
    ec2.replace_route(
        RouteTableId=world.owned_tables[1],
        DestinationCidrBlock=POD_CIDRS[0],
        NetworkInterfaceId=world.enis["b"],
    )
    ran = run("status", "--no-scrape")
    assert ran.code == 0
    assert f"Leader:  {world.pods['a']}" in ran.out
    line = next(
        row
        for row in ran.out.splitlines()
        if row.startswith(world.owned_tables[1]) and POD_CIDRS[0] in row
    )
    assert line.split()[-2:] == [world.enis["b"], "standby"]


class _Replica(BaseHTTPRequestHandler):
    """A replica's metrics and health endpoints, as the daemon answers them."""

    def do_GET(self) -> None:
        if self.path == "/metrics":
            code, body = (
                200,
                (
                    b"# TYPE hybrid_gateway_hybrid_nodes_configured gauge\n"
                    b"hybrid_gateway_hybrid_nodes_configured 7.0\n"
                ),
            )
        else:
            code, body = 503, b"not ready: routes not converged (2 of 4)\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def replica_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replica)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_replicas_own_endpoints_answer_when_reachable(
    run: Run, world: OpsWorld, kube: client.ApiClient, replica_port: int
) -> None:
    """Replica a's metrics answer on loopback; replica b's host (another loopback address, so
    nothing leaves this machine) has nothing listening: its count comes from Kubernetes."""
    core = client.CoreV1Api(kube)
    for name, host in (("a", "127.0.0.1"), ("b", "127.0.0.2")):
        core.patch_namespaced_pod_status(
            world.pods[name], world.namespace, {"status": {"hostIP": host}}
        )
    port = str(replica_port)
    status = run("status", "--metrics-port", port, "--health-port", port, "--output", "json").json()
    replicas = {r["pod"]: r for r in status["replicas"]}
    a, b = replicas[world.pods["a"]], replicas[world.pods["b"]]
    assert (a["hybridNodesConfigured"], a["source"]) == (7, "metrics")
    assert (b["hybridNodesConfigured"], b["source"]) == (1, "kubernetes")
    assert (a["readiness"], a["readinessSource"]) == (
        "not ready (503): not ready: routes not converged (2 of 4)",
        "replica",
    )
    assert (b["readiness"], b["readinessSource"]) == ("Ready=True", "kubernetes")


def test_gateway_events_about_cluster_scoped_objects_are_found_in_default(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    """The daemon files Events about the CiliumVTEPConfig and CiliumNodes in "default" (the only
    namespace a real server accepts them in); status shows those, not other components'."""
    core = client.CoreV1Api(kube)
    for name, component, reason in (
        ("vtep.1", "eks-hybrid-nodes-gateway", "VtepConfigCorrected"),
        ("other.1", "kubelet", "NodeNotReady"),
    ):
        core.create_namespaced_event(
            "default",
            {
                "metadata": {"name": name},
                "involvedObject": {
                    "kind": "CiliumVTEPConfig",
                    "name": "hybrid-gateway",
                    "apiVersion": "cilium.io/v2",
                },
                "reason": reason,
                "message": f"{reason} by {component}",
                "type": "Warning",
                "source": {"component": component},
                "lastTimestamp": "2030-01-01T00:00:00Z",
            },
        )
    status = run("status", "--no-scrape", "--output", "json").json()
    assert [e["reason"] for e in status["events"]] == ["LeaderElected", "VtepConfigCorrected"]
    assert status["events"][-1]["object"] == "CiliumVTEPConfig/hybrid-gateway"


def test_status_and_preflight_report_shard_routes_left_in_active_standby(
    run: Run, world: OpsWorld, ec2: Any
) -> None:
    """After a switch back to active-standby, a shard route still in a table is more specific
    than the leader's whole pod network and wins: both commands name it until the leader has
    deleted it. A transit gateway route inside the pod network is somebody's design: never
    reported as a shard route left (preflight fails on it for another reason: it takes that part
    of the pods' traffic away from the gateway)."""
    pod = ipaddress.IPv4Network(POD_CIDRS[0])
    shard, other = (str(s) for s in list(pod.subnets(prefixlen_diff=2))[1:3])
    ec2.create_route(
        RouteTableId=world.owned_tables[0],
        DestinationCidrBlock=shard,
        NetworkInterfaceId=world.enis["b"],
    )
    ec2.create_route(
        RouteTableId=world.owned_tables[0],
        DestinationCidrBlock=other,
        TransitGatewayId=world.transit_gateway,
    )
    status = run("status", "--no-scrape", "--output", "json").json()
    assert status["shardRoutesLeft"] == [
        {"routeTableId": world.owned_tables[0], "destination": shard, "target": world.enis["b"]}
    ]
    table = run("status", "--no-scrape").out
    assert f"{shard}" in table and "SHARD ROUTE LEFT" in table
    report = run("preflight", "--output", "json").json()
    targets = next(c for c in report["checks"] if c["id"] == "ROUTE-TARGETS")
    assert targets["verdict"] == "fail"  # the transit gateway route (see the docstring)
    assert any(shard in line and "shard route left" in line for line in targets["evidence"])
    assert not any(other in line and "shard route left" in line for line in targets["evidence"])
    assert any(other in line and "away from the gateway" in line for line in targets["evidence"])
    assert not any(
        shard in line and "away from the gateway" in line for line in targets["evidence"]
    )
    assert "ec2:DeleteRoute" in targets["fix"]
