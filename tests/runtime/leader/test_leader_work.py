"""LeaderWork in-process on a fake clock: terms from the elector's callbacks, lanes ticked by
the test exactly as their threads tick them, failures backed off and reported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hybrid_gateway.adapters.ec2 import Ec2Error
from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.adapters.kube_vtep import VtepApiError
from hybrid_gateway.core.routes import Refusal, RouteKey, RoutePlan, TargetKind
from hybrid_gateway.leader.elector import Term
from hybrid_gateway.leader.routes import SyncResult
from hybrid_gateway.leader.service import LeaderWork
from hybrid_gateway.metrics import GatewayMetrics

RETRY_S = 1.0
RESYNC_S = 16.0
SUBJECT = ObjectRef("v1", "Pod", "gw-a", "ns")


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Events:
    """Records Events synchronously (the real recorder is asynchronous)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bool]] = []

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        self.sent.append((reason, message, warning))

    def reasons(self) -> list[str]:
        return [reason for reason, _, _ in self.sent]


@dataclass
class FakeRoutes:
    """Answers each sync with `answer(may_write)`; records when it was called."""

    clock: Clock
    answer: Callable[[Callable[[], bool]], SyncResult] = lambda may_write: SyncResult(RoutePlan())
    calls: list[float] = field(default_factory=list)
    takeovers: list[bool] = field(default_factory=list)  # per call: the term's first sync?

    def sync(self, may_write: Callable[[], bool], *, takeover: bool = False) -> SyncResult:
        self.calls.append(self.clock.now)
        self.takeovers.append(takeover)
        return self.answer(may_write)


@dataclass
class FakeVtep:
    clock: Clock
    answer: Callable[[Callable[[], bool]], bool] = lambda may_write: True
    calls: list[float] = field(default_factory=list)

    def sync(self, may_write: Callable[[], bool]) -> bool:
        self.calls.append(self.clock.now)
        return self.answer(may_write)


@dataclass
class World:
    clock: Clock
    routes: FakeRoutes
    vtep: FakeVtep
    events: Events
    metrics: GatewayMetrics
    work: LeaderWork
    valid: list[bool]

    def term(self, number: int = 1) -> Term:
        return Term(number, self.clock.now, lambda: self.valid[0])

    def lead(self, number: int = 1) -> Term:
        term = self.term(number)
        self.work.started_leading(term)
        self.work.step()
        return term

    def run_for(self, seconds: float, step_s: float = 0.25) -> None:
        """Tick both lanes every `step_s` of fake time (their threads tick at least this often
        when there is something to do)."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.work.tick("routes")
            self.work.tick("vtep")
            self.clock.now += step_s

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def build_world(**leader_options: Any) -> World:
    """Fake routes, VTEP store, Events and metrics on one fake clock around a LeaderWork;
    `leader_options` are LeaderWork's optional settings."""
    clock = Clock()
    routes, vtep, events, metrics = FakeRoutes(clock), FakeVtep(clock), Events(), GatewayMetrics()
    work = LeaderWork(
        routes=routes,
        vtep=vtep,
        resync_period_s=RESYNC_S,
        retry_period_s=RETRY_S,
        metrics=metrics,
        events=events,
        subject=SUBJECT,
        identity="gw-a",
        clock=clock,
        **leader_options,
    )
    return World(clock, routes, vtep, events, metrics, work, [True])


@pytest.fixture
def world() -> World:
    return build_world()


def test_a_term_syncs_both_lanes_at_once_and_reports_setup(world: World) -> None:
    world.lead()
    world.clock.now += 0.3
    world.work.tick("routes")
    world.work.tick("vtep")
    assert world.work.converged()
    # A histogram, as the reference's LeaderSetupDuration: one observation of 0.3 s.
    assert world.sample("hybrid_gateway_leader_setup_duration_seconds_count") == 1
    assert world.sample("hybrid_gateway_leader_setup_duration_seconds_sum") == pytest.approx(0.3)
    assert world.sample("hybrid_gateway_leader_is_active") == 1
    assert world.events.reasons() == ["LeaderElected"]
    world.run_for(RESYNC_S - 1)
    assert len(world.routes.calls) == 1  # converged: the next check is a resync period away
    world.run_for(2)
    assert len(world.routes.calls) == 2


