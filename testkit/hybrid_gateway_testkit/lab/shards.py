"""Pure analysis of the active-active lab: which shard a probe flow belongs to, loss per shard,
how long each moved shard took to follow its new owner, and the daemons' shard metrics.

A probe flow belongs to the shard that carries it: cloud to hybrid by the shard whose pod
prefix holds the destination (the VPC route of that prefix names the owner's ENI), hybrid to
cloud by the shard whose VTEP endpoint holds the destination (the hybrid node tunnels it to
that endpoint's gateway).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_gateway_contract.sharding import Shard, ShardPlan
from hybrid_gateway_testkit.lab.analysis import FlowStats, TcpCall, tcp_stats
from hybrid_gateway_testkit.lab.events import first_after

CLOUD_TO_HYBRID = "cloud_to_hybrid"
HYBRID_TO_CLOUD = "hybrid_to_cloud"

_SHARD_HELD = re.compile(r'^hybrid_gateway_shard_held\{[^}]*shard="(\d+)"[^}]*\}\s+(\S+)\s*$')


def held_shards(metrics_text: str) -> list[int]:
    """The shards a daemon's /metrics says it holds (`hybrid_gateway_shard_held{shard="i"} 1`)."""
    held = []
    for line in metrics_text.splitlines():
        match = _SHARD_HELD.match(line.strip())
        if match and float(match.group(2)) == 1.0:
            held.append(int(match.group(1)))
    return sorted(held)


def flow_shard(plan: ShardPlan, dst: str) -> tuple[int, str] | None:
    """(shard, direction) of a probe flow to `dst`, or None when no shard covers it."""
    address = ipaddress.IPv4Address(dst)
    for shard in plan.shards:
        if any(address in ipaddress.IPv4Network(p) for p in shard.pod_prefixes):
            return shard.index, CLOUD_TO_HYBRID
    for shard in plan.shards:
        if any(address in ipaddress.IPv4Network(c) for _, c in shard.vtep_endpoints):
            return shard.index, HYBRID_TO_CLOUD
    return None


@dataclass(frozen=True)
class ShardLoss:
    shard: int
    sent: dict[str, int]  # by direction
    lost: dict[str, int]
    loss_window_s: dict[str, float]  # longest run of lost probes of any flow, by direction

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values())

    @property
    def longest_window_s(self) -> float:
        return max(self.loss_window_s.values(), default=0.0)


def shard_losses(plan: ShardPlan, flows: Iterable[FlowStats]) -> list[ShardLoss]:
    """Per shard and direction: probes sent and lost, and the longest loss window. Flows no
    shard covers are left out (`flow_shard`)."""
    directions = (CLOUD_TO_HYBRID, HYBRID_TO_CLOUD)
    sent = {s.index: dict.fromkeys(directions, 0) for s in plan.shards}
    lost = {s.index: dict.fromkeys(directions, 0) for s in plan.shards}
    window = {s.index: dict.fromkeys(directions, 0.0) for s in plan.shards}
    for flow in flows:
        where = flow_shard(plan, flow.dst)
        if where is None:
            continue
        shard, direction = where
        sent[shard][direction] += flow.sent
        lost[shard][direction] += flow.lost
        window[shard][direction] = max(window[shard][direction], flow.longest_window_s)
    return [ShardLoss(i, sent[i], lost[i], window[i]) for i in sorted(sent)]


