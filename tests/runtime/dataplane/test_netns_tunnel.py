"""The reconciler against real kernel VXLAN tunnels in network namespaces created per test."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from hybrid_gateway.adapters.netlink import DeviceAction, DeviceSpec, Netlink
from hybrid_gateway.core.dataplane import DataPlaneError, FdbEntry, TunnelState, node_record
from hybrid_gateway.core.mac import hybrid_node_peer_mac, vxlan_device_mac
from hybrid_gateway.dataplane.reconciler import TunnelReconciler
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.netns import Netns
from hybrid_gateway_testkit.tunnel_world import (
    GATEWAY_IP,
    HYBRID_IP,
    HYBRID_POD_CIDR,
    HYBRID_POD_IP,
    VPC_CIDR,
    VPC_HOST_IP,
    World,
)

pytestmark = pytest.mark.netns
DEV = "hybrid_vxlan0"
SPEC = DeviceSpec(
    name=DEV,
    vni=2,
    port=8472,
    local=ipaddress.IPv4Address(GATEWAY_IP),
    mac=vxlan_device_mac(GATEWAY_IP),
    mtu=1450,
)


@pytest.fixture
def netlink(world: World) -> Iterator[Netlink]:
    with Netlink(world.gw.name) as nl:
        yield nl


def reconciler(
    nl: Netlink, metrics: GatewayMetrics | None = None, *, nexthop_objects: bool | None = None
) -> TunnelReconciler:
    return TunnelReconciler(
        netlink=nl,
        device=SPEC,
        vpc_cidrs=[ipaddress.IPv4Network(VPC_CIDR)],
        metrics=metrics or GatewayMetrics(),
        events=None,
        nexthop_objects=nexthop_objects,
    )


def ping(ns: Netns, dst: str, *args: str, count: int = 3) -> tuple[bool, str]:
    proc = subprocess.run(
        ns.exec_argv(["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", *args, dst]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


class Pinger:
    """Pings from the VPC host to the hybrid pod, 50 a second, in the background."""

    def __init__(self, world: World, count: int) -> None:
        self.count = count
        self.output = ""
        self._proc = subprocess.Popen(
            world.vpc.exec_argv(
                ["ping", "-n", "-q", "-c", str(count), "-i", "0.02", "-W", "1", HYBRID_POD_IP]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(self) -> None:
        try:
            self.output, _ = self._proc.communicate(timeout=30)
        finally:
            self._proc.kill()

    def lost(self) -> int:
        found = re.search(r"(\d+) packets transmitted, (\d+) received", self.output)
        assert found, self.output
        return self.count - int(found.group(2))


@contextmanager
def pinging(world: World, count: int) -> Iterator[Pinger]:
    """The body of the `with` runs while `count` pings go out; they are all answered or lost
    by the end of it."""
    pinger = Pinger(world, count)
    try:
        yield pinger
    finally:
        pinger.finish()


def kernel_entries(ns: Netns) -> set[str]:
    """Everything on the gateway's device as iproute2 sees it (an oracle independent of ours)."""
    entries: set[str] = set()
    for route in json.loads(ns.ip("-4", "-j", "route", "show", "table", "all", "dev", DEV) or "[]"):
        entries.add(
            f"route {route['dst']} via {route.get('gateway')} nhid {route.get('nhid')} "
            f"proto {route.get('protocol')} table {route.get('table', 'main')} "
            f"metric {route.get('metric', 0)}"
        )
    for nexthop in json.loads(ns.ip("-j", "nexthop", "show", "dev", DEV) or "[]"):
        entries.add(
            f"nexthop {nexthop['id']} via {nexthop.get('gateway')} "
            f"proto {nexthop.get('protocol')} {','.join(nexthop.get('flags', []))}"
        )
    for neigh in json.loads(ns.ip("-4", "-j", "neigh", "show", "dev", DEV) or "[]"):
        entries.add(f"neigh {neigh['dst']} {neigh.get('lladdr')} {','.join(neigh['state'])}")
    fdb = ns.exec("bridge", "-j", "fdb", "show", "dev", DEV)
    for entry in json.loads(fdb or "[]"):
        entries.add(f"fdb {entry['mac']} dst {entry.get('dst')} {entry.get('state', '')}")
    return entries


