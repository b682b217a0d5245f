"""`hybrid-gateway run` WITH the data plane, in a network namespace of its own: the VTEP config
it publishes carries the MAC of the `hybrid_vxlan0` device it created, a hybrid CiliumNode gets
its tunnel route, readiness combines both halves, and SIGTERM leaves the tunnel in place.

The API server runs inside the same namespace (a process in a namespace cannot reach the root
namespace's loopback), so the test reads it from inside too. No route tables are configured:
this test is about the wiring, the EC2 side is covered by the moto tests.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.daemon import DaemonProcess, NetnsKube, daemon_env
from hybrid_gateway_testkit.kube_api import start_kube_api
from hybrid_gateway_testkit.netns import Netns, netns_world
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

pytestmark = pytest.mark.netns

GW_IP = "10.0.1.10"
HYBRID_IP = "10.0.1.20"
#: Routed from the gateway namespace to the hybrid one, which does not forward: every packet to
#: these addresses is silently dropped, like a resolver or metadata service behind a firewall.
BLACK_HOLE = "10.0.9.0/24"
DNS_SERVER = "10.0.9.53"
IMDS_URL = "http://10.0.9.254"
EC2_URL = "http://10.0.9.253"


@contextmanager
def unreachable_resolver(ns: Netns) -> Iterator[None]:
    """`ip netns exec` bind-mounts /etc/netns/<name>/{resolv.conf,hosts} over /etc (ip-netns(8)):
    processes started in `ns` ask a name server whose packets are dropped, and /etc/hosts does
    not know this host's name, so looking the host name up waits out every resolver timeout."""
    etc = Path("/etc/netns") / ns.name
    etc.mkdir(parents=True)
    try:
        (etc / "resolv.conf").write_text(f"nameserver {DNS_SERVER}\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        yield
    finally:
        shutil.rmtree(etc, ignore_errors=True)


@contextmanager
def gateway_world(tmp_path: Path) -> Iterator[tuple[Netns, ApiServer]]:
    """A gateway namespace linked to a hybrid node's, the test API server inside the gateway's,
    and a black hole behind the hybrid node (which does not forward)."""
    with netns_world() as world:
        gw = world.add("gw")
        hybrid = world.add("hy")
        world.link(gw, f"{GW_IP}/24", hybrid, f"{HYBRID_IP}/24")
        gw.sysctl("net.ipv4.ip_forward", "1")
        hybrid.sysctl("net.ipv4.ip_forward", "0")
        gw.ip("route", "add", BLACK_HOLE, "via", HYBRID_IP)
        with start_kube_api(tmp_path / "api", netns=gw.name) as api:
            yield gw, api


def start_gateway(
    gw: Netns, api: ApiServer, tmp_path: Path, health_port: int = 18088, **env: Any
) -> DaemonProcess:
    """`hybrid-gateway run` (data plane included) in `gw`, as pod gw-a on GW_IP."""
    return DaemonProcess(
        env=daemon_env(
            kubeconfig=api.kubeconfig("gw-a"),
            identity="gw-a",
            node_ip=GW_IP,
            pod_cidrs=["10.85.0.0/16"],
            **env,
        ),
        health_port=health_port,
        log_path=tmp_path / "gw.log",
        netns=gw,
    ).start()


def device_mac(ns: Netns) -> str | None:
    out = ns.ip("-j", "link", "show", "hybrid_vxlan0", check=False)
    return str(json.loads(out)[0]["address"]) if out.strip() else None


def test_daemon_with_data_plane_publishes_its_device_mac(tmp_path: Path) -> None:
    with gateway_world(tmp_path) as (gw, api):
        kube = NetnsKube(gw, api.kubeconfig("gw-a"))
        daemon = start_gateway(gw, api, tmp_path, resync_period="2")
        try:
            wait_until(
                "ready as leader",
                lambda: daemon.readyz() == (200, "ready (leader)\n"),
                20.0,
                poll_s=0.2,
            )
            mac = device_mac(gw)
            assert mac == vxlan_device_mac(GW_IP)
            assert kube.vtep_endpoints() == [
                {
                    "name": "vpc-gateway",  # one VPC CIDR: the reference's name
                    "tunnelEndpoint": GW_IP,
                    "cidr": "10.0.0.0/16",
                    "mac": mac,
                }
            ]

            kube.create_cilium_node("hybrid-1", HYBRID_IP, ["10.85.1.0/24"])
            wait_until(
                "tunnel route of the hybrid node",
                lambda: "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0"),
                20.0,
                poll_s=0.2,
            )

            daemon.signal(signal.SIGTERM)
            assert daemon.wait(20) == 0, daemon.log()
            # the tunnel stays: this node keeps forwarding until the routes have moved
            assert device_mac(gw) == mac
            assert "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0")
        finally:
            daemon.stop()


