"""Routes of an earlier cut of the remote pod networks, and which of them a writer removes, pure.

A VPC route table sends a packet by its most specific matching route ("Route priority",
Amazon VPC user guide: longest prefix match), so routes left behind by an earlier cut keep
deciding the path: after the shard count goes from 4 to 2, the old /18s beat the new /17s;
after a switch back to active-standby, every shard route beats the leader's whole pod network.

The rule (one for both modes): a route is stale when its table is owned, it is static (not
propagated), its destination lies strictly inside one of the remote pod networks, it is not one
of the writer's current routes, and it points at a network interface or an instance (blackhole
or not). Why that is safe to delete: the remote pod networks are the hybrid pods' addresses,
reachable from the VPC only through a gateway; a route inside them to an instance's ENI is a
gateway's cut (no other instance could deliver to an on-premises pod), while a route to a
transit gateway, virtual private gateway, peering connection or anything else is somebody's
deliberate design (a site reached over VPN) and is never touched. Each stale route has exactly
one remover: the writer whose current route holds the stale route's first address (the leader,
in active-standby; the owner of that shard, in active-active), so two writers never race to
delete the same route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence

from hybrid_gateway.core.routes import ObservedRoute, RouteKey, TargetKind

_INTERFACE_KINDS = (TargetKind.NETWORK_INTERFACE, TargetKind.INSTANCE)


def stale_routes(
    tables: Mapping[str, Iterable[ObservedRoute]],
    table_ids: Sequence[str],
    pod_cidrs: Sequence[str],
    *,
    current: Collection[str],
    owned: Sequence[str],
) -> tuple[tuple[RouteKey, ObservedRoute], ...]:
    """The stale routes (see the module docstring) whose first address lies in one of `owned`
    (the writer's own current routes); `current` is every route of the writer's plan."""
    pods = [ipaddress.IPv4Network(c) for c in pod_cidrs]
    mine = [ipaddress.IPv4Network(c) for c in owned]
    out: list[tuple[RouteKey, ObservedRoute]] = []
    for table_id in table_ids:
        for route in tables.get(table_id, ()):
            if route.propagated or route.destination in current:
                continue
            if route.kind not in _INTERFACE_KINDS:
                continue
            try:
                network = ipaddress.IPv4Network(route.destination)
            except ValueError:
                continue  # an IPv6 or malformed destination: not a cut of ours
            inside = any(network != pod and network.subnet_of(pod) for pod in pods)
            if inside and any(network.network_address in prefix for prefix in mine):
                out.append((RouteKey(table_id, route.destination), route))
    return tuple(out)


def stale_in(
    tables: Mapping[str, Iterable[ObservedRoute]],
    table_ids: Sequence[str],
    pod_cidrs: Sequence[str],
) -> tuple[tuple[RouteKey, ObservedRoute], ...]:
    """Every route more specific than a whole remote pod network that points at an interface:
    what an active-standby leader removes, and what `status`/`preflight` report while it is
    still there."""
    return stale_routes(tables, table_ids, pod_cidrs, current=pod_cidrs, owned=pod_cidrs)
