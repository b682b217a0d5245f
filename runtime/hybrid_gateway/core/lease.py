"""Lease leadership decisions, pure and on an injected monotonic clock.

Wall-clock times written in a Lease by another node are never compared with our clock (their
clocks may be skewed). Like client-go, a follower remembers WHEN (on its own monotonic clock) it
last saw the record change and treats the lease as expired `lease_duration` after that.

The holder's side is stricter: its leadership is valid only until `renew_deadline` after the
moment it SENT its last successful renewal. The server stored that renewal no earlier than the
send, and others observed it no earlier than that, so they cannot take over before
`sent + lease_duration`. With `renew_deadline < lease_duration` the holder always stops first,
and the difference is the margin for clock-rate differences and in-flight writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from hybrid_gateway_contract.rules import lease_timing_problem


class Action(enum.Enum):
    """What the elector does next with the Lease."""

    ACQUIRE = "acquire"  # write ourselves as holder (create, or update at the observed version)
    RENEW = "renew"  # we hold it: refresh renewTime at the observed version
    FOLLOW = "follow"  # someone else holds a live lease: wait


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a coordination.k8s.io/v1 Lease that leadership depends on."""

    holder: str | None
    lease_duration_s: float
    renew_time: str | None  # as written by the holder; only compared for change, never as a time
    transitions: int
    resource_version: str

    @property
    def released(self) -> bool:
        return not self.holder


@dataclass(frozen=True)
class Observation:
    """A record and the local monotonic time it was first seen in this form."""

    record: LeaseRecord
    observed_at: float


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """Remember `record`, keeping the earlier observation time if it did not change.

    The whole record is compared, as client-go's elector compares the whole
    LeaderElectionRecord (client-go tools/leaderelection/leaderelection.go: `observedRawRecord`
    bytes, `observedRecord`): an edited `leaseDurationSeconds`, holder, renewTime or transition
    count starts a new observation, so the new duration counts from when the edit was seen.
    Only the resourceVersion is left out: it is not part of the record, and unrelated writes
    (labels, annotations) must not extend someone else's lease.
    """
    if previous is not None and same_record(previous.record, record):
        return Observation(record, previous.observed_at)
    return Observation(record, now)


def same_record(a: LeaseRecord, b: LeaseRecord) -> bool:
    """The leader-election fields are equal (the resourceVersion is not one of them)."""
    return replace(a, resource_version="") == replace(b, resource_version="")


def decide(observation: Observation | None, identity: str, now: float) -> Action:
    """The elector's decision table.

    - no Lease object, or a released one (empty holder): acquire;
    - we are the holder: renew;
    - another holder whose record has not changed for `lease_duration` on OUR clock: acquire;
    - otherwise: follow.
    """
    if observation is None:
        return Action.ACQUIRE
    record = observation.record
    if record.released:
        return Action.ACQUIRE
    if record.holder == identity:
        return Action.RENEW
    if now >= observation.observed_at + record.lease_duration_s:
        return Action.ACQUIRE
    return Action.FOLLOW


def warrants_early_round(observation: Observation | None, seen: LeaseRecord | None) -> bool:
    """Whether a Lease seen on the watch should wake the elector before its next retry round.

    Only a deletion, a release or a new holder can change what the elector does; a renewal by
    the holder we already know cannot (and our own renewals echo back on the watch). This never
    decides leadership: the early round re-reads the Lease and goes through `decide`, so the
    rules for acquiring stay exactly the same.
    """
    if seen is None or seen.released:
        return True
    known = observation.record.holder if observation is not None else None
    return seen.holder != known


def expires_at(observation: Observation | None, identity: str) -> float | None:
    """When (our monotonic clock) another holder's observed lease may be taken, else None.

    The standby's next round is due then, not at its next retry tick: a holder that stopped
    renewing is replaced when its lease runs out, not up to a retry period later.
    """
    if observation is None or observation.record.released:
        return None
    if observation.record.holder == identity:
        return None
    return observation.observed_at + observation.record.lease_duration_s


#: client-go waits `wait.Jitter(RetryPeriod, 1.2)` between acquisition attempts
#: (tools/leaderelection/leaderelection.go `JitterFactor = 1.2`, `wait.JitterUntil`;
#: apimachinery pkg/util/wait `Jitter`: duration + rand * factor * duration).
JITTER_FACTOR = 1.2


def backoff_wait(retry_period_s: float, jitter: float) -> float:
    """A follower's pause after a failed or refused round: a quarter retry period, stretched by
    up to `JITTER_FACTOR` times itself (`jitter` in [0, 1)), so two replicas that fail together
    do not retry in lockstep."""
    quarter = retry_period_s / 4
    return quarter * (1 + JITTER_FACTOR * min(max(jitter, 0.0), 1.0))


def next_round_in(
    *,
    now: float,
    retry_period_s: float,
    leading: bool,
    last_renew_sent: float | None,
    last_round_failed: bool,
    lease_expires_at: float | None,
    jitter: float = 0.0,
    backoff_period_s: float | None = None,
) -> float:
    """Seconds until the elector's next round (never negative).

    - the holder renews a retry period after it SENT its last successful renewal (not after
      the reply came: a slow API server must not push renewals past the renew deadline), and
      retries a failed renewal after a quarter of a retry period;
    - a follower wakes when the lease it observes expires, or at its retry tick if sooner;
      after a failed or refused round (`last_round_failed`) it waits at least
      `backoff_wait` of `backoff_period_s` (default: the retry period): an expired lease
      it cannot take must not make it spin.
    """
    if leading:
        if last_round_failed or last_renew_sent is None:
            return retry_period_s / 4
        return max(0.0, last_renew_sent + retry_period_s - now)
    wait = retry_period_s
    if lease_expires_at is not None:
        wait = min(wait, lease_expires_at - now)
    if last_round_failed:
        period = retry_period_s if backoff_period_s is None else backoff_period_s
        wait = max(wait, backoff_wait(period, jitter))
    return max(0.0, wait)


def leader_valid_until(renew_sent_at: float, renew_deadline_s: float) -> float:
    """Monotonic time at which a holder must have stopped all leader work."""
    return renew_sent_at + renew_deadline_s


def validate_timing(
    lease_duration_s: float, renew_deadline_s: float, retry_period_s: float
) -> None:
    """Raise ValueError unless retry < renew deadline < lease duration, all positive.

    The rule lives in the contract, shared with the construct library's synth-time check and
    the daemon's start-up check; the elector applies it too, when it is made.
    """
    problem = lease_timing_problem(lease_duration_s, renew_deadline_s, retry_period_s)
    if problem is not None:
        raise ValueError(problem.message)