def test_nothing_is_synced_while_the_term_is_not_valid(world: World) -> None:
    world.valid[0] = False  # e.g. a renewal in flight past the renew deadline
    world.lead()
    world.run_for(5)
    assert world.routes.calls == [] and world.vtep.calls == []
    world.valid[0] = True
    world.run_for(0.5)
    assert len(world.routes.calls) == 1 and len(world.vtep.calls) == 1


def test_each_sync_gets_the_terms_own_guard(world: World) -> None:
    seen: list[Callable[[], bool]] = []

    def answer(may_write: Callable[[], bool]) -> SyncResult:
        seen.append(may_write)
        return SyncResult(RoutePlan())

    world.routes.answer = answer
    world.lead()
    world.work.tick("routes")
    assert seen and seen[0]()
    world.valid[0] = False
    assert not seen[0]()


def _missing_table(may_write: Callable[[], bool]) -> SyncResult:
    return SyncResult(RoutePlan(), missing_tables=["rtb-0123456789abcdef0"])


def _unauthorized(may_write: Callable[[], bool]) -> SyncResult:
    raise Ec2Error("ReplaceRoute", "UnauthorizedOperation", "You are not authorized")


def _no_crd(may_write: Callable[[], bool]) -> bool:
    raise VtepApiError("write CiliumVTEPConfig hybrid-gateway: 404 Not Found")


@pytest.mark.parametrize(
    ("lane", "failure"),
    [("routes", _missing_table), ("routes", _unauthorized), ("vtep", _no_crd)],
    ids=["stale-table-id", "unauthorized", "missing-crd"],
)
def test_repeated_failures_back_off_up_to_the_resync_period_and_are_reported(
    world: World, lane: str, failure: Callable[[Callable[[], bool]], object]
) -> None:
    fake = world.routes if lane == "routes" else world.vtep
    fake.answer = failure  # type: ignore[assignment]
    world.lead()
    world.run_for(120)
    gaps = [later - earlier for earlier, later in zip(fake.calls, fake.calls[1:], strict=False)]
    # 1, 2, 4, 8, 16, 16, ... seconds apart: not one attempt per retry period
    assert gaps[:5] == pytest.approx([1, 2, 4, 8, 16], abs=0.26)
    assert max(gaps) <= RESYNC_S + 0.26
    assert len(fake.calls) <= 12
    failing = [message for reason, message, _ in world.events.sent if reason == "LeaderSyncFailing"]
    assert len(failing) == 1  # the same failure is sent once, not per attempt
    assert world.sample("hybrid_gateway_leader_sync_failures_total", lane=lane) == len(fake.calls)
    assert world.sample("hybrid_gateway_leader_sync_retry_delay_seconds", lane=lane) == RESYNC_S
    assert not world.work.converged()

    world.routes.answer = lambda may_write: SyncResult(RoutePlan())
    world.vtep.answer = lambda may_write: True
    world.run_for(RESYNC_S + 1)
    assert world.work.converged()
    assert "LeaderSyncRecovered" in world.events.reasons()
    assert world.sample("hybrid_gateway_leader_sync_retry_delay_seconds", lane=lane) == 0


def test_a_wake_up_retries_a_failing_lane_at_once(world: World) -> None:
    world.vtep.answer = _no_crd
    world.lead()
    world.run_for(10)
    before = len(world.vtep.calls)
    world.work.wake_vtep()  # the object appeared or changed
    world.work.tick("vtep")
    assert len(world.vtep.calls) == before + 1


def test_withheld_writes_are_retried_each_retry_period_without_counting_as_failures(
    world: World,
) -> None:
    world.routes.answer = lambda may_write: SyncResult(RoutePlan(), suppressed=True)
    world.lead()
    world.run_for(5)
    assert 5 <= len(world.routes.calls) <= 6
    assert world.sample("hybrid_gateway_leader_sync_failures_total", lane="routes") is None
    assert "LeaderSyncFailing" not in world.events.reasons()


def test_refusals_are_reported_from_the_sync_result(world: World) -> None:
    refusal = Refusal(RouteKey("rtb-1", "10.80.0.0/16"), TargetKind.TRANSIT_GATEWAY, "tgw-1")
    changed = [True]

    def answer(may_write: Callable[[], bool]) -> SyncResult:
        result = SyncResult(RoutePlan(refused=(refusal,)), refusals_changed=changed[0])
        changed[0] = False
        return result

    world.routes.answer = answer
    world.lead()
    world.run_for(RESYNC_S * 3)
    refused = [m for reason, m, _ in world.events.sent if reason == "RouteTakeoverRefused"]
    assert len(world.routes.calls) >= 3 and refused == [refusal.describe()]


