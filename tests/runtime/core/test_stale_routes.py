"""Which routes of an earlier cut a writer deletes (core/stale_routes.py)."""

from __future__ import annotations

from hybrid_gateway.core.routes import ObservedRoute, RouteKey, TargetKind
from hybrid_gateway.core.stale_routes import stale_in, stale_routes

PODS = ["10.80.0.0/16"]
ENI = TargetKind.NETWORK_INTERFACE


def eni(destination: str, target: str = "eni-old", **kw: bool) -> ObservedRoute:
    return ObservedRoute(destination, ENI, target, **kw)


def test_after_four_to_two_each_new_owner_deletes_the_old_routes_inside_its_prefix() -> None:
    old = [eni(p) for p in ("10.80.0.0/18", "10.80.64.0/18", "10.80.128.0/18", "10.80.192.0/18")]
    new = [eni("10.80.0.0/17", "eni-a"), eni("10.80.128.0/17", "eni-b")]
    tables = {"rtb-1": [*old, *new]}
    current = {"10.80.0.0/17", "10.80.128.0/17"}
    first = stale_routes(tables, ["rtb-1"], PODS, current=current, owned=["10.80.0.0/17"])
    second = stale_routes(tables, ["rtb-1"], PODS, current=current, owned=["10.80.128.0/17"])
    assert [k.destination for k, _r in first] == ["10.80.0.0/18", "10.80.64.0/18"]
    assert [k.destination for k, _r in second] == ["10.80.128.0/18", "10.80.192.0/18"]


def test_after_two_to_four_a_coarser_old_route_has_exactly_one_remover() -> None:
    tables = {"rtb-1": [eni("10.80.0.0/17"), eni("10.80.0.0/18", "eni-a")]}
    current = {"10.80.0.0/18", "10.80.64.0/18", "10.80.128.0/18", "10.80.192.0/18"}
    removers = [
        owned
        for owned in sorted(current)
        if stale_routes(tables, ["rtb-1"], PODS, current=current, owned=[owned])
    ]
    assert removers == ["10.80.0.0/18"]  # the owner of the /17's first address


def test_only_interface_routes_strictly_inside_the_pod_networks_are_stale() -> None:
    tables = {
        "rtb-1": [
            eni("10.80.0.0/16", "eni-leader"),  # the whole network: the leader's own route
            eni("10.80.0.0/18", blackhole=True),  # a gone gateway's cut: stale
            ObservedRoute("10.80.64.0/18", TargetKind.INSTANCE, "eni-i"),  # stale
            ObservedRoute("10.80.128.0/18", TargetKind.TRANSIT_GATEWAY, "tgw-1"),  # a design
            ObservedRoute("10.80.192.0/18", TargetKind.VPN_GATEWAY, "vgw-1", propagated=True),
            eni("10.90.0.0/18"),  # outside the pod networks
            eni("10.80.1.0/24", propagated=True),  # propagated: not a static route of ours
        ],
        "rtb-2": [eni("10.80.0.0/17")],
    }
    found = stale_in(tables, ["rtb-1", "rtb-2", "rtb-missing"], PODS)
    assert [key for key, _r in found] == [
        RouteKey("rtb-1", "10.80.0.0/18"),
        RouteKey("rtb-1", "10.80.64.0/18"),
        RouteKey("rtb-2", "10.80.0.0/17"),
    ]