def node_filter_rules(ns: Netns) -> list[str] | None:
    """The rules of the daemon's nftables table in `ns` (None: no table)."""
    out = ns.exec("nft", "-j", "list", "table", "ip", "hybrid_gateway", check=False)
    if not out.strip():
        return None
    items = json.loads(out)["nftables"]
    return [json.dumps(i["rule"]["expr"], sort_keys=True) for i in items if "rule" in i]


def test_daemon_owns_its_node_filter_table(tmp_path: Path) -> None:
    """Installed before the replica is ready, repaired when deleted or edited, its counters on
    /metrics, removed at SIGTERM (the tunnel stays)."""
    with gateway_world(tmp_path) as (gw, api):
        daemon = start_gateway(gw, api, tmp_path)
        try:
            wait_until(
                "ready as leader",
                lambda: daemon.readyz() == (200, "ready (leader)\n"),
                30.0,
                poll_s=0.2,
            )
            rules = node_filter_rules(gw)
            assert rules is not None and any('"notrack"' in r for r in rules), rules
            assert daemon.metric("hybrid_gateway_node_filter_installed") == 1.0
            assert (
                daemon.metric(
                    "hybrid_gateway_forwarded_packets_total",
                    'direction="to_hybrid",prefix="10.85.0.0/16",shard="all"',
                )
                == 0.0
            )

            gw.exec("nft", "delete", "table", "ip", "hybrid_gateway")
            wait_until("table repaired", lambda: node_filter_rules(gw) == rules, 30.0, poll_s=0.2)
            gw.exec("nft", "flush", "chain", "ip", "hybrid_gateway", "skip_conntrack")
            wait_until("chain repaired", lambda: node_filter_rules(gw) == rules, 30.0, poll_s=0.2)
            assert daemon.metric("hybrid_gateway_node_filter_repairs_total") == 2.0
            assert "was deleted or edited on the node; replaced" in daemon.log()

            daemon.signal(signal.SIGTERM)
            assert daemon.wait(20) == 0, daemon.log()
            assert node_filter_rules(gw) is None
            assert device_mac(gw) is not None
        finally:
            daemon.stop()


def test_start_up_and_readiness_do_not_wait_for_dns(tmp_path: Path) -> None:
    """Before: HTTPServer.server_bind called socket.getfqdn("") (CPython Lib/http/server.py),
    which waited out the unreachable resolver (10 s with glibc defaults) before the daemon
    served a probe or started a loop. Asserted by ORDER: a host-name lookup started with the
    daemon is still waiting when the daemon is ready as leader."""
    with gateway_world(tmp_path) as (gw, api), unreachable_resolver(gw):
        lookup = subprocess.Popen(
            gw.exec_argv([sys.executable, "-c", "import socket; socket.getfqdn('')"])
        )
        # all addresses, as by default: HTTPServer.server_bind called getfqdn("") for it
        daemon = start_gateway(gw, api, tmp_path, health_port=18088, health_addr=":18088")
        try:
            serving = daemon.wait_serving(30.0)
            wait_until(
                "ready as leader",
                lambda: daemon.readyz() == (200, "ready (leader)\n"),
                30.0,
                poll_s=0.1,
            )
            ready = time.monotonic() - daemon.started_at
            assert lookup.poll() is None, (
                "the host-name lookup ended before the daemon was ready: start-up waited for "
                "DNS, or the resolver is reachable"
            )
            print(f"\nno DNS: /healthz after {serving:.2f}s, ready as leader after {ready:.2f}s")
        finally:
            daemon.stop()
            lookup.kill()
            lookup.wait(10)