def move_timings(
    shard: Shard,
    new_owner: str,
    new_ip: str,
    t_action: float,
    *,
    monitor: Sequence[Mapping[str, Any]],
    router: Sequence[Mapping[str, Any]],
    agents: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, float | None]:
    """Seconds from the action until shard's Lease, EC2 routes, VPC router, VTEP config
    endpoints and every hybrid node named `new_owner` (None: never seen)."""
    prefixes = set(shard.pod_prefixes)
    cidrs = {cidr for _, cidr in shard.vtep_endpoints}

    def holder_is_new(e: Mapping[str, Any]) -> bool:
        holders = e.get("shard_holders") or []
        return len(holders) > shard.index and holders[shard.index] == new_owner

    def routes_moved(e: Mapping[str, Any]) -> bool:
        routes = e.get("routes") or {}
        return all(routes.get(p) == new_owner for p in prefixes)

    def vteps_moved(e: Mapping[str, Any]) -> bool:
        vteps = e.get("vteps") or {}
        return all(vteps.get(c) == new_owner for c in cidrs)

    def router_switched(prefix: str) -> float | None:
        return first_after(
            router,
            t_action,
            lambda e: (
                e.get("kind") == "router-switch"
                and e.get("cidr") == prefix
                and e.get("via") == new_ip
            ),
        )

    def node_switched(events: Sequence[Mapping[str, Any]]) -> float | None:
        def moved(e: Mapping[str, Any]) -> bool:
            eps = {ep["cidr"]: ep["tunnelEndpoint"] for ep in e.get("endpoints", [])}
            return e.get("kind") == "vtep-switch" and all(eps.get(c) == new_ip for c in cidrs)

        return first_after(events, t_action, moved)

    def last_of(values: list[float | None]) -> float | None:
        return (
            None
            if not values or any(v is None for v in values)
            else max(v for v in values if v is not None)
        )

    return {
        "lease_taken": first_after(monitor, t_action, holder_is_new),
        "ec2_routes_moved": first_after(monitor, t_action, routes_moved),
        "vpc_router_switched": last_of([router_switched(p) for p in sorted(prefixes)]),
        "vtep_config_moved": first_after(monitor, t_action, vteps_moved),
        "hybrid_nodes_switched": last_of([node_switched(ev) for ev in agents.values()]),
    }


def spread_ok(owners: Mapping[int, str], members: Iterable[str]) -> bool:
    """Every member owns a shard and no member owns two more than another."""
    counts = dict.fromkeys(members, 0)
    for owner in owners.values():
        if owner not in counts:
            return False
        counts[owner] += 1
    return (
        bool(counts)
        and min(counts.values()) >= 1
        and max(counts.values()) - min(counts.values()) <= 1
    )


def _shard_of(plan: ShardPlan, address: str, *, pod: bool) -> int | None:
    ip = ipaddress.IPv4Address(address)
    for shard in plan.shards:
        cidrs = shard.pod_prefixes if pod else tuple(c for _, c in shard.vtep_endpoints)
        if any(ip in ipaddress.IPv4Network(c) for c in cidrs):
            return shard.index
    return None


def tcp_classes(
    plan: ShardPlan, calls: Iterable[TcpCall], cloud_ips: set[str], moved: set[int]
) -> dict[str, dict[str, Any]]:
    """TCP calls by class `<kind>/<opened by>/<matched|mismatched>`: kind `call` (a connection
    per request) or `conn` (one long-lived connection), opened by `cloud` or `hybrid`, and
    whether the forward path's shard (the pod's) and the return path's shard (the cloud
    address's endpoint) are the same. Per class: calls, failed, failed on kept shards (both
    shards kept their owner: must be 0), long-lived connections that had to be reopened, and
    the longest time a pair answered nothing."""
    grouped: dict[str, list[TcpCall]] = {}
    kept_failures: dict[str, int] = {}
    reopened: dict[str, int] = {}
    for call in calls:
        cloud, pod = (call.src, call.dst) if call.src in cloud_ips else (call.dst, call.src)
        forward = _shard_of(plan, pod, pod=True)
        back = _shard_of(plan, cloud, pod=False)
        if forward is None or back is None:
            continue
        opened = "cloud" if call.src in cloud_ips else "hybrid"
        pairing = "matched" if forward == back else "mismatched"
        kind, _, reopen = call.kind.partition("+")
        key = f"{kind}/{opened}/{pairing}"
        grouped.setdefault(key, []).append(call)
        if reopen:
            reopened[key] = reopened.get(key, 0) + 1
        if not call.ok and forward not in moved and back not in moved:
            kept_failures[key] = kept_failures.get(key, 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for key, members in sorted(grouped.items()):
        stats = tcp_stats(members)
        out[key] = {
            "calls": stats.calls,
            "failed": stats.failed,
            "failed_on_kept_shards": kept_failures.get(key, 0),
            "connections_reopened": reopened.get(key, 0),  # long-lived ones lost on the way
            "longest_failure_s": round(stats.longest_failure_s, 4),
        }
    return out
