"""Active-active: each shard as the cluster and the VPC show it (pure), for status and preflight.

A shard's owner is whoever holds its Lease (`<lease>-shard-<i>`); its routes are its pod
prefixes in every owned table, each meant to target the owner's primary ENI, and its VTEP
endpoints are meant to point at the owner's node IP with the MAC the owner's device derives
from it (leader/shards.py and leader/vtep.py write them so). The plan itself is the contract's
(`Facts.shard_plan`), never re-derived here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.core.routes import TargetKind
from hybrid_gateway_contract.sharding import ShardPlan, shard_lease_name

from .facts import Facts, GatewayInstance, GatewayPod, GroupLease

OWNER = "owner"
OTHER_GATEWAY = "other gateway"
NOT_A_GATEWAY = "not a gateway"
BLACKHOLE = "blackhole"
ABSENT = "absent"
TABLE_NOT_FOUND = "table not found"
WRONG_MAC = "owner, wrong mac"
WRONG_CIDR = "wrong cidr"
NO_RUNNING_HOLDER = "no running holder"


@dataclass(frozen=True)
class RouteView:
    table_id: str
    destination: str
    target: str | None
    points_at: str


@dataclass(frozen=True)
class EndpointView:
    name: str
    cidr: str  # the plan's
    tunnel_endpoint: str | None
    mac: str | None
    points_at: str


@dataclass(frozen=True)
class ShardStatus:
    """One shard as the operations commands report it: its Lease, holder, routes, endpoints."""

    index: int
    pod_prefixes: tuple[str, ...]
    lease_name: str
    lease: GroupLease | None
    lease_state: str  # live | expired | released | absent
    holder_pod: GatewayPod | None  # None: no holder, or the holder is no gateway pod (gone)
    instance: GatewayInstance | None
    routes: tuple[RouteView, ...]
    endpoints: tuple[EndpointView, ...]

    @property
    def holder(self) -> str | None:
        return self.lease.lease.holder if self.lease is not None else None


def route_points_at(
    facts: Facts,
    table_id: str,
    destination: str,
    owner_eni: str | None,
    *,
    owner: str,
    other: str,
    foreign_interface: str | None,
) -> RouteView:
    """Where the route to `destination` in `table_id` points: `owner` (at `owner_eni`), `other`
    (another gateway ENI), blackhole, absent, or the target's kind (`foreign_interface`, when
    given, names a live ENI or instance that is no gateway's)."""
    table = facts.table(table_id)
    route = next((r for r in table.routes if r.destination == destination), None) if table else None
    if table is None:
        return RouteView(table_id, destination, None, TABLE_NOT_FOUND)
    if route is None:
        return RouteView(table_id, destination, None, ABSENT)
    target = route.target_id or None
    gateway_enis = {i.primary_eni for i in facts.instances}
    if facts.route_gone(route):
        state = BLACKHOLE
    elif owner_eni is not None and route.target_id == owner_eni:
        state = owner
    elif route.target_id in gateway_enis:
        state = other
    elif foreign_interface is not None and route.kind in (
        TargetKind.NETWORK_INTERFACE,
        TargetKind.INSTANCE,
    ):
        state = foreign_interface
    else:
        state = route.kind.value
    return RouteView(table_id, destination, target, state)


def _endpoint(facts: Facts, name: str, cidr: str, holder: GatewayPod | None) -> EndpointView:
    found = next((e for e in facts.vtep_endpoints or () if e.name == name), None)
    if found is None:
        return EndpointView(name, cidr, None, None, ABSENT)
    gateway_ips = {p.host_ip for p in facts.pods if p.host_ip}
    if found.cidr != cidr:
        state = WRONG_CIDR
    elif holder is None or not holder.host_ip:
        state = NO_RUNNING_HOLDER if found.tunnel_endpoint not in gateway_ips else OTHER_GATEWAY
    elif found.tunnel_endpoint == holder.host_ip:
        state = OWNER if found.mac.lower() == vxlan_device_mac(holder.host_ip) else WRONG_MAC
    elif found.tunnel_endpoint in gateway_ips:
        state = OTHER_GATEWAY
    else:
        state = NOT_A_GATEWAY
    return EndpointView(name, cidr, found.tunnel_endpoint, found.mac, state)


def shard_statuses(facts: Facts, plan: ShardPlan) -> list[ShardStatus]:
    settings = facts.settings
    assert settings is not None
    views: list[ShardStatus] = []
    for shard in plan.shards:
        lease = facts.shard_leases.get(shard.index)
        holder = facts.pod(lease.lease.holder) if lease is not None else None
        instance = facts.instance_of(holder)
        owner_eni = instance.primary_eni if instance is not None else None
        routes = tuple(
            route_points_at(
                facts,
                table_id,
                prefix,
                owner_eni,
                owner=OWNER,
                other=OTHER_GATEWAY,
                foreign_interface=NOT_A_GATEWAY,
            )
            for table_id in settings.route_table_ids
            for prefix in shard.pod_prefixes
        )
        views.append(
            ShardStatus(
                index=shard.index,
                pod_prefixes=shard.pod_prefixes,
                lease_name=shard_lease_name(settings.lease_name, shard.index),
                lease=lease,
                lease_state=lease.state(facts.now) if lease is not None else ABSENT,
                holder_pod=holder,
                instance=instance,
                routes=routes,
                endpoints=tuple(
                    _endpoint(facts, name, cidr, holder) for name, cidr in shard.vtep_endpoints
                ),
            )
        )
    return views


def live_members(facts: Facts) -> list[GroupLease]:
    return [m for m in facts.member_leases if m.live(facts.now)]
