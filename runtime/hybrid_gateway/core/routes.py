"""VPC route ownership planning, pure.

Given what the route tables hold for each hybrid pod CIDR, decide which routes to create, which
to replace so they target our primary ENI, and which to leave alone because they point at a
gateway the operator has not allowed us to take over (a transit gateway route to the same CIDR
is usually somebody's deliberate design; silently replacing it, as the reference does, can cut
off a whole site).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network


class TargetKind(enum.Enum):
    """What a route points at, as far as ownership is concerned."""

    NETWORK_INTERFACE = "network-interface"
    INSTANCE = "instance"
    TRANSIT_GATEWAY = "transit-gateway"
    VPN_GATEWAY = "virtual-private-gateway"
    INTERNET_GATEWAY = "internet-gateway"
    EGRESS_ONLY_INTERNET_GATEWAY = "egress-only-internet-gateway"
    NAT_GATEWAY = "nat-gateway"
    PEERING = "vpc-peering-connection"
    LOCAL = "local"
    OTHER = "other"  # carrier/local gateway, core network, endpoints: never ours to guess about


# Routes to these are only replaced when the operator allowed takeover.
PROTECTED_KINDS = frozenset(
    {
        TargetKind.TRANSIT_GATEWAY,
        TargetKind.VPN_GATEWAY,
        TargetKind.INTERNET_GATEWAY,
        TargetKind.EGRESS_ONLY_INTERNET_GATEWAY,
        TargetKind.NAT_GATEWAY,
        TargetKind.PEERING,
        TargetKind.OTHER,
    }
)


@dataclass(frozen=True)
class ObservedRoute:
    """One route as DescribeRouteTables reports it, reduced to what planning needs."""

    destination: str
    kind: TargetKind
    target_id: str  # ENI id for ENI/instance routes, else the gateway/peering id
    blackhole: bool = False
    propagated: bool = False  # Origin EnableVgwRoutePropagation: not a static route


@dataclass(frozen=True)
class RouteKey:
    table_id: str
    destination: str


@dataclass(frozen=True)
class Refusal:
    key: RouteKey
    kind: TargetKind
    target_id: str

    def describe(self) -> str:
        return (
            f"route {self.key.destination} in {self.key.table_id} targets {self.kind.value} "
            f"{self.target_id}; not replaced (takeover not allowed)"
        )


@dataclass(frozen=True)
class RoutePlan:
    """The writes that bring the tables to the desired state, and what we refuse to touch."""

    create: tuple[RouteKey, ...] = ()
    replace: tuple[RouteKey, ...] = ()
    refused: tuple[Refusal, ...] = ()
    in_place: tuple[RouteKey, ...] = field(default=())

    @property
    def writes(self) -> tuple[RouteKey, ...]:
        return self.create + self.replace

    @property
    def converged(self) -> bool:
        return not self.create and not self.replace


def classify_target(
    *,
    network_interface_id: str | None = None,
    instance_id: str | None = None,
    gateway_id: str | None = None,
    transit_gateway_id: str | None = None,
    nat_gateway_id: str | None = None,
    peering_id: str | None = None,
    egress_only_gateway_id: str | None = None,
) -> tuple[TargetKind, str]:
    """Map the EC2 API's target fields of a route to a kind and an id.

    An instance route also carries the instance's ENI id; the ENI id is what we compare with.
    The `GatewayId` field holds internet gateways (`igw-`), virtual private gateways (`vgw-`),
    the `local` route and gateway endpoints (`vpce-`).
    """
    if network_interface_id:
        kind = TargetKind.INSTANCE if instance_id else TargetKind.NETWORK_INTERFACE
        return kind, network_interface_id
    if instance_id:
        return TargetKind.INSTANCE, instance_id
    if transit_gateway_id:
        return TargetKind.TRANSIT_GATEWAY, transit_gateway_id
    if nat_gateway_id:
        return TargetKind.NAT_GATEWAY, nat_gateway_id
    if peering_id:
        return TargetKind.PEERING, peering_id
    if egress_only_gateway_id:
        return TargetKind.EGRESS_ONLY_INTERNET_GATEWAY, egress_only_gateway_id
    if gateway_id:
        if gateway_id == "local":
            return TargetKind.LOCAL, gateway_id
        if gateway_id.startswith("igw-"):
            return TargetKind.INTERNET_GATEWAY, gateway_id
        if gateway_id.startswith("vgw-"):
            return TargetKind.VPN_GATEWAY, gateway_id
        return TargetKind.OTHER, gateway_id
    return TargetKind.OTHER, ""


def plan_routes(
    tables: Mapping[str, Iterable[ObservedRoute]],
    table_ids: Sequence[str],
    pod_cidrs: Sequence[str],
    eni_id: str,
    *,
    allow_takeover: bool,
) -> RoutePlan:
    """Plan every (table, pod CIDR) so the route targets `eni_id`.

    `tables` holds the observed routes of each table; a table in `table_ids` that is absent from
    it is skipped (the caller reports it). Propagated routes (a virtual private gateway's, origin
    `EnableVgwRoutePropagation`) are ignored: a static route to the same destination coexists
    with them and wins ("How route priority works", Amazon VPC user guide: static routes take
    priority over propagated routes with the same destination), so ours is created beside them
    and nothing the VPN/Direct Connect side propagates is refused or replaced. Rules per route:
    absent -> create; ours and active -> in place; blackhole, another ENI or instance -> replace;
    local -> refuse always (cannot be replaced); any gateway/peering -> replace only when
    `allow_takeover`, else refuse.
    """
    create: list[RouteKey] = []
    replace: list[RouteKey] = []
    refused: list[Refusal] = []
    in_place: list[RouteKey] = []
    for table_id in table_ids:
        if table_id not in tables:
            continue
        by_destination = {r.destination: r for r in tables[table_id] if not r.propagated}
        for cidr in pod_cidrs:
            key = RouteKey(table_id, cidr)
            route = by_destination.get(cidr)
            if route is None:
                create.append(key)
            elif route.blackhole:
                replace.append(key)
            elif route.kind in (TargetKind.NETWORK_INTERFACE, TargetKind.INSTANCE):
                (in_place if route.target_id == eni_id else replace).append(key)
            elif route.kind is TargetKind.LOCAL:
                refused.append(Refusal(key, route.kind, route.target_id))
            elif allow_takeover:
                replace.append(key)
            else:
                refused.append(Refusal(key, route.kind, route.target_id))
    return RoutePlan(tuple(create), tuple(replace), tuple(refused), tuple(in_place))


def plan_retired_routes(
    tables: Mapping[str, Iterable[ObservedRoute]],
    table_ids: Sequence[str],
    pod_cidrs: Sequence[IPv4Network],
    planned: Sequence[str],
    mine: Sequence[str],
) -> tuple[tuple[RouteKey, ...], tuple[RouteKey, ...]]:
    """The routes a shard owner deletes after the forward prefixes moved (active-active).

    A route is retired when its destination lies strictly inside a pod CIDR (the pod CIDR
    itself is active-standby's route, never a shard's), it is in no shard's `planned`
    prefixes, it points at an ENI or instance (or is a blackhole of one: the gateway that
    held it is gone), and its first address falls in one of `mine` (this shard's prefixes):
    so exactly one owner deletes each. It is deleted only once every planned prefix that
    overlaps it is in the table, pointing at an ENI and not a blackhole, so no address of it
    is ever left without a live route. Routes to gateways, peering and the like are never
    touched, nor propagated routes. Returns (deletable now, retired but still covered only
    by themselves).
    """
    planned_nets = [ip_network(p) for p in planned]
    planned_set = set(planned)
    mine_nets = [ip_network(p) for p in mine]
    retired: list[RouteKey] = []
    waiting: list[RouteKey] = []
    for table_id in table_ids:
        if table_id not in tables:
            continue
        routes = [r for r in tables[table_id] if not r.propagated]
        live = {
            r.destination
            for r in routes
            if not r.blackhole and r.kind in (TargetKind.NETWORK_INTERFACE, TargetKind.INSTANCE)
        }
        for route in routes:
            if route.destination in planned_set:
                continue
            if route.kind not in (TargetKind.NETWORK_INTERFACE, TargetKind.INSTANCE):
                continue
            try:
                destination = ip_network(route.destination)
            except ValueError:
                continue
            if not any(
                destination != pod and destination.subnet_of(pod)
                for pod in pod_cidrs
                if destination.version == pod.version
            ):
                continue
            if not any(destination.network_address in net for net in mine_nets):
                continue
            covering = [str(p) for p in planned_nets if p.overlaps(destination)]
            key = RouteKey(table_id, route.destination)
            (retired if all(p in live for p in covering) else waiting).append(key)
    return tuple(retired), tuple(waiting)
