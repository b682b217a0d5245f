"""Events raised while the API server does not answer are kept (bounded) and sent once it
answers, folded with their first and last time and count; a 4xx answer is not retried."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_events import AsyncEvents, EventRecorder, ObjectRef
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

POD = ObjectRef("v1", "Pod", "gw-a", "default")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class WallClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


class FlakySink:
    """Raises `error` while `down` is set; records (reason, count, first, last) otherwise."""

    def __init__(self, error: Exception | None = None) -> None:
        self.down = threading.Event()
        self.error = error or TimeoutError("API server unreachable")
        self.attempts = 0
        self.recorded: list[tuple[str, int, dt.datetime, dt.datetime]] = []

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        raise AssertionError("AsyncEvents must use record() when the sink has it")

    def record(
        self,
        obj: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool,
        first: dt.datetime,
        last: dt.datetime,
        count: int,
    ) -> None:
        self.attempts += 1
        if self.down.is_set():
            raise self.error
        self.recorded.append((reason, count, first, last))


@contextmanager
def running(events: AsyncEvents) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=events.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_events_raised_during_an_outage_are_sent_after_it_folded_with_count_and_times() -> None:
    sink = FlakySink()
    sink.down.set()
    events = AsyncEvents(
        sink,
        capacity=3,
        idle_beat_s=0.02,
        retry_initial_s=0.02,
        retry_max_s=0.05,
        wall_clock=WallClock(),
    )
    with running(events):
        events.emit(POD, "LeaseUnavailable", "get failed")
        wait_until("a failed attempt", lambda: sink.attempts >= 1)
        for _ in range(3):
            events.emit(POD, "LeaseUnavailable", "get failed")  # the same failure again
        for reason in ("LeaderLost", "VtepConfigWatchFailed", "Fourth", "Fifth"):
            events.emit(POD, reason, "x")
        wait_until("retried", lambda: sink.attempts >= 3)
        assert sink.recorded == [] and events.waiting == 3 and events.dropped == 2
        sink.down.clear()  # the API server answers again
        wait_until("all kept Events sent", lambda: len(sink.recorded) == 3)
    (reason, count, first, last), *rest = sink.recorded
    assert (reason, count) == ("LeaseUnavailable", 4)
    assert first == T0 + dt.timedelta(seconds=1) and last == T0 + dt.timedelta(seconds=4)
    assert [r[0] for r in rest] == ["LeaderLost", "VtepConfigWatchFailed"]
    assert all(r[1] == 1 and r[2] == r[3] for r in rest)


def test_an_event_the_server_refuses_with_a_4xx_is_dropped_not_retried() -> None:
    sink = FlakySink(ApiException(status=422, reason="Invalid"))
    sink.down.set()
    events = AsyncEvents(sink, idle_beat_s=0.02, retry_initial_s=0.02)
    with running(events):
        events.emit(POD, "Bad", "x")
        wait_until("tried", lambda: sink.attempts == 1)
        sink.down.clear()
        events.emit(POD, "Good", "y")
        wait_until("the next one sent", lambda: sink.recorded)
    assert [r[0] for r in sink.recorded] == ["Good"] and sink.attempts == 2


def test_events_of_a_partitioned_replica_reach_the_api_server_after_the_heal(
    kube_api: ApiServer,
) -> None:
    api = single_attempt(
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("gw-a")))
    )
    admin = client.CoreV1Api(
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin")))
    )
    events = AsyncEvents(
        EventRecorder(client.CoreV1Api(api), host="gw-a", timeout_s=0.5),
        idle_beat_s=0.05,
        retry_initial_s=0.1,
        retry_max_s=0.3,
    )
    kube_api.partition("gw-a")
    with running(events):
        for _ in range(3):
            events.emit(POD, "LeaseUnavailable", "Lease default/x: get failed: timed out")
        wait_until(
            "attempts refused",
            lambda: [e for e in kube_api.audit() if e["identity"] == "gw-a" and e["dropped"]],
        )
        kube_api.heal("gw-a")

        def recorded() -> list[client.CoreV1Event]:
            items = admin.list_namespaced_event("default").items
            return [e for e in items if e.reason == "LeaseUnavailable"]

        (event,) = wait_until("the Event after the heal", recorded, 15)
    assert event.count == 3 and event.involved_object.name == "gw-a"
    assert event.first_timestamp <= event.last_timestamp
    api.close()
