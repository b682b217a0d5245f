"""The active-active shard plan both sides derive: prefixes, endpoints, quota checks."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybrid_gateway_contract import MAX_VTEP_ENDPOINTS
from hybrid_gateway_contract.sharding import (
    ShardSetting,
    member_lease_name,
    plan_shards,
    shard_count_problem,
    shard_lease_name,
    shard_plan_problems,
)

N = ipaddress.IPv4Network


@given(
    pod_prefixes=st.lists(st.integers(min_value=8, max_value=24), min_size=1, max_size=3),
    vpc_prefixes=st.lists(st.integers(min_value=16, max_value=28), min_size=1, max_size=8),
    bits=st.integers(min_value=1, max_value=5),
)
def test_shards_partition_the_pod_networks_and_the_endpoints_cover_the_vpc(
    pod_prefixes: list[int], vpc_prefixes: list[int], bits: int
) -> None:
    pods = [N(f"{100 + i}.0.0.0/{p}") for i, p in enumerate(pod_prefixes)]
    vpcs = [N(f"10.{i}.0.0/{p}") for i, p in enumerate(vpc_prefixes)]
    plan = plan_shards(pods, vpcs, 2**bits)
    prefixes = [N(p) for shard in plan.shards for p in shard.pod_prefixes]
    # Every pod network is exactly the union of its shards' prefixes, disjoint, one per shard.
    for pod in pods:
        inside = [p for p in prefixes if p.subnet_of(pod)]
        assert len(inside) == 2**bits
        assert sum(p.num_addresses for p in inside) == pod.num_addresses
    endpoints = [N(cidr) for shard in plan.shards for _name, cidr in shard.vtep_endpoints]
    assert 1 <= len(endpoints) <= MAX_VTEP_ENDPOINTS
    assert sum(e.num_addresses for e in endpoints) == sum(v.num_addresses for v in vpcs)
    assert all(any(e.subnet_of(v) for v in vpcs) for e in endpoints)
    if plan.vtep_prefix_length is not None:
        assert {e.prefixlen for e in endpoints} == {plan.vtep_prefix_length}
    names = [name for shard in plan.shards for name, _cidr in shard.vtep_endpoints]
    assert len(set(names)) == len(names)
    assert plan.routes_per_table() == len(pods) * 2**bits


def test_one_vpc_cidr_is_cut_once_per_shard_with_one_mask() -> None:
    plan = plan_shards([N("10.100.0.0/16")], [N("10.0.0.0/16")], 4)
    assert [s.pod_prefixes for s in plan.shards] == [
        ("10.100.0.0/18",), ("10.100.64.0/18",), ("10.100.128.0/18",), ("10.100.192.0/18",)
    ]  # fmt: skip
    assert [s.vtep_endpoints for s in plan.shards] == [
        (("vpc-gateway-0", "10.0.0.0/18"),),
        (("vpc-gateway-1", "10.0.64.0/18"),),
        (("vpc-gateway-2", "10.0.128.0/18"),),
        (("vpc-gateway-3", "10.0.192.0/18"),),
    ]
    assert plan.vtep_prefix_length == 18


def test_vpc_cidrs_too_different_for_eight_endpoints_stay_whole() -> None:
    plan = plan_shards([N("10.100.0.0/16")], [N("10.0.0.0/16"), N("10.1.0.0/24")], 4)
    assert plan.vtep_prefix_length is None
    assert [cidr for s in plan.shards for _n, cidr in s.vtep_endpoints] == [
        "10.0.0.0/16",
        "10.1.0.0/24",
    ]


@pytest.mark.parametrize("shards", [0, 1, 3, 6, 128])
def test_shard_counts_that_are_not_powers_of_two_from_2_to_64_are_refused(shards: int) -> None:
    assert shard_count_problem(shards) is not None
    problems = shard_plan_problems([N("10.100.0.0/16")], [N("10.0.0.0/16")], shards)
    assert [p.setting for p in problems] == [ShardSetting.SHARDS]


def test_the_route_quota_and_the_pod_network_size_are_checked() -> None:
    problems = shard_plan_problems(
        [N("10.100.0.0/16")] * 7, [N("10.0.0.0/16")], 8, max_routes_per_table=50
    )
    assert [p.setting for p in problems] == [ShardSetting.MAX_ROUTES_PER_TABLE]
    # the default is the VPC quota's current default, 500: 7 x 64 + 1 fits, 8 x 64 + 1 not
    assert shard_plan_problems([N("10.100.0.0/16")] * 7, [N("10.0.0.0/16")], 64) == []
    assert shard_plan_problems([N("10.100.0.0/16")] * 8, [N("10.0.0.0/16")], 64)
    assert "57" not in problems[0].message and "56 routes" in problems[0].message
    assert (
        shard_plan_problems(
            [N("10.100.0.0/16")] * 7, [N("10.0.0.0/16")], 8, max_routes_per_table=57
        )
        == []
    )
    small = shard_plan_problems([N("10.100.0.0/30")], [N("10.0.0.0/16")], 8)
    assert [p.setting for p in small] == [ShardSetting.SHARDS]
    assert "10.100.0.0/30" in small[0].message and "/33" in small[0].message


def test_lease_names_are_valid_and_distinct() -> None:
    long_pod = "eks-hybrid-nodes-gateway-" + "x" * 200
    name = member_lease_name("hybrid-gateway-leader", long_pod)
    assert len(name) <= 253 and name != member_lease_name("hybrid-gateway-leader", long_pod + "y")
    assert shard_lease_name("hybrid-gateway-leader", 3) == "hybrid-gateway-leader-shard-3"
