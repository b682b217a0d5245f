"""A deposed leader's route write cannot land after the new leader converged.

Real components: boto3 over HTTPS to the EC2 emulator (moto server) through a TLS front per
replica (testkit `TlsFront`, in front of each replica's recording `Ec2Proxy`), real route owners,
and the new leader's real `LeaderWork` threads on the real clock. The old leader's path is slow
to complete TLS handshakes (a lost packet, a congested path): its last guarded write has passed
every check botocore runs before sending (`before-send`, botocore endpoint.py) and then waits in
urllib3's connect (httpsession.py -> connectionpool.py `_validate_conn`).

Assertions are about order (what reached the emulator's proxy, and when, against the old
leader's validity), with generous waits; the only figure is the configured timeouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hybrid_gateway.adapters.ec2 import Ec2Routes, WriteTimeouts, make_client
from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.config import load_config
from hybrid_gateway.core.routes import RouteKey
from hybrid_gateway.leader import routes as leader_routes
from hybrid_gateway.leader.elector import Term
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.leader.service import LeaderWork
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.timings import Timings
from hybrid_gateway_testkit.ec2emu import Ec2Proxy, TlsFront, VpcWorld, point_all
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import make_certificate, server_context

WRITES = ("CreateRoute", "ReplaceRoute")
#: The daemon's default timings (3/2/1 s): 1 s of slack between the end of a holder's
#: validity and the earliest moment another replica may take the Lease.
TIMINGS = Timings.from_config(
    load_config({"NODE_IP": "10.0.1.10", "VPC_CIDR": "10.0.0.0/16", "POD_CIDRS": "10.80.0.0/16"})
)
#: Longer than the slack (so a write held this long lands after the new leader took over),
#: shorter than the SDK-style 5 s connect timeout the write client had before.
HANDSHAKE_DELAY_S = 3.0


class NoEvents:
    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        pass


class VtepConverged:
    def sync(self, may_write: Any) -> bool:
        return True


@dataclass
class Ec2Path:
    """One replica's way to EC2: TLS front -> recording proxy -> emulator."""

    front: TlsFront
    proxy: Ec2Proxy

    def routes(self, monkeypatch: pytest.MonkeyPatch) -> Ec2Routes:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", self.front.url)  # read when the client is made
        return Ec2Routes(
            make_client("us-east-1"),
            write_timeouts=WriteTimeouts(
                TIMINGS.ec2_write_connect_timeout_s, TIMINGS.ec2_write_read_timeout_s
            ),
        )


