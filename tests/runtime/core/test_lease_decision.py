"""The Lease decision table, on an injected monotonic clock."""

from __future__ import annotations

import pytest

from hybrid_gateway.core.lease import (
    Action,
    LeaseRecord,
    Observation,
    backoff_wait,
    decide,
    leader_valid_until,
    next_round_in,
    observe,
    validate_timing,
    warrants_early_round,
)

ME = "gw-a"
OTHER = "gw-b"


def record(
    holder: str | None, renew: str = "t0", rv: str = "1", duration: float = 3.0
) -> LeaseRecord:
    return LeaseRecord(holder, duration, renew, 0, rv)


def test_no_lease_object_means_acquire() -> None:
    assert decide(None, ME, now=100.0) is Action.ACQUIRE


def test_released_lease_is_acquired_at_once() -> None:
    obs = observe(None, record(None), now=100.0)
    assert decide(obs, ME, now=100.0) is Action.ACQUIRE


def test_holder_renews() -> None:
    obs = observe(None, record(ME), now=100.0)
    assert decide(obs, ME, now=150.0) is Action.RENEW


def test_live_lease_of_another_is_followed() -> None:
    obs = observe(None, record(OTHER), now=100.0)
    assert decide(obs, ME, now=102.9) is Action.FOLLOW


def test_expired_lease_of_another_is_acquired() -> None:
    obs = observe(None, record(OTHER), now=100.0)
    assert decide(obs, ME, now=103.0) is Action.ACQUIRE


def test_renewal_seen_restarts_the_expiry_window() -> None:
    obs = observe(None, record(OTHER, renew="t0", rv="1"), now=100.0)
    obs = observe(obs, record(OTHER, renew="t1", rv="2"), now=102.5)
    assert obs.observed_at == 102.5
    assert decide(obs, ME, now=104.0) is Action.FOLLOW
    assert decide(obs, ME, now=105.5) is Action.ACQUIRE


def test_unchanged_record_keeps_first_observation_time() -> None:
    obs = observe(None, record(OTHER, rv="1"), now=100.0)
    # A write that does not touch holder/renewTime (e.g. a label) must not extend the lease.
    obs = observe(obs, record(OTHER, rv="7"), now=102.0)
    assert obs.observed_at == 100.0
    assert decide(obs, ME, now=103.0) is Action.ACQUIRE


@pytest.mark.parametrize("skew", ["1970-01-01T00:00:00Z", "2099-12-31T23:59:59Z"])
def test_clock_skew_of_the_holder_does_not_matter(skew: str) -> None:
    """The holder's wall-clock renewTime is only compared for change, never as a time."""
    obs = observe(None, record(OTHER, renew=skew), now=100.0)
    assert decide(obs, ME, now=101.0) is Action.FOLLOW
    assert decide(obs, ME, now=103.0) is Action.ACQUIRE


def test_record_duration_wins_over_ours() -> None:
    """Followers use the holder's advertised duration (here longer than a default 3 s)."""
    obs = observe(None, record(OTHER, duration=10.0), now=0.0)
    assert decide(obs, ME, now=5.0) is Action.FOLLOW
    assert decide(obs, ME, now=10.0) is Action.ACQUIRE


def test_holder_stops_before_others_may_acquire() -> None:
    """Renewal sent at t: holder valid until t + deadline; others acquire at >= t + duration."""
    sent = 50.0
    valid_until = leader_valid_until(sent, renew_deadline_s=2.0)
    observed_by_other = sent + 0.001  # cannot see the renewal before it was sent
    earliest_takeover = observed_by_other + 3.0
    assert valid_until < earliest_takeover
    obs = Observation(record(ME), observed_by_other)
    assert decide(obs, OTHER, now=valid_until) is Action.FOLLOW


def test_conflict_is_lost_then_followed() -> None:
    """Two replicas see the same expired lease; the loser's write conflicts, it re-reads the
    winner's fresh record and follows it."""
    stale = observe(None, record("gw-old", rv="5"), now=0.0)
    assert decide(stale, ME, now=10.0) is Action.ACQUIRE
    assert decide(stale, OTHER, now=10.0) is Action.ACQUIRE
    winner = observe(stale, record(OTHER, renew="t9", rv="6"), now=10.1)
    assert decide(winner, ME, now=10.2) is Action.FOLLOW