def expected_entries(nodes: dict[str, tuple[str, list[str]]], *, nexthops: bool = True) -> set[str]:
    """What `kernel_entries` shows for `nodes`: with `nexthops`, one nexthop object per node
    (id: the node IP as a number) that its routes use; without, routes with their own gateway
    (the dump shows a nexthop route's gateway too: net.ipv4.nexthop_compat_mode is 1)."""
    entries: set[str] = set()
    for ip, cidrs in nodes.values():
        mac = hybrid_node_peer_mac(ip)
        nhid = int(ipaddress.IPv4Address(ip)) if nexthops else None
        entries.add(f"fdb {mac} dst {ip} permanent")
        entries.add(f"neigh {ip} {mac} PERMANENT")
        entries |= {
            f"route {c} via {ip} nhid {nhid} proto static table main metric 0" for c in cidrs
        }
        if nexthops:
            entries.add(f"nexthop {nhid} via {ip} proto static onlink")
    return entries


def objects(nodes: dict[str, tuple[str, list[str]]]) -> list[dict[str, Any]]:
    return [cilium_node(name, ip, cidrs) for name, (ip, cidrs) in nodes.items()]


FAKE_NODES = {
    "hyb": (HYBRID_IP, [HYBRID_POD_CIDR]),
    "fake-11": ("192.168.100.11", ["10.200.11.0/24"]),
    "fake-12": ("192.168.100.12", ["10.200.12.0/24", "10.212.0.0/20"]),
    "fake-13": ("192.168.100.13", ["10.200.13.0/24", "10.213.0.0/24"]),
}


def test_vpc_host_reaches_the_hybrid_pod_through_the_gateway(
    world: World, netlink: Netlink
) -> None:
    rec = reconciler(netlink)
    rec.ensure_device()
    reached, _ = ping(world.vpc, HYBRID_POD_IP, count=1)
    assert not reached, "without tunnel entries the pod must be unreachable"

    report = rec.reconcile(objects({"hyb": FAKE_NODES["hyb"]}))
    assert [t.name for t in report.tunnels] == ["hyb"]

    reached, out = ping(world.vpc, HYBRID_POD_IP)
    assert reached, out
    reached, out = ping(world.hyb, VPC_HOST_IP, "-I", HYBRID_POD_IP)
    assert reached, out
    link = json.loads(world.gw.ip("-j", "-d", "link", "show", DEV))[0]
    info = link["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["local"], info["learning"]) == (
        2,
        8472,
        GATEWAY_IP,
        False,
    )
    assert link["address"] == vxlan_device_mac(GATEWAY_IP) and link["mtu"] == 1450
    v4 = json.loads(world.gw.ip("-j", "-4", "addr", "show", "dev", DEV) or "[]")
    assert not [a for link in v4 for a in link.get("addr_info", [])]


def test_1400_byte_pings_with_df_set_cross_the_tunnel_both_ways(
    world: World, netlink: Netlink
) -> None:
    rec = reconciler(netlink)
    rec.ensure_device()
    rec.reconcile(objects({"hyb": FAKE_NODES["hyb"]}))
    reached, out = ping(world.vpc, HYBRID_POD_IP, "-M", "do", "-s", "1400")
    assert reached, out
    reached, out = ping(world.hyb, VPC_HOST_IP, "-M", "do", "-s", "1400", "-I", HYBRID_POD_IP)
    assert reached, out
    # and the limit is real: a packet larger than the device MTU is refused, not fragmented
    too_big, _ = ping(world.vpc, HYBRID_POD_IP, "-M", "do", "-s", "1460", count=1)
    assert not too_big


def test_node_deletion_removes_exactly_its_entries(world: World, netlink: Netlink) -> None:
    rec = reconciler(netlink)
    rec.ensure_device()
    rec.reconcile(objects(FAKE_NODES))
    before = kernel_entries(world.gw)
    assert before == expected_entries(FAKE_NODES)

    remaining = {k: v for k, v in FAKE_NODES.items() if k != "fake-12"}
    report = rec.reconcile(objects(remaining))
    after = kernel_entries(world.gw)
    assert before - after == expected_entries({"fake-12": FAKE_NODES["fake-12"]})
    assert after == expected_entries(remaining)
    assert report.plan.removals == 5 and report.plan.additions == 0  # 2 routes, its nexthop
    reached, out = ping(world.vpc, HYBRID_POD_IP)
    assert reached, out


