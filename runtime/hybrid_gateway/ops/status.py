"""`status`: the gateway's state during an incident, from gathered facts (pure)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .facts import Facts, GroupLease, leftover_shard_routes
from .shards import (
    ABSENT,
    TABLE_NOT_FOUND,
    ShardStatus,
    live_members,
    route_points_at,
    shard_statuses,
)

RECENT_EVENTS = 10
#: Active-active: a whole pod CIDR route at a gateway ENI, as active-standby left it. The more
#: specific shard routes win while they exist; where one is missing, this one still catches it.
LEFTOVER = "left from active-standby"


@dataclass(frozen=True)
class ReplicaScrape:
    """What a replica's own endpoints said (None: not reachable or not asked)."""

    configured: int | None = None  # hybrid_gateway_hybrid_nodes_configured
    readiness: str | None = None  # its /readyz answer


def _when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_status(facts: Facts, scraped: Mapping[str, ReplicaScrape]) -> dict[str, Any]:
    """Leader, Lease, routes, VTEP config, replicas (hybrid nodes configured and readiness from
    each replica's own endpoints when `scraped` has them, else from Kubernetes: the CiliumNode
    count and the pod's Ready condition), recent Events."""
    lease = facts.lease
    leader_instance = facts.leader_instance()
    settings = facts.settings
    active_active = facts.active_active
    routes: list[dict[str, Any]] = []
    for table_id in settings.route_table_ids if settings else ():
        for cidr in settings.pod_cidrs if settings else ():
            route = route_points_at(
                facts,
                table_id,
                cidr,
                None if leader_instance is None or active_active else leader_instance.primary_eni,
                owner="leader",
                other=LEFTOVER if active_active else "standby",
                foreign_interface=None,
            )
            if active_active and route.points_at in (ABSENT, TABLE_NOT_FOUND):
                continue  # the shard routes carry the traffic; only leftovers are news
            routes.append(
                {
                    "routeTableId": route.table_id,
                    "destination": route.destination,
                    "target": route.target,
                    "points_at": route.points_at,
                }
            )
    leader = facts.leader_pod()
    replicas = []
    for pod in facts.pods:
        own = scraped.get(pod.name, ReplicaScrape())
        replicas.append(
            {
                "pod": pod.name,
                "node": pod.node_name,
                "hostIP": pod.host_ip,
                "leader": leader is not None and pod.name == leader.name,
                "ready": pod.ready,
                "readiness": own.readiness if own.readiness is not None else pod.ready_reason,
                "readinessSource": "replica" if own.readiness is not None else "kubernetes",
                "hybridNodesConfigured": own.configured
                if own.configured is not None
                else len(facts.hybrid_nodes),
                "source": "metrics" if own.configured is not None else "kubernetes",
            }
        )
    status: dict[str, Any] = {
        "leader": lease.holder if lease else None,
        "lease": None
        if lease is None
        else {
            "holder": lease.holder,
            "ageSeconds": None
            if lease.renew_time is None
            else round(facts.time_of(lease) - lease.renew_time, 1),
            "heldForSeconds": None
            if lease.acquire_time is None
            else round(facts.time_of(lease) - lease.acquire_time, 1),
            "durationSeconds": lease.duration_s,
            "transitions": lease.transitions,
        },
        "routes": routes,
        "vtepConfig": None
        if facts.vtep_endpoints is None
        else [
            {"name": e.name, "cidr": e.cidr, "tunnelEndpoint": e.tunnel_endpoint, "mac": e.mac}
            for e in facts.vtep_endpoints
        ],
        "replicas": replicas,
        "hybridNodes": len(facts.hybrid_nodes),
        "events": [
            {
                "time": _when(e.time),
                "type": e.kind,
                "reason": e.reason,
                "object": e.involved,
                "message": e.message,
            }
            for e in facts.events[-RECENT_EVENTS:]
        ],
        "unavailable": dict(facts.unavailable),
    }
    if active_active:
        status.update(_active_active(facts, replicas))
    else:
        status["shardRoutesLeft"] = [
            {"routeTableId": table_id, "destination": r.destination, "target": r.target_id}
            for table_id in (settings.route_table_ids if settings else ())
            for r in leftover_shard_routes(facts, table_id)
        ]
    return status


