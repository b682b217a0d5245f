"""The route-write token bucket (core/pacing.py), on a fake clock."""

from __future__ import annotations

import pytest

from hybrid_gateway.core.pacing import (
    EC2_MUTATING_BUCKET,
    EC2_MUTATING_REFILL_PER_S,
    SHARD_WRITE_BURST,
    SHARD_WRITE_RATE_PER_S,
    TokenBucket,
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