def test_ip_change_and_pod_cidr_change_leave_no_stale_entries(
    world: World, netlink: Netlink
) -> None:
    rec = reconciler(netlink)
    rec.ensure_device()
    rec.reconcile(objects(FAKE_NODES))
    changed = dict(FAKE_NODES)
    changed["fake-11"] = ("192.168.100.21", ["10.200.11.0/24"])  # new node IP
    changed["fake-13"] = ("192.168.100.13", ["10.200.33.0/24"])  # pod CIDRs replaced
    rec.reconcile(objects(changed))
    assert kernel_entries(world.gw) == expected_entries(changed)
    assert netlink.dump(rec.netlink.device_index(DEV) or 0) == rec_state(changed)


def rec_state(nodes: dict[str, tuple[str, list[str]]]) -> TunnelState:
    from hybrid_gateway.core.dataplane import desired_nodes, desired_state

    return desired_state(
        desired_nodes(objects(nodes), [ipaddress.IPv4Network(VPC_CIDR)]).tunnels,
        nexthop_objects=True,
    )


def test_restart_adopts_the_device_and_loses_no_pings(world: World) -> None:
    with Netlink(world.gw.name) as first:
        rec = reconciler(first)
        created = rec.ensure_device()
        rec.reconcile(objects(FAKE_NODES))
    assert created.action is DeviceAction.CREATED

    with pinging(world, 150) as pinger, Netlink(world.gw.name) as second:
        rec = reconciler(second)
        adopted = rec.ensure_device()
        report = rec.reconcile(objects(FAKE_NODES))
    assert adopted.action is DeviceAction.ADOPTED and adopted.ifindex == created.ifindex
    assert report.plan.empty
    assert pinger.lost() == 0, pinger.output


def test_entries_of_other_devices_tables_and_protocols_are_untouched(
    world: World, netlink: Netlink
) -> None:
    gw = world.gw
    rec = reconciler(netlink)
    rec.ensure_device()
    gw.ip("link", "add", "other_vx0", "type", "vxlan", "id", "9", "dstport", "4789",
          "local", GATEWAY_IP, "nolearning")  # fmt: skip
    gw.ip("link", "set", "other_vx0", "up")
    gw.exec("bridge", "fdb", "append", "02:00:c0:a8:64:0b", "dev", "other_vx0",
            "dst", "192.168.100.11", "self", "permanent")  # fmt: skip
    gw.ip("neigh", "replace", "192.168.100.11", "lladdr", "02:00:c0:a8:64:0b", "dev", "other_vx0",
          "nud", "permanent")  # fmt: skip
    gw.ip("route", "add", "10.250.0.0/24", "via", "192.168.100.11", "dev", "other_vx0",
          "onlink", "proto", "static")  # fmt: skip
    # foreign entries on OUR device: other table, other metric (other protocols are adopted:
    # test_netns_migration.py)
    gw.ip("route", "add", "10.251.0.0/24", "via", "192.168.100.11", "dev", "other_vx0",
          "onlink", "proto", "boot")  # fmt: skip
    gw.ip("route", "add", "10.252.0.0/24", "via", "192.168.100.11", "dev", DEV, "onlink",
          "proto", "static", "table", "100")  # fmt: skip
    gw.ip("route", "add", "10.253.0.0/24", "via", "192.168.100.11", "dev", DEV, "onlink",
          "proto", "static", "metric", "50")  # fmt: skip

    def foreign() -> tuple[str, str, str, str]:
        return (
            gw.ip("route", "show", "table", "all"),
            gw.ip("neigh", "show", "dev", "other_vx0"),
            gw.exec("bridge", "fdb", "show", "dev", "other_vx0"),
            gw.ip("route", "show", "table", "100"),
        )

    snapshot = kernel_entries(gw)
    rec.reconcile(objects(FAKE_NODES))
    rec.reconcile(objects({"hyb": ("192.168.100.30", ["10.200.30.0/24"])}))
    rec.reconcile([])
    assert kernel_entries(gw) == snapshot
    routes, neigh, fdb, table100 = foreign()
    for route in ("10.250.0.0/24", "10.251.0.0/24", "10.253.0.0/24"):
        assert route in routes
    assert "10.252.0.0/24" in table100
    assert "192.168.100.11" in neigh and "02:00:c0:a8:64:0b" in fdb


