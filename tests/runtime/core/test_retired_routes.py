"""Retiring shard routes after the forward prefixes moved (core/routes.plan_retired_routes)."""

from __future__ import annotations

from ipaddress import IPv4Network

from hybrid_gateway.core.routes import ObservedRoute, RouteKey, TargetKind, plan_retired_routes

T = "rtb-0123456789abcdef0"
PODS = [IPv4Network("10.80.0.0/16")]
ENI_A = "eni-0000000000000000a"
ENI_B = "eni-0000000000000000b"
# the new spread: shard 0 holds 10.80.0.0/19, shard 1 the rest of the /16
SHARD_0 = ["10.80.0.0/19"]
SHARD_1 = ["10.80.32.0/19", "10.80.64.0/18", "10.80.128.0/17"]
PLANNED = SHARD_0 + SHARD_1


def eni(destination: str, target: str = ENI_A, **kw: bool) -> ObservedRoute:
    return ObservedRoute(destination, TargetKind.NETWORK_INTERFACE, target, **kw)


def retire(routes: list[ObservedRoute], mine: list[str]) -> tuple[set[str], set[str]]:
    now, waiting = plan_retired_routes({T: routes}, [T], PODS, PLANNED, mine)
    return {k.destination for k in now}, {k.destination for k in waiting}


def test_an_old_prefix_is_retired_by_the_owner_of_its_first_address_once_covered() -> None:
    old = eni("10.80.0.0/18", ENI_B)  # the equal cut's shard 0: now /19 (shard 0) + /19 (1)
    # neither replacement there yet: the old route is the only one carrying the /18
    assert retire([old], SHARD_0) == (set(), {"10.80.0.0/18"})
    # shard 0's part there, shard 1's not: still waiting (deleting would leave a hole)
    assert retire([old, eni("10.80.0.0/19")], SHARD_0) == (set(), {"10.80.0.0/18"})
    covered = [old, eni("10.80.0.0/19"), eni("10.80.32.0/19", ENI_B)]
    assert retire(covered, SHARD_0) == ({"10.80.0.0/18"}, set())
    # shard 1 does not own its first address: never its to delete
    assert retire(covered, SHARD_1) == (set(), set())


def test_a_finer_old_prefix_goes_once_its_planned_prefix_is_live() -> None:
    old = eni("10.80.64.0/20", ENI_A)
    assert retire([old], SHARD_1) == (set(), {"10.80.64.0/20"})
    assert retire([old, eni("10.80.64.0/18", ENI_B)], SHARD_1) == ({"10.80.64.0/20"}, set())
    # a blackhole replacement does not count as live
    hole = eni("10.80.64.0/18", ENI_B, blackhole=True)
    assert retire([old, hole], SHARD_1) == (set(), {"10.80.64.0/20"})


def test_a_blackhole_of_a_gone_gateway_is_retired_too() -> None:
    old = eni("10.80.128.0/18", ENI_B, blackhole=True)
    assert retire([old, eni("10.80.128.0/17")], SHARD_1) == ({"10.80.128.0/18"}, set())


def test_planned_prefixes_the_pod_cidr_itself_and_foreign_targets_are_never_retired() -> None:
    routes = [
        *(eni(p) for p in PLANNED),
        eni("10.80.0.0/16", ENI_B),  # active-standby's route: not a shard route
        ObservedRoute("10.80.192.0/18", TargetKind.TRANSIT_GATEWAY, "tgw-0123"),
        ObservedRoute("10.80.0.0/18", TargetKind.NETWORK_INTERFACE, ENI_B, propagated=True),
        ObservedRoute("10.80.0.0/17", TargetKind.LOCAL, "local"),
        eni("10.90.0.0/18"),  # outside every pod CIDR
        eni("0.0.0.0/0"),
    ]
    for mine in (SHARD_0, SHARD_1):
        assert retire(routes, mine) == (set(), set())


def test_only_the_tables_described_are_planned() -> None:
    now, waiting = plan_retired_routes(
        {T: [eni("10.80.0.0/18"), *(eni(p) for p in PLANNED)]},
        [T, "rtb-missing"],
        PODS,
        PLANNED,
        SHARD_0,
    )
    assert now == (RouteKey(T, "10.80.0.0/18"),) and waiting == ()
