"""The shared route-cleanup planner: which pod-network routes a removed gateway may delete."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybrid_gateway_contract.route_cleanup import (
    Route,
    RouteTarget,
    gateway_eni_ids,
    plan_route_cleanup,
    routes_from_describe,
)

POD = "10.85.0.0/16"
OWNED = "rtb-00000000000000001"
FOREIGN = "rtb-00000000000000009"
GW_ENI = "eni-0000000000000000a"


def _plan(routes: list[Route], **overrides: Any) -> list[tuple[str, str, bool]]:
    args: dict[str, Any] = {
        "owned_tables": [OWNED],
        "pod_cidrs": [POD],
        "gateway_enis": [GW_ENI],
        **overrides,
    }
    plan = plan_route_cleanup(routes, **args)
    return [(d.route.table_id, d.route.target, d.delete) for d in plan.decisions]


def test_describe_reply_is_read_with_every_target_kind() -> None:
    """Shapes as botocore parses DescribeRouteTables; IPv6 and prefix-list routes are skipped."""
    reply = [
        {
            "RouteTableId": OWNED,
            "Routes": [
                {"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local", "State": "active"},
                {"DestinationCidrBlock": POD, "NetworkInterfaceId": GW_ENI, "State": "active"},
                {"DestinationCidrBlock": "10.86.0.0/16", "TransitGatewayId": "tgw-1"},
                {"DestinationIpv6CidrBlock": "::/0", "GatewayId": "igw-1", "State": "active"},
                {"DestinationPrefixListId": "pl-1", "GatewayId": "vpce-1", "State": "active"},
                {
                    "DestinationCidrBlock": "10.87.0.0/16",
                    "InstanceId": "i-1",
                    "NetworkInterfaceId": "eni-2",
                    "State": "blackhole",
                },
            ],
        }
    ]
    routes = routes_from_describe(reply)
    assert routes == [
        Route(OWNED, "10.0.0.0/16", "active", other_target="local"),
        Route(OWNED, POD, "active", network_interface_id=GW_ENI),
        Route(OWNED, "10.86.0.0/16", "active", other_target="tgw-1"),
        Route(OWNED, "10.87.0.0/16", "blackhole", network_interface_id="eni-2", instance_id="i-1"),
    ]


def test_gateway_enis_are_every_interface_of_the_described_instances() -> None:
    reservations: list[dict[str, Any]] = [
        {"Instances": [{"NetworkInterfaces": [{"NetworkInterfaceId": "eni-a"}]}]},
        {
            "Instances": [
                {"NetworkInterfaces": [{"NetworkInterfaceId": "eni-b"}, {"Attachment": {}}]},
                {"State": {"Name": "terminated"}},  # a terminated instance has no interfaces
            ]
        },
    ]
    assert gateway_eni_ids(reservations) == {"eni-a", "eni-b"}


def test_only_gateway_eni_routes_and_interface_blackholes_in_owned_tables_are_deleted() -> None:
    routes = [
        Route(OWNED, POD, "active", network_interface_id=GW_ENI),
        Route(FOREIGN, POD, "active", network_interface_id=GW_ENI),
        Route(OWNED, "10.86.0.0/16", "blackhole", network_interface_id="eni-gone"),
    ]
    both = ["10.85.0.0/16", "10.86.0.0/16"]
    assert _plan(routes, pod_cidrs=both) == [
        (OWNED, GW_ENI, True),
        (OWNED, "eni-gone", True),
    ]


@pytest.mark.parametrize(
    ("route", "kind"),
    [
        (Route(OWNED, POD, "active", other_target="tgw-1"), RouteTarget.OTHER_TARGET),
        (Route(OWNED, POD, "blackhole", other_target="tgw-1"), RouteTarget.OTHER_TARGET),
        (Route(OWNED, POD, "blackhole", other_target="vgw-1"), RouteTarget.OTHER_TARGET),
        (Route(OWNED, POD, "blackhole", other_target="pcx-1"), RouteTarget.OTHER_TARGET),
        (Route(OWNED, POD, "active", network_interface_id="eni-x"), RouteTarget.OTHER_INTERFACE),
        (Route(OWNED, POD, "active", instance_id="i-x"), RouteTarget.OTHER_INTERFACE),
    ],
)
def test_routes_to_other_targets_are_kept_blackhole_or_not(route: Route, kind: RouteTarget) -> None:
    [decision] = plan_route_cleanup(
        [route], owned_tables=[OWNED], pod_cidrs=[POD], gateway_enis=[GW_ENI]
    ).decisions
    assert decision.kind is kind
    assert not decision.delete
    assert decision.describe().startswith("keep ")


def test_only_exact_pod_cidr_destinations_count() -> None:
    routes = [
        Route(OWNED, "10.85.0.0/17", "active", network_interface_id=GW_ENI),  # inside
        Route(OWNED, "10.0.0.0/8", "active", network_interface_id=GW_ENI),  # around
        Route(OWNED, "10.85.0.0/16", "active", network_interface_id=GW_ENI),
    ]
    assert _plan(routes) == [(OWNED, GW_ENI, True)]


def test_bad_pod_cidrs_are_rejected_by_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"pod_cidrs\[1\]: '10.85.0.0/33' is not an IPv4 CIDR"):
        plan_route_cleanup(
            [], owned_tables=[OWNED], pod_cidrs=[POD, "10.85.0.0/33"], gateway_enis=[]
        )
    with pytest.raises(ValueError, match=r"pod_cidrs: at least one"):
        plan_route_cleanup([], owned_tables=[OWNED], pod_cidrs=[], gateway_enis=[])


# --- Properties ----------------------------------------------------------------------------------

_tables = st.sampled_from([OWNED, "rtb-00000000000000002", FOREIGN])
_cidrs = st.sampled_from(["10.85.0.0/16", "10.86.0.0/16", "10.0.0.0/16", "0.0.0.0/0"])
_enis = st.sampled_from([GW_ENI, "eni-0000000000000000b", "eni-0000000000000000c"])


@st.composite
def _routes(draw: st.DrawFn) -> Route:
    target = draw(st.sampled_from(["eni", "instance", "other"]))
    return Route(
        table_id=draw(_tables),
        destination=draw(_cidrs),
        state=draw(st.sampled_from(["active", "blackhole"])),
        network_interface_id=draw(_enis) if target == "eni" else None,
        instance_id="i-1" if target == "instance" else None,
        other_target=draw(st.sampled_from(["tgw-1", "vgw-1", "pcx-1", "nat-1"]))
        if target == "other"
        else None,
    )


@given(
    routes=st.lists(_routes(), max_size=30),
    owned=st.sets(_tables, max_size=3),
    pods=st.lists(_cidrs, min_size=1, max_size=3),
    enis=st.sets(_enis, max_size=3),
)
def test_a_deleted_route_always_satisfies_the_rule(
    routes: list[Route], owned: set[str], pods: list[str], enis: set[str]
) -> None:
    plan = plan_route_cleanup(routes, owned_tables=owned, pod_cidrs=pods, gateway_enis=enis)
    networks = {ipaddress.IPv4Network(p) for p in pods}
    for route in plan.deletions:
        assert route.table_id in owned
        assert ipaddress.IPv4Network(route.destination) in networks
        assert route.other_target is None
        assert route.network_interface_id in enis or (
            route.state == "blackhole" and (route.network_interface_id or route.instance_id)
        )
    # ...and every route satisfying it is deleted: nothing the gateway wrote is left behind.
    for route in routes:
        owned_pod_route = route.table_id in owned and ipaddress.IPv4Network(route.destination) in (
            networks
        )
        interface = bool(route.network_interface_id or route.instance_id)
        gateway_written = route.other_target is None and (
            route.network_interface_id in enis or (route.state == "blackhole" and interface)
        )
        assert (route in plan.deletions) == (owned_pod_route and gateway_written)


@given(routes=st.lists(_routes(), max_size=30), enis=st.sets(_enis, max_size=3))
def test_planning_the_remainder_again_deletes_nothing(routes: list[Route], enis: set[str]) -> None:
    """Idempotence: once the planned routes are gone, a second plan has nothing to delete."""
    args: dict[str, Any] = {"owned_tables": [OWNED], "pod_cidrs": [POD], "gateway_enis": enis}
    first = plan_route_cleanup(routes, **args)
    remaining = [r for r in routes if r not in first.deletions]
    assert plan_route_cleanup(remaining, **args).deletions == ()


# --- Active-active ---------------------------------------------------------------------------


def test_active_active_shard_prefixes_are_the_gateways_routes_too() -> None:
    """In active-active mode any prefix inside a pod CIDR may be a shard route (the equal cut's
    /18s, another shard count's /17, a spread's /23): each goes when it points at a gateway
    ENI; the whole /16 still counts (the mode may have been switched)."""
    quarters = [str(p) for p in ipaddress.IPv4Network(POD).subnets(prefixlen_diff=2)]
    routes = [
        *(Route(OWNED, q, "active", network_interface_id=GW_ENI) for q in quarters),
        Route(OWNED, POD, "blackhole", network_interface_id="eni-gone"),
        Route(OWNED, "10.85.0.0/17", "active", network_interface_id=GW_ENI),  # 2 shards' cut
        Route(OWNED, "10.85.16.0/23", "active", network_interface_id=GW_ENI),  # a spread's
        Route(OWNED, "10.85.64.0/18", "active", other_target="tgw-1"),  # never the gateway's
        Route(OWNED, "10.85.96.0/19", "active", network_interface_id="eni-other"),  # not ours
        Route(OWNED, "10.84.0.0/15", "active", network_interface_id=GW_ENI),  # a supernet
        Route(FOREIGN, quarters[0], "active", network_interface_id=GW_ENI),  # not owned
    ]
    plan = plan_route_cleanup(
        routes, owned_tables=[OWNED], pod_cidrs=[POD], gateway_enis=[GW_ENI], shards=4
    )
    assert sorted(r.destination for r in plan.deletions) == sorted(
        [*quarters, POD, "10.85.0.0/17", "10.85.16.0/23"]
    )
    assert [(d.route.destination, d.kind) for d in plan.kept] == [
        ("10.85.64.0/18", RouteTarget.OTHER_TARGET),
        ("10.85.96.0/19", RouteTarget.OTHER_INTERFACE),
    ]
    # Without the shard count (active-standby) the /18s are somebody else's, as before.
    standby = plan_route_cleanup(
        routes, owned_tables=[OWNED], pod_cidrs=[POD], gateway_enis=[GW_ENI]
    )
    assert [r.destination for r in standby.deletions] == [POD]


def test_a_shard_count_the_gateway_could_not_use_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match=r"^shards 6: must be a power of two"):
        plan_route_cleanup([], owned_tables=[OWNED], pod_cidrs=[POD], gateway_enis=[], shards=6)
    with pytest.raises(ValueError, match=r"^shards 8: .*10\.85\.0\.0/30 cannot be cut"):
        plan_route_cleanup(
            [], owned_tables=[OWNED], pod_cidrs=["10.85.0.0/30"], gateway_enis=[], shards=8
        )


@given(
    shards=st.sampled_from([2, 4, 8, 16]),
    pods=st.lists(st.sampled_from(["10.85.0.0/16", "10.86.0.0/20", "172.16.0.0/12"]), min_size=1),
)
def test_every_shard_route_of_the_plan_is_deleted(shards: int, pods: list[str]) -> None:
    """Whatever the address plan, every route `plan_shards` makes, pointing at a gateway ENI
    in an owned table, is deleted: nothing the active-active gateway wrote is left behind."""
    from hybrid_gateway_contract.sharding import plan_shards

    networks = sorted({ipaddress.IPv4Network(p) for p in pods})
    vpc = [ipaddress.IPv4Network("10.0.0.0/16"), ipaddress.IPv4Network("100.64.0.0/16")]
    prefixes = [
        p for shard in plan_shards(networks, vpc, shards).shards for p in shard.pod_prefixes
    ]
    routes = [Route(OWNED, p, "active", network_interface_id=GW_ENI) for p in prefixes]
    plan = plan_route_cleanup(
        routes, owned_tables=[OWNED], pod_cidrs=pods, gateway_enis=[GW_ENI], shards=shards
    )
    assert sorted(r.destination for r in plan.deletions) == sorted(prefixes)


@given(
    shards=st.sampled_from([2, 4, 8]),
    nodes=st.integers(min_value=0, max_value=300),
)
def test_every_route_of_a_spread_is_deleted(shards: int, nodes: int) -> None:
    """The forward prefixes that follow the allocated node CIDRs are all the gateway's."""
    from hybrid_gateway_contract.spread import spread_pod_prefixes

    pod = ipaddress.IPv4Network(POD)
    allocated = [str(n) for n, _ in zip(pod.subnets(new_prefix=25), range(nodes), strict=False)]
    spread = spread_pod_prefixes([pod], allocated, shards, route_budget=49)
    prefixes = [p for shard in spread.prefixes for p in shard]
    routes = [Route(OWNED, p, "active", network_interface_id=GW_ENI) for p in prefixes]
    plan = plan_route_cleanup(
        routes, owned_tables=[OWNED], pod_cidrs=[POD], gateway_enis=[GW_ENI], shards=shards
    )
    assert sorted(r.destination for r in plan.deletions) == sorted(prefixes)
