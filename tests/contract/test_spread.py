"""Forward-path prefixes that follow the allocated node CIDRs (contract/spread.py).

The allocation model is Cilium's cluster-pool IPAM (cilium/cilium pkg/ipam/cidrset/
cidr_set.go): `AllocateNext` hands out the first free node CIDR at or after `nextCandidate`,
which starts at the beginning of the pool and moves forward past every allocation, wrapping
around only at the end; a released CIDR is reused only after the wrap. `_CidrSet` follows it.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_gateway_contract.sharding import shard_pod_prefixes
from hybrid_gateway_contract.spread import allocated_in, spread_pod_prefixes

Net = ipaddress.IPv4Network
BUDGET = 49  # the default 50 routes per table, one VPC CIDR's local route


class _CidrSet:
    """Cilium's cidrset for one pool: sequential allocation from the start, release, wrap."""

    def __init__(self, pool: str, node_mask: int) -> None:
        self.blocks = list(Net(pool).subnets(new_prefix=node_mask))
        self.used = [False] * len(self.blocks)
        self.next_candidate = 0

    def allocate_next(self) -> str:
        candidate = self.next_candidate
        for _ in range(len(self.blocks)):
            if not self.used[candidate]:
                break
            candidate = (candidate + 1) % len(self.blocks)
        else:
            raise RuntimeError("pool full")
        self.used[candidate] = True
        self.next_candidate = (candidate + 1) % len(self.blocks)
        return str(self.blocks[candidate])

    def release(self, cidr: str) -> None:
        self.used[self.blocks.index(Net(cidr))] = False


def _sequential(pool: str, count: int, node_mask: int = 25) -> list[str]:
    cidrset = _CidrSet(pool, node_mask)
    return [cidrset.allocate_next() for _ in range(count)]


def _weights(prefixes: tuple[tuple[str, ...], ...], nodes: list[str]) -> list[int]:
    """Allocated node CIDRs behind each shard's prefixes."""
    nets = [[Net(p) for p in shard] for shard in prefixes]
    return [sum(1 for n in nodes if any(Net(n).subnet_of(p) for p in shard)) for shard in nets]


