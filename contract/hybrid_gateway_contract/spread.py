"""Forward-path prefixes that follow what is allocated (active-active), pure and dependency-free.

Cilium's cluster-pool IPAM hands node pod CIDRs out in order from the start of the pool
(cilium/cilium pkg/ipam/cidrset/cidr_set.go: `AllocateNext` scans from `nextCandidate`, which
starts at 0 and only moves forward), so cutting every pod CIDR into S equal prefixes puts the
first hundreds of nodes in shard 0. Instead the allocated node CIDRs (CiliumNode
`spec.ipam.podCIDRs`) decide:

- The pod CIDRs, in address order, form one line; the allocated node CIDRs are points on it.
  The line is cut into S contiguous ranges holding the same number of allocated node CIDRs
  (cut i at the i/S-th of them). A cut never falls inside a node CIDR, so a node's pods are
  behind one shard, and every shard holds at least one allocated node CIDR.
- Every cut may move within a tolerance of `t` node CIDRs around its ideal place; it takes the
  most aligned address in that window (a pod CIDR boundary first, then the address with the
  most trailing zero bits, then the one nearest the ideal), because an aligned range is a few
  CIDR blocks and a cut that stays put moves nothing. `t` starts at a small share of a shard
  (`BALANCE_TOLERANCE`) and doubles until the routes fit the route table budget, up to a
  quarter of a shard (`MAX_TOLERANCE`).
- Shard i's prefixes are the CIDR blocks of its range: disjoint, covering every pod CIDR
  (unallocated space included: a node allocated before the next plan is still routed).

Every replica computes the same prefixes from the same set of node CIDRs (nothing depends on
order, time or identity). Growing by one node moves a cut by at most one node, and most often
not at all (the aligned cut stays inside its window). When no tolerance fits, or fewer node
CIDRs than shards are allocated (a new cluster: no cut could give every shard a node), the plan
is the equal cut (`shard_pod_prefixes`), which the shard plan's own validation already fits
into the budget.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from hybrid_gateway_contract.sharding import ShardPlan, shard_pod_prefixes

__all__ = [
    "BALANCE_TOLERANCE",
    "Spread",
    "allocated_in",
    "spread_pod_prefixes",
    "with_forward_prefixes",
]

#: A cut may sit this share of a shard's node CIDRs away from its ideal place before a looser
#: tolerance is tried (only when the routes would not fit): 2 %, so each shard carries within
#: about 4 % of the fair count of node CIDRs, and three shards of eight within about 20 % of a
#: third of them.
BALANCE_TOLERANCE: Final = 0.02
#: Beyond this share of a shard a cut would balance no better than the equal cut may: the
#: equal cut is the plan then.
MAX_TOLERANCE: Final = 0.25
_ALIGNED_BOUNDARY: Final = 64  # alignment of a pod CIDR boundary: above any offset's


@dataclass(frozen=True)
class Spread:
    """Per shard, its forward-path prefixes, and how they were chosen."""

    prefixes: tuple[tuple[str, ...], ...]
    tolerance: int  # node CIDRs a cut may sit from its ideal place; -1: the equal cut
    allocated: int  # node CIDRs inside the pod CIDRs that were spread

    @property
    def routes(self) -> int:
        return sum(len(p) for p in self.prefixes)


def allocated_in(
    pod_cidrs: Sequence[ipaddress.IPv4Network], node_cidrs: Iterable[str]
) -> list[ipaddress.IPv4Network]:
    """The node CIDRs (as CiliumNodes carry them) that lie inside a pod CIDR, deduplicated
    and sorted; anything else (IPv6, unparsable, outside every pod CIDR) is not the gateway's
    to route and is left out."""
    pods = [(int(p.network_address), int(p.broadcast_address)) for p in pod_cidrs]
    found: dict[tuple[int, int], ipaddress.IPv4Network] = {}
    for raw in node_cidrs:
        try:
            network = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            continue
        if not isinstance(network, ipaddress.IPv4Network):
            continue
        first, last = int(network.network_address), int(network.broadcast_address)
        if any(low <= first and last <= high for low, high in pods):
            found[(first, network.prefixlen)] = network
    return [found[key] for key in sorted(found)]


class _Line:
    """The pod CIDRs end to end: position p is an address offset on the concatenation."""

    def __init__(self, pod_cidrs: Sequence[ipaddress.IPv4Network]) -> None:
        self.pods = sorted(pod_cidrs)
        self.bases: list[int] = []
        total = 0
        for pod in self.pods:
            self.bases.append(total)
            total += pod.num_addresses
        self.end = total

    def position(self, address: int) -> int:
        for pod, base in zip(self.pods, self.bases, strict=True):
            start = int(pod.network_address)
            if start <= address < start + pod.num_addresses:
                return base + address - start
        raise ValueError(f"{ipaddress.IPv4Address(address)} is in no pod CIDR")

    def alignment(self, position: int) -> int:
        """Trailing zero bits of the offset inside its pod CIDR; a boundary ranks highest."""
        for pod, base in zip(self.pods, self.bases, strict=True):
            if position == base:
                return _ALIGNED_BOUNDARY
            if base < position < base + pod.num_addresses:
                offset = position - base
                return (offset & -offset).bit_length() - 1
        return _ALIGNED_BOUNDARY  # the end of the line

    def most_aligned(self, low: int, high: int) -> list[int]:
        """The positions in [low, high] of the highest alignment (boundaries first)."""
        best: list[int] = []
        best_alignment = -1
        for pod, base in zip(self.pods, self.bases, strict=True):
            for boundary in (base, base + pod.num_addresses):
                if low <= boundary <= high:
                    if best_alignment < _ALIGNED_BOUNDARY:
                        best, best_alignment = [], _ALIGNED_BOUNDARY
                    best.append(boundary)
        if best:
            return sorted(set(best))
        for pod, base in zip(self.pods, self.bases, strict=True):
            lo, hi = max(low, base), min(high, base + pod.num_addresses)
            if lo > hi:
                continue
            for bits in range(pod.max_prefixlen - pod.prefixlen, -1, -1):
                step = 1 << bits
                first = base + -(-(lo - base) // step) * step
                if first <= hi:
                    if bits > best_alignment:
                        best, best_alignment = [], bits
                    if bits == best_alignment:
                        best += [first, base + (hi - base) // step * step]
                    break
        return sorted(set(best))

    def blocks(self, start: int, stop: int) -> list[str]:
        """The CIDR blocks covering positions [start, stop)."""
        out: list[str] = []
        for pod, base in zip(self.pods, self.bases, strict=True):
            lo, hi = max(start, base), min(stop, base + pod.num_addresses)
            if lo >= hi:
                continue
            first = pod.network_address + (lo - base)
            last = pod.network_address + (hi - base - 1)
            out += [str(n) for n in ipaddress.summarize_address_range(first, last)]
        return out


def _cuts(line: _Line, spans: Sequence[tuple[int, int]], shards: int, tolerance: int) -> list[int]:
    """The S+1 cut positions (0 and the end included) for the node CIDR `spans` (sorted
    [start, stop) positions, at least S of them): cut i leaves k node CIDRs below it, k within
    `tolerance` of i/S of them (the two integers around it always allowed), at the most aligned
    position. Each cut leaves at least one node CIDR more than the one before and enough for
    the cuts after it, so no shard is empty: two neighbouring cuts may otherwise prefer the same
    aligned address."""
    count = len(spans)
    cuts = [0]
    previous_k = 0
    for i in range(1, shards):
        ideal = i * count / shards
        fewest, most = previous_k + 1, count - (shards - i)
        low_k = max(fewest, math.floor(ideal - tolerance))
        high_k = min(most, math.ceil(ideal + tolerance))
        if low_k > high_k:  # the window lies outside what leaves every shard a node
            low_k = high_k = min(most, max(fewest, round(ideal)))
        best: tuple[int, float, int, int] | None = None  # (-alignment, distance, position, k)
        for k in range(low_k, high_k + 1):
            # after exactly k node CIDRs: in the gap between span k-1 and span k
            gap_low = max(spans[k - 1][1] if k > 0 else 0, cuts[-1])
            gap_high = spans[k][0] if k < count else line.end
            if gap_low > gap_high:
                continue
            for position in line.most_aligned(gap_low, gap_high):
                candidate = (-line.alignment(position), abs(k - ideal), position, k)
                if best is None or candidate < best:
                    best = candidate
        if best is None:
            cuts.append(cuts[-1])
        else:
            cuts.append(best[2])
            previous_k = best[3]
    cuts.append(line.end)
    return cuts


def spread_pod_prefixes(
    pod_cidrs: Sequence[ipaddress.IPv4Network],
    node_cidrs: Iterable[str],
    shards: int,
    *,
    route_budget: int,
) -> Spread:
    """Per shard, the forward-path prefixes that give every shard about the same number of
    allocated node CIDRs, within `route_budget` routes in all (the per-table quota less the
    tables' other routes). Falls back to the equal cut when fewer node CIDRs than shards are
    allocated or nothing else fits; raises ValueError like `shard_pod_prefixes` for a shard
    count it refuses."""
    equal = shard_pod_prefixes(pod_cidrs, shards)
    allocated = allocated_in(pod_cidrs, node_cidrs)
    fallback = Spread(tuple(equal), -1, len(allocated))
    if len(allocated) < shards:
        return fallback  # some shard carries no node whatever the cut: keep the equal one
    line = _Line(pod_cidrs)
    spans = sorted(
        (start, start + n.num_addresses)
        for n in allocated
        for start in [line.position(int(n.network_address))]
    )
    tolerance = int(BALANCE_TOLERANCE * len(allocated) / shards)
    while True:
        cuts = _cuts(line, spans, shards, tolerance)
        prefixes = tuple(tuple(line.blocks(cuts[i], cuts[i + 1])) for i in range(shards))
        spread = Spread(prefixes, tolerance, len(allocated))
        if spread.routes <= route_budget:
            return spread
        tolerance = max(1, tolerance * 2)
        if tolerance > MAX_TOLERANCE * len(allocated) / shards:
            return fallback


def with_forward_prefixes(plan: ShardPlan, spread: Spread) -> ShardPlan:
    """`plan` whose shards route `spread`'s prefixes (the return path is the plan's)."""
    if len(spread.prefixes) != plan.count:
        raise ValueError(f"{len(spread.prefixes)} shards of prefixes for a plan of {plan.count}")
    return dataclasses.replace(
        plan,
        shards=tuple(
            dataclasses.replace(shard, pod_prefixes=prefixes)
            for shard, prefixes in zip(plan.shards, spread.prefixes, strict=True)
        ),
    )
