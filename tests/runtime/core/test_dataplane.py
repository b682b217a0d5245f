"""Pure data-plane rules: CiliumNode objects -> desired tunnel state -> plan against the kernel."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_gateway.core.dataplane import (
    FdbEntry,
    NodeTunnel,
    Plan,
    RouteEntry,
    TunnelState,
    apply_plan,
    desired_nodes,
    desired_state,
    diff,
    nexthop_id,
)
from hybrid_gateway.core.mac import hybrid_node_peer_mac, vxlan_device_mac

V4 = ipaddress.IPv4Address
NET = ipaddress.IPv4Network
VPC = [NET("10.0.0.0/16")]


def cilium_node(
    name: str,
    ip: str | None = "192.168.1.10",
    cidrs: list[str] | None = None,
    *,
    hybrid: bool = True,
    extra_addresses: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    labels = {"eks.amazonaws.com/compute-type": "hybrid"} if hybrid else {"other": "x"}
    addresses = list(extra_addresses or [])
    if ip is not None:
        addresses.append({"type": "InternalIP", "ip": ip})
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNode",
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels},
        "spec": {
            "addresses": addresses,
            "ipam": {"podCIDRs": ["10.200.1.0/24"] if cidrs is None else cidrs},
        },
    }


# --- MAC derivation -------------------------------------------------------------------------------


def spec_mac(ip: str) -> str:
    """docs/design.md#tunnel written out independently: sha256 over ::ffff:a.b.c.d, 6 bytes,
    LAA unicast."""
    mapped = b"\x00" * 10 + b"\xff\xff" + bytes(int(o) for o in ip.split("."))
    raw = bytearray(hashlib.sha256(mapped).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def test_device_mac_matches_the_spec_formula_for_several_ips() -> None:
    for ip in ("10.0.1.1", "192.168.100.10", "172.31.255.254", "1.2.3.4"):
        mac = vxlan_device_mac(ip)
        assert mac == spec_mac(ip)
        first = int(mac[:2], 16)
        assert first & 0x01 == 0  # unicast
        assert first & 0x02 == 2  # locally administered


def test_device_mac_differs_per_node_and_is_stable() -> None:
    assert vxlan_device_mac("10.0.1.1") == vxlan_device_mac("10.0.1.1")
    assert vxlan_device_mac("10.0.1.1") != vxlan_device_mac("10.0.1.2")


def test_peer_mac_is_02_00_and_the_node_octets() -> None:
    assert hybrid_node_peer_mac("192.168.100.10") == "02:00:c0:a8:64:0a"


# --- desired state --------------------------------------------------------------------------------


def test_all_pod_cidrs_of_a_node_get_routes() -> None:
    obj = cilium_node("a", "192.168.1.10", ["10.200.1.0/24", "10.201.0.0/25", "10.200.1.0/24"])
    result = desired_nodes([obj], VPC)
    assert result.rejected == ()
    assert result.tunnels == (
        NodeTunnel("a", V4("192.168.1.10"), (NET("10.200.1.0/24"), NET("10.201.0.0/25"))),
    )
    state = desired_state(result.tunnels)
    assert dict(state.routes) == {
        NET("10.200.1.0/24"): V4("192.168.1.10"),
        NET("10.201.0.0/25"): V4("192.168.1.10"),
    }
    assert dict(state.neighbours) == {V4("192.168.1.10"): "02:00:c0:a8:01:0a"}
    assert state.fdb == {FdbEntry("02:00:c0:a8:01:0a", V4("192.168.1.10"))}


def test_non_hybrid_nodes_are_ignored_and_cilium_internal_ip_is_not_the_node_ip() -> None:
    hybrid = cilium_node(
        "h", "192.168.1.10", extra_addresses=[{"type": "CiliumInternalIP", "ip": "10.200.1.1"}]
    )
    ec2 = cilium_node("ec2", "10.0.5.5", ["10.201.0.0/24"], hybrid=False)
    result = desired_nodes([ec2, hybrid], VPC)
    assert [t.name for t in result.tunnels] == ["h"]
    assert result.tunnels[0].node_ip == V4("192.168.1.10")


def test_dual_stack_node_uses_its_ipv4_address_and_cidrs() -> None:
    obj = cilium_node(
        "d",
        "192.168.1.10",
        ["fd00:10::/64", "10.200.3.0/24"],
        extra_addresses=[{"type": "InternalIP", "ip": "fd00::10"}],
    )
    result = desired_nodes([obj], VPC)
    assert result.tunnels[0].node_ip == V4("192.168.1.10")
    assert result.tunnels[0].pod_cidrs == (NET("10.200.3.0/24"),)


def rejection(obj: dict[str, Any]) -> str:
    result = desired_nodes([obj, cilium_node("good", "192.168.9.9", ["10.209.0.0/24"])], VPC)
    assert [t.name for t in result.tunnels] == ["good"], "other nodes keep working"
    assert len(result.rejected) == 1
    assert result.rejected[0].uid == f"uid-{obj['metadata']['name']}"
    return result.rejected[0].reason


def test_bad_nodes_are_rejected_with_the_field_and_value() -> None:
    assert "no InternalIP" in rejection(cilium_node("a", None))
    v6 = rejection(cilium_node("b", "fd00::1"))
    assert "only IPv6" in v6 and "fd00::1" in v6
    assert "'not-an-ip'" in rejection(cilium_node("c", "not-an-ip"))
    bad_cidr = rejection(cilium_node("d", cidrs=["10.200.1.0/33"]))
    assert "spec.ipam.podCIDRs" in bad_cidr and "10.200.1.0/33" in bad_cidr
    host_bits = rejection(cilium_node("e", cidrs=["10.200.1.5/24"]))
    assert "10.200.1.5/24" in host_bits
    overlap = rejection(cilium_node("f", cidrs=["10.0.8.0/24"]))
    assert "overlaps the VPC CIDR 10.0.0.0/16" in overlap
    assert "empty" in rejection(cilium_node("g", cidrs=[]))
    assert "no IPv4 CIDR" in rejection(cilium_node("h", cidrs=["fd00::/64"]))
    assert "unicast" in rejection(cilium_node("i", "0.0.0.0"))


def test_a_pod_cidr_claimed_twice_goes_to_the_first_node_by_name() -> None:
    a = cilium_node("a", "192.168.1.1", ["10.200.1.0/24"])
    b = cilium_node("b", "192.168.1.2", ["10.200.1.0/24"])
    result = desired_nodes([b, a], VPC)
    assert [t.name for t in result.tunnels] == ["a"]
    assert result.rejected[0].name == "b"
    assert "already used by CiliumNode 'a'" in result.rejected[0].reason


# --- diff -----------------------------------------------------------------------------------------


def tunnel(name: str, ip: str, *cidrs: str) -> NodeTunnel:
    return NodeTunnel(name, V4(ip), tuple(NET(c) for c in cidrs))


def test_diff_from_empty_adds_everything_in_order_groups() -> None:
    target = desired_state([tunnel("a", "192.168.1.1", "10.200.1.0/24", "10.200.2.0/24")])
    plan = diff(target, TunnelState())
    assert len(plan.add_fdb) == 1 and len(plan.set_neighbours) == 1 and len(plan.add_routes) == 2
    assert plan.set_routes == ()
    assert plan.removals == 0
    assert diff(target, target).empty


def test_ip_change_replaces_routes_and_removes_the_old_peer() -> None:
    before = desired_state([tunnel("a", "192.168.1.1", "10.200.1.0/24")])
    after = desired_state([tunnel("a", "192.168.1.2", "10.200.1.0/24")])
    plan = diff(after, before)
    assert plan.set_routes == (RouteEntry(NET("10.200.1.0/24"), V4("192.168.1.2")),)
    assert plan.del_routes == ()  # replaced in place, no gap
    assert plan.del_neighbours == ((V4("192.168.1.1"), "02:00:c0:a8:01:01"),)
    assert plan.del_fdb == (FdbEntry("02:00:c0:a8:01:01", V4("192.168.1.1")),)
    assert apply_plan(before, plan) == after


def test_pod_cidr_removal_deletes_only_that_route() -> None:
    before = desired_state([tunnel("a", "192.168.1.1", "10.200.1.0/24", "10.200.2.0/24")])
    after = desired_state([tunnel("a", "192.168.1.1", "10.200.1.0/24")])
    plan = diff(after, before)
    assert plan.del_routes == (RouteEntry(NET("10.200.2.0/24"), V4("192.168.1.1")),)
    assert plan.additions == 0 and plan.removals == 1


def test_a_wrong_neighbour_mac_is_replaced() -> None:
    target = desired_state([tunnel("a", "192.168.1.1", "10.200.1.0/24")])
    drifted = TunnelState(
        fdb=target.fdb,
        neighbours={V4("192.168.1.1"): "02:00:00:00:00:01"},
        routes=dict(target.routes),
    )
    plan = diff(target, drifted)
    assert plan.set_neighbours == ((V4("192.168.1.1"), "02:00:c0:a8:01:01"),)
    assert plan.del_neighbours == ()


def test_an_adopted_route_is_made_ours_even_when_it_is_right_and_removed_when_unwanted() -> None:
    target = desired_state([tunnel("a", "192.168.1.1", "10.200.1.0/24")])
    left_by_reference = TunnelState(
        fdb=target.fdb,
        neighbours=dict(target.neighbours),
        routes={NET("10.200.1.0/24"): V4("192.168.1.1"), NET("10.200.9.0/24"): V4("192.168.1.9")},
        adopted_routes=frozenset({NET("10.200.1.0/24"), NET("10.200.9.0/24")}),
    )
    plan = diff(target, left_by_reference)
    assert plan.set_routes == (RouteEntry(NET("10.200.1.0/24"), V4("192.168.1.1")),)
    assert plan.del_routes == (RouteEntry(NET("10.200.9.0/24"), V4("192.168.1.9")),)
    assert apply_plan(left_by_reference, plan) == target


# --- nexthop objects ------------------------------------------------------------------------------

TWO = [
    tunnel("a", "192.168.1.1", "10.200.1.0/24", "10.200.2.0/24"),
    tunnel("b", "192.168.1.2", "10.200.3.0/24"),
]


def test_one_nexthop_per_node_shared_by_its_pod_cidrs() -> None:
    state = desired_state(TWO, nexthop_objects=True)
    a, b = nexthop_id(V4("192.168.1.1")), nexthop_id(V4("192.168.1.2"))
    assert dict(state.nexthops) == {a: V4("192.168.1.1"), b: V4("192.168.1.2")}
    assert dict(state.route_nexthops) == {
        NET("10.200.1.0/24"): a,
        NET("10.200.2.0/24"): a,
        NET("10.200.3.0/24"): b,
    }
    assert state.routes == desired_state(TWO).routes
    plan = diff(state, TunnelState())
    assert len(plan.add_nexthops) == 2 and all(r.nhid for r in plan.add_routes)


def test_upgrade_replaces_each_route_in_place_and_deletes_nothing() -> None:
    plain, objects = desired_state(TWO), desired_state(TWO, nexthop_objects=True)
    plan = diff(objects, plain)
    assert {k for k, _ in plan.add_nexthops} == set(objects.nexthops)
    assert {r.dst for r in plan.set_routes} == set(plain.routes)
    assert all(r.nhid == nexthop_id(r.via) for r in plan.set_routes)
    assert plan.removals == 0 and not plan.add_routes, "no route is ever missing"
    assert apply_plan(plain, plan) == objects
    assert diff(objects, objects).empty, "a restarted replica's pass is a no-op"


def test_fallback_moves_routes_back_in_place_then_removes_the_nexthops() -> None:
    plain, objects = desired_state(TWO), desired_state(TWO, nexthop_objects=True)
    plan = diff(plain, objects)
    assert {r.dst for r in plan.set_routes} == set(plain.routes)
    assert all(r.nhid == 0 for r in plan.set_routes)
    assert not plan.del_routes and {k for k, _ in plan.del_nexthops} == set(objects.nexthops)
    assert apply_plan(objects, plan) == plain


def test_nexthop_drift_is_repaired_and_unknown_nexthops_removed() -> None:
    want = desired_state(TWO, nexthop_objects=True)
    a = nexthop_id(V4("192.168.1.1"))
    drifted = TunnelState(
        fdb=want.fdb,
        neighbours=dict(want.neighbours),
        routes=dict(want.routes),
        nexthops={**want.nexthops, a: V4("192.168.1.9"), 7: V4("192.168.1.7")},
        route_nexthops=dict(want.route_nexthops),
    )
    plan = diff(want, drifted)
    assert plan.set_nexthops == ((a, V4("192.168.1.1")),)
    assert plan.del_nexthops == ((7, V4("192.168.1.7")),)
    assert apply_plan(drifted, plan) == want
    # a nexthop deleted behind our back takes its routes with it (the kernel's rule)
    gone = apply_plan(want, Plan(del_nexthops=((a, V4("192.168.1.1")),)))
    assert NET("10.200.1.0/24") not in gone.routes and a not in gone.nexthops
    repair = diff(want, gone)
    assert repair.add_nexthops == ((a, V4("192.168.1.1")),) and len(repair.add_routes) == 2
    assert apply_plan(gone, repair) == want


# --- properties -----------------------------------------------------------------------------------

ips = st.integers(min_value=0x0A000001, max_value=0x0A0000FF).map(V4)
macs = st.sampled_from(["02:00:0a:00:00:01", "02:00:0a:00:00:02", "02:00:0a:00:00:03"])
nets = st.integers(min_value=0, max_value=63).map(lambda i: NET((0x0AC80000 + (i << 8), 24)))
nhids = st.integers(min_value=1, max_value=12)


@st.composite
def states(draw: st.DrawFn) -> TunnelState:
    """A consistent kernel state: some routes use a nexthop object (then their gateway is the
    nexthop's), the others carry their own gateway."""
    nexthops = draw(st.dictionaries(nhids, ips, max_size=6))
    routes: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
    route_nexthops: dict[ipaddress.IPv4Network, int] = {}
    for net in draw(st.sets(nets, max_size=8)):
        choice = draw(st.sampled_from([0, *sorted(nexthops)]))
        routes[net] = nexthops[choice] if choice else draw(ips)
        if choice:
            route_nexthops[net] = choice
    return TunnelState(
        fdb=draw(st.frozensets(st.builds(FdbEntry, mac=macs, dst=ips), max_size=8)),
        neighbours=draw(st.dictionaries(ips, macs, max_size=8)),
        routes=routes,
        nexthops=nexthops,
        route_nexthops=route_nexthops,
    )


@st.composite
def observed_states(draw: st.DrawFn) -> TunnelState:
    """A kernel state where some of the routes on our device came from another writer."""
    state = draw(states())
    adopted = draw(st.sets(st.sampled_from(sorted(state.routes)))) if state.routes else set()
    return TunnelState(
        state.fdb,
        state.neighbours,
        state.routes,
        frozenset(adopted),
        state.nexthops,
        state.route_nexthops,
    )


@settings(max_examples=300)
@given(desired=states(), observed=observed_states())
def test_applying_the_diff_yields_the_desired_state(
    desired: TunnelState, observed: TunnelState
) -> None:
    plan = diff(desired, observed)
    assert apply_plan(observed, plan) == desired
    assert diff(desired, apply_plan(observed, plan)).empty


@settings(max_examples=200)
@given(desired=states(), observed=observed_states())
def test_a_plan_never_touches_entries_that_are_already_right(
    desired: TunnelState, observed: TunnelState
) -> None:
    plan = diff(desired, observed)
    assert not set(plan.add_fdb) & observed.fdb
    assert not set(plan.del_fdb) & desired.fdb
    assert all(
        observed.routes.get(r.dst) != r.via
        or observed.route_nexthops.get(r.dst, 0) != r.nhid
        or r.dst in observed.adopted_routes
        for r in plan.set_routes
    ), "a route already right is replaced only to make an adopted route ours"
    assert all(r.dst in observed.routes for r in plan.set_routes), "replace only our own routes"
    assert all(r.dst not in observed.routes for r in plan.add_routes)
    assert all(r.dst not in desired.routes for r in plan.del_routes)
    assert all(observed.nexthops.get(k) not in (None, gw) for k, gw in plan.set_nexthops)
    assert all(k not in observed.nexthops for k, _ in plan.add_nexthops)
    used = set(desired.route_nexthops.values())
    assert all(k not in used for k, _ in plan.del_nexthops), "never delete a nexthop in use"
    assert all(observed.neighbours.get(ip) != m for ip, m in plan.set_neighbours)
