"""The elector loop on a fake clock and an in-memory Lease with resourceVersion semantics."""

from __future__ import annotations

import itertools

import pytest

from hybrid_gateway.adapters.kube_lease import LeaseConflictError
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.leader.elector import LeaseElector, Term


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryLease:
    """One Lease object; writes must carry the current resourceVersion (else conflict)."""

    def __init__(self, clock: Clock) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.reachable = True
        self.clock = clock

    def get(self, timeout_s: float) -> LeaseRecord | None:
        if not self.reachable:
            raise TimeoutError("partitioned")
        return self.record

    def write(
        self, previous: LeaseRecord | None, holder: str | None, duration: float, timeout_s: float
    ) -> LeaseRecord:
        if not self.reachable:
            raise TimeoutError("partitioned")
        current = self.record.resource_version if self.record else None
        if (previous.resource_version if previous else None) != current:
            raise LeaseConflictError("changed")
        self.version += 1
        self.record = LeaseRecord(holder, duration, f"t{self.clock.now}", 0, str(self.version))
        return self.record


def new_changes() -> list[tuple[str, bool]]:
    return []


class Recorder:
    """LeadershipCallbacks that append (identity, leading) to a shared list."""

    def __init__(self, name: str, changes: list[tuple[str, bool]]) -> None:
        self.name = name
        self.changes = changes
        self.terms: list[Term] = []
        self.holders: list[str | None] = []

    def started_leading(self, term: Term) -> None:
        self.terms.append(term)
        self.changes.append((self.name, True))

    def stopped_leading(self) -> None:
        self.changes.append((self.name, False))

    def new_leader(self, holder: str | None) -> None:
        self.holders.append(holder)


def elector(
    name: str,
    store: MemoryLease,
    clock: Clock,
    changes: list[tuple[str, bool]],
    **kwargs: object,
) -> LeaseElector:
    return LeaseElector(
        store,
        identity=name,
        lease_duration_s=3.0,
        renew_deadline_s=2.0,
        retry_period_s=1.0,
        clock=clock,
        **{"callbacks": Recorder(name, changes), **kwargs},  # type: ignore[arg-type]
    )


def test_acquire_renew_and_follow() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    a, b = elector("a", store, clock, changes), elector("b", store, clock, changes)
    a.try_once()
    b.try_once()
    assert a.valid() and not b.valid()
    for _ in range(5):
        clock.now += 1.0
        a.try_once()
        b.try_once()
    assert a.valid() and not b.valid() and changes == [("a", True)]


def test_unreachable_leader_stops_before_the_standby_may_acquire() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    a, b = elector("a", store, clock, changes), elector("b", store, clock, changes)
    a.try_once()
    b.try_once()  # b observes a's record now
    store.reachable = False  # a is cut off; b still reaches the store
    a_stopped_at = b_acquired_at = None
    for _ in range(60):
        clock.now += 0.1
        store.reachable = False
        a.try_once()
        if a_stopped_at is None and not a.valid():
            a_stopped_at = clock.now
        store.reachable = True
        b.try_once()
        if b_acquired_at is None and b.valid():
            b_acquired_at = clock.now
    assert a_stopped_at is not None and b_acquired_at is not None
    assert a_stopped_at < b_acquired_at
    assert ("a", False) in changes and changes[-1] == ("b", True)


def test_validity_lapses_even_if_the_loop_never_runs_again() -> None:
    """A renew stuck in a hung request: `valid()` turns false by the clock alone."""
    clock, changes = Clock(), new_changes()
    a = elector("a", MemoryLease(clock), clock, changes)
    a.try_once()
    clock.now += 1.99
    assert a.valid()
    clock.now += 0.02
    assert not a.valid()


def test_conflicting_acquisitions_have_one_winner() -> None:
    """b read the Lease before a created it: b's write carries a stale resourceVersion, the
    server (here the in-memory store) answers 409 and b does not lead."""
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)

    class StaleRead(MemoryLease):
        def get(self, timeout_s: float) -> LeaseRecord | None:
            return None  # what b saw a moment ago

        def write(
            self,
            previous: LeaseRecord | None,
            holder: str | None,
            duration: float,
            timeout_s: float,
        ) -> LeaseRecord:
            return store.write(previous, holder, duration, timeout_s)

    a = elector("a", store, clock, changes)
    b = elector("b", StaleRead(clock), clock, changes)
    a.try_once()
    b.try_once()
    assert a.valid() and not b.valid()
    assert store.record is not None and store.record.holder == "a"
    assert changes == [("a", True)]


def test_release_lets_the_standby_acquire_at_once() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    a, b = elector("a", store, clock, changes), elector("b", store, clock, changes)
    a.try_once()
    b.try_once()
    assert a.release()
    assert store.record is not None and store.record.holder is None
    clock.now += 0.01  # far less than the 3 s lease
    b.try_once()
    assert b.valid() and not a.valid()


# --- the standby acts when the lease it observed expires (issue 8) --------------------------


