"""Which VPC routes a removed gateway leaves behind, and which of them may be deleted.

Pure planning, no I/O: the construct's deletion custom resource and the `hybrid-gateway cleanup`
command both describe the route tables and the gateway instances themselves, then ask this
module what to delete. One rule for both, so they can never disagree:

A route is deleted only if its table is owned, its destination is one of the remote pod
networks or, in active-active mode, any prefix inside one (the forward prefixes follow the
allocated node CIDRs: `spread.spread_pod_prefixes`), and
it either targets an ENI of a gateway node or is a blackhole whose target was a
network interface or instance (a gateway node that is already gone). A route to anything else
(transit gateway, virtual private gateway, peering, NAT, another instance's ENI) is never
touched, blackhole or not: somebody else owns it.

Input shapes are those of EC2 `DescribeRouteTables` and `DescribeInstances` (botocore's
parsed replies): `RouteTables[].Routes[]` carry `DestinationCidrBlock`, `State`
(`active` | `blackhole`) and one target key each.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_gateway_contract.sharding import ShardSetting, shard_plan_problems, shard_pod_prefixes

#: Route keys that name a target other than an instance or its network interface.
_OTHER_TARGET_KEYS = (
    "GatewayId",
    "NatGatewayId",
    "TransitGatewayId",
    "VpcPeeringConnectionId",
    "EgressOnlyInternetGatewayId",
    "CarrierGatewayId",
    "LocalGatewayId",
    "CoreNetworkArn",
)


class RouteTarget(enum.Enum):
    """What a pod-network route points at, from the gateway's point of view."""

    GATEWAY_ENI = "gateway-eni"  # an ENI of a gateway node: the gateway wrote it
    BLACKHOLE_INTERFACE = "blackhole-interface"  # an ENI/instance that no longer exists
    OTHER_INTERFACE = "other-interface"  # a live ENI/instance that is not a gateway node
    OTHER_TARGET = "other-target"  # TGW, VGW, peering, NAT...: never the gateway's


@dataclass(frozen=True)
class Route:
    """One IPv4 route of one route table, reduced to what the planner needs."""

    table_id: str
    destination: str
    state: str
    network_interface_id: str | None = None
    instance_id: str | None = None
    other_target: str | None = None

    @property
    def target(self) -> str:
        """The target as EC2 names it, for logs."""
        return self.network_interface_id or self.instance_id or self.other_target or "unknown"


@dataclass(frozen=True)
class RouteDecision:
    """A route to a remote pod network in an owned table, and what to do with it."""

    route: Route
    kind: RouteTarget

    @property
    def delete(self) -> bool:
        return self.kind in (RouteTarget.GATEWAY_ENI, RouteTarget.BLACKHOLE_INTERFACE)

    def describe(self) -> str:
        route = self.route
        verb = "delete" if self.delete else "keep"
        return (
            f"{verb} {route.table_id} {route.destination} -> {route.target} "
            f"({self.kind.value}, state {route.state})"
        )


@dataclass(frozen=True)
class CleanupPlan:
    """Every pod-network route found in the owned tables, split by the decision."""

    decisions: tuple[RouteDecision, ...]

    @property
    def deletions(self) -> tuple[Route, ...]:
        return tuple(d.route for d in self.decisions if d.delete)

    @property
    def kept(self) -> tuple[RouteDecision, ...]:
        return tuple(d for d in self.decisions if not d.delete)


def routes_from_describe(route_tables: Iterable[Mapping[str, Any]]) -> list[Route]:
    """IPv4 routes of a `DescribeRouteTables` reply (`RouteTables`); IPv6/prefix lists skipped."""
    routes: list[Route] = []
    for table in route_tables:
        table_id = str(table["RouteTableId"])
        for raw in table.get("Routes", []):
            destination = raw.get("DestinationCidrBlock")
            if not destination:
                continue
            other = next((str(raw[k]) for k in _OTHER_TARGET_KEYS if raw.get(k)), None)
            routes.append(
                Route(
                    table_id=table_id,
                    destination=str(destination),
                    state=str(raw.get("State", "active")),
                    network_interface_id=raw.get("NetworkInterfaceId"),
                    instance_id=raw.get("InstanceId"),
                    other_target=other,
                )
            )
    return routes