def test_an_entry_the_kernel_refuses_is_reported_and_the_rest_applied(
    world: World, netlink: Netlink
) -> None:
    metrics = GatewayMetrics()
    rec = reconciler(netlink, metrics)
    rec.ensure_device()
    nodes = {f"n{i:03d}": (f"192.168.{101 + i // 200}.{1 + i % 200}", [f"10.201.{i}.0/24"])
             for i in range(250)}  # fmt: skip
    # a node claiming the gateway's own address: the onlink route via a local address is refused
    nodes["n100"] = (GATEWAY_IP, ["10.201.100.0/24"])
    with pytest.raises(DataPlaneError, match=r"set route .*10\.201\.100\.0/24"):
        rec.reconcile(objects(nodes))
    good = {k: v for k, v in nodes.items() if k != "n100"}
    state = netlink.dump(netlink.device_index(DEV) or 0)
    assert set(state.routes) == {ipaddress.IPv4Network(c) for _, cs in good.values() for c in cs}
    assert len(state.neighbours) == 250 and len(state.fdb) == 250
    # its nexthop is refused (a local address is no on-link gateway), so its route is skipped
    assert metrics.vtep_add_errors._value.get() == 2
    assert metrics.hybrid_nodes_configured._value.get() == 249
    assert metrics.vtep_add._value.get() == 250 + 250 + 249 + 249  # FDB, neigh, nexthop, route


def test_the_device_is_adopted_fixed_or_recreated(
    world: World, netlink: Netlink, caplog: pytest.LogCaptureFixture
) -> None:
    gw = world.gw
    caplog.set_level(logging.INFO)
    gw.ip("link", "add", DEV, "type", "vxlan", "id", "2", "dstport", "8472", "local", GATEWAY_IP,
          "nolearning")  # fmt: skip
    gw.ip("link", "set", DEV, "address", SPEC.mac, "mtu", "1450", "up")
    index = netlink.device_index(DEV)
    rec = reconciler(netlink)
    assert rec.ensure_device().action == "adopted"
    assert netlink.device_index(DEV) == index

    gw.ip("link", "set", DEV, "mtu", "1300", "address", "02:11:22:33:44:55", "down")
    gw.ip("addr", "add", "10.9.9.9/32", "dev", DEV)
    fixed = rec.ensure_device()
    assert fixed.action is DeviceAction.FIXED and fixed.ifindex == index
    assert any("MTU 1300 -> 1450" in d for d in fixed.details)
    assert any("removed address 10.9.9.9/32" in d for d in fixed.details)
    assert "fixed hybrid_vxlan0 in place" in caplog.text
    link = json.loads(gw.ip("-j", "link", "show", DEV))[0]
    assert (link["mtu"], link["address"], "UP" in link["flags"]) == (1450, SPEC.mac, True)

    gw.ip("link", "del", DEV)
    gw.ip("link", "add", DEV, "type", "vxlan", "id", "3", "dstport", "4789", "local", GATEWAY_IP)
    recreated = rec.ensure_device()
    assert recreated.action is DeviceAction.RECREATED
    assert any("VNI is 3, want 2" in d for d in recreated.details)
    assert any("learning" in d for d in recreated.details)
    assert "recreated hybrid_vxlan0 because" in caplog.text

    gw.ip("link", "del", DEV)
    gw.ip("link", "add", DEV, "type", "veth", "peer", "name", "peer0")
    assert rec.ensure_device().action is DeviceAction.RECREATED
    info = json.loads(gw.ip("-j", "-d", "link", "show", DEV))[0]["linkinfo"]
    assert info["info_kind"] == "vxlan" and info["info_data"]["id"] == 2


def test_our_dump_agrees_with_pyroute2(world: World, netlink: Netlink) -> None:
    from pyroute2 import IPRoute

    rec = reconciler(netlink)
    rec.ensure_device()
    nodes = {f"n{i}": (f"192.168.150.{i + 1}", [f"10.202.{i}.0/24"]) for i in range(40)}
    rec.reconcile(objects(nodes))
    index = netlink.device_index(DEV) or 0
    with IPRoute(netns=world.gw.name) as ipr:
        routes = {
            ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}"): ipaddress.IPv4Address(
                r.get_attr("RTA_GATEWAY")
            )
            for r in ipr.get_routes(family=2, table=254)
            if r.get_attr("RTA_OIF") == index and r["proto"] == 4
        }
        neighbours = {
            ipaddress.IPv4Address(n.get_attr("NDA_DST")): n.get_attr("NDA_LLADDR")
            for n in ipr.get_neighbours(family=2, ifindex=index)
        }
        fdb = {
            FdbEntry(f.get_attr("NDA_LLADDR"), ipaddress.IPv4Address(f.get_attr("NDA_DST")))
            for f in ipr.fdb("dump", ifindex=index)
            if f.get_attr("NDA_DST")
        }
    # pyroute2 0.9 knows no nexthop objects (no nhmsg, no RTA_NH_ID): iproute2 reads those
    nexthops = {
        n["id"]: ipaddress.IPv4Address(n["gateway"])
        for n in json.loads(world.gw.ip("-j", "nexthop", "show", "dev", DEV))
    }
    route_nexthops = {
        ipaddress.IPv4Network(r["dst"]): r["nhid"]
        for r in json.loads(world.gw.ip("-j", "-4", "route", "show", "dev", DEV))
    }
    assert netlink.dump(index) == TunnelState(
        frozenset(fdb), neighbours, routes, frozenset(), nexthops, route_nexthops
    )
    assert len(routes) == 40 and len(nexthops) == 40