def test_standby_acquires_when_the_observed_lease_expires_not_at_its_next_tick() -> None:
    """a renews for the last time at r and dies; b's watch shows it the renewal at r. b polls
    every second at ticks 0.4 s out of phase with a's renewals. b's round must be due at r + 3
    (its own clock, from when it saw the renewal), not at its first tick after that."""
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    a, b = elector("a", store, clock, changes), elector("b", store, clock, changes)
    a.try_once()
    clock.now += 0.4
    b.try_once()
    clock.now += 0.6
    a.try_once()  # the last renewal, at r
    last_renewal = clock.now
    assert store.record is not None
    b.notice(store.record)  # seen on the watch at once
    clock.now += 0.4
    acquired_at = None
    for _ in range(20):
        b.try_once()
        if b.valid():
            acquired_at = clock.now
            break
        wait = b.next_round_in()
        assert 0.0 <= wait <= 1.0  # never later than a retry period
        clock.now += wait
    assert acquired_at is not None
    assert acquired_at == pytest.approx(last_renewal + 3.0)  # not 0.4 s later, at a tick
    assert changes == [("a", True), ("b", True)]


def test_standby_never_acquires_before_the_observed_lease_expires() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    a, b = elector("a", store, clock, changes), elector("b", store, clock, changes)
    a.try_once()
    b.try_once()
    seen_at = clock.now
    for _ in range(10):  # b wakes as often as it likes: nothing before seen_at + 3
        clock.now += b.next_round_in() or 0.01
        b.try_once()
        if b.valid():
            break
    assert b.valid() and clock.now >= seen_at + 3.0


# --- shutdown ends the term for good (issue 8) -------------------------------------------------


def test_a_renewal_completing_after_shutdown_starts_no_term() -> None:
    """SIGTERM arrives while a renewal is in flight: the renewal succeeds at the server, but no
    term (re)starts, no write passes the guard, and the next rounds write nothing."""
    clock, changes = Clock(), new_changes()

    class SignalMidWrite(MemoryLease):
        during_write: LeaseElector | None = None

        def write(
            self,
            previous: LeaseRecord | None,
            holder: str | None,
            duration: float,
            timeout_s: float,
        ) -> LeaseRecord:
            if self.during_write is not None:
                self.during_write.shutdown()  # the signal handler runs meanwhile
            return super().write(previous, holder, duration, timeout_s)

    store = SignalMidWrite(clock)
    a = elector("a", store, clock, changes)
    a.try_once()
    term = a._callbacks.terms[0]  # type: ignore[attr-defined]
    assert term.valid()
    store.during_write = a
    clock.now += 1.0
    a.try_once()  # the renewal lands, shutdown happened during it
    assert not a.valid() and not term.valid()
    assert changes == [("a", True), ("a", False)]
    writes = store.version
    clock.now += 5.0  # the lease has expired: a would acquire it if it could
    a.try_once()
    assert store.version == writes and not a.valid()
    assert changes == [("a", True), ("a", False)]
    assert a.release()  # the release still goes out, at the version the renewal left
    assert store.record is not None and store.record.holder is None


def test_a_term_guard_stays_false_after_its_term_ended() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    a = elector("a", store, clock, changes)
    a.try_once()
    first = a._callbacks.terms[0]  # type: ignore[attr-defined]
    store.reachable = False
    clock.now += 2.5
    a.try_once()  # cannot renew within the deadline: the term ends
    store.reachable = True
    clock.now += 1.0
    a.try_once()  # the lease expired; a acquires again: a new term
    second = a._callbacks.terms[1]  # type: ignore[attr-defined]
    assert second.valid() and not first.valid() and second.number == first.number + 1


# --- acquisition gated on the data plane (issue 8) ---------------------------------------------


def test_a_replica_that_is_not_ready_does_not_take_the_lease_but_keeps_one_it_holds() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    ready = {"a": False, "b": True}
    a = elector("a", store, clock, changes, can_acquire=lambda: ready["a"])
    a.try_once()
    assert store.record is None and not a.valid()  # a free lease, not taken
    ready["a"] = True
    a.try_once()
    assert a.valid()
    ready["a"] = False  # the data plane degrades while a leads: a keeps renewing
    for _ in range(5):
        clock.now += 1.0
        a.try_once()
    assert a.valid() and changes == [("a", True)]


# --- a slow API server: renewals that complete within the deadline keep the lease -----------


class SlowLease(MemoryLease):
    """Every request takes `latency_s` of (fake) time; a request whose timeout is shorter
    fails at its timeout, as a client-side timeout does."""

    def __init__(self, clock: Clock, latency_s: float) -> None:
        super().__init__(clock)
        self.latency_s = latency_s
        self.timeouts: list[float] = []
        self.sent_ok: list[float] = []  # send times of the writes that succeeded

    def _take(self, timeout_s: float) -> None:
        self.timeouts.append(timeout_s)
        if self.latency_s > timeout_s:
            self.clock.now += timeout_s
            raise TimeoutError(f"no answer in {timeout_s:.2f}s")
        self.clock.now += self.latency_s

    def get(self, timeout_s: float) -> LeaseRecord | None:
        self._take(timeout_s)
        return super().get(timeout_s)

    def write(
        self, previous: LeaseRecord | None, holder: str | None, duration: float, timeout_s: float
    ) -> LeaseRecord:
        sent = self.clock.now
        self._take(timeout_s)
        written = super().write(previous, holder, duration, timeout_s)
        self.sent_ok.append(sent)
        return written


