"""The elector when the Lease changes under it (deleted, edited, taken), when it is shut down
mid-round, and when the API server fails: on a fake clock and an in-memory Lease that answers
like kube-apiserver (a renewal of a deleted Lease is 409: the uid in the body is a
precondition; k8s.io/apiserver registry/generic/registry/store.go `Update`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hybrid_gateway.adapters.kube_lease import LeaseConflictError
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.leader.elector import LeaseElector, Term


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ApiLease:
    """One Lease with resourceVersion semantics, an admin who can delete or edit it, an
    optional outage, and a hook run inside a request (to interleave other threads' work)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.record: LeaseRecord | None = None
        self.version = 0
        self.up = True
        self.gets = 0
        self.writes: list[str | None] = []  # holder of every write that reached the server
        self.during_get: Callable[[], None] | None = None
        self.during_write: Callable[[], None] | None = None

    def get(self, timeout_s: float) -> LeaseRecord | None:
        self.gets += 1
        if self.during_get is not None:
            self.during_get()
        if not self.up:
            raise TimeoutError("API server unreachable")
        return self.record

    def write(
        self, previous: LeaseRecord | None, holder: str | None, duration: float, timeout_s: float
    ) -> LeaseRecord:
        if not self.up:
            raise TimeoutError("API server unreachable")
        self.writes.append(holder)
        if self.during_write is not None:
            self.during_write()
        current = self.record.resource_version if self.record else None
        if (previous.resource_version if previous else None) != current:
            raise LeaseConflictError("changed")  # also a deleted Lease (uid precondition)
        return self._store(holder, duration, 0)

    def _store(self, holder: str | None, duration: float, transitions: int) -> LeaseRecord:
        self.version += 1
        self.record = LeaseRecord(
            holder, duration, f"t{self.clock.now}", transitions, str(self.version)
        )
        return self.record

    # -- the admin ----------------------------------------------------------------------------
    def delete(self) -> None:
        self.record = None

    def edit(self, **fields: object) -> LeaseRecord:
        assert self.record is not None
        values = {
            "holder": self.record.holder,
            "duration": self.record.lease_duration_s,
            "transitions": self.record.transitions,
            **fields,
        }
        self.version += 1
        self.record = LeaseRecord(
            values["holder"],  # type: ignore[arg-type]
            values["duration"],  # type: ignore[arg-type]
            self.record.renew_time,
            values["transitions"],  # type: ignore[arg-type]
            str(self.version),
        )
        return self.record


class Terms:
    def __init__(self) -> None:
        self.started: list[Term] = []
        self.stopped = 0

    def started_leading(self, term: Term) -> None:
        self.started.append(term)

    def stopped_leading(self) -> None:
        self.stopped += 1

    def new_leader(self, holder: str | None) -> None:
        pass


def elector(name: str, store: ApiLease, clock: Clock, **kwargs: object) -> LeaseElector:
    return LeaseElector(
        store,
        identity=name,
        lease_duration_s=3.0,
        renew_deadline_s=2.0,
        retry_period_s=1.0,
        clock=clock,
        **{"callbacks": Terms(), **kwargs},  # type: ignore[arg-type]
    )


def leading(e: LeaseElector) -> bool:
    """Read through a call: a property asserted twice must not be narrowed by the type checker."""
    return e.leading


def paused(e: LeaseElector) -> bool:
    return e.paused


# --- a deleted or edited Lease -------------------------------------------------------------------


def test_a_renewal_refused_after_the_lease_was_deleted_pauses_writes_at_once() -> None:
    clock = Clock()
    store = ApiLease(clock)
    a = elector("a", store, clock)
    a.try_once()
    assert a.valid()
    store.delete()  # an admin deletes the Lease during the term
    clock.now += 1.0
    a.try_once()  # the renewal is answered 409: validity would last 1 s more
    assert leading(a) and not a.valid() and paused(a)
    # the next round reads (no Lease), takes it again, and writes resume
    clock.now += 0.25
    a.try_once()
    assert a.valid() and not paused(a) and store.record is not None
    assert store.record.holder == "a"


def test_the_watch_showing_no_lease_or_another_holder_pauses_the_leader_until_a_read() -> None:
    clock = Clock()
    store = ApiLease(clock)
    a, b = elector("a", store, clock), elector("b", store, clock)
    a.try_once()
    b.try_once()
    store.delete()
    a.notice(None)  # the leader's own Lease watch: DELETED
    assert leading(a) and not a.valid()
    b.notice(None)
    b.try_once()  # the standby takes the deleted Lease at once (as client-go would)
    assert b.valid()
    a.notice(store.record)  # the watch shows b's acquisition: still paused
    assert not a.valid()
    a.try_once()  # a read shows b as holder: the term ends
    assert not leading(a) and not a.valid()
    assert store.writes == ["a", "b"]  # a never wrote again


def test_a_renewal_in_flight_when_the_watch_shows_the_lease_deleted_does_not_resume_writes() -> (
    None
):
    clock = Clock()
    store = ApiLease(clock)
    a = elector("a", store, clock)
    a.try_once()
    clock.now += 1.0
    # the renewal succeeds at the server, then the admin deletes the Lease and the watch shows
    # it before the renewal's answer is processed
    store.during_write = lambda: a.notice(None)
    a.try_once()
    store.during_write = None
    assert not a.valid()
    store.delete()
    a.try_once()  # reads: no Lease; re-creates it
    assert a.valid() and store.record is not None and store.record.holder == "a"


def test_an_edited_holder_pauses_and_an_edited_duration_restarts_the_observation() -> None:
    clock = Clock()
    store = ApiLease(clock)
    a, b = elector("a", store, clock), elector("b", store, clock)
    a.try_once()
    b.try_once()
    # an edit that keeps the holder: the leader's next renewal conflicts, re-reads, renews
    a.notice(store.edit(duration=30.0))
    assert a.valid()  # still ours: no pause from the watch
    clock.now += 1.0
    a.try_once()
    assert not a.valid() and paused(a)
    a.try_once()
    assert a.valid()
    # b saw a's record at t=1001 with duration 3; an edit to 30 s seen at t=1001.5 restarts
    # its observation (client-go compares the whole record), so b waits 30 s from the edit
    b.try_once()
    clock.now += 0.5
    b.notice(store.edit(duration=30.0))
    a.shutdown()  # the holder dies
    clock.now += 29.0
    b.try_once()
    assert not leading(b)
    clock.now += 1.1
    b.try_once()
    assert b.valid()


def test_the_stale_record_an_acquisition_replaced_does_not_pause_the_new_term() -> None:
    clock = Clock()
    store = ApiLease(clock)
    a, b = elector("a", store, clock), elector("b", store, clock)
    a.try_once()
    replaced = store.record
    b.try_once()
    a.shutdown()
    clock.now += 3.1
    b.try_once()
    assert b.valid()
    b.notice(replaced)  # the watch delivers a's last renewal late
    assert b.valid() and not paused(b)


# --- shutdown ------------------------------------------------------------------------------------


def test_shutdown_while_a_round_reads_sends_no_acquiring_write() -> None:
    clock = Clock()
    store = ApiLease(clock)
    a = elector("a", store, clock)
    store.during_get = a.shutdown  # SIGTERM arrives while the round reads the Lease
    a.try_once()
    assert store.writes == [] and not leading(a)
    gets = store.gets
    a.try_once()
    assert store.gets == gets  # nothing at all after the signal


# --- a standby that must not spin ----------------------------------------------------------------


def rounds_in(elector_: LeaseElector, clock: Clock, seconds: float, cap: int = 10_000) -> int:
    """Rounds the loop runs in `seconds` of fake time, each after `next_round_in()` (capped)."""
    end, count = clock.now + seconds, 0
    while clock.now < end and count < cap:
        elector_.try_once()
        count += 1
        clock.now += elector_.next_round_in()
    return count


@pytest.mark.parametrize(
    "shape",
    [
        {},
        # a shard's or the membership elector: polls once a lease duration, refusals unlogged
        {"follow_poll_s": 3.0, "log_refusals": False},
    ],
)
def test_a_standby_that_may_not_acquire_an_expired_lease_does_not_spin(
    shape: dict[str, object],
) -> None:
    clock = Clock()
    store = ApiLease(clock)
    a = elector("a", store, clock)
    a.try_once()
    a.shutdown()
    b = elector("b", store, clock, can_acquire=lambda: False, **shape)
    b.try_once()
    clock.now += 5.0  # a's lease has expired: b may take it but refuses
    count = rounds_in(b, clock, 10.0)
    # at least a quarter retry period (0.25 s) between rounds: at most 40 in 10 s
    assert count <= 41, count
    assert store.gets <= 42


def test_a_standby_whose_reads_fail_after_expiry_does_not_spin_and_jitters() -> None:
    clock = Clock()
    store = ApiLease(clock)
    a = elector("a", store, clock)
    a.try_once()
    b = elector("b", store, clock)
    b.try_once()
    store.up = False
    clock.now += 5.0
    count = rounds_in(b, clock, 10.0)
    assert count <= 41, count
    waits = set()
    for _ in range(20):
        b.try_once()
        waits.add(round(b.next_round_in(), 6))
    assert len(waits) > 1 and min(waits) >= 0.25 and max(waits) <= 0.25 * 2.2


def test_after_an_api_outage_the_standby_waits_a_full_lease_duration_before_taking_over() -> None:
    """Both replicas lose the API server for 10 s. The leader's term ends; the standby's
    observation from before the outage would have expired long ago, but its first good read
    is a fresh one: the leader renews within that lease duration and keeps the lease."""
    clock = Clock()
    store = ApiLease(clock)
    a, b = elector("a", store, clock), elector("b", store, clock)
    a.try_once()
    b.try_once()
    store.up = False
    for _ in range(100):
        clock.now += 0.1
        a.try_once()
        b.try_once()
    assert not leading(a) and not leading(b)
    store.up = True
    b.try_once()  # the standby happens to read first after the heal
    assert not leading(b)
    clock.now += 0.5
    a.try_once()  # the old holder renews its own lease: a new term, no change of holder
    assert a.valid()
    for _ in range(40):
        clock.now += 0.1
        a.try_once()
        b.try_once()
    assert a.valid() and not leading(b)
    assert set(store.writes) == {"a"}


def test_the_watch_after_an_outage_does_not_count_the_time_before_it_either() -> None:
    clock = Clock()
    store = ApiLease(clock)
    a, b = elector("a", store, clock), elector("b", store, clock)
    a.try_once()
    b.try_once()
    store.up = False
    clock.now += 10.0
    b.try_once()  # fails
    store.up = True
    b.notice(store.record)  # the watch relists first: an unchanged record, seen fresh
    b.try_once()
    assert not leading(b)


def test_each_pause_is_reported_once_with_its_reason() -> None:
    clock = Clock()
    store = ApiLease(clock)
    reported: list[str] = []
    a = elector("a", store, clock, on_pause=reported.append)
    a.try_once()
    store.delete()
    a.notice(None)
    a.notice(None)  # the same pause: not reported twice
    clock.now += 1.0
    a.try_once()  # re-creates the Lease: writes resume
    a.notice(store.edit(holder="maintenance"))
    assert reported == [
        "the Lease is deleted: leader writes paused until a read shows this replica as holder",
        "the Lease is held by maintenance: leader writes paused until a read shows this replica "
        "as holder",
    ]