def test_a_pod_cidr_already_routed_elsewhere_is_left_alone_and_reported(
    world: World, netlink: Netlink
) -> None:
    gw = world.gw
    rec = reconciler(netlink)
    rec.ensure_device()
    # somebody else routes fake-11's pod CIDR through the VPC side (another device, proto boot)
    gw.ip("route", "add", "10.200.11.0/24", "via", VPC_HOST_IP)
    before = gw.ip("route", "show", "10.200.11.0/24")
    with pytest.raises(DataPlaneError) as failure:
        rec.reconcile(objects(FAKE_NODES))
    message = str(failure.value)
    assert "set route 10.200.11.0/24 via 192.168.100.11 (nexthop id 3232261131): EEXIST" in message
    assert "not ours" in message
    assert gw.ip("route", "show", "10.200.11.0/24") == before
    others = {k: v for k, v in FAKE_NODES.items() if k != "fake-11"}
    entries = kernel_entries(gw)
    assert expected_entries(others) <= entries
    assert not [e for e in entries if e.startswith("route 10.200.11.0/24")]
    reached, out = ping(world.vpc, HYBRID_POD_IP)
    assert reached, out


# --- taking over a node where the reference gateway ran --------------------------------------


def leave_reference_state(
    gw: Netns, nodes: dict[str, tuple[str, list[str]]], *device_args: str
) -> None:
    """What aws/eks-hybrid-nodes-gateway leaves behind (internal/vxlan/interface.go `Setup`,
    vtep.go `AddRemoteNode`): the device made with VNI, port, local address and learning off
    only, its MAC set after creation, then per node a `RouteReplace` (vishvananda/netlink
    defaults the protocol to boot), a permanent neighbour and a permanent FDB entry (`NeighSet`,
    create|replace). `device_args` adds device parameters the reference never sets."""
    vni = () if "external" in device_args else ("id", "2")  # iproute2 takes one or the other
    gw.ip("link", "add", DEV, "type", "vxlan", *vni, "dstport", "8472",
          "local", GATEWAY_IP, "nolearning", *device_args)  # fmt: skip
    gw.ip("link", "set", DEV, "address", vxlan_device_mac(GATEWAY_IP), "up")
    for ip, cidrs in nodes.values():
        mac = hybrid_node_peer_mac(ip)
        for cidr in cidrs:
            gw.ip("route", "replace", cidr, "via", ip, "dev", DEV, "onlink", "proto", "boot")
        gw.ip("neigh", "replace", ip, "lladdr", mac, "dev", DEV, "nud", "permanent")
        gw.exec("bridge", "fdb", "replace", mac, "dev", DEV, "dst", ip, "self", "permanent")