def gateway_eni_ids(reservations: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Every network interface of the instances in a `DescribeInstances` reply (`Reservations`)."""
    return frozenset(
        str(eni["NetworkInterfaceId"])
        for reservation in reservations
        for instance in reservation.get("Instances", [])
        for eni in instance.get("NetworkInterfaces", [])
        if eni.get("NetworkInterfaceId")
    )


def classify(route: Route, gateway_enis: frozenset[str]) -> RouteTarget:
    """What `route` points at. Other targets win: EC2 routes carry one target, but a route to a
    gateway load balancer endpoint, say, must never be read as the gateway's."""
    if route.other_target:
        return RouteTarget.OTHER_TARGET
    if route.network_interface_id in gateway_enis:
        return RouteTarget.GATEWAY_ENI
    if route.state == "blackhole" and (route.network_interface_id or route.instance_id):
        return RouteTarget.BLACKHOLE_INTERFACE
    if route.network_interface_id or route.instance_id:
        return RouteTarget.OTHER_INTERFACE
    return RouteTarget.OTHER_TARGET


def _networks(field: str, cidrs: Sequence[str]) -> frozenset[ipaddress.IPv4Network]:
    networks: set[ipaddress.IPv4Network] = set()
    for index, cidr in enumerate(cidrs):
        try:
            networks.add(ipaddress.IPv4Network(cidr))
        except ValueError as exc:
            raise ValueError(f"{field}[{index}]: {cidr!r} is not an IPv4 CIDR ({exc})") from None
    return frozenset(networks)


def _shard_prefixes(
    networks: frozenset[ipaddress.IPv4Network], shards: int
) -> frozenset[ipaddress.IPv4Network]:
    """The active-active routes of these pod networks: every shard's prefixes."""
    pods = sorted(networks)
    # Only the cut matters here; the route quota is the gateway's concern, not the cleanup's.
    problems = [
        p for p in shard_plan_problems(pods, [], shards) if p.setting is ShardSetting.SHARDS
    ]
    if problems:
        raise ValueError(problems[0].message)  # "shards <n>: ..."
    return frozenset(
        ipaddress.IPv4Network(prefix)
        for prefixes in shard_pod_prefixes(pods, shards)
        for prefix in prefixes
    )


def _same_network(destination: str, networks: frozenset[ipaddress.IPv4Network]) -> bool:
    try:
        return ipaddress.IPv4Network(destination) in networks
    except ValueError:
        return False


def _inside(destination: str, networks: frozenset[ipaddress.IPv4Network]) -> bool:
    try:
        net = ipaddress.IPv4Network(destination)
    except ValueError:
        return False
    return any(net.subnet_of(pod) for pod in networks)


def plan_route_cleanup(
    routes: Iterable[Route],
    *,
    owned_tables: Iterable[str],
    pod_cidrs: Sequence[str],
    gateway_enis: Iterable[str],
    shards: int | None = None,
) -> CleanupPlan:
    """Decide, for every route to a pod CIDR in an owned table, whether it goes.

    Only exact destinations count (`10.85.0.0/16`, the route the gateway writes); a route to a
    subnet or supernet of a pod CIDR is somebody else's. With `shards` (active-active mode),
    every prefix inside a pod CIDR counts too: the forward prefixes follow the allocated node
    CIDRs (`spread.spread_pod_prefixes`), so any sub-prefix may be a shard route (the equal
    cut's `10.85.0.0/18` ... `10.85.192.0/18` for 4 among them), and the whole pod CIDRs still
    are: the mode may have been switched. Whatever the destination, only a route to a gateway
    ENI or a blackhole of an interface is deleted.
    """
    if not pod_cidrs:
        raise ValueError("pod_cidrs: at least one remote pod network is required, got []")
    networks = _networks("pod_cidrs", pod_cidrs)
    inside: frozenset[ipaddress.IPv4Network] = frozenset()
    if shards is not None:
        _shard_prefixes(networks, shards)  # validates the shard count against the pod networks
        inside = networks
    tables = frozenset(owned_tables)
    enis = frozenset(gateway_enis)
    decisions = [
        RouteDecision(route, classify(route, enis))
        for route in routes
        if route.table_id in tables
        and (_same_network(route.destination, networks) or _inside(route.destination, inside))
    ]
    decisions.sort(key=lambda d: (d.route.table_id, d.route.destination))
    return CleanupPlan(tuple(decisions))
