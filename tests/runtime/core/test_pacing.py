"""The route-write token bucket and the drain budget (core/pacing.py), on a fake clock."""

from __future__ import annotations

import pytest

from hybrid_gateway.core.pacing import (
    EC2_MUTATING_BUCKET,
    EC2_MUTATING_REFILL_PER_S,
    SHARD_WRITE_BURST,
    SHARD_WRITE_RATE_PER_S,
    DrainBudget,
    TokenBucket,
    drain_budget,
    paced_seconds,
)


def test_a_burst_goes_at_once_then_writes_are_spaced_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(burst=3, rate_per_s=2.0, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    now[0] = 10.0  # refilled, never beyond the burst
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_a_replica_spends_at_most_half_the_accounts_mutating_bucket() -> None:
    assert SHARD_WRITE_BURST * 2 <= EC2_MUTATING_BUCKET
    assert SHARD_WRITE_RATE_PER_S * 2 <= EC2_MUTATING_REFILL_PER_S
    with pytest.raises(ValueError, match="must be positive"):
        TokenBucket(burst=0, rate_per_s=1.0, clock=lambda: 0.0)


@pytest.mark.parametrize("writes", [1, 25, 55, 56, 120, 400])
def test_the_drain_waits_as_long_as_the_pacing_needs_from_an_empty_bucket(writes: int) -> None:
    """A stopping replica waits for its released shards' routes to move; the new owner sends
    them through its pacing, whose bucket it may just have emptied on its own shards. The
    drain's budget covers the takeover and the last of those writes (the fixed 12 s it had
    did not, beyond ~55 writes from a full bucket and 30 from an empty one), unless the
    termination grace period leaves less, and never falls below its floor."""
    now = [0.0]
    bucket = TokenBucket(
        burst=SHARD_WRITE_BURST, rate_per_s=SHARD_WRITE_RATE_PER_S, clock=lambda: now[0]
    )
    for _ in range(SHARD_WRITE_BURST):  # spent just before
        bucket.reserve()
    last = max(bucket.reserve() for _ in range(writes))
    assert paced_seconds(writes) >= last
    roomy = drain_budget(writes, takeover_s=2.0, floor_s=12.0, limit_s=10_000.0)
    assert roomy.needed_s == pytest.approx(2.0 + last)
    assert roomy.budget_s == max(roomy.needed_s, 12.0)  # not a second more
    assert not roomy.too_short
    tight = drain_budget(writes, takeover_s=2.0, floor_s=12.0, limit_s=15.0)
    assert tight.needed_s == roomy.needed_s  # the limit clips the wait, not the need
    assert tight.budget_s == min(15.0, roomy.budget_s)
    assert tight.too_short == (roomy.needed_s > 15.0)
    gone = drain_budget(writes, takeover_s=2.0, floor_s=12.0, limit_s=-3.0)
    assert gone.budget_s == 0.0 and gone.needed_s == roomy.needed_s and gone.too_short


def test_a_need_below_the_floor_waits_the_floor_and_is_not_too_short() -> None:
    """A move of a few writes still gets the floor (a takeover may be late), and a limit below
    the floor clips even that, which is then too short only if the need is over the limit."""
    small = drain_budget(2, takeover_s=2.0, floor_s=12.0, limit_s=20.0)
    assert small.needed_s == pytest.approx(2.0 + 2 / SHARD_WRITE_RATE_PER_S)
    assert small.budget_s == 12.0 and not small.too_short
    assert drain_budget(2, takeover_s=2.0, floor_s=12.0, limit_s=5.0) == DrainBudget(
        needed_s=small.needed_s, budget_s=5.0
    )
    assert drain_budget(2, takeover_s=2.0, floor_s=12.0, limit_s=2.5).too_short