def test_takeover_keeps_the_reference_device_and_adopts_its_routes_without_a_lost_ping(
    world: World,
) -> None:
    gw = world.gw
    deleted_since = {"gone-14": ("192.168.100.14", ["10.200.14.0/24"])}
    leave_reference_state(gw, {**FAKE_NODES, **deleted_since})
    # not on our device: never touched, whatever its protocol
    gw.ip("route", "add", "10.254.0.0/24", "via", "192.168.100.10", "proto", "boot")
    ifindex = json.loads(gw.ip("-j", "link", "show", DEV))[0]["ifindex"]
    untouched = gw.ip("route", "show", "10.254.0.0/24")
    reached, out = ping(world.vpc, HYBRID_POD_IP, count=1)
    assert reached, f"the reference's state forwards: {out}"

    with pinging(world, 100) as pinger, Netlink(gw.name) as netlink:
        rec = reconciler(netlink)
        outcome = rec.ensure_device()
        observed = netlink.dump(outcome.ifindex)
        report = rec.reconcile(objects(FAKE_NODES))
        again = rec.reconcile(objects(FAKE_NODES))

    # the reference sets no MTU: the kernel's 1500 is fixed in place, the device kept
    assert outcome.action is DeviceAction.FIXED and outcome.ifindex == ifindex
    assert outcome.details == ("MTU 1500 -> 1450",)
    boot_routes = {c for _ip, cidrs in {**FAKE_NODES, **deleted_since}.values() for c in cidrs}
    assert {str(n) for n in observed.adopted_routes} == boot_routes
    assert len(report.plan.set_routes) == 6 and report.plan.removals == 3
    assert not report.plan.add_fdb and not report.plan.set_neighbours, "FDB/neighbours match"
    assert kernel_entries(gw) == expected_entries(FAKE_NODES), "routes now ours, stale gone"
    assert again.plan.empty
    assert gw.ip("route", "show", "10.254.0.0/24") == untouched
    assert pinger.lost() == 0, pinger.output


@pytest.mark.parametrize(
    ("device_args", "why"),
    [
        (("external",), "external"),
        (("remote", "192.168.100.99"), "remote/group"),
        (("group", "239.1.1.1", "dev", "{uplink}"), "remote/group"),
        (("dev", "{uplink}"), "dev (lower device)"),
        (("gbp",), "gbp"),
    ],
)
def test_takeover_recreates_a_device_with_wrong_parameters_and_touches_no_other_device(
    world: World, device_args: tuple[str, ...], why: str
) -> None:
    gw = world.gw
    uplink = json.loads(gw.ip("-j", "-4", "addr", "show", "to", "192.168.100.1/32"))[0]["ifname"]
    leave_reference_state(gw, FAKE_NODES, *(a.format(uplink=uplink) for a in device_args))
    gw.ip("route", "add", "10.254.0.0/24", "via", "192.168.100.10", "dev", uplink,
          "proto", "boot")  # fmt: skip
    others = gw.ip("route", "show", "dev", uplink)
    ifindex = json.loads(gw.ip("-j", "link", "show", DEV))[0]["ifindex"]

    with Netlink(gw.name) as netlink:
        rec = reconciler(netlink)
        outcome = rec.ensure_device()
        rec.reconcile(objects(FAKE_NODES))

    assert outcome.action is DeviceAction.RECREATED and outcome.ifindex != ifindex
    assert any(d.startswith(why) for d in outcome.details), outcome.details
    info = json.loads(gw.ip("-j", "-d", "link", "show", DEV))[0]["linkinfo"]["info_data"]
    assert not info.get("external") and not info.get("gbp") and "link" not in info
    assert "remote" not in info and "group" not in info
    assert kernel_entries(gw) == expected_entries(FAKE_NODES)
    assert gw.ip("route", "show", "dev", uplink) == others
    reached, out = ping(world.vpc, HYBRID_POD_IP)
    assert reached, out


def test_changes_applied_on_their_own_leave_exactly_what_a_full_pass_would(
    world: World, netlink: Netlink
) -> None:
    rec = reconciler(netlink)
    assert not rec.reconcile_changed({}), "no full pass yet: nothing to stand on"
    rec.ensure_device()
    rec.reconcile(objects(FAKE_NODES))
    changed = {k: v for k, v in FAKE_NODES.items() if k != "fake-12"}  # deleted
    changed["fake-11"] = ("192.168.100.21", ["10.200.11.0/24"])  # new node IP
    changed["fake-13"] = ("192.168.100.13", ["10.200.33.0/24"])  # pod CIDRs replaced
    changed["new-14"] = ("192.168.100.14", ["10.200.14.0/24"])  # added
    records = {name: node_record(obj) for name, obj in zip(changed, objects(changed), strict=True)}
    touched = {name: records.get(name) for name in ("fake-11", "fake-12", "fake-13", "new-14")}
    assert rec.reconcile_changed(touched)
    assert kernel_entries(world.gw) == expected_entries(changed)
    assert rec.reconcile(objects(changed)).plan.empty

    # a change that needs the claim rule (another node's pod CIDR) is left to the full pass
    clash = node_record(cilium_node("fake-11", "192.168.100.21", ["10.200.14.0/24"]))
    assert not rec.reconcile_changed({"fake-11": clash})
    assert kernel_entries(world.gw) == expected_entries(changed)