def test_losing_the_term_stops_work_and_a_new_term_resyncs_at_once(world: World) -> None:
    world.lead(1)
    world.run_for(1)
    assert world.work.converged()
    world.work.stopped_leading()
    world.work.step()
    assert not world.work.active and not world.work.converged()
    assert world.sample("hybrid_gateway_leader_is_active") == 0
    assert world.events.reasons()[-1] == "LeaderLost"
    calls = len(world.routes.calls)
    world.run_for(3)
    assert len(world.routes.calls) == calls  # nothing while not leading
    world.lead(2)
    world.work.tick("routes")
    assert len(world.routes.calls) == calls + 1  # a new term checks at once, not at resync


def test_new_leader_is_only_logged(world: World) -> None:
    world.work.new_leader("gw-b")
    world.work.step()
    assert not world.work.active and world.events.sent == []


# --- late writes of the previous holder, and the write client's connection ----------------------

WINDOW_S = 1.0


def late_write_world(keep_warm: Callable[[], None] | None = None) -> World:
    return build_world(late_write_window_s=WINDOW_S, keep_warm=keep_warm, keep_warm_every_s=5.0)


def test_routes_are_rechecked_until_a_late_write_of_the_previous_holder_can_arrive() -> None:
    """The previous holder's last write may reach EC2 up to one write attempt after its validity
    ended, i.e. after our acquisition: converged routes are checked again within that window,
    the last time at its end, then only every resync period."""
    world = late_write_world()
    acquired = world.lead().acquired_at
    world.run_for(RESYNC_S - 2, step_s=0.05)
    times = [round(t - acquired, 2) for t in world.routes.calls]
    assert times == [0.0, 0.5, 1.0]
    # only the first may plan from tables described before the term; the re-checks describe
    assert world.routes.takeovers == [True, False, False]
    assert len(world.vtep.calls) == 1  # only the routes can be overwritten by a late write
    world.run_for(4, step_s=0.05)
    assert len(world.routes.calls) == 4  # then the resync period


def test_a_first_sync_that_outlasts_the_window_is_checked_once_more() -> None:
    """A slow first sync (throttled writes) read the routes early in the window: a late write
    landing after that read must still be seen."""
    world = late_write_world()

    def slow(may_write: Callable[[], bool]) -> SyncResult:
        world.clock.now += 3 * WINDOW_S if len(world.routes.calls) == 1 else 0.0
        return SyncResult(RoutePlan())

    world.routes.answer = slow
    acquired = world.lead().acquired_at
    world.run_for(0.05, step_s=0.05)  # the slow first sync
    world.run_for(2, step_s=0.05)
    times = [round(t - acquired, 2) for t in world.routes.calls]
    assert times[0] == 0.0 and len(times) == 2 and times[1] >= 3 * WINDOW_S


def test_the_write_connection_is_kept_warm_while_leading_only() -> None:
    warmed: list[int] = []
    world = late_write_world(keep_warm=lambda: warmed.append(1))
    world.run_for(12)
    assert warmed == []  # a standby does not keep it warm
    world.lead()
    world.run_for(12, step_s=0.1)
    assert len(warmed) == 2  # at 5 s and 10 s into the term
    world.valid[0] = False  # a renewal pending past the renew deadline: no calls at all
    world.run_for(12, step_s=0.1)
    assert len(warmed) == 2
    world.valid[0] = True
    world.work.stopped_leading()
    world.work.step()
    world.run_for(12, step_s=0.1)
    assert len(warmed) == 2


def test_readiness_names_why_each_lane_has_not_converged(world: World) -> None:
    """An operator reading /readyz of a leader sees which lane waits and on what."""
    assert world.work.lane_problem("routes") is None  # no term: nothing to converge
    world.routes.answer = _unauthorized
    world.vtep.answer = lambda may_write: False  # a write withheld by the lease check
    world.lead()
    assert world.work.lane_problem("routes") == "first sync of the term not done yet"
    world.run_for(0.5)
    routes = world.work.lane_problem("routes") or ""
    assert routes.startswith("route sync failed") and "UnauthorizedOperation" in routes
    assert "writes withheld" in (world.work.lane_problem("vtep") or "")
    world.routes.answer = lambda may_write: SyncResult(RoutePlan())
    world.vtep.answer = lambda may_write: True
    world.run_for(RESYNC_S + 1)
    assert world.work.lane_problem("routes") is None and world.work.lane_problem("vtep") is None
