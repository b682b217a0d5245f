"""Pure parts of the lab's components: router propagation, VTEP endpoints, EC2 targets, throttle."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.lab.agent import VtepEndpoint, endpoints_of
from hybrid_gateway_testkit.lab.analysis import parse_probe_lines
from hybrid_gateway_testkit.lab.ec2 import route_targets
from hybrid_gateway_testkit.lab.ec2proxy import throttle_every
from hybrid_gateway_testkit.lab.events import EventLog, read_events
from hybrid_gateway_testkit.lab.probe import decode, encode
from hybrid_gateway_testkit.lab.runner import flowing, leader_writes
from hybrid_gateway_testkit.lab.topology import LabPlan
from hybrid_gateway_testkit.lab.vpc_router import DelayedRoutes, apply_due
from hybrid_gateway_testkit.tunnel_world import peer_mac


def test_route_change_takes_effect_after_the_delay() -> None:
    routes = DelayedRoutes(delay_s=0.5)
    routes.observe(10.0, {"10.100.0.0/16": "10.0.0.11"})
    assert routes.due(10.49) == []
    assert routes.due(10.5) == [("10.100.0.0/16", "10.0.0.11")]
    assert routes.applied == {"10.100.0.0/16": "10.0.0.11"}


def test_an_unchanged_table_schedules_nothing() -> None:
    routes = DelayedRoutes(delay_s=0.0)
    routes.observe(1.0, {"10.100.0.0/16": "10.0.0.11"})
    routes.due(1.0)
    routes.observe(2.0, {"10.100.0.0/16": "10.0.0.11"})
    assert routes.due(5.0) == []


def test_changes_apply_in_order_and_a_withdrawn_route_is_removed() -> None:
    routes = DelayedRoutes(delay_s=1.0)
    routes.observe(0.0, {"a": "x"})
    routes.observe(0.2, {"a": "y"})
    routes.observe(0.4, {})
    assert routes.due(1.1) == [("a", "x")]
    assert routes.due(2.0) == [("a", "y"), ("a", None)]
    assert routes.applied == {}


def test_a_route_write_that_fails_is_reported_and_written_again_in_order(tmp_path: Path) -> None:
    """The router's kernel write times out once (RTNL held elsewhere): the router reports it,
    writes the other CIDR's change, and next round writes the failed change, then the newer
    one seen meanwhile for the same CIDR, in that order; it does not stop (a VPC applies a
    route change late, never drops it)."""
    a, b = "10.100.0.0/18", "10.100.64.0/18"
    routes, log = DelayedRoutes(delay_s=0.0), EventLog(tmp_path / "router.jsonl")
    writes: list[tuple[str, str | None]] = []

    def write(cidr: str, hop: str | None) -> None:
        writes.append((cidr, hop))
        if len(writes) == 1:
            raise subprocess.TimeoutExpired(["ip", "route", "replace", cidr], 120.0)

    routes.observe(1.0, {a: "10.0.0.11", b: "10.0.0.12"})
    apply_due(routes, 1.0, log, write)
    routes.observe(1.1, {a: "10.0.0.12", b: "10.0.0.12"})
    apply_due(routes, 1.1, log, write)
    log.close()
    assert writes == [(a, "10.0.0.11"), (b, "10.0.0.12"), (a, "10.0.0.11"), (a, "10.0.0.12")]
    events = read_events(tmp_path / "router.jsonl")
    assert [(e["kind"], e.get("cidr"), e.get("via")) for e in events] == [
        ("router-error", None, None),
        ("router-switch", b, "10.0.0.12"),
        ("router-switch", a, "10.0.0.11"),
        ("router-switch", a, "10.0.0.12"),
    ]
    assert events[0]["error"].startswith(f"route {a}: TimeoutExpired: "), events[0]
    assert routes.applied == {a: "10.0.0.12", b: "10.0.0.12"}
    assert routes.due(10.0) == []


def test_vtep_endpoints_from_the_object() -> None:
    obj = {
        "spec": {
            "endpoints": [
                {
                    "name": "vpc-gateway-0",
                    "cidr": "10.0.0.0/16",
                    "tunnelEndpoint": "10.0.0.12",
                    "mac": "02:AA:bb:cc:dd:ee",
                },
                {"name": "broken"},
            ]
        }
    }
    assert endpoints_of(obj) == [VtepEndpoint("10.0.0.0/16", "10.0.0.12", "02:aa:bb:cc:dd:ee")]
    assert endpoints_of(None) == []


def test_cilium_node_is_labelled_hybrid_with_internal_ip_and_pod_cidrs() -> None:
    node = cilium_node("hn1", "192.168.100.11", ["10.100.1.0/24"])
    assert node["metadata"]["labels"] == {"eks.amazonaws.com/compute-type": "hybrid"}
    assert node["spec"]["addresses"] == [{"type": "InternalIP", "ip": "192.168.100.11"}]
    assert node["spec"]["ipam"]["podCIDRs"] == ["10.100.1.0/24"]


def test_route_targets_keep_eni_and_instance_routes_only() -> None:
    table = {
        "Routes": [
            {"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local"},
            {"DestinationCidrBlock": "10.100.0.0/16", "NetworkInterfaceId": "eni-1"},
            {"DestinationCidrBlock": "10.101.0.0/16", "InstanceId": "i-2"},
        ]
    }
    assert route_targets(table) == {"10.100.0.0/16": "eni-1", "10.101.0.0/16": "i-2"}


@pytest.mark.parametrize(
    ("text", "every"), [("0.5", 2), ("0.25", 4), ("1", 1), ("0", 0), ("junk", 0)]
)
def test_throttle_fraction_becomes_every_kth_request(tmp_path: Path, text: str, every: int) -> None:
    control = tmp_path / "throttle"
    control.write_text(text)
    assert throttle_every(control) == every
    assert throttle_every(tmp_path / "absent") == 0


def test_probe_packets_round_trip_and_foreign_packets_are_ignored() -> None:
    assert decode(encode(42, 1234.5)) == (42, 1234.5)
    assert decode(b"x" * 64) is None
    assert decode(b"") is None


def test_plan_addresses_are_consistent() -> None:
    plan = LabPlan()
    assert peer_mac("192.168.100.11") == "02:00:c0:a8:64:0b"
    for node in plan.nodes:
        assert node.pod_ip.startswith(node.pod_cidr.rsplit(".", 2)[0])
    spare = plan.spare_node(0)
    assert spare.name == "hn3" and spare.node_ip == "192.168.100.13"
    assert spare.pod_cidr not in {n.pod_cidr for n in plan.nodes}


def _write(identity: str, resource: str, mono: float, status: int = 200) -> dict[str, object]:
    return {"identity": identity, "resource": resource, "verb": "update", "mono": mono,
            "status": status}  # fmt: skip


def test_audit_shows_takeover_and_late_writes_of_the_old_leader() -> None:
    audit = [
        _write("gw-a", "leases", 9.0),
        _write("gw-a", "ciliumvtepconfigs", 9.5),
        _write("gw-a", "leases", 10.5, status=409),  # a failed write does not count
        {"identity": "gw-b", "resource": "leases", "verb": "get", "mono": 12.0, "status": 200},
        _write("gw-b", "leases", 13.0),
        _write("gw-a", "ciliumvtepconfigs", 13.5),  # after the takeover: must be reported
        {"identity": "gw-a", "resource": "ciliumvtepconfigs", "verb": "patch", "mono": 14.0,
         "status": None},  # dropped by a partition
    ]  # fmt: skip
    writes = leader_writes(audit, "gw-a", "gw-b", t_action=10.0)
    assert writes == {
        "old_leader_last_lease_write_s": -1.0,
        "new_leader_first_lease_write_s": 3.0,
        "old_leader_vtep_writes_after_takeover": 1,
    }
    same = leader_writes(audit, "gw-a", "gw-a", t_action=10.0)
    assert same["new_leader_first_lease_write_s"] is None


def test_flowing_needs_one_delivered_probe_per_flow_in_the_window() -> None:
    log = parse_probe_lines([
        "tx,a,b,0,1.0", "rx,a,b,0,1.0,1.01",
        "tx,b,a,0,1.0",
        "tx,a,c,0,1.0", "tx,a,c,1,5.0", "rx,a,c,1,5.0,5.01",
    ])  # fmt: skip
    assert flowing(log, 0.0, 2.0, skip=set()) == {"a->b": True, "b->a": False, "a->c": False}
    assert flowing(log, 0.0, 6.0, skip={"c"}) == {"a->b": True, "b->a": False}


def test_a_probe_dumps_its_stacks_on_sigusr1(tmp_path: Path) -> None:
    """What the lab collects from a probe that will not stop, before killing it (loopback)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    ready = tmp_path / "ready"
    server = subprocess.Popen(
        [sys.executable, "-m", "hybrid_gateway_testkit.lab.probe", "tcp-server",
         "--bind", "127.0.0.1", "--port", str(port), "--ready-file", str(ready)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        server.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert server.poll() is None  # a dump, not a stop
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=10)
        assert server.returncode == 0
        assert "run_tcp_server" in err and "serve_forever" in err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)


def test_the_lab_errors_name_methods_that_exist() -> None:
    """A guard's "call X() first" must name a real step of the lab part that says it, or the
    reader is sent looking for nothing."""
    import inspect
    import re

    from hybrid_gateway_testkit.lab import control, daemons, monitor, probes, world

    parts = {control: control.ControlPlane, daemons: daemons.Daemons, monitor: monitor.Monitor,
             probes: probes.Probes, world: world.World}  # fmt: skip
    named = {
        (cls, name)
        for module, cls in parts.items()
        for name in re.findall(r"call (\w+)\(\) first", inspect.getsource(module))
    }
    assert named
    assert [name for cls, name in named if not callable(getattr(cls, name, None))] == []
