"""The no-op resync on the real kernel: a pass that finds every entry as wanted proves it from
the raw dump (`adapters/netlink/proof.py`) instead of parsing each entry, and any drift defeats
the proof, so the same pass parses, diffs and repairs as before."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from hybrid_gateway.adapters.netlink import DeviceSpec, Netlink
from hybrid_gateway.core.dataplane import (
    NodeRecord,
    TunnelState,
    desired_nodes,
    desired_state,
    nexthop_id,
    node_record,
)
from hybrid_gateway.core.mac import hybrid_node_peer_mac, vxlan_device_mac
from hybrid_gateway.dataplane.reconciler import TunnelReconciler
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.netns import Netns, leftover_namespaces, netns_world

pytestmark = pytest.mark.netns
DEV = "hybrid_vxlan0"
GATEWAY = "10.0.1.1"
VPC = [ipaddress.IPv4Network("10.0.0.0/16")]


def records(count: int) -> list[NodeRecord]:
    """`count` hybrid nodes (192.168.x.y, one /24 each under 10.64/10), as the cache holds them."""
    return [
        node_record(
            cilium_node(
                f"n{i:04d}",
                str(ipaddress.IPv4Address("192.168.0.1") + i),
                [
                    str(
                        ipaddress.IPv4Network(
                            (int(ipaddress.IPv4Address("10.64.0.0")) + (i << 8), 24)
                        )
                    )
                ],
            )
        )
        for i in range(count)
    ]


def node_ip(i: int) -> str:
    return str(ipaddress.IPv4Address("192.168.0.1") + i)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Netns]:
    with netns_world() as world:
        ns, peer = world.add("gw"), world.add("peer")
        world.link(ns, f"{GATEWAY}/24", peer, "10.0.1.2/24")
        tag = world.tag
        yield ns
    assert not [n for n in leftover_namespaces() if n.startswith(f"hgw-{tag}-")]


class Proofs:
    """Wraps `Netlink.dump` to record, per call with a desired state, whether the dump proved
    it (returned the very object) or was parsed."""

    def __init__(self, netlink: Netlink) -> None:
        self.results: list[bool] = []
        dump = netlink.dump

        def recording(ifindex: int, expect: TunnelState | None = None) -> TunnelState:
            state = dump(ifindex, expect)
            if expect is not None:
                self.results.append(state is expect)
            return state

        netlink.dump = recording  # type: ignore[method-assign]


@pytest.fixture
def fresh(gateway: Netns) -> Iterator[tuple[Netns, Netlink]]:
    """A namespace whose device (and so every entry on it) is created anew by the test."""
    gateway.ip("link", "del", DEV, check=False)
    gateway.sysctl("net.ipv4.nexthop_compat_mode", "1")
    with Netlink(gateway.name) as netlink:
        yield gateway, netlink


def reconciler(netlink: Netlink, *, nexthop_objects: bool | None = None) -> TunnelReconciler:
    rec = TunnelReconciler(
        netlink=netlink,
        device=DeviceSpec(
            DEV, 2, 8472, ipaddress.IPv4Address(GATEWAY), vxlan_device_mac(GATEWAY), 1450
        ),
        vpc_cidrs=VPC,
        metrics=GatewayMetrics(),
        events=None,
        nexthop_objects=nexthop_objects,
    )
    rec.ensure_device()
    return rec


def target(nodes: list[NodeRecord], *, nexthops: bool = True) -> TunnelState:
    return desired_state(desired_nodes(nodes, VPC).tunnels, nexthop_objects=nexthops)


@pytest.mark.parametrize("nexthops", [True, False], ids=["nexthop-objects", "own-gateway"])
def test_a_no_op_resync_is_proved_from_the_dump_across_many_datagrams(
    fresh: tuple[Netns, Netlink], nexthops: bool
) -> None:
    ns, netlink = fresh
    nodes = records(700)  # ~48 KB per table: several 32 KB datagrams, the first one smaller
    rec = reconciler(netlink, nexthop_objects=None if nexthops else False)
    proofs = Proofs(netlink)
    first = rec.reconcile(nodes)
    assert first.result.added == (4 if nexthops else 3) * 700
    assert rec.reconcile(nodes).plan.empty
    assert rec.reconcile(list(nodes)).plan.empty  # a new list of the same records
    assert proofs.results == [False, True, True]  # the first pass found an empty device

    want = target(nodes, nexthops=nexthops)
    index = netlink.device_index(DEV) or 0
    assert netlink.dump(index) == want  # the parser agrees with the proof
    if nexthops:  # routes dumped without gateway and device: another layout, the same entries
        ns.sysctl("net.ipv4.nexthop_compat_mode", "0")
        assert rec.reconcile(nodes).plan.empty
        assert proofs.results[-1] is True


MAC_X = "02:00:0a:0b:0c:0d"
ELSEWHERE = "192.168.99.9"
IP3 = node_ip(3)
MAC3 = hybrid_node_peer_mac(IP3)
NHID3 = str(nexthop_id(ipaddress.IPv4Address(IP3)))
#: What someone else does behind the daemon's back to node 3 (its IP, MAC, nexthop and
#: 10.64.3.0/24), and what the repairing pass must plan: (additions, removals).
DRIFT: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "fdb entry deleted": (("bridge", "fdb", "del", MAC3, "dev", DEV, "dst", IP3), (1, 0)),
    "fdb entry pointed elsewhere": (
        ("bridge", "fdb", "replace", MAC3, "dev", DEV, "dst", ELSEWHERE, "self", "permanent"),
        (1, 1),
    ),
    "stray fdb entry": (
        ("bridge", "fdb", "append", MAC_X, "dev", DEV, "dst", ELSEWHERE, "self", "permanent"),
        (0, 1),
    ),
    "neighbour MAC changed": (
        ("ip", "neigh", "replace", IP3, "lladdr", MAC_X, "dev", DEV, "nud", "permanent"),
        (1, 0),
    ),
    "neighbour deleted": (("ip", "neigh", "del", IP3, "dev", DEV), (1, 0)),
    "nexthop re-pointed": (  # the route through it is rewritten too (it reads as via ELSEWHERE)
        ("ip", "nexthop", "replace", "id", NHID3, "via", ELSEWHERE, "dev", DEV, "onlink"),
        (2, 0),
    ),
    "nexthop deleted (its route with it)": (("ip", "nexthop", "del", "id", NHID3), (2, 0)),
    "stray nexthop": (
        ("ip", "nexthop", "add", "id", "7", "via", ELSEWHERE, "dev", DEV, "onlink"),
        (0, 1),
    ),
    "route deleted": (("ip", "route", "del", "10.64.3.0/24"), (1, 0)),
    "route rewritten by another writer": (
        (
            "ip",
            "route",
            "replace",
            "10.64.3.0/24",
            "via",
            IP3,
            "dev",
            DEV,
            "onlink",
            "proto",
            "boot",
        ),
        (1, 0),
    ),
    "stray route": (
        ("ip", "route", "add", "10.99.0.0/24", "via", IP3, "dev", DEV, "onlink"),
        (0, 1),
    ),
}


@pytest.mark.parametrize("change", list(DRIFT))
def test_drift_defeats_the_proof_and_the_same_pass_repairs_it(
    fresh: tuple[Netns, Netlink], change: str
) -> None:
    ns, netlink = fresh
    nodes = records(30)
    rec = reconciler(netlink)
    rec.reconcile(nodes)
    proofs = Proofs(netlink)
    assert rec.reconcile(nodes).plan.empty and proofs.results == [True]

    command, (additions, removals) = DRIFT[change]
    ns.exec(*command)
    repair = rec.reconcile(nodes)
    assert proofs.results == [True, False]
    assert (repair.plan.additions, repair.plan.removals) == (additions, removals), repair.plan
    assert netlink.dump(netlink.device_index(DEV) or 0) == target(nodes)
    assert rec.reconcile(nodes).plan.empty and proofs.results[-1] is True


def test_entries_not_ours_leave_the_proof_undecided_and_plan_nothing(
    fresh: tuple[Netns, Netlink],
) -> None:
    """A route with a metric and a neighbour the kernel resolved are not ours (the parser skips
    them); the datagram they share with ours is no longer uniform, so the pass parses it."""
    ns, netlink = fresh
    nodes = records(30)
    rec = reconciler(netlink)
    rec.reconcile(nodes)
    proofs = Proofs(netlink)
    ns.ip("route", "add", "10.99.0.0/24", "via", IP3, "dev", DEV, "onlink", "metric", "50")
    assert rec.reconcile(nodes).plan.empty
    ns.ip("route", "del", "10.99.0.0/24", "metric", "50")
    ns.ip("neigh", "add", "192.168.99.9", "lladdr", MAC_X, "dev", DEV, "nud", "reachable")
    assert rec.reconcile(nodes).plan.empty
    assert proofs.results == [False, False]
    assert "10.99.0.0/24" not in ns.ip("route", "show", "dev", DEV)
