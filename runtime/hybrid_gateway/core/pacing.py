"""A token bucket that paces one replica's route writes, pure (the clock is injected).

EC2 throttles each account per Region with token buckets; CreateRoute, ReplaceRoute and
DeleteRoute are "mutating actions", which share one bucket of 50 tokens refilled at 5 per second
("Request throttling for the Amazon EC2 API", Amazon EC2 Developer Guide, request token bucket
sizes and refill rates). In active-active mode a full failover rewrites every shard's routes:
S times the writes of an active-standby failover, enough to empty that bucket and throttle
every other tool of the account. A replica therefore spends at most half the bucket at once and
half its refill rate after that (`SHARD_WRITE_BURST`, `SHARD_WRITE_RATE_PER_S`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: The account's bucket for mutating EC2 actions (see the module docstring).
EC2_MUTATING_BUCKET: Final = 50
EC2_MUTATING_REFILL_PER_S: Final = 5.0
#: What one active-active replica may use of it.
SHARD_WRITE_BURST: Final = EC2_MUTATING_BUCKET // 2
SHARD_WRITE_RATE_PER_S: Final = EC2_MUTATING_REFILL_PER_S / 2


class TokenBucket:
    """Reservations against a bucket of `burst` tokens refilled at `rate_per_s`: each
    `reserve()` takes one token now and says how long to wait until it is really there, so
    concurrent writers are spaced in the order they asked."""

    def __init__(self, *, burst: int, rate_per_s: float, clock: Callable[[], float]) -> None:
        if burst < 1 or rate_per_s <= 0:
            raise ValueError(f"burst {burst} and rate {rate_per_s} must be positive")
        self._burst = float(burst)
        self._rate = rate_per_s
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; seconds to wait before using it (0 if it is there)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


def paced_seconds(writes: int, *, rate_per_s: float = SHARD_WRITE_RATE_PER_S) -> float:
    """The longest a replica's pacing takes to let `writes` route writes go: from an empty
    bucket (its burst spent on other shards just before), one every 1/`rate_per_s` s. A write
    attempt that gets no answer and is sent again takes one more."""
    return max(0, writes) / rate_per_s


@dataclass(frozen=True)
class DrainBudget:
    """How long a stopping replica's released shards need to move (`needed_s`) and how long it
    waits for them (`budget_s`: the need clipped to its floor and limit)."""

    needed_s: float
    budget_s: float

    @property
    def too_short(self) -> bool:
        """Whether the wait ends before the move may be done (the limit clipped the need)."""
        return self.needed_s > self.budget_s


def drain_budget(writes: int, *, takeover_s: float, floor_s: float, limit_s: float) -> DrainBudget:
    """What a stopping replica's released shards need to move: the takeover (`takeover_s`: the
    release seen, the Leases taken, the first sync planned) plus the time the new owner's pacing
    needs for `writes`; it waits that long, at least `floor_s` and at most `limit_s` (what the
    pod's termination grace period leaves), never less than 0."""
    needed = takeover_s + paced_seconds(writes)
    return DrainBudget(needed_s=needed, budget_s=max(0.0, min(limit_s, max(floor_s, needed))))
