"""The active-standby eligibility gate on a fake clock: who may take a free Lease, and when a
leader that cannot do the whole job hands over."""

from __future__ import annotations

from collections.abc import Callable

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.leader.eligibility import Eligibility
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.reporting import Reporting

SUBJECT = ObjectRef("v1", "Pod", "gw-b", "ns")
LEASE_S, RETRY_S, DEADLINE_S = 3.0, 1.0, 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        self.reasons.append(reason)


class Routes:
    def __init__(self) -> None:
        self.problem: str | None = "waiting for instance identity: IMDS refused"

    def ownership_problem(self) -> str | None:
        return self.problem


class Work:
    def __init__(self) -> None:
        self.active = False

    def wait_idle(self, timeout_s: float) -> bool:
        return True


class Elector:
    def __init__(self) -> None:
        self.handovers = 0

    def request_handover(self, wait_idle: Callable[[float], bool]) -> None:
        self.handovers += 1


def gate(
    dataplane: list[bool] | None = None,
) -> tuple[Eligibility, Clock, Routes, Events, Work, Elector, GatewayMetrics]:
    clock, routes, events, metrics = Clock(), Routes(), Events(), GatewayMetrics()
    flag = dataplane if dataplane is not None else [True]
    eligibility = Eligibility(
        identity="gw-b",
        dataplane_ready=lambda: flag[0],
        routes=routes,
        reporting=Reporting(events, SUBJECT, metrics),
        head_start_s=LEASE_S,
        yield_retry_s=10 * LEASE_S,
        retry_period_s=RETRY_S,
        renew_deadline_s=DEADLINE_S,
        clock=clock,
    )
    work, elector = Work(), Elector()
    eligibility.work = work
    eligibility.elector = elector  # type: ignore[assignment]
    return eligibility, clock, routes, events, work, elector, metrics


def test_a_replica_that_can_own_routes_acquires_at_once() -> None:
    eligibility, _clock, routes, *_ = gate()
    routes.problem = None
    assert eligibility.can_acquire()


def test_a_replica_without_a_data_plane_never_acquires() -> None:
    eligibility, clock, routes, *_ = gate(dataplane=[False])
    routes.problem = None
    for _ in range(20):
        assert not eligibility.can_acquire()
        clock.now += RETRY_S


def test_one_that_cannot_own_routes_waits_out_the_head_start_in_continuous_rounds() -> None:
    eligibility, clock, *_ = gate()
    answers = []
    for _ in range(5):
        answers.append(eligibility.can_acquire())
        clock.now += RETRY_S
    assert answers == [False, False, False, True, True]  # 0, 1, 2 s refused; 3 s: last one left


def test_a_gap_in_wanting_or_another_holder_starts_the_head_start_again() -> None:
    eligibility, clock, *_ = gate()
    assert not eligibility.can_acquire()
    clock.now += 2.5
    eligibility.holder_seen("gw-c")  # a replica that can own routes took it
    assert not eligibility.can_acquire()
    clock.now += 2.9
    assert not eligibility.can_acquire()
    clock.now += 2 * RETRY_S + DEADLINE_S + 0.1  # stopped wanting it (someone held it)
    assert not eligibility.can_acquire()


def test_a_leader_whose_eni_turns_bad_hands_over_at_once_then_only_every_retry() -> None:
    eligibility, clock, routes, events, work, elector, metrics = gate()
    routes.problem = None
    assert eligibility.can_acquire()
    work.active = True
    eligibility.step()
    assert elector.handovers == 0 and metrics.replica_eligible._value.get() == 1
    routes.problem = "source/destination check is ON for primary ENI eni-1"
    eligibility.step()
    assert elector.handovers == 1 and events.reasons == ["LeaderYielding"]
    unable = eligibility.leading_unable
    assert unable is not None and "source/destination" in unable
    assert metrics.leader_without_route_ownership._value.get() == 1
    clock.now += LEASE_S  # nobody took it; it still leads: now it is loud about it
    eligibility.step()
    assert events.reasons == ["LeaderYielding", "LeaderCannotOwnRoutes"]
    clock.now += 10 * LEASE_S - LEASE_S - 1
    eligibility.step()
    assert elector.handovers == 1
    clock.now += 1
    eligibility.step()
    assert elector.handovers == 2
    routes.problem = None
    eligibility.step()
    assert eligibility.leading_unable is None
    assert metrics.leader_without_route_ownership._value.get() == 0
    assert events.reasons[-1] == "LeaderCanOwnRoutes"
    routes.problem = "source/destination check is ON again"  # a new episode: at once again
    eligibility.step()
    assert elector.handovers == 3


def test_the_last_one_left_does_not_hand_over_right_after_taking_over() -> None:
    eligibility, clock, _routes, events, work, elector, _m = gate()
    while not eligibility.can_acquire():
        clock.now += RETRY_S
    work.active = True
    eligibility.step()
    assert elector.handovers == 0 and events.reasons == []
    clock.now += LEASE_S
    eligibility.step()
    assert events.reasons == ["LeaderCannotOwnRoutes"]
    clock.now += 10 * LEASE_S
    eligibility.step()
    assert elector.handovers == 1


def test_a_slow_start_up_is_not_reported_as_leading_without_routes() -> None:
    eligibility, clock, routes, events, work, _elector, _m = gate()
    while not eligibility.can_acquire():
        clock.now += RETRY_S
    work.active = True
    eligibility.step()
    clock.now += RETRY_S
    routes.problem = None  # EC2 answered
    eligibility.step()
    assert events.reasons == [] and eligibility.leading_unable is None


def test_a_leader_whose_data_plane_fails_hands_over_only_if_it_lasts() -> None:
    flag = [True]
    eligibility, clock, routes, _events, work, elector, _m = gate(dataplane=flag)
    routes.problem = None
    assert eligibility.can_acquire()
    work.active = True
    flag[0] = False
    eligibility.step()
    clock.now += LEASE_S - 0.1
    eligibility.step()
    assert elector.handovers == 0  # a blip: no failover
    clock.now += 0.1
    eligibility.step()
    assert elector.handovers == 1
    assert not eligibility.can_acquire()  # and it never takes a lease without a data plane