def test_every_request_1_2s_late_and_the_leader_keeps_its_lease() -> None:
    """Default 3/2/1 s timings, every request of the leader answered 1.2 s late (under the
    renew deadline): the leader's term never ends and its record changes at least every
    1.2 s, so a standby watching it never sees it expire."""
    clock, changes = Clock(), new_changes()
    store = SlowLease(clock, 1.2)
    a = elector("a", store, clock, changes)
    a.try_once()
    renewals = [clock.now]
    last = store.record
    for _ in range(30):
        clock.now += a.next_round_in()
        a.try_once()
        if store.record is not last:
            renewals.append(clock.now)
            last = store.record
    assert changes == [("a", True)] and a.leading
    assert max(later - earlier for earlier, later in itertools.pairwise(renewals)) < 3.0
    # a renewal's timeout is what is left before others could take the lease, never < 1.2 s
    assert min(store.timeouts[1:]) >= 1.2


@pytest.mark.parametrize(("latency_s", "keeps"), [(1.7, True), (2.1, False)])
def test_renewals_slower_than_half_the_lease_wait_until_the_renew_deadline(
    latency_s: float, keeps: bool
) -> None:
    """3/2/1 s, every request `latency_s` late. Renewals then go back to back, and what is
    left before others could take the lease (3 - 1.7 = 1.3 s) is shorter than one round trip:
    cut there, every renewal failed and the leader lost a lease it held. A renewal answered
    within the renew deadline still grants validity, so it is waited for that long; one that
    cannot be (2.1 s > 2 s) ends the term. Either way the leader is valid only until a
    successful renewal's send time plus the renew deadline."""
    clock, changes = Clock(), new_changes()
    store = SlowLease(clock, latency_s)
    a = elector("a", store, clock, changes)
    store.latency_s = 0.0
    a.try_once()
    store.latency_s = latency_s
    for _ in range(30):
        clock.now += a.next_round_in()
        a.try_once()
        # fencing: valid only before the last successful write's send + renew deadline
        assert not a.valid() or clock.now < store.sent_ok[-1] + 2.0
    sent = store.sent_ok
    if keeps:
        assert changes == [("a", True)] and a.leading
        assert max(later - earlier for earlier, later in itertools.pairwise(sent)) < 3.0
    else:
        assert changes[:2] == [("a", True), ("a", False)]


def test_a_failed_renewal_is_retried_sooner_than_a_retry_period() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    a = elector("a", store, clock, changes)
    a.try_once()
    clock.now += 1.0
    store.reachable = False
    a.try_once()
    assert a.leading and a.next_round_in() < 1.0
    store.reachable = True
    clock.now += a.next_round_in()
    a.try_once()
    assert a.valid() and changes == [("a", True)]


# --- hand-over (active-active balancing) and restarts under the same identity -----------------


def test_a_hand_over_ends_the_term_waits_for_in_flight_writes_then_releases() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    gate = [True]
    recorder = Recorder("a", changes)
    a = elector("a", store, clock, changes, can_acquire=lambda: gate[0], callbacks=recorder)
    a.try_once()
    term = recorder.terms[-1]
    gate[0] = False  # the balance decision no longer gives the shard to "a"
    seen: list[tuple[bool, str | None]] = []

    def wait_idle(timeout_s: float) -> bool:
        seen.append((term.valid(), store.record.holder if store.record else None))
        return True

    a.request_handover(wait_idle)
    assert a.next_round_in() == 0.0
    a.try_once()
    # While waiting for in-flight writes the term was already invalid and the lease still ours;
    # afterwards it is released and the elector does not take it back.
    assert seen == [(False, "a")]
    assert store.record is not None and store.record.holder is None
    assert changes == [("a", True), ("a", False)]
    clock.now += 5
    a.try_once()
    assert store.record.holder is None and not a.leading


def test_a_hand_over_with_writes_still_in_flight_lets_the_lease_run_out_instead() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    gate = [True]
    a = elector("a", store, clock, changes, can_acquire=lambda: gate[0])
    a.try_once()
    gate[0] = False
    a.request_handover(lambda timeout_s: False)
    a.try_once()
    assert store.record is not None and store.record.holder == "a"  # not released
    version = store.version
    for _ in range(5):
        clock.now += 0.2
        a.try_once()
    assert store.version == version and not a.leading  # and never renewed again


def test_restarting_under_the_same_identity_passes_the_acquisition_gate() -> None:
    clock, changes = Clock(), new_changes()
    store = MemoryLease(clock)
    elector("a", store, clock, changes).try_once()  # the previous process held it
    gate = [False]
    restarted = elector("a", store, clock, new_changes(), can_acquire=lambda: gate[0])
    restarted.try_once()
    assert not restarted.leading and store.record is not None and store.version == 1
    gate[0] = True
    restarted.try_once()
    assert (restarted.valid(), store.version) == (True, 2)