@pytest.fixture
def paths(
    moto_addr: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Ec2Path]]:
    cert, key, _ = make_certificate("127.0.0.1", tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    made: dict[str, Ec2Path] = {}
    for name in ("a", "b"):
        proxy = Ec2Proxy(moto_addr, label=f"gw-{name}").start()
        host, port = proxy.url.removeprefix("http://").split(":")
        front = TlsFront((host, int(port)), server_context(cert, key)).start()
        made[name] = Ec2Path(front, proxy)
    try:
        yield made
    finally:
        for path in made.values():
            path.front.stop()
            path.proxy.stop()


def owner(world: VpcWorld, name: str, routes: Ec2Routes) -> RouteOwner:
    return RouteOwner(
        routes,
        instance_id=world.instances[name],
        table_ids=world.table_ids,
        pod_cidrs=world.pod_cidrs,
        allow_takeover=False,
        metrics=GatewayMetrics(),
    )


@pytest.mark.parametrize("disturbance", ["slow-handshake", "applied-late"])
def test_a_deposed_leaders_slow_write_does_not_outlive_the_new_leaders_routes(
    world: VpcWorld,
    direct: Any,
    paths: dict[str, Ec2Path],
    monkeypatch: pytest.MonkeyPatch,
    disturbance: str,
) -> None:
    """slow-handshake: the old leader's new connections take 3 s to complete TLS; its write
    must be abandoned, not sent late. applied-late: EC2 receives the write in time but applies
    it only once the new leader has converged (server-side queueing, which no client can fence),
    within the late-write window: the new leader's re-check must repair it."""
    # GIVEN b led before (every route points at b) and a leads now, with its reads connected
    point_all(direct, world, world.enis["b"])
    old = owner(world, "a", paths["a"].routes(monkeypatch))
    old.prepare()
    paths["a"].proxy.reset()
    # ... and b is a ready standby, its reads connected
    new = owner(world, "b", paths["b"].routes(monkeypatch))
    new.prepare()
    work = LeaderWork(
        routes=new,
        vtep=VtepConverged(),
        resync_period_s=30.0,  # the daemon's default: drift is otherwise seen after this
        retry_period_s=TIMINGS.retry_period_s,
        metrics=GatewayMetrics(),
        events=NoEvents(),
        subject=ObjectRef("v1", "Pod", "gw-b", "ns"),
        identity="gw-b",
        late_write_window_s=TIMINGS.late_write_window_s,
        keep_warm=new.keep_warm,
    )
    b_converged = threading.Event()
    if disturbance == "slow-handshake":
        # ... and a's path starts holding new TLS handshakes back for longer than the slack
        paths["a"].front.handshake_delay_s = HANDSHAKE_DELAY_S
    else:
        # ... and EC2 holds a's writes, applying them once b has converged
        def hold_writes(action: str, seq: int) -> None:
            if action in WRITES:
                b_converged.wait(30.0)

        paths["a"].proxy.fault = hold_writes
    monkeypatch.setattr(leader_routes, "MAX_PARALLEL_WRITES", 1)  # one write at a time

    # WHEN a syncs at the very end of its validity: its validity ends 0.3 s after the first
    # write's guard passed (it is checked again right before sending: both pass)
    valid_until: list[float] = []

    def guard() -> bool:
        if not valid_until:
            valid_until.append(time.monotonic() + 0.3)
        return time.monotonic() < valid_until[0]

    late = threading.Thread(target=old.sync, args=(guard,), daemon=True)
    late.start()
    wait_until("a's first write guard", lambda: bool(valid_until), 30.0)
    end_of_a = valid_until[0]

    # ... and b takes the Lease at the earliest moment it may: one slack after that
    time.sleep(max(0.0, end_of_a + TIMINGS.lease_slack_s - time.monotonic()))
    acquired = time.monotonic()
    work.started_leading(Term(1, acquired, lambda: True))
    stop = threading.Event()
    runner = threading.Thread(target=work.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_until("b converged", work.converged, 30.0)
        b_converged.set()
        late.join(30.0)
        assert not late.is_alive()
        # THEN a few seconds after b converged (far less than the resync period), every route
        # points at b, whatever a's held-back write did
        wait_until(
            "every route at b",
            lambda: (
                time.monotonic() > acquired + TIMINGS.late_write_window_s + 0.5
                and world.all_point_at(direct, "b")
            ),
            8.0,
        )
    finally:
        stop.set()
        work.wake()
        runner.join(10.0)
    # ... and no write of a reached EC2 later than one write attempt after its validity ended,
    # which with half the slack each for connect and read is before b could take the Lease
    a_writes = [c.started_mono for c in paths["a"].proxy.snapshot() if c.action in WRITES]
    arrivals = [round(t - end_of_a, 3) for t in a_writes]
    print(f"{disturbance}: the old leader's writes reached EC2 {arrivals} s after its validity")
    if disturbance == "applied-late":  # the write did land, after b had converged
        assert a_writes
    assert all(t <= end_of_a + TIMINGS.late_write_window_s for t in a_writes), (
        [round(t - end_of_a, 3) for t in a_writes],
        TIMINGS.late_write_window_s,
    )
    assert all(t < end_of_a + TIMINGS.lease_slack_s for t in a_writes)


def test_a_warm_write_connection_needs_no_new_handshake(
    world: VpcWorld, direct: Any, paths: dict[str, Ec2Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While leading, the write client's pool is used at least every keep-warm period: a write
    then goes out on that open connection, however slow a new handshake would be."""
    routes = paths["a"].routes(monkeypatch)
    assert routes.keep_warm(world.table_ids[0])
    handshakes = len(paths["a"].front.handshakes)
    assert not routes.keep_warm(world.table_ids[0])  # used just now: no call
    paths["a"].front.handshake_delay_s = HANDSHAKE_DELAY_S
    key = RouteKey(world.table_ids[0], world.pod_cidrs[0])
    sent = time.monotonic()
    routes.create_route(key, world.enis["a"], lambda: True)
    assert len(paths["a"].front.handshakes) == handshakes  # the warm connection carried it
    arrived = [c.started_mono for c in paths["a"].proxy.snapshot() if c.action in WRITES]
    assert len(arrived) == 1 and arrived[0] - sent < HANDSHAKE_DELAY_S
    assert world.routes(direct)[(key.table_id, key.destination)] == world.enis["a"]