def test_data_plane_is_ready_while_imds_and_ec2_are_unreachable(tmp_path: Path) -> None:
    """Before: the daemon asked IMDS for its region and instance before anything else and exited
    when it did not answer. Now the tunnels are programmed, the VTEP config is published (the
    only replica takes the Lease after leaving it to one that can own routes for a lease
    duration), and readiness says what route ownership waits for; the failures are counted and
    logged."""
    with gateway_world(tmp_path) as (gw, api):
        kube = NetnsKube(gw, api.kubeconfig("gw-a"))
        daemon = start_gateway(
            gw,
            api,
            tmp_path,
            route_table_ids=["rtb-0123456789abcdef0"],
            region=None,
            instance_id=None,
            imds_url=IMDS_URL,
            ec2_url=EC2_URL,
        )
        try:
            kube.create_cilium_node("hybrid-1", HYBRID_IP, ["10.85.1.0/24"])
            wait_until(
                "tunnel route of the hybrid node",
                lambda: (
                    "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0", check=False)
                ),
                30.0,
                poll_s=0.2,
            )
            mac = device_mac(gw)
            wait_until(
                "VTEP config published",
                lambda: (kube.vtep_endpoints() or [{}])[0].get("mac") == mac,
                20.0,
                poll_s=0.2,
            )
            status, body = daemon.wait_readyz(
                lambda _, body: "leader WITHOUT" in body and "instance identity:" in body,
                "names the IMDS wait",
            )
            assert status == 503, body
            assert daemon.healthz()[0] == 200  # waiting is not being stuck
            errors = wait_until(
                "IMDS failures counted",
                lambda: daemon.metric(
                    "hybrid_gateway_api_errors_total", 'operation="instance identity"'
                ),
                20.0,
            )
            assert errors is not None and errors >= 1
            assert "route ownership start-up: instance identity failed" in daemon.log(20000)
        finally:
            daemon.stop()


def test_a_slow_event_api_does_not_hold_the_data_plane(tmp_path: Path) -> None:
    """Before: the data plane recorded its Events synchronously and without a timeout, so an
    API server slow to answer Events (60 s here) held the reconcile pass that reports a skipped
    node, and every valid node's tunnel with it. Now they go through the asynchronous recorder."""
    with gateway_world(tmp_path) as (gw, api):
        api.set_latency(60.0, "gw-a", resource="events")
        kube = NetnsKube(gw, api.kubeconfig("gw-a"))
        kube.create_cilium_node("bad", "10.0.1.21", ["10.0.5.0/24"])  # overlaps the VPC: skipped
        kube.create_cilium_node("hybrid-1", HYBRID_IP, ["10.85.1.0/24"])
        daemon = start_gateway(gw, api, tmp_path)
        try:
            wait_until(
                "tunnel route of the valid node",
                lambda: (
                    "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0", check=False)
                ),
                20.0,
                poll_s=0.2,
            )
            daemon.wait_readyz(lambda status, _: status == 200, "ready", 20.0)
            assert "skipping CiliumNode bad" in daemon.log(20000)
        finally:
            daemon.stop()
            api.set_latency(0.0, "gw-a", resource="events")


def test_a_failing_ciliumnode_watch_is_loud_and_turns_readiness_false(tmp_path: Path) -> None:
    """Before: the CiliumNode watch was a bare thread of the data plane: failing (RBAC taken
    away, the CRD gone) it froze the tunnels while /readyz stayed green and nothing but a debug
    line said so. Now it is a supervised loop: every failure is counted, logged and sent as an
    Event, /readyz names it once it has failed for longer than a replica may go without it
    (five lease durations), /healthz stays green (it is turning, not stuck), and it recovers."""
    with gateway_world(tmp_path) as (gw, api):
        kube = NetnsKube(gw, api.kubeconfig("gw-a"))
        daemon = start_gateway(gw, api, tmp_path, resync_period="2")
        try:
            daemon.wait_readyz(lambda s, b: (s, b) == (200, "ready (leader)\n"), "ready", 30.0)
            api.inject_errors("gw-a", code=403, count=1_000_000, resource="ciliumnodes")
            api.close_watches()  # the open watch ends; every re-watch and relist gets 403
            failed_at = time.monotonic()
            daemon.wait_readyz(
                lambda s, b: s == 503 and "CiliumNode watch failing" in b, "names the watch", 40.0
            )
            assert time.monotonic() - failed_at >= 5 * 1.0  # not before the bound
            assert daemon.healthz()[0] == 200, daemon.healthz()
            errors = daemon.metric("hybrid_gateway_api_errors_total", 'api="ciliumnode"')
            assert errors is not None and errors >= 1
            assert "CiliumNode watch: list/watch failed" in daemon.log(20000)
            api.inject_errors("gw-a", count=0, resource="ciliumnodes")
            daemon.wait_readyz(lambda s, b: (s, b) == (200, "ready (leader)\n"), "again", 40.0)
            # and it follows node changes again
            kube.create_cilium_node("hybrid-1", HYBRID_IP, ["10.85.1.0/24"])
            wait_until(
                "tunnel route of the hybrid node",
                lambda: "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0"),
                20.0,
                poll_s=0.2,
            )
        finally:
            daemon.stop()
