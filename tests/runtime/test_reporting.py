"""Loud, not noisy, on a fake clock: every failure counted, the first of a streak logged and
recorded as an Event, repeats logged once per interval with how many were left out, the
recovery logged once, and `failing_for` measuring the streak for readiness."""

from __future__ import annotations

import logging

import pytest

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.reporting import FailureReporter

POD = ObjectRef("v1", "Pod", "gw-a", "ns")


class Events:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, str]] = []

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        self.emitted.append((reason, message))


def test_a_streak_is_counted_always_logged_rarely_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    counted: list[str] = []
    events = Events()
    reporter = FailureReporter(
        "Lease ns/x",
        reason="LeaseUnavailable",
        events=events,
        subject=POD,
        count=counted.append,
        hint="grant get",
        interval_s=60.0,
        event_interval_s=300.0,
        clock=lambda: now[0],
    )
    caplog.set_level(logging.INFO, logger="hybrid_gateway")
    for _ in range(30):  # one failure a second for 30 s
        reporter.failed("get", "403 Forbidden")
        now[0] += 1.0
    assert counted == ["get"] * 30
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Lease ns/x: get failed: 403 Forbidden; grant get"]
    assert events.emitted == [
        ("LeaseUnavailable", "Lease ns/x: get failed: 403 Forbidden; grant get")
    ]
    assert reporter.failing_for() == 30.0

    now[0] += 31.0  # past the log interval: one more line, saying how many were left out
    reporter.failed("get", "403 Forbidden")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[-1].startswith("Lease ns/x: get failed: 403 Forbidden (29 more since")
    assert len(events.emitted) == 1  # Events at most every 5 minutes

    reporter.succeeded()
    assert reporter.failing_for() == 0.0
    assert "working again after 61.0s of failures" in caplog.records[-1].getMessage()
    logged = len(caplog.records)
    reporter.succeeded()  # no streak: nothing more is logged
    assert len(caplog.records) == logged
    reporter.failed("create", "404 Not Found")  # a new streak is logged at once
    assert caplog.records[-1].getMessage().startswith("Lease ns/x: create failed: 404")


def test_a_read_that_works_does_not_hide_a_write_that_keeps_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RBAC that allows get but not update: each round reads fine, then fails to write."""
    now = [0.0]
    reporter = FailureReporter(
        "Lease ns/x",
        reason="LeaseUnavailable",
        events=Events(),
        subject=POD,
        count=lambda operation: None,
        clock=lambda: now[0],
    )
    caplog.set_level(logging.INFO, logger="hybrid_gateway")
    for second in range(30):
        now[0] = float(second)
        reporter.succeeded("get")
        reporter.failed("update", "403 Forbidden")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Lease ns/x: update failed: 403 Forbidden"]  # once, no "working again"
    assert reporter.failing_for() == 29.0
    reporter.succeeded("update")
    assert caplog.records[-1].getMessage() == "Lease ns/x: working again after 29.0s of failures"
