"""A watch run as a supervised task: stuck, it fails liveness by name; failing, it is counted
and reported, and its streak is what readiness measures. The CiliumNode watch is one of them
(the data plane hands it to the supervisor instead of running it on a bare thread)."""

from __future__ import annotations

import threading
import time
from typing import Any

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.adapters.kube_watch import WatchFailure
from hybrid_gateway.config import load_config
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.reporting import Reporting
from hybrid_gateway.supervisor import Supervisor
from hybrid_gateway.timings import Timings
from hybrid_gateway.watch_health import WatchHealth

BASE = {"NODE_IP": "10.0.1.10", "VPC_CIDR": "10.0.0.0/16", "POD_CIDRS": "10.80.0.0/16"}


class Events:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        self.reasons.append(reason)


class HangingWatch:
    """A watch stuck in a call: it never lists, never sees an event, never fails."""

    def __init__(self) -> None:
        self.last_progress: float | None = None

    def run(self, stop: threading.Event) -> None:
        stop.wait(30.0)


def test_a_stuck_ciliumnode_watch_fails_liveness_by_name_and_a_failing_one_is_reported() -> None:
    timings = Timings.from_config(load_config(BASE))
    events, metrics = Events(), GatewayMetrics()
    reporting = Reporting(events, ObjectRef("v1", "Pod", "gw-a", "ns"), metrics)
    health = WatchHealth(
        reporting.reporter("CiliumNode watch", "ciliumnode", "CiliumNodeWatchFailed")
    )
    watch = HangingWatch()
    later = [0.0]
    supervisor = Supervisor(clock=lambda: time.monotonic() + later[0])
    watch_any: Any = watch
    supervisor.add(health.task("ciliumnode-watch", watch_any, timings))
    supervisor.start()
    try:
        assert supervisor.alive() == (True, "ok")
        later[0] = timings.stale_watch_s + 1.0
        alive, text = supervisor.alive()
        assert not alive and "ciliumnode-watch stuck" in text, text
        watch.last_progress = time.monotonic() + later[0]  # it made progress: turning again
        assert supervisor.alive() == (True, "ok")
    finally:
        supervisor.stop(["ciliumnode-watch"], 5.0)
    health.on_error(WatchFailure("CiliumNodes", 403, "403 Forbidden"))
    assert events.reasons == ["CiliumNodeWatchFailed"]
    assert health.reporter.failing_for() >= 0.0 and health.reporter.last_error is not None
    assert "403 Forbidden" in health.reporter.last_error
    samples = metrics.api_errors.labels(api="ciliumnode", operation="list/watch")
    assert samples._value.get() == 1
