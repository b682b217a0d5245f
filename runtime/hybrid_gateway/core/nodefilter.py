"""What the gateway node's netfilter must hold for forwarded traffic, pure.

The gateway pods use the host network, so every packet they forward between the VPC and the
hybrid pods crosses the node's netfilter. kube-proxy in iptables mode (the EKS default) adds
`-m conntrack --ctstate INVALID -j DROP` to its KUBE-FORWARD chain unless
`nf_conntrack_tcp_be_liberal` is set (kubernetes pkg/proxy/iptables/proxier.go; kubernetes PR
120412 made the rule conditional). A flow whose two directions cross different gateways (always
in active-active mode, where the forward path follows the pod's shard and the return path the
VPC address's VTEP endpoint; for a moment during every active-standby switch) shows each node
only one direction, and conntrack calls a SYN/ACK without its SYN INVALID whatever the
liberal setting (linux net/netfilter/nf_conntrack_proto_tcp.c, tcp_conntracks: synack from
sNO -> sIV). So the daemon owns one table of its own:

- chain `skip_conntrack` on the prerouting hook at raw priority: forwarded pod-CIDR <-> VPC-CIDR
  packets are not tracked at all (an untracked packet is never INVALID), except packets for an
  address of the node itself (`fib daddr type local`), which keep conntrack (NodePorts, NAT);
- chain `forwarded` on the forward hook, after the filter chains (priority filter + 10, so a packet
  another chain drops is not counted): one counter per shard prefix and direction, so an
  operator sees how much traffic this gateway carried for every shard (`CounterPrefix`).

`ruleset` renders the table as an `nft -f` script that replaces the table atomically (one
transaction: create if missing, delete, create), `normalized` reduces an `nft -j list table`
listing to what may not drift (handles and counter values dropped), and `read_counters` reads
the counters back. The adapter (hybrid_gateway.adapters.nftables) only runs `nft`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

TABLE: Final = "hybrid_gateway"
FAMILY: Final = "ip"
NOTRACK_CHAIN: Final = "skip_conntrack"
COUNT_CHAIN: Final = "forwarded"
#: Directions of the counters: VPC -> hybrid pods (the forward path, routed by the VPC route
#: tables to the shard's owner) and hybrid pods -> VPC (the return path, chosen by the hybrid
#: node's VTEP endpoint for the destination).
TO_HYBRID: Final = "to_hybrid"
TO_VPC: Final = "to_vpc"
DIRECTIONS: Final = (TO_HYBRID, TO_VPC)
#: The shard label of counters in active-standby mode (one leader carries everything).
ALL_SHARDS: Final = "all"
_COMMENT_SEPARATOR: Final = "|"


@dataclass(frozen=True)
class CounterPrefix:
    """One counter: packets forwarded in `direction` whose destination is in `prefix`."""

    direction: str
    shard: str
    prefix: str

    @property
    def comment(self) -> str:
        return _COMMENT_SEPARATOR.join((self.direction, self.shard, self.prefix))


@dataclass(frozen=True)
class Counted:
    packets: int
    bytes: int


def _nets(cidrs: Iterable[str | ipaddress.IPv4Network]) -> list[str]:
    return [str(ipaddress.IPv4Network(c)) for c in cidrs]


def _set(cidrs: Sequence[str]) -> str:
    return "{ " + ", ".join(cidrs) + " }"


def ruleset(
    pod_cidrs: Sequence[str | ipaddress.IPv4Network],
    vpc_cidrs: Sequence[str | ipaddress.IPv4Network],
    counters: Sequence[CounterPrefix],
) -> str:
    """The `nft -f` script that makes the table exactly this, atomically (replacing any
    previous content, ours or someone's edit)."""
    pods, vpcs = _nets(pod_cidrs), _nets(vpc_cidrs)
    if not pods or not vpcs:
        raise ValueError("the node filter needs at least one pod CIDR and one VPC CIDR")
    lines = [
        f"table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
        f"  chain {NOTRACK_CHAIN} {{",
        "    type filter hook prerouting priority raw; policy accept;",
        "    fib daddr type local accept",
        f"    ip saddr {_set(pods)} ip daddr {_set(vpcs)} notrack",
        f"    ip saddr {_set(vpcs)} ip daddr {_set(pods)} notrack",
        "  }",
        f"  chain {COUNT_CHAIN} {{",
        "    type filter hook forward priority filter + 10; policy accept;",
    ]
    for counter in counters:
        if counter.direction == TO_HYBRID:
            match = f"ip saddr {_set(vpcs)} ip daddr {ipaddress.IPv4Network(counter.prefix)}"
        elif counter.direction == TO_VPC:
            match = f"ip saddr {_set(pods)} ip daddr {ipaddress.IPv4Network(counter.prefix)}"
        else:
            raise ValueError(f"counter direction {counter.direction!r}: not one of {DIRECTIONS}")
        lines.append(f'    {match} counter comment "{counter.comment}"')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _strip(value: Any) -> Any:
    """Drop what changes without anyone editing the table: handles and counter values."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "handle":
                continue
            if key == "counter" and isinstance(item, dict):
                out[key] = {}
                continue
            out[key] = _strip(item)
        return out
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value


def normalized(listing: Mapping[str, Any]) -> str:
    """A canonical text of our table from `nft -j list table` output: equal for two listings
    exactly when the table's chains and rules are the same (order included)."""
    items = [
        _strip(item)
        for item in listing.get("nftables", [])
        if isinstance(item, dict) and "metainfo" not in item
    ]
    return json.dumps(items, sort_keys=True)


def read_counters(listing: Mapping[str, Any]) -> dict[CounterPrefix, Counted]:
    """Packets and bytes of every counter rule of our table (rules without our comment, e.g.
    one an operator added, are ignored)."""
    out: dict[CounterPrefix, Counted] = {}
    for item in listing.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule or rule.get("table") != TABLE or rule.get("chain") != COUNT_CHAIN:
            continue
        parts = str(rule.get("comment", "")).split(_COMMENT_SEPARATOR)
        if len(parts) != 3 or parts[0] not in DIRECTIONS:
            continue
        for expr in rule.get("expr", []):
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if isinstance(counter, dict):
                key = CounterPrefix(parts[0], parts[1], parts[2])
                out[key] = Counted(int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
    return out


def standby_counters(
    pod_cidrs: Sequence[str | ipaddress.IPv4Network],
    vpc_cidrs: Sequence[str | ipaddress.IPv4Network],
) -> list[CounterPrefix]:
    """Active-standby: one counter per pod CIDR (to hybrid) and per VPC CIDR (to the VPC)."""
    return [CounterPrefix(TO_HYBRID, ALL_SHARDS, c) for c in _nets(pod_cidrs)] + [
        CounterPrefix(TO_VPC, ALL_SHARDS, c) for c in _nets(vpc_cidrs)
    ]


def shard_counters(
    shards: Iterable[tuple[int, Sequence[str], Sequence[str]]],
) -> list[CounterPrefix]:
    """Active-active: per shard (index, forward-path pod prefixes, return-path VTEP endpoint
    CIDRs), one counter per pod prefix (to hybrid) and per endpoint CIDR (to the VPC)."""
    out: list[CounterPrefix] = []
    for index, pod_prefixes, endpoint_cidrs in shards:
        out += [CounterPrefix(TO_HYBRID, str(index), p) for p in pod_prefixes]
        out += [CounterPrefix(TO_VPC, str(index), c) for c in endpoint_cidrs]
    return out
