"""The shard group's pure decisions: the ownership view from Lease observations, the
membership gate's memory and the pacing of hand-overs, on a clock the test sets."""

from __future__ import annotations

from hybrid_gateway.core.lease import LeaseRecord, Observation
from hybrid_gateway.core.shard_group import (
    EligibilityWatch,
    HandoverPacing,
    SlotState,
    endpoints_still_here,
    next_wait,
    ownership_view,
    shards_without_new_owner,
)


def seen(holder: str | None, at: float, duration_s: float = 1.0) -> Observation:
    return Observation(LeaseRecord(holder, duration_s, None, 0, "1"), at)


def test_the_view_counts_live_members_of_our_plan_and_remembers_lapsed_holders() -> None:
    records = {
        "gw-member-a": seen("a", 9.5),
        "gw-member-b": seen("b", 9.5),  # another plan's member
        "gw-member-c": seen("c", 8.0),  # expired at 9.0
        "gw-shard-0": seen("a", 9.5),
        "gw-shard-1": seen("c", 8.0),  # lapsed: c stopped renewing
    }
    plans = {"gw-member-a": "p1", "gw-member-b": "p2", "gw-member-c": "p1"}
    view = ownership_view(
        me="me",
        me_member=True,
        member_prefix="gw-member-",
        plan_digest="p1",
        records=records,
        plans=plans,
        slots=[
            SlotState(0, "gw-shard-0", False),
            SlotState(1, "gw-shard-1", False),
            SlotState(2, "gw-shard-2", True),
        ],
        now=10.0,
    )
    assert view.members == frozenset({"a", "me"})
    assert dict(view.holders) == {0: "a", 1: None, 2: "me"}
    assert view.lapsed_holders() == frozenset({"c"})
    assert shards_without_new_owner(view, "me", [1, 2]) == [1, 2]
    alone = ownership_view(
        me="me",
        me_member=True,
        member_prefix="gw-member-",
        plan_digest="p1",
        records={},
        plans={},
        slots=[SlotState(0, "gw-shard-0", False)],
        now=10.0,
    )
    assert shards_without_new_owner(alone, "me", [0]) is None  # no one of our plan takes it
    # the coordinator looks again when a's Leases may expire, not a whole retry period later
    assert abs(next_wait(records, "me", 10.0, retry_period_s=2.0) - 0.51) < 1e-9


def test_an_ineligible_replica_leaves_at_once_and_gives_its_shards_up_once_after_the_bound() -> (
    None
):
    gate = EligibilityWatch(shards_after_s=2.0)
    first = gate.step("data plane not ready", 0.0)
    assert first.fell_out and first.leave_membership and not first.give_up_shards
    assert not gate.step("data plane not ready", 1.9).give_up_shards
    due = gate.step("data plane not ready", 2.0)
    assert due.give_up_shards and not due.fell_out
    gate.handed_over()
    assert not gate.step("data plane not ready", 3.0).give_up_shards
    back = gate.step(None, 3.5)
    assert back.rejoined and not back.leave_membership
    assert not gate.step(None, 4.0).rejoined


def test_hand_overs_are_spaced_and_only_of_converged_shards() -> None:
    pacing = HandoverPacing(spacing_s=2.0)
    assert not pacing.allow(0.0, converged=False)
    assert pacing.allow(0.0, converged=True)
    assert not pacing.allow(1.9, converged=True)
    assert pacing.allow(2.0, converged=True)


def test_only_our_named_endpoints_that_point_here_hold_a_drain() -> None:
    config = {
        "spec": {
            "endpoints": [
                {"name": "s1", "tunnelEndpoint": "10.0.1.10"},
                {"name": "s0", "tunnelEndpoint": "10.0.1.10"},
                {"name": "s2", "tunnelEndpoint": "10.0.1.11"},
                {"name": "other", "tunnelEndpoint": "10.0.1.10"},
            ]
        }
    }
    assert endpoints_still_here(config, {"s0", "s1", "s2"}, "10.0.1.10") == ["s0", "s1"]
    assert endpoints_still_here(None, {"s0"}, "10.0.1.10") == []
