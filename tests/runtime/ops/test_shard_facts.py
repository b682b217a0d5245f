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
    assert "cannot be cut into 8 prefixes" in str(too_fine.shard_plan_problems()[0])
    # the route quota alone does not stop a plan: ROUTE-QUOTA judges each table
    assert Facts(now=0.0, settings=settings(max_routes_per_table=2)).shard_plan() is not None


def test_a_cidr_that_is_no_cidr_is_a_problem_not_a_crash() -> None:
    facts = Facts(now=0.0, settings=settings(pod_cidrs=("10.100.0.0/16", "pods")))
    assert facts.shard_plan() is None
    [problem] = facts.shard_plan_problems()
    assert "no plan from these CIDRs" in str(problem) and "pods" in str(problem)
