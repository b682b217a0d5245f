"""How the active-active forward prefixes spread sequentially allocated nodes; what growth moves.

Node pod CIDRs are allocated as Cilium's cluster-pool IPAM does (in order from the start of the
pool: cilium/cilium pkg/ipam/cidrset/cidr_set.go `AllocateNext`). Printed per shard count: the
allocated node CIDRs behind each shard and the routes, at 100 and 1,000 nodes; then, growing
from 100 to 1,000 nodes one at a time, how many additions moved any node CIDR to another shard
and how many moves in all; then the time to compute the spread for 20,000 nodes.

    .venv/bin/python bench/spread.py
"""

from __future__ import annotations

import bisect
import ipaddress
import time

from hybrid_gateway_contract.spread import Spread, spread_pod_prefixes

BUDGET = 49  # the default 50 routes per table, one VPC CIDR's local route
POOL = ipaddress.IPv4Network("10.80.0.0/14")
BLOCKS = list(POOL.subnets(new_prefix=25))


def owners(spread: Spread, count: int) -> list[int]:
    """The shard of each of the first `count` node CIDRs."""
    ranges = sorted(
        (int(net.network_address), index)
        for index, prefixes in enumerate(spread.prefixes)
        for net in map(ipaddress.IPv4Network, prefixes)
    )
    starts = [start for start, _index in ranges]
    return [
        ranges[bisect.bisect_right(starts, int(b.network_address)) - 1][1] for b in BLOCKS[:count]
    ]


def spread_of(count: int, shards: int) -> Spread:
    return spread_pod_prefixes(
        [POOL], [str(b) for b in BLOCKS[:count]], shards, route_budget=BUDGET
    )


def main() -> None:
    for shards in (4, 8):
        for count in (100, 1000):
            spread = spread_of(count, shards)
            weights = [0] * shards
            for shard in owners(spread, count):
                weights[shard] += 1
            print(
                f"S={shards} nodes={count}: per shard {weights}, {spread.routes} routes, "
                f"tolerance {spread.tolerance}"
            )
        before = owners(spread_of(100, shards), 100)
        steps = moves = most = 0
        for count in range(101, 1001):
            after = owners(spread_of(count, shards), count)
            moved = sum(1 for a, b in zip(before, after, strict=False) if a != b)
            steps += moved > 0
            moves += moved
            most = max(most, moved)
            before = after
        print(
            f"S={shards} growth 100 -> 1000 one node at a time: {steps} of 900 additions moved "
            f"a node CIDR, {moves} moves in all, at most {most} at once"
        )
    big = ipaddress.IPv4Network("10.0.0.0/10")
    nodes = [str(b) for b, _ in zip(big.subnets(new_prefix=25), range(20000), strict=False)]
    started = time.perf_counter()
    spread = spread_pod_prefixes([big], nodes, 8, route_budget=BUDGET)
    took = time.perf_counter() - started
    print(f"20,000 nodes, S=8: computed in {took:.2f} s, {spread.routes} routes")


if __name__ == "__main__":
    main()
