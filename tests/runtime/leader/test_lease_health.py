"""`ReportedLease` on a fake clock: failures reach the reporter (conflicts do not), and a replica
that sees no live holder, neither itself nor another one renewing, for longer than the limit
says why it cannot take part in the election."""

from __future__ import annotations

import pytest

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.adapters.kube_lease import LeaseApiError, LeaseConflictError
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.leader.lease_health import ReportedLease
from hybrid_gateway.reporting import FailureReporter


class Store:
    """A Lease store whose next answer the test sets."""

    def __init__(self) -> None:
        self.answer: LeaseRecord | Exception | None = None

    def get(self, timeout_s: float) -> LeaseRecord | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def write(
        self, previous: LeaseRecord | None, holder: str | None, duration: float, timeout_s: float
    ) -> LeaseRecord:
        if isinstance(self.answer, Exception):
            raise self.answer
        return LeaseRecord(holder, duration, f"renewed-{holder}", 0, "9")


class Sink:
    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        pass


def record(holder: str, renew: str) -> LeaseRecord:
    return LeaseRecord(holder, 3.0, renew, 0, renew)


@pytest.fixture
def setup() -> tuple[ReportedLease, Store, list[str], list[float]]:
    now = [0.0]
    counted: list[str] = []
    reporter = FailureReporter(
        "Lease ns/x",
        reason="LeaseUnavailable",
        events=Sink(),
        subject=ObjectRef("v1", "Pod", "gw-a", "ns"),
        count=counted.append,
        clock=lambda: now[0],
    )
    store = Store()
    lease = ReportedLease(store, reporter, holder_loss_s=15.0, clock=lambda: now[0])
    return lease, store, counted, now


def test_a_renewing_holder_keeps_the_replica_in_the_election(
    setup: tuple[ReportedLease, Store, list[str], list[float]],
) -> None:
    lease, store, counted, now = setup
    for second in range(1, 40):
        now[0] = float(second)
        store.answer = record("gw-b", f"t{second}")  # renewed every second
        lease.get(1.0)
        assert lease.problem() is None
    assert counted == []


def test_a_dead_holder_that_nobody_replaces_is_reported_after_the_limit(
    setup: tuple[ReportedLease, Store, list[str], list[float]],
) -> None:
    lease, store, _, now = setup
    store.answer = record("gw-b", "t0")
    for second in range(16):
        now[0] = float(second)
        lease.get(1.0)  # the same renewTime: not alive
    assert lease.problem() is None  # 15 s, the limit
    now[0] = 16.0
    lease.get(1.0)
    assert lease.problem() == "no live Lease holder seen for 16s"


def test_failures_are_reported_and_named_but_conflicts_are_not(
    setup: tuple[ReportedLease, Store, list[str], list[float]],
) -> None:
    lease, store, counted, now = setup
    store.answer = LeaseConflictError("changed")
    with pytest.raises(LeaseConflictError):
        lease.write(None, "gw-a", 3.0, 1.0)
    assert counted == []
    store.answer = LeaseApiError("read Lease ns/x: 403 Forbidden")
    for second in range(20):
        now[0] = float(second)
        with pytest.raises(LeaseApiError):
            lease.get(1.0)
    assert counted == ["get"] * 20
    assert lease.problem() == (
        "no live Lease holder seen for 19s (Lease ns/x: get failed: read Lease ns/x: 403 Forbidden)"
    )
    store.answer = None  # readable again, and free: we take it
    lease.get(1.0)
    lease.write(None, "gw-a", 3.0, 1.0)
    assert lease.problem() is None


def test_a_lease_that_cannot_be_created_stays_named(
    setup: tuple[ReportedLease, Store, list[str], list[float]],
) -> None:
    """A namespace that does not exist: every read finds no Lease (no error), every create
    fails with 404. The failure stays in the readiness reason between the two calls."""
    lease, store, counted, now = setup
    for second in range(20):
        now[0] = float(second)
        store.answer = None
        assert lease.get(1.0) is None
        problem_between = lease.problem()
        store.answer = LeaseApiError("write Lease ns/x: 404 Not Found")
        with pytest.raises(LeaseApiError):
            lease.write(None, "gw-a", 3.0, 1.0)
    assert counted == ["create"] * 20
    assert problem_between is not None and "404 Not Found" in problem_between
