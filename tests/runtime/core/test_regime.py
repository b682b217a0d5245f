"""One regime at a time (core/regime.py) and which Lease belongs to which regime."""

from __future__ import annotations

import ipaddress

from hybrid_gateway.core.regime import Writer, fence, lease_regime, rank
from hybrid_gateway_contract.plans import (
    ACTIVE_STANDBY_REGIME,
    PLAN_LABEL,
    plan_digest,
    shard_regime,
)

LEASE = "hybrid-gateway-leader"
PODS = [ipaddress.IPv4Network("10.80.0.0/16")]
VPC = [ipaddress.IPv4Network("10.0.0.0/16")]


def test_the_plan_digest_changes_with_every_part_of_the_plan_and_is_a_label_value() -> None:
    base = plan_digest(PODS, VPC, 4)
    assert base == plan_digest(list(PODS), list(VPC), 4)
    assert len(base) == 16 and base.isalnum()
    others = {
        plan_digest(PODS, VPC, 2),
        plan_digest([ipaddress.IPv4Network("10.81.0.0/16")], VPC, 4),
        plan_digest(PODS, [ipaddress.IPv4Network("10.1.0.0/16")], 4),
        plan_digest([*PODS, ipaddress.IPv4Network("10.81.0.0/16")], VPC, 4),
    }
    assert base not in others and len(others) == 4


def test_leases_are_sorted_into_regimes_by_name_and_plan_label() -> None:
    assert lease_regime(LEASE, LEASE, {}) == ACTIVE_STANDBY_REGIME
    assert lease_regime(f"{LEASE}-shard-3", LEASE, {PLAN_LABEL: "abc"}) == shard_regime("abc")
    assert lease_regime(f"{LEASE}-shard-0", LEASE, {}) == shard_regime(None)
    assert lease_regime(f"{LEASE}-member-0123", LEASE, {PLAN_LABEL: "abc"}) is None
    assert lease_regime(f"{LEASE}-shard-x", LEASE, {}) is None
    assert lease_regime("other", LEASE, {}) is None


def test_a_writer_may_write_only_while_no_other_regime_is_live() -> None:
    mine = shard_regime("aaaa")
    same = Writer(f"{LEASE}-shard-1", "gw-b", mine)
    assert fence(mine, [same]).may_write
    leader = Writer(LEASE, "gw-a", ACTIVE_STANDBY_REGIME)
    decision = fence(mine, [same, leader])
    assert not decision.may_write
    assert not decision.must_yield  # active-active outranks active-standby: it waits
    assert decision.describe() == "active-standby (gw-a)"
    back = fence(ACTIVE_STANDBY_REGIME, [same, leader])
    assert back.must_yield and not back.may_write


def test_between_two_plans_exactly_one_yields_whatever_the_order() -> None:
    a, b = shard_regime("0f"), shard_regime("f0")
    writer_a = Writer(f"{LEASE}-shard-0", "gw-a", a)
    writer_b = Writer(f"{LEASE}-shard-1", "gw-b", b)
    assert fence(a, [writer_a, writer_b]).must_yield != fence(b, [writer_a, writer_b]).must_yield
    unlabelled = shard_regime(None)
    assert rank(ACTIVE_STANDBY_REGIME) < rank(unlabelled) < rank(a) < rank(b)
