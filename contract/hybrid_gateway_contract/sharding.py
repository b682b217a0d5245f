"""Active-active sharding, shared by the construct library (synth time) and the runtime (start).

In `active-active` mode the traffic is cut into S shards (S a power of two). Shard i owns:

- forward path (VPC -> hybrid pods): the i-th of the S equal sub-prefixes of every remote pod
  CIDR (a /16 with S=4 gives four /18s). A VPC route table picks the most specific matching
  route, so these routes decide the path; each points at the ENI of the shard's owner.
- return path (hybrid pods -> VPC): the CiliumVTEPConfig endpoints `e` with `e % S == i`. The
  VPC CIDRs are cut to one common prefix length, as long as fits in Cilium's 8 endpoints with
  at most S parts per VPC CIDR, and `spec.cidrMask` is set to that length.

Both sides derive the plan from the same settings with `plan_shards`, and `shard_plan_problems`
is the one validation both run: at synth time on the construct's props, at start-up on the
environment. Pure and dependency-free.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hybrid_gateway_contract import MAX_VTEP_ENDPOINTS, VTEP_ENDPOINT_NAME

__all__ = [
    "DEFAULT_MAX_ROUTES_PER_TABLE",
    "DEFAULT_SHARDS",
    "LEASE_GROUP_LABEL",
    "MAX_SHARDS",
    "GatewayMode",
    "Shard",
    "ShardPlan",
    "ShardProblem",
    "ShardSetting",
    "lease_group_problem",
    "member_lease_name",
    "plan_shards",
    "shard_count_problem",
    "shard_lease_name",
    "shard_plan_problems",
    "shard_pod_prefixes",
]

#: Amazon VPC quota "Routes per route table (non-propagated routes)": 500 by default, adjustable
#: up to 1,000, enforced separately for IPv4 and IPv6 (Amazon VPC user guide, "Amazon VPC
#: quotas", route tables; it was 50 until 2025). A route to a prefix list counts at the list's max
#: entries (same page, customer-managed prefix lists): `preflight` counts them per table.
DEFAULT_MAX_ROUTES_PER_TABLE: Final = 500
DEFAULT_SHARDS: Final = 4
MAX_SHARDS: Final = 64
#: Label on every Lease of one gateway in active-active mode (shard and member Leases), so a
#: replica lists and watches exactly its group. Its value is the leader election ID.
LEASE_GROUP_LABEL: Final = "hybrid-gateway.eks.amazonaws.com/lease-group"
_LABEL_VALUE_MAX: Final = 63


class GatewayMode(enum.Enum):
    """How the replicas share the traffic."""

    ACTIVE_STANDBY = "active-standby"  # one leader carries everything (the reference's model)
    ACTIVE_ACTIVE = "active-active"  # every replica carries the shards it owns


class ShardSetting(enum.Enum):
    """The setting a shard problem is about (each side maps it to its own name)."""

    SHARDS = "shards"
    MAX_ROUTES_PER_TABLE = "max routes per table"


@dataclass(frozen=True)
class ShardProblem:
    """What is wrong with one shard setting. `reason` does not repeat the setting's value, so
    a side that names the setting its own way (a prop, a variable) states the value once."""

    setting: ShardSetting
    value: int
    reason: str

    @property
    def message(self) -> str:
        """The problem on its own: the setting, its value, the reason."""
        return f"{self.setting.value} {self.value}: {self.reason}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Shard:
    index: int
    pod_prefixes: tuple[str, ...]  # forward path: routed to the owner's ENI
    vtep_endpoints: tuple[tuple[str, str], ...]  # return path: (endpoint name, cidr)


@dataclass(frozen=True)
class ShardPlan:
    shards: tuple[Shard, ...]
    vtep_prefix_length: int | None  # the one prefix length of all endpoints, None if mixed

    @property
    def count(self) -> int:
        return len(self.shards)

    @property
    def vtep_endpoint_count(self) -> int:
        return sum(len(shard.vtep_endpoints) for shard in self.shards)

    def routes_per_table(self) -> int:
        return sum(len(shard.pod_prefixes) for shard in self.shards)


def shard_count_problem(shards: int) -> str | None:
    """Why `shards` cannot be a shard count, or None: a power of two from 2 to MAX_SHARDS
    (each pod CIDR is cut into that many equal prefixes)."""
    if shards < 2 or shards > MAX_SHARDS or shards & (shards - 1):
        return f"must be a power of two from 2 to {MAX_SHARDS}"
    return None


def _split(network: ipaddress.IPv4Network, parts: int) -> list[ipaddress.IPv4Network]:
    bits = parts.bit_length() - 1
    return list(network.subnets(prefixlen_diff=bits)) if bits else [network]


def _vtep_endpoints(
    vpc_cidrs: Sequence[ipaddress.IPv4Network], shards: int
) -> list[ipaddress.IPv4Network]:
    """The return-path endpoint CIDRs: every VPC CIDR cut to ONE common prefix length, the
    longest that keeps them within Cilium's 8 endpoints and cuts no CIDR into more than
    `shards` parts. One length for all, aligned and disjoint, is the only layout that matches
    correctly whether a Cilium build looks endpoints up by longest prefix or by a hash of the
    destination under the single `cidrMask` (docs/daemon.md, "How Cilium matches endpoints"). When
    even the longest VPC prefix leaves more than 8 endpoints, the VPC CIDRs stay as they are
    (mixed lengths, as in active-standby)."""
    longest = max(cidr.prefixlen for cidr in vpc_cidrs)

    def cut(length: int) -> list[ipaddress.IPv4Network]:
        return [sub for cidr in vpc_cidrs for sub in cidr.subnets(new_prefix=length)]

    if sum(2 ** (longest - cidr.prefixlen) for cidr in vpc_cidrs) > MAX_VTEP_ENDPOINTS:
        return list(vpc_cidrs)
    length = longest
    while (
        length < 32
        and sum(2 ** (length + 1 - cidr.prefixlen) for cidr in vpc_cidrs) <= MAX_VTEP_ENDPOINTS
        and all(2 ** (length + 1 - cidr.prefixlen) <= shards for cidr in vpc_cidrs)
    ):
        length += 1
    return cut(length)


def shard_pod_prefixes(
    pod_cidrs: Sequence[ipaddress.IPv4Network], shards: int
) -> list[tuple[str, ...]]:
    """Per shard, its forward-path routes: the shard's prefix of every pod CIDR. Needs no VPC
    CIDR, so the route cleanup can name the routes from the pod CIDRs alone."""
    problem = shard_count_problem(shards)
    if problem is not None:
        raise ValueError(f"shards {shards}: {problem}")
    pod_parts = [_split(cidr, shards) for cidr in pod_cidrs]
    return [tuple(str(parts[i]) for parts in pod_parts) for i in range(shards)]


def plan_shards(
    pod_cidrs: Sequence[ipaddress.IPv4Network],
    vpc_cidrs: Sequence[ipaddress.IPv4Network],
    shards: int,
) -> ShardPlan:
    """The shards of this address plan; raises ValueError if `shard_plan_problems` would
    report any (call that first to name the setting)."""
    pod_prefixes = shard_pod_prefixes(pod_cidrs, shards)
    endpoints = _vtep_endpoints(vpc_cidrs, shards)
    if len(endpoints) > MAX_VTEP_ENDPOINTS:
        raise ValueError(f"{len(endpoints)} VTEP endpoints, at most {MAX_VTEP_ENDPOINTS}")
    names = [f"{VTEP_ENDPOINT_NAME}-{i}" for i in range(len(endpoints))]
    lengths = {sub.prefixlen for sub in endpoints}
    return ShardPlan(
        shards=tuple(
            Shard(
                index=i,
                pod_prefixes=pod_prefixes[i],
                vtep_endpoints=tuple(
                    (names[e], str(endpoints[e])) for e in range(len(endpoints)) if e % shards == i
                ),
            )
            for i in range(shards)
        ),
        vtep_prefix_length=lengths.pop() if len(lengths) == 1 else None,
    )


def shard_plan_problems(
    pod_cidrs: Sequence[ipaddress.IPv4Network],
    vpc_cidrs: Sequence[ipaddress.IPv4Network],
    shards: int,
    *,
    max_routes_per_table: int = DEFAULT_MAX_ROUTES_PER_TABLE,
) -> list[ShardProblem]:
    """Every reason this shard count cannot work with this address plan, or []: a power of
    two; every pod CIDR can be cut into `shards` prefixes (at most /32 each); the shard routes
    plus the tables' local routes (one per VPC CIDR) fit the per-table route quota."""
    count = shard_count_problem(shards)
    if count is not None:
        return [ShardProblem(ShardSetting.SHARDS, shards, count)]
    problems: list[ShardProblem] = []
    bits = shards.bit_length() - 1
    for cidr in pod_cidrs:
        if cidr.prefixlen + bits > 32:
            problems.append(
                ShardProblem(
                    ShardSetting.SHARDS,
                    shards,
                    f"remote pod network {cidr} cannot be cut into that many prefixes (they "
                    f"would be /{cidr.prefixlen + bits})",
                )
            )
    routes = shards * len(pod_cidrs) + len(vpc_cidrs)
    if routes > max_routes_per_table:
        problems.append(
            ShardProblem(
                ShardSetting.MAX_ROUTES_PER_TABLE,
                max_routes_per_table,
                f"{shards} shards x {len(pod_cidrs)} remote pod network(s) = "
                f"{shards * len(pod_cidrs)} routes per route table, plus {len(vpc_cidrs)} local "
                "route(s), are more than a table may hold (Amazon VPC quota 'Routes per route "
                "table'; raise it and the max routes setting, or use fewer shards)",
            )
        )
    return problems


def lease_group_problem(lease_name: str) -> str | None:
    """Why `lease_name` cannot label an active-active Lease group (label value), or None."""
    if len(lease_name) > _LABEL_VALUE_MAX:
        return (
            f"longer than {_LABEL_VALUE_MAX} characters: in active-active mode it is the value of "
            f"the label {LEASE_GROUP_LABEL}"
        )
    return None


def shard_lease_name(lease_name: str, index: int) -> str:
    """The Lease that fences shard `index`: whoever holds it writes the shard's routes and
    VTEP endpoints."""
    return f"{lease_name}-shard-{index}"


def member_lease_name(lease_name: str, identity: str) -> str:
    """A replica's membership Lease: held while the replica is ready to own shards, so every
    replica knows the live members without listing pods. Pod names are long, so the name
    carries a digest of the identity (the holderIdentity field carries the identity itself)."""
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return f"{lease_name}-member-{digest}"
