"""`cleanup`: what the gateway leaves behind after an uninstall (pure planning).

Which routes go is decided by the planner the construct's deletion custom resource uses too
(`hybrid_gateway_contract.route_cleanup`): in the owned tables, routes to the pod CIDRs (and,
in active-active mode, to their shard prefixes: the planner's `shards`) that target a gateway ENI
or are blackholes of a vanished interface; routes to anything else are never touched. Plus the
CiliumVTEPConfig the leader (or the shard owners) published.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from hybrid_gateway_contract import CILIUM_GROUP, VTEP_CONFIG_NAME, VTEP_CONFIGS_PLURAL
from hybrid_gateway_contract.route_cleanup import CleanupPlan as RoutePlan
from hybrid_gateway_contract.route_cleanup import Route, RouteTarget, classify, plan_route_cleanup

from .facts import Facts


@dataclass(frozen=True)
class CleanupPlan:
    routes: RoutePlan
    delete_vtep_config: bool
    # Gateway-looking routes to a prefix INSIDE a pod CIDR that the plan does not cover: the
    # shard routes of an active-active gateway when the mode is not known (no Deployment, no
    # --mode/--shards). Kept, but named, so they are never left behind silently.
    unplanned: tuple[Route, ...] = ()


def plan_cleanup(facts: Facts, *, shard_routes_only: bool = False) -> CleanupPlan:
    """In active-active mode the planner is given the shard count, so every prefix inside a pod
    CIDR counts as the gateway's destination too (the forward prefixes follow the allocated
    node CIDRs, so any sub-prefix may be a shard route). `shard_routes_only`: just those, for a
    switch back to active-standby, whose leader owns the whole pod CIDR routes and the
    CiliumVTEPConfig. Raises ValueError naming a shard count the pod CIDRs cannot be cut into."""
    settings = facts.settings
    assert settings is not None and settings.pod_cidrs
    shards = settings.shards if settings.active_active else None
    if shard_routes_only:
        if shards is None:
            raise ValueError("no shard count: not in active-active mode")
        networks = {ipaddress.IPv4Network(c, strict=False) for c in settings.pod_cidrs}
        every = plan_route_cleanup(
            facts.owned_routes,
            owned_tables=settings.route_table_ids,
            pod_cidrs=settings.pod_cidrs,
            gateway_enis=facts.gateway_enis,
            shards=shards,
        )
        routes = RoutePlan(
            tuple(
                d
                for d in every.decisions
                if ipaddress.IPv4Network(d.route.destination) not in networks
            )
        )
    else:
        routes = plan_route_cleanup(
            facts.owned_routes,
            owned_tables=settings.route_table_ids,
            pod_cidrs=settings.pod_cidrs,
            gateway_enis=facts.gateway_enis,
            shards=shards,
        )
    planned = {(d.route.table_id, d.route.destination) for d in routes.decisions}
    pod_networks = [ipaddress.IPv4Network(c, strict=False) for c in settings.pod_cidrs]
    unplanned = tuple(
        route
        for route in facts.owned_routes
        if route.table_id in settings.route_table_ids
        and (route.table_id, route.destination) not in planned
        and _inside(route.destination, pod_networks)
        and classify(route, facts.gateway_enis)
        in (RouteTarget.GATEWAY_ENI, RouteTarget.BLACKHOLE_INTERFACE)
    )
    return CleanupPlan(
        routes, facts.vtep_endpoints is not None and not shard_routes_only, unplanned
    )


def _inside(destination: str, networks: list[ipaddress.IPv4Network]) -> bool:
    try:
        network = ipaddress.IPv4Network(destination)
    except ValueError:
        return False
    return any(network != n and network.subnet_of(n) for n in networks)


UNPLANNED_HINT = (
    "inside a pod CIDR, not planned: a shard route of an active-active gateway? run again with "
    "--mode active-active --shards <SHARDS> to remove it"
)


Failures = dict[str, str]  # what failed (route_key / VTEP_KEY) -> why
VTEP_KEY = f"{VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}/{VTEP_CONFIG_NAME}"


def route_key(table_id: str, destination: str) -> str:
    return f"{table_id} {destination}"


def plan_lines(plan: CleanupPlan, *, applied: Failures | None = None) -> list[str]:
    """One line per decision: `would delete` (dry run, `applied` None), `deleted` or
    `FAILED to delete ... (why)` once carried out, `keep` for what is not ours."""

    def done(key: str, text: str) -> str:
        if applied is None:
            return f"would delete {text}"
        if key in applied:
            return f"FAILED to delete {text}: {applied[key]}"
        return f"deleted {text}"

    lines = []
    for decision in plan.routes.decisions:
        route = decision.route
        text = decision.describe().split(" ", 1)[1]  # without the planner's own verb
        if decision.delete:
            lines.append(done(route_key(route.table_id, route.destination), text))
        else:
            lines.append(f"keep {text}")
    if plan.delete_vtep_config:
        lines.append(done(VTEP_KEY, VTEP_KEY))
    lines.extend(
        f"keep {r.table_id} {r.destination} -> {r.target} ({UNPLANNED_HINT})"
        for r in plan.unplanned
    )
    if not plan.routes.deletions and not plan.delete_vtep_config:
        lines.append("nothing to clean up")
    return lines


def plan_json(plan: CleanupPlan, *, applied: Failures | None = None) -> str:
    def outcome(key: str) -> str:
        if applied is None:
            return "would delete"
        return "failed" if key in applied else "deleted"

    body: dict[str, Any] = {
        "dryRun": applied is None,
        "routes": [
            {
                "routeTableId": d.route.table_id,
                "destination": d.route.destination,
                "target": d.route.target,
                "state": d.route.state,
                "kind": d.kind.value,
                "action": "delete" if d.delete else "keep",
                "outcome": outcome(route_key(d.route.table_id, d.route.destination))
                if d.delete
                else "kept",
            }
            for d in plan.routes.decisions
        ],
        "deleteVtepConfig": plan.delete_vtep_config,
        "errors": dict(applied or {}),
    }
    if plan.unplanned:  # named only when there are any: the usual report keeps its shape
        body["unplannedInsidePodCidrs"] = [
            {"routeTableId": r.table_id, "destination": r.destination, "target": r.target}
            for r in plan.unplanned
        ]
    return json.dumps(body, indent=2)