@pytest.mark.parametrize(
    ("duration", "deadline", "retry", "message"),
    [
        (3.0, 3.0, 1.0, "renew deadline"),
        (3.0, 4.0, 1.0, "renew deadline"),
        (3.0, 2.0, 2.0, "retry period"),
        (0.0, 2.0, 1.0, "positive"),
    ],
)
def test_timing_is_validated(duration: float, deadline: float, retry: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_timing(duration, deadline, retry)


def test_reference_defaults_are_valid() -> None:
    validate_timing(3.0, 2.0, 1.0)


def test_release_deletion_or_new_holder_wake_the_elector_early() -> None:
    following = observe(None, record(OTHER, "t1"), now=100.0)
    assert warrants_early_round(following, record(None, "t2", rv="2"))  # released
    assert warrants_early_round(following, None)  # deleted
    assert warrants_early_round(following, record("gw-c", "t2", rv="2"))  # taken by a third
    assert warrants_early_round(None, record(OTHER, "t1"))  # nothing read yet


def test_renewals_of_the_known_holder_do_not_wake_the_elector() -> None:
    following = observe(None, record(OTHER, "t1"), now=100.0)
    assert not warrants_early_round(following, record(OTHER, "t2", rv="2"))
    leading = observe(None, record(ME, "t1"), now=100.0)
    assert not warrants_early_round(leading, record(ME, "t2", rv="2"))  # our own echo


def test_an_early_round_cannot_take_a_live_lease() -> None:
    """Waking early only re-reads; a renewed lease of another is still followed."""
    seen = observe(None, record(OTHER, "t1"), now=100.0)
    renewed = record(OTHER, "t2", rv="2")
    seen = observe(seen, renewed, now=100.5)
    assert decide(seen, ME, now=100.6) is Action.FOLLOW
    assert decide(seen, ME, now=103.4) is Action.FOLLOW  # 3 s since the change, not the start
    assert decide(seen, ME, now=103.5) is Action.ACQUIRE


def test_an_edited_duration_or_transition_count_restarts_the_observation() -> None:
    """client-go compares the whole election record (leaderelection.go `observedRawRecord`),
    so an edit of any of its fields is a new observation; only the resourceVersion is not
    part of the record."""
    first = observe(None, record(OTHER, rv="1", duration=3.0), now=100.0)
    longer = observe(first, record(OTHER, rv="2", duration=30.0), now=102.0)
    assert longer.observed_at == 102.0
    assert decide(longer, ME, now=131.9) is Action.FOLLOW
    assert decide(longer, ME, now=132.0) is Action.ACQUIRE
    recounted = observe(first, LeaseRecord(OTHER, 3.0, "t0", 5, "3"), now=101.0)
    assert recounted.observed_at == 101.0


def test_a_follower_backs_off_with_jitter_after_a_failed_or_refused_round() -> None:
    """client-go retries with wait.Jitter(RetryPeriod, 1.2): between 1 and 2.2 times the
    base. A follower whose observed lease expired waits that for a quarter retry period
    instead of 0; one whose last round worked still wakes at the expiry."""
    common = {"retry_period_s": 2.0, "leading": False, "last_renew_sent": None}
    expired = {"now": 110.0, "lease_expires_at": 100.0}
    assert next_round_in(**common, **expired, last_round_failed=False) == 0.0  # type: ignore[arg-type]
    low = next_round_in(**common, **expired, last_round_failed=True, jitter=0.0)  # type: ignore[arg-type]
    high = next_round_in(**common, **expired, last_round_failed=True, jitter=0.999)  # type: ignore[arg-type]
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5 * (1 + 1.2 * 0.999))
    assert backoff_wait(2.0, 0.5) == pytest.approx(0.8)
    # a lease that expires later than the back-off still sets the wake-up
    later = next_round_in(**common, now=100.0, lease_expires_at=101.5, last_round_failed=True)  # type: ignore[arg-type]
    assert later == pytest.approx(1.5)
