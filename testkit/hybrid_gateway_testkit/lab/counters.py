"""Per-gateway, per-shard packet counters: which gateway carried each shard's probes.

Every gateway host gets one nftables table with a chain on the `forward` hook (policy accept:
it only counts) and one counter rule per shard and direction:

- to hybrid (forward path): `ip daddr <shard's pod prefix> udp dport <probe port>`: the cloud to
  hybrid probes this gateway routed into its tunnel;
- to cloud (return path): `ip saddr <remote pod network> ip daddr <shard's VTEP endpoint CIDR>
  udp dport <probe port>`: the hybrid to cloud probes it decapsulated and forwarded.

Only forwarded packets reach that hook, so a count is traffic the gateway really carried (its
own API and EC2 calls never match). The namespace outlives a killed daemon (and a downed link),
so the counters of a failed gateway stay readable. Needs the `nft` tool (`make system-deps`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_gateway_contract.sharding import ShardPlan
from hybrid_gateway_testkit.netns import Netns

TABLE = "hgw_lab"
CHAIN = "carried"
TO_HYBRID = "to_hybrid"
TO_CLOUD = "to_cloud"
DIRECTIONS = (TO_HYBRID, TO_CLOUD)

CounterKey = tuple[str, int]  # (direction, shard)


def ruleset(plan: ShardPlan, pod_cidrs: str, probe_port: int) -> str:
    """Pure: the nft script of one gateway's counters (comments carry `direction/shard`)."""
    lines = [
        f"table ip {TABLE} {{",
        f"  chain {CHAIN} {{",
        "    type filter hook forward priority 0; policy accept;",
    ]
    for shard in plan.shards:
        for prefix in shard.pod_prefixes:
            lines.append(
                f"    ip daddr {prefix} udp dport {probe_port} counter "
                f'comment "{TO_HYBRID}/{shard.index}"'
            )
        for _, cidr in shard.vtep_endpoints:
            lines.append(
                f"    ip saddr {pod_cidrs} ip daddr {cidr} udp dport {probe_port} counter "
                f'comment "{TO_CLOUD}/{shard.index}"'
            )
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def parse(listing: Mapping[str, Any]) -> dict[CounterKey, int]:
    """Pure: packets per (direction, shard) from `nft -j list table` output (rules of one
    shard and direction summed; rules without our comment ignored)."""
    out: dict[CounterKey, int] = {}
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if not rule or rule.get("table") != TABLE:
            continue
        direction, _, shard = str(rule.get("comment", "")).partition("/")
        if direction not in DIRECTIONS or not shard.isdigit():
            continue
        packets = sum(
            int(expr["counter"]["packets"]) for expr in rule.get("expr", []) if "counter" in expr
        )
        key = (direction, int(shard))
        out[key] = out.get(key, 0) + packets
    return out


def require_nft() -> None:
    if shutil.which("nft") is None:
        raise RuntimeError(
            "the active-active lab counts packets with nftables: install the `nft` tool "
            "(`make system-deps`, or apt-get install nftables)"
        )


def install(ns: Netns, plan: ShardPlan, pod_cidrs: str, probe_port: int) -> None:
    """Load the counters into the gateway host namespace `ns` (before any traffic)."""
    require_nft()
    proc = subprocess.run(
        ns.exec_argv(["nft", "-f", "-"]),
        input=ruleset(plan, pod_cidrs, probe_port),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft in {ns.name} failed: {proc.stderr.strip()}")


def read(ns: Netns) -> dict[CounterKey, int]:
    return parse(json.loads(ns.exec("nft", "-j", "list", "table", "ip", TABLE)))


@dataclass(frozen=True)
class Carried:
    """Probe packets of one shard and direction carried by each gateway in a time span."""

    shard: int
    direction: str
    by_gateway: dict[str, int]

    def carriers(self) -> list[str]:
        return sorted(g for g, n in self.by_gateway.items() if n > 0)


def carried(
    before: Mapping[str, Mapping[CounterKey, int]],
    after: Mapping[str, Mapping[CounterKey, int]],
    shards: int,
) -> list[Carried]:
    """Pure: per shard and direction, how many packets each gateway's counters grew by between
    two snapshots (gateway -> counters)."""
    out = []
    for shard in range(shards):
        for direction in DIRECTIONS:
            key = (direction, shard)
            out.append(
                Carried(
                    shard,
                    direction,
                    {
                        gw: after[gw].get(key, 0) - before.get(gw, {}).get(key, 0)
                        for gw in sorted(after)
                    },
                )
            )
    return out
