"""The elector loop on a fake clock and an in-memory Lease with resourceVersion semantics."""

from __future__ import annotations

from hybrid_gateway.adapters.kube_lease import LeaseConflictError
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.leader.elector import LeaseElector


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


def elector(
    name: str, store: MemoryLease, clock: Clock, changes: list[tuple[str, bool]]
) -> LeaseElector:
    return LeaseElector(
        store,
        identity=name,
        lease_duration_s=3.0,
        renew_deadline_s=2.0,
        retry_period_s=1.0,
        clock=clock,
        on_change=lambda leading: changes.append((name, leading)),
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
