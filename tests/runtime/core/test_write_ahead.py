"""Writing ahead of the first full pass (core/write_ahead.py): per page, only nodes whose verdict
the whole list cannot change, and only entries the kernel lacks altogether."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_gateway.core.dataplane import (
    NodeRecord,
    NodeTunnel,
    TunnelState,
    _parse_ip,
    _parse_network,
    apply_plan,
    desired_nodes,
    desired_state,
    nexthop_id,
)
from hybrid_gateway.core.write_ahead import ListedNodes, WriteAhead

VPC = [ipaddress.IPv4Network("10.0.0.0/16")]
IPS = ["172.16.0.1", "172.16.0.2", "172.16.0.3", "10.0.0.5", "bad"]
CIDRS = ["10.200.0.0/24", "10.200.1.0/24", "10.200.2.0/24", "10.0.3.0/24", "nope"]


def record(name: str, ip: str, cidrs: list[str], *, hybrid: bool = True) -> NodeRecord:
    return NodeRecord(name, f"uid-{name}", hybrid, (ip,), tuple(cidrs))


records = st.lists(
    st.builds(
        record,
        st.from_regex(r"n-[a-f]{1,3}", fullmatch=True),
        st.sampled_from(IPS),
        st.lists(st.sampled_from(CIDRS), min_size=1, max_size=2),
        hybrid=st.booleans(),
    ),
    max_size=12,
    unique_by=lambda r: r.name,
)


def pages(items: list[NodeRecord], size: int) -> list[list[NodeRecord]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@settings(max_examples=300, deadline=None)
@given(records, st.integers(min_value=1, max_value=4))
def test_a_list_in_name_order_gets_exactly_the_full_pass_verdicts(
    nodes: list[NodeRecord], size: int
) -> None:
    listed = ListedNodes(VPC)
    in_order = sorted(nodes)
    ahead = [t for page in pages(in_order, size) for t in listed.add(page)]
    assert listed.ordered
    assert tuple(ahead) == desired_nodes(nodes, VPC).tunnels
    # the full pass takes the list's decisions when it gets the very records listed
    assert listed.desired(in_order) == desired_nodes(nodes, VPC)
    assert listed.desired(in_order[:-1]) is None if nodes else True


@settings(max_examples=300, deadline=None)
@given(records, st.integers(min_value=1, max_value=4), st.randoms())
def test_out_of_order_stops_at_the_first_node_out_of_order(
    nodes: list[NodeRecord], size: int, rng: object
) -> None:
    shuffled = list(nodes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    listed = ListedNodes(VPC)
    ahead = [t for page in pages(shuffled, size) for t in listed.add(page)]
    in_order = 0
    while in_order + 1 < len(shuffled) and shuffled[in_order].name < shuffled[in_order + 1].name:
        in_order += 1
    prefix = shuffled[: in_order + 1] if shuffled else []
    assert listed.ordered == (prefix == shuffled)
    assert (listed.desired(shuffled) is None) == (not listed.ordered)
    assert tuple(ahead) == desired_nodes(prefix, VPC).tunnels


def node(name: str, ip: str, cidr: str) -> NodeRecord:
    return record(name, ip, [cidr])


def test_a_page_adds_only_what_the_kernel_lacks_and_replaces_nothing() -> None:
    a, b = ("172.16.0.1", "10.200.0.0/24"), ("172.16.0.2", "10.200.1.0/24")
    ip_a, ip_b = ipaddress.IPv4Address(a[0]), ipaddress.IPv4Address(b[0])
    tunnel_a = NodeTunnel("a", ip_a, (ipaddress.IPv4Network(a[1]),))
    # the kernel already has a's entries, a stale route for b's pod CIDR, and a drifted
    # neighbour for c's node IP
    stale_route = ipaddress.IPv4Network(b[1])
    present = desired_state([tunnel_a], nexthop_objects=True)
    present = TunnelState(
        fdb=present.fdb,
        neighbours={**present.neighbours, ipaddress.IPv4Address("172.16.0.3"): "02:00:00:00:00:09"},
        routes={**present.routes, stale_route: ipaddress.IPv4Address("172.31.0.1")},
        nexthops=present.nexthops,
        route_nexthops=present.route_nexthops,
    )
    ahead = WriteAhead(present, VPC, nexthop_objects=True)
    plan = ahead.plan([node("a", *a), node("b", *b), node("c", "172.16.0.3", "10.200.2.0/24")])
    assert plan.removals == 0 and not plan.set_nexthops and not plan.set_routes
    assert [f.dst for f in plan.add_fdb] == [ip_b]
    assert [ip for ip, _ in plan.set_neighbours] == [ip_b]  # not c: its neighbour drifted
    assert plan.add_nexthops == ((nexthop_id(ip_b), ip_b),)
    assert plan.add_routes == ()  # b's pod CIDR has a route already: the full pass's
    # a later node sharing b's node IP (allowed) finds b's entries present: only its route
    later = ahead.plan([node("e", b[0], "10.200.4.0/24")])
    assert later.additions == 1 and [str(r.dst) for r in later.add_routes] == ["10.200.4.0/24"]
    assert apply_plan(present, plan).neighbours[ip_b] == plan.set_neighbours[0][1]


octet = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["00", "01", "007", "0x1", " 1", "1 ", "", "+1", "\u0661"]),
)
addresses = st.one_of(
    st.lists(octet, min_size=3, max_size=5).map(".".join),
    st.sampled_from(["::1", "fd00::/64", "10.0.0.1\x00", "localhost", "1.2.3.4/"]),
)
prefixes = st.one_of(st.integers(0, 40).map(str), st.sampled_from(["024", "", "x", "255.255.0.0"]))


def outcome(parse: Callable[[str], Any], text: str) -> tuple[str, object]:
    try:
        value = parse(text)
    except ValueError as exc:
        return ("error", str(exc))
    return (f"IPv{value.version}", value)


@settings(max_examples=2000, deadline=None)
@given(addresses)
def test_node_ips_parse_as_ipaddress_does(text: str) -> None:
    """The C fast path reads exactly the texts `ipaddress` reads, as the same address; the rest
    gets `ipaddress`'s own verdict and message."""
    assert outcome(_parse_ip, text) == outcome(ipaddress.ip_address, text)