def _worst_gateway_share(weights: list[int], gateways: int) -> float:
    """The largest share of node CIDRs one gateway can carry when the shards are spread over
    `gateways` members as the coordinator spreads them (counts differ by at most one): the
    heaviest ceil(S/G) shards together, whichever shards it happens to own."""
    most = -(-len(weights) // gateways)
    return sum(sorted(weights, reverse=True)[:most]) / sum(weights)


def test_equal_cut_puts_a_hundred_sequential_nodes_in_one_shard() -> None:
    """The problem: the equal cut of a /16 into 4 prefixes, /25 per node."""
    nodes = _sequential("10.80.0.0/16", 100)
    equal = tuple(shard_pod_prefixes([Net("10.80.0.0/16")], 4))
    assert _weights(equal, nodes) == [100, 0, 0, 0]
    assert _weights(equal, _sequential("10.80.0.0/16", 200)) == [128, 72, 0, 0]


@pytest.mark.parametrize(
    ("pool", "nodes"), [("10.80.0.0/16", 100), ("10.80.0.0/14", 1000), ("10.80.0.0/16", 500)]
)
@pytest.mark.parametrize("shards", [4, 8])
@pytest.mark.parametrize("gateways", [2, 3])
def test_sequential_allocation_spreads_within_twenty_percent_of_fair(
    pool: str, nodes: int, shards: int, gateways: int
) -> None:
    allocated = _sequential(pool, nodes)
    spread = spread_pod_prefixes([Net(pool)], allocated, shards, route_budget=BUDGET)
    weights = _weights(spread.prefixes, allocated)
    assert sum(weights) == nodes
    assert spread.routes <= BUDGET
    fair_shard = nodes / shards
    assert all(abs(w - fair_shard) <= 0.2 * fair_shard for w in weights), weights
    # Per gateway: a gateway owns ceil(S/G) or floor(S/G) shards. Where G divides S, or with
    # 8 shards on 3 gateways (3/3/2, 12.5 % above a third by the shard count alone), the
    # heaviest gateway stays within 20 % of N/G. With 4 shards on 3 gateways one gateway owns
    # two of four shards (50 %, not 33 %) whatever the prefixes: there the bound is its shards'
    # share, 20 % above 2/4.
    worst = _worst_gateway_share(weights, gateways)
    fair = 1 / gateways if shards % gateways == 0 or shards >= 2 * gateways else 2 / shards
    assert worst <= 1.2 * fair, (weights, worst)


def test_sequential_allocation_across_several_pod_cidrs() -> None:
    pools = [Net("10.80.0.0/17"), Net("10.90.0.0/18"), Net("10.70.0.0/18")]
    allocated = _sequential("10.70.0.0/18", 128) + _sequential("10.80.0.0/17", 70)
    spread = spread_pod_prefixes(pools, allocated, 8, route_budget=BUDGET)
    weights = _weights(spread.prefixes, allocated)
    assert sum(weights) == len(allocated)
    assert max(weights) - min(weights) <= 0.2 * len(allocated) / 8


def test_growth_by_one_node_moves_few_node_cidrs() -> None:
    """From 100 to 1,000 nodes one at a time: a step moves at most a few shards' worth of
    tolerance, and most steps move no allocated node CIDR at all."""
    cidrset = _CidrSet("10.80.0.0/14", 25)
    allocated = [cidrset.allocate_next() for _ in range(100)]
    pools = [Net("10.80.0.0/14")]

    def owner(prefixes: tuple[tuple[str, ...], ...]) -> dict[str, int]:
        return {n: i for i, w in enumerate(_split(prefixes, allocated)) for n in w}

    before = owner(spread_pod_prefixes(pools, allocated, 8, route_budget=BUDGET).prefixes)
    moved_steps, moved_total = 0, 0
    for _ in range(100, 1000, 9):
        allocated.append(cidrset.allocate_next())
        after = owner(spread_pod_prefixes(pools, allocated, 8, route_budget=BUDGET).prefixes)
        moved = sum(1 for n, shard in before.items() if after[n] != shard)
        moved_steps += moved > 0
        moved_total += moved
        assert moved <= 7 * 8, moved  # at most a few node CIDRs per cut
        before = after
    assert moved_total <= 1000


def _split(prefixes: tuple[tuple[str, ...], ...], nodes: list[str]) -> list[list[str]]:
    nets = [[Net(p) for p in shard] for shard in prefixes]
    return [[n for n in nodes if any(Net(n).subnet_of(p) for p in shard)] for shard in nets]


@pytest.mark.parametrize("shards", [2, 4, 8])
def test_every_shard_carries_a_node_when_at_least_one_per_shard_is_allocated(
    shards: int,
) -> None:
    """With as many node CIDRs as shards or more, no shard is left empty: two neighbouring
    cuts preferring the same aligned address (5 sequential /24s over 4 shards: the cuts
    after node 1.25 and 2.5 both liked 10.100.2.0) would give one gateway no forward traffic."""
    for count in range(shards, 6 * shards):
        nodes = _sequential("10.100.0.0/16", count, node_mask=24)
        spread = spread_pod_prefixes([Net("10.100.0.0/16")], nodes, shards, route_budget=BUDGET)
        weights = _weights(spread.prefixes, nodes)
        assert min(weights) >= 1, (count, weights)


def test_fewer_nodes_than_shards_is_the_equal_cut_and_outsiders_are_ignored() -> None:
    pools = [Net("10.80.0.0/16")]
    equal = tuple(shard_pod_prefixes(pools, 4))
    assert spread_pod_prefixes(pools, [], 4, route_budget=BUDGET).prefixes == equal
    # fewer node CIDRs than shards: no cut gives every shard a node, the equal cut stays
    three = _sequential("10.80.0.0/16", 3)
    assert spread_pod_prefixes(pools, three, 4, route_budget=BUDGET).prefixes == equal
    assert spread_pod_prefixes(pools, _sequential("10.80.0.0/16", 4), 4, route_budget=BUDGET) != (
        spread_pod_prefixes(pools, three, 4, route_budget=BUDGET)
    )
    outsiders = ["10.99.0.0/25", "fd00::/64", "not-a-cidr", "10.80.0.0/15"]
    assert allocated_in(pools, outsiders) == []
    assert spread_pod_prefixes(pools, outsiders, 4, route_budget=BUDGET).prefixes == equal


def test_a_budget_too_small_for_any_spread_falls_back_to_the_equal_cut() -> None:
    """A tolerance loose enough for 4 routes would leave shards empty: the equal cut it is."""
    pools = [Net("10.80.0.0/16")]
    allocated = _sequential("10.80.0.0/16", 100)
    assert spread_pod_prefixes(pools, allocated, 4, route_budget=12).tolerance >= 0
    spread = spread_pod_prefixes(pools, allocated, 4, route_budget=4)
    assert spread.tolerance == -1 and spread.prefixes == tuple(shard_pod_prefixes(pools, 4))


_pool = st.sampled_from(
    [
        [Net("10.80.0.0/16")],
        [Net("10.80.0.0/20"), Net("10.81.0.0/22")],
        [Net("172.16.0.0/12")],
        [Net("192.168.0.0/24"), Net("10.0.0.0/23"), Net("10.9.0.0/22")],
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    pools=_pool,
    shards=st.sampled_from([2, 4, 8, 16]),
    node_mask_bits=st.integers(min_value=2, max_value=9),
    picks=st.lists(st.integers(min_value=0, max_value=10**6), max_size=120),
    budget=st.integers(min_value=16, max_value=200),
)
def test_prefixes_are_disjoint_cover_every_pod_cidr_and_fit_the_budget(
    pools: list[Net], shards: int, node_mask_bits: int, picks: list[int], budget: int
) -> None:
    blocks = [
        block
        for pool in pools
        for block in itertools.islice(
            pool.subnets(new_prefix=min(32, pool.prefixlen + node_mask_bits)), 4096
        )
    ]
    allocated = sorted({str(blocks[p % len(blocks)]) for p in picks})
    budget = max(budget, shards * len(pools))  # the equal cut fits: the plan is valid
    spread = spread_pod_prefixes(pools, allocated, shards, route_budget=budget)
    assert len(spread.prefixes) == shards
    assert spread.routes <= budget
    nets = [Net(p) for shard in spread.prefixes for p in shard]
    # disjoint, inside the pod CIDRs, and covering them exactly
    for a, b in itertools.combinations(nets, 2):
        assert not a.overlaps(b), (a, b)
    assert all(any(n.subnet_of(pool) for pool in pools) for n in nets)
    assert sum(n.num_addresses for n in nets) == sum(p.num_addresses for p in pools)
    # every allocated node CIDR lies behind exactly one shard (the equal-cut fallback may cut a
    # node CIDR larger than its prefixes; the pod CIDRs are still covered, above)
    for node in allocated:
        owners = [
            i
            for i, shard in enumerate(spread.prefixes)
            if any(Net(node).subnet_of(Net(p)) for p in shard)
        ]
        assert len(owners) == 1 or spread.tolerance == -1, (node, owners)
    # each cut within its tolerance (plus the rounding) of its ideal place
    if spread.tolerance >= 0:
        weights = _weights(spread.prefixes, allocated)
        for weight in weights:
            assert abs(weight - len(allocated) / shards) <= 2 * spread.tolerance + 2
    # the same set in another order gives the same prefixes (every replica agrees)
    again = spread_pod_prefixes(pools, allocated[::-1], shards, route_budget=budget)
    assert again == spread


def test_the_plan_with_the_spread_routes_its_prefixes_and_keeps_the_return_path() -> None:
    """What the node filter's per-shard counters and `status` are built from: the plan whose
    shards carry the spread's prefixes, each shard's VTEP endpoints unchanged."""
    from hybrid_gateway_contract.sharding import plan_shards
    from hybrid_gateway_contract.spread import with_forward_prefixes

    pools = [Net("10.80.0.0/16")]
    plan = plan_shards(pools, [Net("10.0.0.0/16")], 4)
    spread = spread_pod_prefixes(pools, _sequential("10.80.0.0/16", 100), 4, route_budget=BUDGET)
    routed = with_forward_prefixes(plan, spread)
    assert tuple(s.pod_prefixes for s in routed.shards) == spread.prefixes
    assert [s.vtep_endpoints for s in routed.shards] == [s.vtep_endpoints for s in plan.shards]
    assert routed.vtep_prefix_length == plan.vtep_prefix_length
    with pytest.raises(ValueError, match="3 shards of prefixes for a plan of 4"):
        with_forward_prefixes(plan, replace(spread, prefixes=spread.prefixes[:3]))
