"""Route ownership waits for IMDS and EC2 in the background: until they answer, a sync says
what it waits for; with no route tables nothing is resolved at all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from hybrid_gateway.adapters.ec2 import Ec2Error
from hybrid_gateway.adapters.imds import ImdsError
from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.core.routes import RouteKey, RoutePlan
from hybrid_gateway.leader.deferred_routes import DeferredRoutes, RoutesPending
from hybrid_gateway.leader.routes import Retire, SyncResult
from hybrid_gateway.reporting import FailureReporter


class Sink:
    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        pass


class Owner:
    """A route owner whose preparation succeeds on the second call."""

    def __init__(self) -> None:
        self.calls = 0
        self.rechecks = 0
        self.check_on = False

    @property
    def prepared(self) -> bool:
        return self.calls >= 2

    def prepare(self) -> None:
        self.calls += 1
        if self.calls < 2:
            raise Ec2Error("DescribeInstances", "RequestLimitExceeded", "throttled")

    def problem(self) -> str | None:
        return "source/destination check is ON for primary ENI eni-1" if self.check_on else None

    def forwarding_allowed(self) -> bool:
        return not self.check_on

    def recheck_interface(self) -> None:
        self.rechecks += 1
        if self.rechecks == 2:
            self.check_on = True

    def keep_warm(self) -> None:
        pass

    def prefetch(self) -> bool:
        return False

    def pointing_here(self, destinations: Sequence[str]) -> list[RouteKey]:
        return []

    def sync(
        self,
        may_write: Callable[[], bool],
        destinations: Sequence[str] | None = None,
        retire: Retire | None = None,
        *,
        takeover: bool = False,
    ) -> SyncResult:
        return SyncResult(RoutePlan())


def deferred(
    tables: tuple[str, ...],
    resolve: Callable[[], tuple[str, str]],
    counted: list[str],
    owner: Owner | None = None,
) -> DeferredRoutes:
    owner = owner or Owner()
    reporter = FailureReporter(
        "route ownership start-up",
        reason="InstanceIdentityUnavailable",
        events=Sink(),
        subject=ObjectRef("v1", "Pod", "gw-a", "ns"),
        count=counted.append,
    )
    return DeferredRoutes(
        table_ids=tables,
        resolve=resolve,
        build=lambda region, instance: owner,
        reporter=reporter,
        max_backoff_s=0.01,
        recheck_s=0.01,
    )


def test_no_route_tables_never_asks_imds() -> None:
    def resolve() -> tuple[str, str]:
        raise AssertionError("IMDS asked")

    routes = deferred((), resolve, [])
    routes.run(threading.Event())  # returns at once
    assert routes.waiting_for is None
    assert routes.sync(lambda: True).converged


def test_sync_names_the_wait_until_imds_answers() -> None:
    answers: list[Exception | tuple[str, str]] = [
        ImdsError("instance metadata at http://169.254.169.254 unavailable: timed out"),
        ImdsError("instance metadata at http://169.254.169.254 unavailable: timed out"),
        ("us-east-1", "i-0123456789abcdef0"),
    ]
    attempts: list[int] = []
    first_failure = threading.Event()
    go_on = threading.Event()

    def resolve() -> tuple[str, str]:
        attempts.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            if len(attempts) == 1:
                first_failure.set()
                go_on.wait(10.0)
            raise answer
        return answer

    counted: list[str] = []
    owner = Owner()
    routes = deferred(("rtb-0123456789abcdef0",), resolve, counted, owner)
    stop = threading.Event()
    thread = threading.Thread(target=routes.run, args=(stop,), daemon=True)
    thread.start()
    assert first_failure.wait(10.0)
    with pytest.raises(RoutesPending, match="waiting for instance identity"):
        routes.sync(lambda: True)
    assert routes.ownership_problem() == f"waiting for {routes.waiting_for}"
    go_on.set()
    deadline = time.monotonic() + 10.0
    while routes.waiting_for is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(attempts) == 3
    assert counted == ["instance identity"] * 2
    assert routes.waiting_for is None and routes.sync(lambda: True).converged  # prepared
    # prepared, it keeps reading the ENI's source/destination check: turned on, it is named
    while routes.ownership_problem() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert routes.ownership_problem() == "source/destination check is ON for primary ENI eni-1"
    stop.set()
    thread.join(10.0)
    assert not thread.is_alive() and owner.rechecks >= 2
