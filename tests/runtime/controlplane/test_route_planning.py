"""Route planning: which routes to create, replace, leave, or refuse."""

from __future__ import annotations

from hybrid_gateway.core.routes import (
    ObservedRoute,
    RouteKey,
    TargetKind,
    classify_target,
    plan_routes,
)

ENI = "eni-0000000000000000a"
CIDR = "10.80.0.0/16"
T = "rtb-0123456789abcdef0"


def one(route: ObservedRoute | None, allow: bool = False):  # type: ignore[no-untyped-def]
    tables = {T: [route] if route else []}
    return plan_routes(tables, [T], [CIDR], ENI, allow_takeover=allow)


def test_absent_route_is_created() -> None:
    assert one(None).create == (RouteKey(T, CIDR),)


def test_our_route_is_left_in_place() -> None:
    plan = one(ObservedRoute(CIDR, TargetKind.NETWORK_INTERFACE, ENI))
    assert plan.converged and plan.in_place == (RouteKey(T, CIDR),)


def test_other_eni_and_instance_routes_are_replaced() -> None:
    for kind in (TargetKind.NETWORK_INTERFACE, TargetKind.INSTANCE):
        plan = one(ObservedRoute(CIDR, kind, "eni-0ffffffffffffffff"))
        assert plan.replace == (RouteKey(T, CIDR),)


def test_instance_route_to_our_eni_is_ours() -> None:
    kind, target = classify_target(network_interface_id=ENI, instance_id="i-0123456789abcdef0")
    assert kind is TargetKind.INSTANCE
    assert one(ObservedRoute(CIDR, kind, target)).converged


def test_blackhole_routes_are_replaced_whatever_they_targeted() -> None:
    for kind, target in (
        (TargetKind.NETWORK_INTERFACE, ENI),
        (TargetKind.TRANSIT_GATEWAY, "tgw-1"),
    ):
        plan = one(ObservedRoute(CIDR, kind, target, blackhole=True))
        assert plan.replace == (RouteKey(T, CIDR),)
        assert not plan.refused


def test_gateway_routes_are_refused_without_takeover() -> None:
    cases = {
        "tgw": classify_target(transit_gateway_id="tgw-0123"),
        "vgw": classify_target(gateway_id="vgw-0123"),
        "igw": classify_target(gateway_id="igw-0123"),
        "nat": classify_target(nat_gateway_id="nat-0123"),
        "pcx": classify_target(peering_id="pcx-0123"),
    }
    for name, (kind, target) in cases.items():
        plan = one(ObservedRoute(CIDR, kind, target))
        assert plan.refused and not plan.writes, name
        assert plan.refused[0].target_id == target
        assert "not replaced" in plan.refused[0].describe()


def test_gateway_routes_are_replaced_with_takeover() -> None:
    kind, target = classify_target(transit_gateway_id="tgw-0123")
    plan = one(ObservedRoute(CIDR, kind, target), allow=True)
    assert plan.replace == (RouteKey(T, CIDR),) and not plan.refused


def test_local_route_is_never_replaced() -> None:
    kind, target = classify_target(gateway_id="local")
    assert kind is TargetKind.LOCAL
    assert one(ObservedRoute(CIDR, kind, target), allow=True).refused


def test_every_table_and_cidr_is_planned_and_missing_tables_skipped() -> None:
    tables = {
        "rtb-a": [ObservedRoute("10.80.0.0/16", TargetKind.NETWORK_INTERFACE, ENI)],
        "rtb-b": [ObservedRoute("10.81.0.0/16", TargetKind.INSTANCE, "eni-other")],
    }
    plan = plan_routes(
        tables,
        ["rtb-a", "rtb-b", "rtb-gone"],
        ["10.80.0.0/16", "10.81.0.0/16"],
        ENI,
        allow_takeover=False,
    )
    assert plan.in_place == (RouteKey("rtb-a", "10.80.0.0/16"),)
    assert set(plan.create) == {
        RouteKey("rtb-a", "10.81.0.0/16"),
        RouteKey("rtb-b", "10.80.0.0/16"),
    }
    assert plan.replace == (RouteKey("rtb-b", "10.81.0.0/16"),)
    assert all(k.table_id != "rtb-gone" for k in plan.writes)


def test_unknown_gateway_kinds_are_protected() -> None:
    kind, _ = classify_target(gateway_id="vpce-0123")
    assert kind is TargetKind.OTHER
    assert one(ObservedRoute(CIDR, kind, "vpce-0123")).refused


# Propagated routes (issue 8). DescribeRouteTables lists a virtual private gateway's propagated
# route with Origin "EnableVgwRoutePropagation"; a static route to the same destination coexists
# with it and wins ("How route priority works", Amazon VPC user guide).
PROPAGATED = ObservedRoute(CIDR, TargetKind.VPN_GATEWAY, "vgw-0123456789abcdef0", propagated=True)


def test_a_propagated_route_alone_is_ignored_and_ours_created_beside_it() -> None:
    plan = one(PROPAGATED)
    assert plan.create == (RouteKey(T, CIDR),) and plan.refused == ()


def test_a_propagated_route_does_not_hide_our_static_route() -> None:
    for routes in (
        [PROPAGATED, ObservedRoute(CIDR, TargetKind.NETWORK_INTERFACE, ENI)],
        [ObservedRoute(CIDR, TargetKind.NETWORK_INTERFACE, ENI), PROPAGATED],
    ):
        plan = plan_routes({T: routes}, [T], [CIDR], ENI, allow_takeover=False)
        assert plan.converged and plan.in_place == (RouteKey(T, CIDR),)


def test_a_static_vgw_route_is_still_refused() -> None:
    static = ObservedRoute(CIDR, TargetKind.VPN_GATEWAY, "vgw-0123456789abcdef0")
    assert one(static).refused and not one(static).writes


def test_origin_is_read_from_the_describe_reply() -> None:
    from hybrid_gateway.adapters.ec2 import _observed

    route = _observed(
        {
            "DestinationCidrBlock": CIDR,
            "GatewayId": "vgw-0123456789abcdef0",
            "Origin": "EnableVgwRoutePropagation",
            "State": "active",
        }
    )
    assert route.propagated and route.kind is TargetKind.VPN_GATEWAY
    static = _observed(
        {"DestinationCidrBlock": CIDR, "GatewayId": "vgw-1", "Origin": "CreateRoute"}
    )
    assert not static.propagated
