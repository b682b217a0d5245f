"""The DataPlane service end to end: CiliumNodes in the test API server (official client, list +
watch, 410 relist), kernel tunnels in network namespaces, readiness, Events and metrics."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_events import EventRecorder
from hybrid_gateway.adapters.netlink import DeviceAction, Netlink
from hybrid_gateway.adapters.netlink.links import REFRESH_S
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.dataplane import DataPlane, DataPlaneError
from hybrid_gateway.health import HttpEndpoints
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.tunnel_world import (
    GATEWAY_IP,
    HYBRID_IP,
    HYBRID_POD_CIDR,
    HYBRID_POD_IP,
    VPC_CIDR,
    World,
)
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

from .conftest import create, delete

pytestmark = pytest.mark.netns
DEV = "hybrid_vxlan0"
IDENTITY = "gw-a"


@pytest.fixture
def api_client(kube_api: ApiServer) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig(IDENTITY)))
    try:
        yield api
    finally:
        api.close()


def replace(admin: client.CustomObjectsApi, name: str, change: Callable[[Any], None]) -> None:
    obj = admin.get_cluster_custom_object("cilium.io", "v2", "ciliumnodes", name)
    change(obj)
    admin.replace_cluster_custom_object("cilium.io", "v2", "ciliumnodes", name, obj)


def routes(world: World) -> str:
    """`ip route show dev hybrid_vxlan0`, the nexthop ids left out (`P nhid K via N ...` reads
    `P via N ...`: the gateway is what these tests follow)."""
    return re.sub(r"nhid \d+ ", "", world.gw.ip("-4", "route", "show", "dev", DEV, check=False))


def pings(world: World, count: int = 1) -> bool:
    proc = subprocess.run(
        world.vpc.exec_argv(
            ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", HYBRID_POD_IP]
        ),
        capture_output=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0


@contextmanager
def running(
    world: World,
    api_client: client.ApiClient,
    *,
    resync_period_s: float = 60.0,
    metrics: GatewayMetrics | None = None,
) -> Iterator[DataPlane]:
    """A DataPlane for the gateway namespace, set up and running in a thread; stopped on exit."""
    netlink = Netlink(world.gw.name)
    plane = DataPlane(
        node_ip=GATEWAY_IP,
        vpc_cidrs=[ipaddress.IPv4Network(VPC_CIDR)],
        mtu=1450,
        resync_period_s=resync_period_s,
        api_client=api_client,
        events=EventRecorder(client.CoreV1Api(api_client), host=IDENTITY),
        metrics=metrics or GatewayMetrics(),
        netlink=netlink,
        ip_forward=lambda: world.gw.exec("cat", "/proc/sys/net/ipv4/ip_forward").strip(),
        watch_timeout_s=5,
    )
    stop = threading.Event()
    thread = threading.Thread(target=plane.run, args=(stop,), daemon=True)
    try:
        plane.setup()
        thread.start()
        yield plane
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=10)
        netlink.close()


def test_watch_events_drive_the_tunnels_without_waiting_for_a_resync(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    create(admin, cilium_node("ec2-node", "10.0.2.2", ["10.210.0.0/24"], hybrid=False))
    with running(world, api_client, resync_period_s=600) as plane:
        wait_until("readiness", plane.ready)
        assert pings(world, 3)
        assert "10.210.0.0/24" not in routes(world)
        passes = plane.passes

        def add_cidr(obj: Any) -> None:
            obj["spec"]["ipam"]["podCIDRs"].append("10.220.0.0/24")

        replace(admin, "hyb", add_cidr)
        wait_until("second pod CIDR", lambda: "10.220.0.0/24 via 192.168.100.10" in routes(world))

        create(admin, cilium_node("late", "192.168.100.77", ["10.230.0.0/24"]))
        wait_until("new node", lambda: "10.230.0.0/24 via 192.168.100.77" in routes(world))

        def unlabel(obj: Any) -> None:
            obj["metadata"]["labels"] = {}

        replace(admin, "late", unlabel)
        wait_until("unlabelled node removed", lambda: "10.230.0.0/24" not in routes(world))
        assert "192.168.100.77" not in world.gw.ip("neigh", "show", "dev", DEV)

        delete(admin, "hyb")
        wait_until("deleted node removed", lambda: "192.168.100.10" not in routes(world))
        assert not pings(world)
        assert plane.passes == passes, "each event applied its own node's entries, no full pass"
        assert plane.changes_applied >= 4
        assert plane.nodes.relists == 1, "events, not relists, carried the changes"


def test_an_event_touching_another_node_brings_the_full_pass_forward(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    """A pod CIDR another node holds, and a node turning invalid, are full-pass matters: the
    claim rule and the rejection Event live there."""
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    create(admin, cilium_node("other", "192.168.100.77", ["10.230.0.0/24"]))
    with running(world, api_client, resync_period_s=600) as plane:
        wait_until("readiness", plane.ready)
        passes = plane.passes

        def steal(obj: Any) -> None:
            obj["spec"]["ipam"]["podCIDRs"] = ["10.230.0.0/24"]

        create(admin, cilium_node("aaa-thief", "192.168.100.78", ["10.240.0.0/24"]))
        wait_until("new node", lambda: "10.240.0.0/24 via 192.168.100.78" in routes(world))
        assert plane.passes == passes
        replace(admin, "aaa-thief", steal)  # first by name: the CIDR moves to it
        wait_until("full pass", lambda: plane.passes > passes)
        wait_until(
            "the CIDR goes to the first node by name",
            lambda: "10.230.0.0/24 via 192.168.100.78" in routes(world),
        )
        assert "10.240.0.0/24" not in routes(world)
        assert pings(world), "the unchanged node kept its tunnel"


def test_an_api_outage_keeps_forwarding_and_the_data_plane_catches_up(
    world: World,
    kube_api: ApiServer,
    api_client: client.ApiClient,
    admin: client.CustomObjectsApi,
) -> None:
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    with running(world, api_client, resync_period_s=0.5) as plane:
        wait_until("readiness", plane.ready)
        kube_api.partition(IDENTITY)  # every request of the data plane fails from now on
        kube_api.close_watches()  # and its open watch is cut at once
        time.sleep(0.6)
        create(admin, cilium_node("missed", "192.168.100.88", ["10.240.0.0/24"]))
        kube_api.compact()  # and the history the watcher would resume from is gone
        time.sleep(1.0)
        assert pings(world, 3), "the kernel keeps forwarding while the API is unreachable"
        assert plane.ready()
        assert "10.240.0.0/24" not in routes(world)
        kube_api.heal(IDENTITY)
        wait_until("missed node after the relist", lambda: "10.240.0.0/24" in routes(world), 30)
        assert plane.nodes.relists >= 2
        assert pings(world)


def test_bad_ciliumnodes_are_skipped_with_a_log_line_an_event_and_a_metric(
    world: World,
    api_client: client.ApiClient,
    admin: client.CustomObjectsApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    metrics = GatewayMetrics()
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    create(admin, cilium_node("no-ip", None, ["10.241.0.0/24"]))
    create(admin, cilium_node("v6-only", "fd00::7", ["10.242.0.0/24"]))
    create(admin, cilium_node("in-vpc", "192.168.100.43", ["10.0.200.0/24"]))
    create(admin, cilium_node("host-bits", "192.168.100.44", ["10.244.0.9/24"]))
    with running(world, api_client, metrics=metrics) as plane:
        wait_until("readiness", plane.ready)
        assert pings(world)
        assert metrics.hybrid_nodes_skipped._value.get() == 4
        assert metrics.hybrid_nodes_configured._value.get() == 1
    events = client.CoreV1Api(api_client).list_namespaced_event("default").items
    skipped = {e.involved_object.name: e.message for e in events if e.reason == "InvalidHybridNode"}
    assert set(skipped) == {"no-ip", "v6-only", "in-vpc", "host-bits"}
    assert "no InternalIP" in skipped["no-ip"]
    assert "overlaps the VPC CIDR 10.0.0.0/16" in skipped["in-vpc"]
    assert all(e.type == "Warning" for e in events if e.reason == "InvalidHybridNode")
    assert "skipping CiliumNode v6-only" in caplog.text
    for cidr in ("10.241.0.0", "10.242.0.0", "10.0.200.0", "10.244.0.0"):
        assert cidr not in routes(world)


def test_restarting_the_data_plane_adopts_the_device_and_loses_no_pings(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    with running(world, api_client) as first:
        wait_until("readiness", first.ready)
    index = world.gw.ip("-o", "link", "show", DEV).split(":")[0]
    pinger = subprocess.Popen(
        world.vpc.exec_argv(
            ["ping", "-n", "-q", "-c", "200", "-i", "0.01", "-W", "1", HYBRID_POD_IP]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with running(world, api_client) as second:
            wait_until("readiness after restart", second.ready)
            assert second.last_report is not None
            assert second.last_report.device.action is DeviceAction.ADOPTED
            assert second.last_report.plan.empty
        out, _ = pinger.communicate(timeout=30)
    finally:
        pinger.kill()
    assert world.gw.ip("-o", "link", "show", DEV).split(":")[0] == index
    assert "200 packets transmitted, 200 received" in out, out


def test_ip_forward_off_is_a_clear_error_and_changes_nothing(
    world: World, api_client: client.ApiClient
) -> None:
    world.gw.sysctl("net.ipv4.ip_forward", "0")
    with (
        pytest.raises(DataPlaneError, match=r"net\.ipv4\.ip_forward is '0', must be '1'"),
        running(world, api_client),
    ):
        pass
    assert DEV not in world.gw.ip("link", "show")
    assert world.gw.exec("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "0"


def test_readiness_drops_with_the_device_and_a_resync_restores_it(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    with running(world, api_client, resync_period_s=1.0) as plane:
        wait_until("readiness", plane.ready)
        assert DataPlane.ready.__doc__ is not None
        world.gw.ip("link", "set", DEV, "down")
        assert not plane.ready()
        wait_until("device set up again by the periodic resync", plane.ready, 10)
        world.gw.ip("link", "del", DEV)
        assert not plane.ready()
        wait_until("device recreated by the periodic resync", plane.ready, 10)
        wait_until("tunnel back", lambda: pings(world))


def test_kernel_counters_are_exported(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    metrics = GatewayMetrics()
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    with running(world, api_client, metrics=metrics) as plane:
        wait_until("readiness", plane.ready)
        assert pings(world, 5)
        registry = metrics.registry
        # The reference's kernel counters carry no labels (internal/metrics/collector.go).
        # Read at most one refresh period late (adapters/netlink/links.py).
        wait_until(
            "the pings in the VXLAN counters",
            lambda: (registry.get_sample_value("hybrid_gateway_vxlan_tx_packets_total") or 0) >= 5,
            10 * REFRESH_S,
        )
        primary = [
            s
            for family in registry.collect()
            if family.name == "hybrid_gateway_primary_nic_rx_bytes"
            for s in family.samples
        ]
        assert primary and primary[0].value > 0
        assert registry.get_sample_value("hybrid_gateway_vxlan_interface_up") == 1
        assert registry.get_sample_value("hybrid_gateway_vxlan_fdb_entries") == 1
        assert registry.get_sample_value("hybrid_gateway_vxlan_route_count") == 1
        assert registry.get_sample_value("hybrid_gateway_hybrid_nodes_configured") == 1
        link = json.loads(world.gw.ip("-j", "link", "show", DEV))[0]
        assert plane.device_mac == link["address"] == vxlan_device_mac(GATEWAY_IP)


def test_readiness_and_metrics_do_not_wait_for_a_reconcile_pass(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    """A full pass at 20,000 nodes holds the reconciler's netlink lock for about 20 s
    (docs/dataplane.md): /readyz and /metrics are answered meanwhile. The test holds that lock
    itself, as a pass does, so nothing depends on how long a real pass takes here."""
    metrics = GatewayMetrics()
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    with running(world, api_client, metrics=metrics) as plane:
        wait_until("readiness", plane.ready)
        endpoints = HttpEndpoints(
            health_addr=("127.0.0.1", 0),
            metrics_addr=("127.0.0.1", 0),
            alive=lambda: (True, "ok"),
            ready=lambda: (plane.ready(), "data plane"),
            registry=metrics.registry,
        )
        endpoints.start()
        pass_lock = plane._netlink._lock  # type: ignore[union-attr]  # what dump/apply hold
        try:
            with pass_lock:
                health_port = endpoints.health.server_address[1]
                metrics_port = endpoints.metrics.server_address[1]
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{health_port}/readyz", timeout=10
                ) as reply:
                    assert reply.status == 200
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics_port}/metrics", timeout=10
                ) as reply:
                    text = reply.read().decode()
                assert "hybrid_gateway_vxlan_rx_packets_total" in text
                assert "hybrid_gateway_primary_nic_info" in text
                assert "hybrid_gateway_nexthop_objects 1.0" in text
        finally:
            endpoints.stop()


def test_a_refused_entry_is_retried_without_blocking_readiness(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    metrics = GatewayMetrics()
    world.gw.ip("route", "add", "10.250.0.0/24", "via", "10.0.1.10")  # not ours
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    create(admin, cilium_node("clash", "192.168.100.50", ["10.250.0.0/24"]))
    with running(world, api_client, resync_period_s=60, metrics=metrics) as plane:
        wait_until("readiness", plane.ready)
        assert pings(world)
        wait_until("a retry", lambda: (metrics.reconcile_errors._value.get() or 0) >= 2, 10)
        assert metrics.hybrid_nodes_configured._value.get() == 1
        assert "10.250.0.0/24 via 10.0.1.10" in world.gw.ip("route", "show", "10.250.0.0/24")


RUNNER = Path(__file__).parent / "tools" / "run_dataplane.py"


def start_process(world: World, kube_api: ApiServer) -> subprocess.Popen[str]:
    kubeconfig = str(kube_api.kubeconfig(IDENTITY))
    argv = [sys.executable, str(RUNNER), "--netns", world.gw.name, "--kubeconfig", kubeconfig]
    argv += ["--node-ip", GATEWAY_IP, "--vpc-cidr", VPC_CIDR]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "READY":
        proc.kill()
        raise AssertionError(f"data plane process not ready: {line!r} {proc.communicate()[1]}")
    return proc


def test_a_killed_process_is_replaced_without_losing_a_ping(
    world: World, kube_api: ApiServer, admin: client.CustomObjectsApi
) -> None:
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    first = start_process(world, kube_api)
    second: subprocess.Popen[str] | None = None
    pinger = subprocess.Popen(
        world.vpc.exec_argv(
            ["ping", "-n", "-q", "-c", "300", "-i", "0.01", "-W", "1", HYBRID_POD_IP]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        index = world.gw.ip("-o", "link", "show", DEV).split(":")[0]
        time.sleep(0.5)
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait(timeout=10)
        second = start_process(world, kube_api)
        out, _ = pinger.communicate(timeout=30)
        assert "300 packets transmitted, 300 received" in out, out
        assert world.gw.ip("-o", "link", "show", DEV).split(":")[0] == index
    finally:
        pinger.kill()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
    assert second is not None
    log = (second.stderr.read() if second.stderr else "") or ""
    assert "adopted existing hybrid_vxlan0" in log, log
    assert "created" not in log.replace("adopted existing", "")


def test_the_loop_heartbeats_while_it_waits_and_stops_when_stopped(
    world: World, api_client: client.ApiClient, admin: client.CustomObjectsApi
) -> None:
    create(admin, cilium_node("hyb", HYBRID_IP, [HYBRID_POD_CIDR]))
    with running(world, api_client, resync_period_s=600) as plane:
        wait_until("readiness", plane.ready)
        first = plane.heartbeat
        wait_until("a later tick while idle", lambda: plane.heartbeat > first + 0.3, 5)
    stopped = plane.heartbeat
    time.sleep(0.5)
    assert plane.heartbeat == stopped, "a stopped loop no longer ticks"