def _active_active(facts: Facts, replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards, the members, and the shards each replica holds (live Leases only)."""
    settings = facts.settings
    assert settings is not None
    plan = facts.shard_plan()
    views = shard_statuses(facts, plan) if plan is not None else []
    for replica in replicas:
        replica["shards"] = [
            v.index for v in views if v.holder == replica["pod"] and v.lease_state == "live"
        ]
    leader = facts.lease
    still_leading = leader is not None and GroupLease(settings.lease_name, leader).live(facts.now)
    return {
        "mode": settings.mode.value,
        # a mode switch in progress: shards wait until the active-standby leader stops
        "activeStandbyLeader": leader.holder if leader is not None and still_leading else None,
        "shardPlan": None
        if plan is None
        else {
            "shards": plan.count,
            "routesPerTable": plan.routes_per_table(),
            "maxRoutesPerTable": settings.max_routes_per_table,
            "vtepPrefixLength": plan.vtep_prefix_length,
        },
        "shardPlanProblems": [
            *settings.setting_problems,
            *(str(p) for p in facts.shard_plan_problems()),
        ],
        "shards": [_shard_json(facts, view) for view in views],
        "members": [
            {
                "identity": m.lease.holder,
                "lease": m.name,
                "state": m.state(facts.now),
                "ageSeconds": _age(facts, m.lease.renew_time, m.lease.read_at),
            }
            for m in facts.member_leases
        ],
        "liveMembers": len(live_members(facts)),
    }


def _age(facts: Facts, epoch: float | None, read_at: float | None = None) -> float | None:
    """Seconds from `epoch` to when the object was read (`read_at`), else to `facts.now`."""
    return None if epoch is None else round((read_at or facts.now) - epoch, 1)


def _shard_json(facts: Facts, view: ShardStatus) -> dict[str, Any]:
    lease = view.lease.lease if view.lease is not None else None
    return {
        "index": view.index,
        "podPrefixes": list(view.pod_prefixes),
        "lease": {
            "name": view.lease_name,
            "holder": view.holder,
            "state": view.lease_state,
            "holderIsGatewayPod": view.holder_pod is not None,
            "ageSeconds": _age(facts, lease.renew_time, lease.read_at) if lease else None,
            "durationSeconds": lease.duration_s if lease else None,
            "transitions": lease.transitions if lease else None,
        },
        "instanceId": view.instance.instance_id if view.instance else None,
        "eni": view.instance.primary_eni if view.instance else None,
        "nodeIP": view.holder_pod.host_ip if view.holder_pod else None,
        "routes": [
            {
                "routeTableId": r.table_id,
                "destination": r.destination,
                "target": r.target,
                "points_at": r.points_at,
            }
            for r in view.routes
        ],
        "vtepEndpoints": [
            {
                "name": e.name,
                "cidr": e.cidr,
                "tunnelEndpoint": e.tunnel_endpoint,
                "mac": e.mac,
                "points_at": e.points_at,
            }
            for e in view.endpoints
        ],
    }


def status_json(status: Mapping[str, Any]) -> str:
    return json.dumps(status, indent=2)


def _mode_lines(status: Mapping[str, Any]) -> list[str]:
    """Active-active: the plan and the members, in place of the leader line."""
    plan = status["shardPlan"]
    lines = [
        "Mode:    active-active, "
        + (
            f"{plan['shards']} shards, {plan['routesPerTable']} shard routes per table "
            f"(max {plan['maxRoutesPerTable']})"
            if plan
            else "no shard plan"
        )
    ]
    lines.extend(f"  shard plan problem: {problem}" for problem in status["shardPlanProblems"])
    if status["activeStandbyLeader"]:
        lines.append(
            f"  active-standby leader {status['activeStandbyLeader']} still holds its Lease: "
            "no shard is claimed until it stops"
        )
    lines.append(f"Members: {status['liveMembers']} live")
    lines.extend(
        f"  {m['identity']}: {m['state']} (renewed {m['ageSeconds']}s ago)"
        for m in status["members"]
    )
    return lines


def _shard_lines(status: Mapping[str, Any]) -> list[str]:
    lines = [f"{'SHARD':<6} {'HOLDER':<40} {'LEASE':<22} {'INSTANCE':<20} {'ENI':<22} POD PREFIXES"]
    for shard in status["shards"]:
        lease = shard["lease"]
        holder = lease["holder"] or "-"
        if lease["holder"] and not lease["holderIsGatewayPod"]:
            holder += " (gone)"
        state = lease["state"]
        if lease["ageSeconds"] is not None:
            state += f" ({lease['ageSeconds']:g}s ago)"
        lines.append(
            f"{shard['index']:<6} {holder:<40} {state:<22} {shard['instanceId'] or '-':<20} "
            f"{shard['eni'] or '-':<22} {', '.join(shard['podPrefixes'])}"
        )
    lines.append("")
    lines.append(f"{'ROUTE TABLE':<24} {'SHARD':<6} {'DESTINATION':<20} {'TARGET':<24} POINTS AT")
    lines.extend(
        f"{r['routeTableId']:<24} {shard['index']:<6} {r['destination']:<20} "
        f"{r['target'] or '-':<24} {r['points_at']}"
        for shard in status["shards"]
        for r in shard["routes"]
    )
    lines.append("")
    lines.append(
        f"{'VTEP ENDPOINT':<16} {'SHARD':<6} {'CIDR':<20} {'TUNNEL ENDPOINT':<18} POINTS AT"
    )
    lines.extend(
        f"{e['name']:<16} {shard['index']:<6} {e['cidr']:<20} {e['tunnelEndpoint'] or '-':<18} "
        f"{e['points_at']}"
        for shard in status["shards"]
        for e in shard["vtepEndpoints"]
    )
    return lines


def status_table(status: Mapping[str, Any]) -> str:
    lines: list[str] = []
    lease = status["lease"]
    active_active = "shards" in status
    if active_active:
        lines.extend(_mode_lines(status))
    elif lease is None:
        lines.append("Leader:  none (no Lease)")
    else:
        lines.append(
            f"Leader:  {lease['holder'] or 'none'}  (lease renewed {lease['ageSeconds']}s ago, "
            f"held {lease['heldForSeconds']}s, duration {lease['durationSeconds']:g}s, "
            f"{lease['transitions']} transition(s))"
        )
    lines.append("")
    width = 52 if active_active else 40  # room for " (shards 0,2)"
    lines.append(f"{'REPLICA':<{width}} {'NODE':<24} {'READY':<6} {'HYBRID NODES':<18} READINESS")
    for replica in status["replicas"]:
        name = replica["pod"] + (" (leader)" if replica["leader"] else "")
        if active_active:
            name += f" (shards {','.join(map(str, replica['shards'])) or 'none'})"
        configured = f"{replica['hybridNodesConfigured']} ({replica['source']})"
        lines.append(
            f"{name:<{width}} {replica['node'] or '-':<24} "
            f"{'yes' if replica['ready'] else 'NO':<6} {configured:<18} {replica['readiness']}"
        )
    lines.append("")
    if active_active:
        lines.extend(_shard_lines(status))
        lines.append("")
        lines.append(
            "Whole pod CIDR routes (active-standby's):" + ("" if status["routes"] else " none")
        )
    else:
        lines.append(f"{'ROUTE TABLE':<24} {'DESTINATION':<20} {'TARGET':<24} POINTS AT")
    for route in status["routes"]:
        lines.append(
            f"{route['routeTableId']:<24} {route['destination']:<20} "
            f"{route['target'] or '-':<24} {route['points_at']}"
        )
    for route in status.get("shardRoutesLeft") or ():
        lines.append(
            f"{route['routeTableId']:<24} {route['destination']:<20} {route['target']:<24} "
            "SHARD ROUTE LEFT by active-active (wins over the leader's; the leader deletes it)"
        )
    lines.append("")
    vtep = status["vtepConfig"]
    if vtep is None:
        lines.append("CiliumVTEPConfig: absent")
    else:
        lines.append("CiliumVTEPConfig:")
        lines.extend(
            f"  {e['name']}: {e['cidr']} via {e['tunnelEndpoint']} mac {e['mac']}" for e in vtep
        )
    lines.append("")
    lines.append(f"Recent events ({len(status['events'])}):")
    lines.extend(
        f"  {e['time'] or '-'} {e['type']:<8} {e['reason']:<20} {e['object']}: {e['message']}"
        for e in status["events"]
    )
    for source, why in status["unavailable"].items():
        lines.append(f"UNAVAILABLE {source}: {why}")
    return "\n".join(lines)
