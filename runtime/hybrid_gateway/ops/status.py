"""`status`: the gateway's state during an incident, from gathered facts (pure)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .facts import Facts

RECENT_EVENTS = 10


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
    gateway_enis = {i.primary_eni: i.instance_id for i in facts.instances}
    routes: list[dict[str, Any]] = []
    settings = facts.settings
    for table_id in settings.route_table_ids if settings else ():
        table = facts.table(table_id)
        by_destination = {r.destination: r for r in table.routes} if table else {}
        for cidr in settings.pod_cidrs if settings else ():
            route = by_destination.get(cidr)
            if table is None:
                target, state = None, "table not found"
            elif route is None:
                target, state = None, "absent"
            else:
                target = route.target_id or None
                if facts.route_gone(route):
                    state = "blackhole"
                elif leader_instance is not None and route.target_id == leader_instance.primary_eni:
                    state = "leader"
                elif route.target_id in gateway_enis:
                    state = "standby"
                else:
                    state = route.kind.value
            routes.append(
                {
                    "routeTableId": table_id,
                    "destination": cidr,
                    "target": target,
                    "points_at": state,
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
    return {
        "leader": lease.holder if lease else None,
        "lease": None
        if lease is None
        else {
            "holder": lease.holder,
            "ageSeconds": None
            if lease.renew_time is None
            else round(facts.now - lease.renew_time, 1),
            "heldForSeconds": None
            if lease.acquire_time is None
            else round(facts.now - lease.acquire_time, 1),
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


def status_json(status: Mapping[str, Any]) -> str:
    return json.dumps(status, indent=2)


def status_table(status: Mapping[str, Any]) -> str:
    lines: list[str] = []
    lease = status["lease"]
    if lease is None:
        lines.append("Leader:  none (no Lease)")
    else:
        lines.append(
            f"Leader:  {lease['holder'] or 'none'}  (lease renewed {lease['ageSeconds']}s ago, "
            f"held {lease['heldForSeconds']}s, duration {lease['durationSeconds']:g}s, "
            f"{lease['transitions']} transition(s))"
        )
    lines.append("")
    lines.append(f"{'REPLICA':<40} {'NODE':<24} {'READY':<6} {'HYBRID NODES':<18} READINESS")
    for replica in status["replicas"]:
        name = replica["pod"] + (" (leader)" if replica["leader"] else "")
        configured = f"{replica['hybridNodesConfigured']} ({replica['source']})"
        lines.append(
            f"{name:<40} {replica['node'] or '-':<24} {'yes' if replica['ready'] else 'NO':<6} "
            f"{configured:<18} {replica['readiness']}"
        )
    lines.append("")
    lines.append(f"{'ROUTE TABLE':<24} {'DESTINATION':<20} {'TARGET':<24} POINTS AT")
    for route in status["routes"]:
        lines.append(
            f"{route['routeTableId']:<24} {route['destination']:<20} "
            f"{route['target'] or '-':<24} {route['points_at']}"
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