@settings(max_examples=2000, deadline=None)
@given(addresses, prefixes)
def test_pod_cidrs_parse_as_ipaddress_does(address: str, prefix: str) -> None:
    text = f"{address}/{prefix}"
    assert outcome(_parse_network, text) == outcome(
        lambda t: ipaddress.ip_network(t, strict=True), text
    )


@settings(max_examples=300, deadline=None)
@given(records, st.integers(min_value=1, max_value=4), st.booleans())
def test_the_first_pass_state_built_page_by_page_is_the_one_built_at_once(
    nodes: list[NodeRecord], size: int, nexthop_objects: bool
) -> None:
    """Nodes may share an IP (a later one's neighbour and nexthop then win, as in one
    `desired_state` call)."""
    ahead = WriteAhead(TunnelState(), VPC, nexthop_objects=nexthop_objects)
    in_order = sorted(nodes)
    for page in pages(in_order, size):
        ahead.plan(page)
    listed = ahead.nodes.desired(in_order)
    assert listed is not None
    assert ahead.target(listed, nexthop_objects=nexthop_objects) == desired_state(
        listed.tunnels, nexthop_objects=nexthop_objects
    )
    assert ahead.target(listed, nexthop_objects=not nexthop_objects) is None


def test_a_state_built_page_by_page_is_not_used_for_other_nodes() -> None:
    ahead = WriteAhead(TunnelState(), VPC, nexthop_objects=True)
    first = record("n-a", "172.16.0.1", ["10.200.0.0/24"])
    ahead.plan([first])
    other = desired_nodes([first, record("n-b", "172.16.0.2", ["10.200.1.0/24"])], VPC)
    assert ahead.target(other, nexthop_objects=True) is None
