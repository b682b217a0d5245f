"""The pure parts of active-active facts: Lease liveness as status judges the leader Lease, and
the plan taken from the contract (or none when the settings cannot make one)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from hybrid_gateway.ops.facts import Facts, GatewaySettings, GroupLease, LeaseFacts
from hybrid_gateway_contract.sharding import GatewayMode, plan_shards


def lease(holder: str | None, renewed: float | None, duration: float = 10.0) -> GroupLease:
    return GroupLease("l", LeaseFacts(holder, renewed, None, duration, 0))


def test_a_group_lease_is_live_until_renew_time_plus_duration() -> None:
    assert lease("a", 100.0).state(110.0) == "live"
    assert lease("a", 100.0).state(110.1) == "expired"
    assert lease("a", None).state(0.0) == "expired"  # never renewed
    assert lease(None, 100.0).state(100.0) == "released"


def settings(**changes: Any) -> GatewaySettings:
    base = GatewaySettings(
        namespace="ns",
        deployment="gw",
        replicas=2,
        vpc_cidrs=("10.0.0.0/16",),
        pod_cidrs=("10.100.0.0/16",),
        route_table_ids=("rtb-1",),
        lease_name="gw",
        mode=GatewayMode.ACTIVE_ACTIVE,
        shards=8,
    )
    return replace(base, **changes)


def test_the_plan_is_the_contracts() -> None:
    facts = Facts(now=0.0, settings=settings())
    assert facts.shard_plan() == plan_shards(
        [ipaddress.IPv4Network("10.100.0.0/16")], [ipaddress.IPv4Network("10.0.0.0/16")], 8
    )
    assert facts.shard_plan_problems() == []


def test_no_plan_in_active_standby_or_from_settings_the_daemon_refuses() -> None:
    assert Facts(now=0.0, settings=settings(mode=GatewayMode.ACTIVE_STANDBY)).shard_plan() is None
    assert Facts(now=0.0, settings=settings(shards=6)).shard_plan() is None
    too_fine = Facts(now=0.0, settings=settings(pod_cidrs=("10.100.0.0/30",)))
    assert too_fine.shard_plan() is None
    assert str(too_fine.shard_plan_problems()[0]).startswith(
        "shards 8: remote pod network 10.100.0.0/30 cannot be cut into that many prefixes"
    )
    # the route quota alone does not stop a plan: ROUTE-QUOTA judges each table
    assert Facts(now=0.0, settings=settings(max_routes_per_table=2)).shard_plan() is not None


def test_a_cidr_that_is_no_cidr_is_a_problem_not_a_crash() -> None:
    facts = Facts(now=0.0, settings=settings(pod_cidrs=("10.100.0.0/16", "pods")))
    assert facts.shard_plan() is None
    [problem] = facts.shard_plan_problems()
    assert "no plan from these CIDRs" in str(problem) and "pods" in str(problem)


def test_the_plan_routes_the_prefixes_the_daemons_spread_over_the_allocated_nodes() -> None:
    """status and preflight judge the routes the daemons write: the spread of the hybrid
    CiliumNodes' pod CIDRs (100 sequential /25s: not the equal cut's /19s)."""
    from hybrid_gateway.ops.facts import HybridNode
    from hybrid_gateway_contract.spread import spread_pod_prefixes

    pool = ipaddress.IPv4Network("10.100.0.0/16")
    cidrs = [str(n) for n, _ in zip(pool.subnets(new_prefix=25), range(100), strict=False)]
    nodes = tuple(HybridNode(f"hn{i}", f"192.168.0.{i + 1}", (c,)) for i, c in enumerate(cidrs))
    plan = Facts(now=0.0, settings=settings(), hybrid_nodes=nodes).shard_plan()
    assert plan is not None
    spread = spread_pod_prefixes([pool], cidrs, 8, route_budget=50 - 1)
    assert tuple(s.pod_prefixes for s in plan.shards) == spread.prefixes
    assert spread.tolerance >= 0  # a real spread, not the equal-cut fallback
    equal = plan_shards([pool], [ipaddress.IPv4Network("10.0.0.0/16")], 8)
    assert [s.vtep_endpoints for s in plan.shards] == [s.vtep_endpoints for s in equal.shards]
