"""No thread can hang the daemon: the supervisor names a stuck or dead loop on /healthz, the HTTP
listeners drop idle connections and bind without DNS, and a full Event queue never blocks
`emit` or shutdown. Real listeners on loopback, real threads; no timed assertions."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from hybrid_gateway.adapters.kube_events import AsyncEvents, ObjectRef
from hybrid_gateway.health import HttpEndpoints
from hybrid_gateway.supervisor import Beat, Supervisor, Task
from hybrid_gateway_testkit.waiting import wait_until

POD = ObjectRef("v1", "Pod", "gw-a", "ns")


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def failing(answer: tuple[int, str]) -> tuple[int, str] | None:
    return answer if answer[0] != 200 else None


def until_stopped(stop: threading.Event) -> None:
    stop.wait()


def ignore(release: threading.Event) -> None:
    release.wait()


def ticking(beat: Beat, paused: threading.Event) -> Task:
    def run(stop: threading.Event) -> None:
        while not stop.wait(0.02):
            if not paused.is_set():
                beat()

    return Task("ticker", run, heartbeat=beat.last, stale_after_s=2.0)  # far above a tick


@pytest.fixture
def supervised() -> Iterator[tuple[Supervisor, threading.Event, int]]:
    """A supervisor with one ticking loop (pausable) and one that stays alive, both behind real
    /healthz and /readyz listeners."""
    supervisor = Supervisor()
    paused = threading.Event()
    supervisor.add(ticking(Beat(), paused))
    supervisor.add(Task("idler", until_stopped))
    endpoints = HttpEndpoints(
        health_addr=("127.0.0.1", 0),
        metrics_addr=("127.0.0.1", 0),
        alive=supervisor.alive,
        ready=lambda: (True, "ready"),
        registry=CollectorRegistry(),
    )
    endpoints.start()
    supervisor.start()
    try:
        yield supervisor, paused, int(endpoints.health.server_address[1])
    finally:
        supervisor.stop(supervisor.names, 2.0)
        endpoints.stop()


def test_a_stuck_loop_fails_healthz_naming_it(
    supervised: tuple[Supervisor, threading.Event, int],
) -> None:
    _, paused, port = supervised
    assert get(port, "/healthz") == (200, "ok\n")
    paused.set()  # the loop is still running but no longer turning
    answer = wait_until("healthz failing", lambda: failing(get(port, "/healthz")))
    assert answer is not None
    status, body = answer
    assert status == 503  # the reference's status for a failed check
    assert "ticker stuck (no heartbeat for" in body and "idler" not in body
    paused.clear()
    wait_until("healthz back", lambda: get(port, "/healthz")[0] == 200)


def test_a_loop_that_crashes_or_exits_fails_healthz_naming_it() -> None:
    supervisor = Supervisor()

    def crash(stop: threading.Event) -> None:
        raise RuntimeError("netlink socket closed")

    supervisor.add(Task("crasher", crash))
    supervisor.add(Task("quitter", lambda stop: None))
    supervisor.add(Task("start-step", lambda stop: None, one_shot=True))
    supervisor.start()
    wait_until("both reported", lambda: "quitter" in supervisor.alive()[1])
    ok, text = supervisor.alive()
    assert not ok
    assert "crasher crashed (RuntimeError: netlink socket closed)" in text
    assert "quitter exited" in text and "start-step" not in text


def test_a_loop_asked_to_stop_is_not_a_failure() -> None:
    supervisor = Supervisor()
    supervisor.add(Task("loop", until_stopped))
    supervisor.start()
    assert supervisor.stop(["loop"], 2.0) == []
    assert supervisor.alive() == (True, "ok")


def test_stop_returns_when_a_loop_ignores_it_and_names_it() -> None:
    supervisor = Supervisor()
    release = threading.Event()
    supervisor.add(Task("deaf", lambda stop: ignore(release)))
    supervisor.start()
    try:
        assert supervisor.stop(["deaf"], 0.2) == ["deaf"]
    finally:
        release.set()


def test_an_idle_connection_is_closed() -> None:
    """Before: BaseHTTPRequestHandler.timeout is None, so a client that connects and sends
    nothing holds a server thread forever."""
    endpoints = HttpEndpoints(
        health_addr=("127.0.0.1", 0),
        metrics_addr=("127.0.0.1", 0),
        alive=lambda: (True, "ok"),
        ready=lambda: (True, "ready"),
        registry=CollectorRegistry(),
        idle_timeout_s=0.3,
    )
    endpoints.start()
    try:
        for server in (endpoints.health, endpoints.metrics):
            with socket.create_connection(("127.0.0.1", server.server_address[1])) as idle:
                idle.settimeout(20.0)  # the bound of this test, far above the idle timeout
                assert idle.recv(1024) == b""  # closed by the server, not by our timeout
    finally:
        endpoints.stop()


def test_listeners_bind_without_a_dns_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython's HTTPServer.server_bind calls socket.getfqdn(host) (Lib/http/server.py);
    with an unreachable resolver that waits out its timeouts. Ours never asks."""
    asked: list[str] = []

    def no_dns(name: str = "") -> str:
        asked.append(name)
        raise AssertionError("getfqdn called")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    endpoints = HttpEndpoints(
        health_addr=("", 0),
        metrics_addr=("127.0.0.1", 0),
        alive=lambda: (True, "ok"),
        ready=lambda: (True, "ready"),
        registry=CollectorRegistry(),
    )
    endpoints.start()
    try:
        assert get(int(endpoints.health.server_address[1]), "/readyz") == (200, "ready\n")
    finally:
        endpoints.stop()
    assert asked == []


class BlockedRecorder:
    """An Event writer stuck on its first call (a hung API connection)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        self.calls.append(reason)
        self.release.wait(30.0)


def test_a_full_event_queue_blocks_neither_emit_nor_shutdown() -> None:
    recorder = BlockedRecorder()
    events = AsyncEvents(recorder, capacity=5, flush_s=0.2, idle_beat_s=0.05)
    supervisor = Supervisor()
    supervisor.add(Task("events", events.run, heartbeat=lambda: events.heartbeat))
    supervisor.start()
    try:
        events.emit(POD, "First", "in flight")
        wait_until("first Event in flight", lambda: recorder.calls == ["First"])
        for i in range(20):  # 5 fit, 15 are dropped: emit never waits
            events.emit(POD, f"E{i}", "queued")
        assert events.dropped == 15
        # returns although the queue is full and the thread is stuck in its call
        assert supervisor.stop(["events"], 0.5) == ["events"]
    finally:
        recorder.release.set()
    supervisor["events"].thread.join(5.0)  # type: ignore[union-attr]
    assert recorder.calls[0] == "First"


def test_queued_events_are_flushed_on_stop() -> None:
    recorded: list[str] = []

    class Recorder:
        def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
            recorded.append(reason)

    events = AsyncEvents(Recorder(), flush_s=2.0, idle_beat_s=0.05)
    stop = threading.Event()
    stop.set()  # stopped before it ran: what is queued still goes out
    for reason in ("LeaderLost", "Other"):
        events.emit(POD, reason, "x")
    events.run(stop)
    assert recorded == ["LeaderLost", "Other"]
