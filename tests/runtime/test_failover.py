"""Two real `hybrid-gateway run --no-dataplane` processes against the test API server and the EC2
emulator: leader election, route ownership and the CiliumVTEPConfig across failovers.

Each daemon talks to EC2 through its own recording proxy, and the API server audits every
request, so "who wrote when" comes from the servers' side, not from the daemons. Times are the
system-wide monotonic clock (shared by all processes on the host). Figures are printed (run
with `-s` to see them); assertions are about ORDER, never about speed.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import itertools
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.timings import EC2_WRITE_TIMEOUT_FLOOR_S
from hybrid_gateway_contract import DEFAULT_LEASE_NAME, Env
from hybrid_gateway_testkit.daemon import FAST_LEASE, GatewayDaemon
from hybrid_gateway_testkit.ec2emu import THROTTLE_BODY, VpcWorld, seed_world
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer
from kube_test_apiserver import lease_writes as audit_lease_writes

pytestmark = pytest.mark.slow
POD_CIDRS = ["10.80.0.0/16", "10.81.0.0/16"]

# --- two real daemon processes ------------------------------------------------------------------

NAMESPACE = "eks-hybrid-nodes-gateway"
NODE_IPS = {"a": "10.0.1.10", "b": "10.0.1.11"}


@dataclass
class Pair:
    world: VpcWorld
    direct: Any
    kube: ApiServer
    gateways: dict[str, GatewayDaemon]
    vtep_api: Any  # CustomObjectsApi as a separate "tester" identity

    def vtep_endpoint(self) -> tuple[str, str] | None:
        try:
            obj = self.vtep_api.get_cluster_custom_object(
                "cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway"
            )
        except Exception:
            return None
        endpoints = obj["spec"]["endpoints"]
        return endpoints[0]["tunnelEndpoint"], endpoints[0]["mac"]

    def owner(self) -> str | None:
        """The gateway that every route AND the VTEP config point at, if any."""
        targets = set(self.world.routes(self.direct).values())
        endpoint = self.vtep_endpoint()
        for name, gw in self.gateways.items():
            if targets == {self.world.enis[name]} and endpoint == (
                gw.node_ip,
                vxlan_device_mac(gw.node_ip),
            ):
                return name
        return None

    def wait_owner(self, timeout_s: float = 15.0, *, not_: str | None = None) -> tuple[str, float]:
        """Wait until one gateway (other than `not_`) owns everything; returns (name, when)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            owner = self.owner()
            if owner is not None and owner != not_:
                return owner, time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"no gateway took ownership in {timeout_s}s (logs: {self.logs()})")

    def logs(self) -> str:
        return " | ".join(f"{n}: {g.log(1500)}" for n, g in self.gateways.items())

    def other(self, name: str) -> str:
        return next(n for n in self.gateways if n != name)


@pytest.fixture
def lease_env() -> dict[str, str]:
    """Lease timing for the daemons; a test overrides it with `parametrize("lease_env", ...)`."""
    return dict(FAST_LEASE)


@pytest.fixture
def pair(
    kube_api: ApiServer,
    moto_addr: tuple[str, int],
    direct: Any,
    tmp_path: Path,
    lease_env: dict[str, str],
) -> Iterator[Pair]:
    world = seed_world(direct, tables=3, pod_cidrs=POD_CIDRS, instance_names=("a", "b", "x"))
    from kubernetes import client, config

    vtep_api = client.CustomObjectsApi(
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    )
    gateways: dict[str, GatewayDaemon] = {}
    for name in ("a", "b"):
        gateways[name] = GatewayDaemon.create(
            name,
            kube=kube_api,
            moto_addr=moto_addr,
            world=world,
            node_ip=NODE_IPS[name],
            namespace=NAMESPACE,
            pod_cidrs=POD_CIDRS,
            log_dir=tmp_path,
            resync_period="0.3",
            lease=lease_env,
        )
    for gw in gateways.values():
        gw.start()
    try:
        for gw in gateways.values():
            gw.wait_serving()
        yield Pair(world, direct, kube_api, gateways, vtep_api)
    finally:
        for gw in gateways.values():
            gw.close()


EC2_WRITES = ("CreateRoute", "ReplaceRoute", "DeleteRoute")
#: Successful Lease writes as (server monotonic time, identity), in order.
lease_writes = functools.partial(audit_lease_writes, namespace=NAMESPACE)


def leader_writes(pair: Pair, audit: list[dict[str, Any]]) -> list[tuple[float, str, str]]:
    """Every EC2 route write that reached the emulator's proxy and every VTEP-config write the
    API server processed, by gateway: (monotonic time, identity, what)."""
    identities = {gw.identity for gw in pair.gateways.values()}
    writes = [
        (c.started_mono, gw.identity, f"{c.action} {c.params.get('RouteTableId')}")
        for gw in pair.gateways.values()
        for c in gw.proxy.snapshot()
        if c.action in EC2_WRITES
    ]
    writes += [
        (float(e["mono"]), str(e["identity"]), f"vtep {e['verb']}")
        for e in audit
        if "ciliumvtepconfigs" in e["path"]
        and e["verb"] in ("create", "update", "patch", "delete")
        and e["identity"] in identities
        and e["status"] is not None
    ]
    return sorted(writes)


def assert_only_the_holder_wrote(pair: Pair, lease_duration_s: float) -> int:
    """Each write came from the identity whose successful Lease write was the latest before it,
    within one lease duration of that write (i.e. while the server still saw its lease live)."""
    audit = pair.kube.audit()
    held = lease_writes(audit)
    times = [t for t, _ in held]
    writes = leader_writes(pair, audit)
    for when, who, what in writes:
        i = bisect.bisect_right(times, when) - 1
        assert i >= 0, f"{who} wrote ({what}) before anyone held the lease"
        since, holder = held[i]
        assert holder == who, f"{who} wrote ({what}) while {holder} held the lease"
        assert when - since < lease_duration_s, (
            f"{who} wrote ({what}) {when - since:.3f}s after its last lease write"
        )
    return len(writes)


@contextmanager
def drift(pair: Pair, period_s: float = 0.7) -> Iterator[list[int]]:
    """Keep breaking one route (pointing it at a third instance) so the leader keeps writing."""
    stop = threading.Event()
    count = [0]
    keys = list(pair.world.routes(pair.direct))

    def run() -> None:
        while not stop.wait(period_s):
            table, cidr = keys[count[0] % len(keys)]
            try:
                pair.direct.replace_route(
                    RouteTableId=table,
                    DestinationCidrBlock=cidr,
                    NetworkInterfaceId=pair.world.enis["x"],
                )
                count[0] += 1
            except Exception:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join(5)


def first_acquisition_after(audit: list[dict[str, Any]], identity: str, after: float) -> float:
    return next(t for t, who in lease_writes(audit) if who == identity and t > after)


def test_kill_9_the_leader_and_the_standby_owns_everything(pair: Pair) -> None:
    leader, _ = pair.wait_owner()
    standby = pair.other(leader)
    gw, sb = pair.gateways[leader], pair.gateways[standby]
    # health and metrics on their own ports, per replica
    assert gw.wait_ready("ready (leader)\n") == (200, "ready (leader)\n")
    assert sb.wait_ready("ready (standby)\n") == (200, "ready (standby)\n")
    assert gw.get(gw.health_port, "/healthz")[0] == 200
    assert (
        gw.metric("hybrid_gateway_leader_is_active"),
        sb.metric("hybrid_gateway_leader_is_active"),
    ) == (1.0, 0.0)
    assert (gw.metric("hybrid_gateway_leader_setup_duration_seconds_sum") or 0) > 0

    killed_at = time.monotonic()
    gw.signal(signal.SIGKILL)
    owner, owned_at = pair.wait_owner(not_=leader)
    assert owner == standby
    assert pair.vtep_endpoint() == (sb.node_ip, vxlan_device_mac(sb.node_ip))
    audit = pair.kube.audit()
    acquired = first_acquisition_after(audit, sb.identity, killed_at)
    last_old = max(t for t, who in lease_writes(audit) if who == gw.identity)
    assert acquired - last_old >= 1.0  # a crashed leader's lease must run out first
    print(f"\nkill -9: standby owns routes+VTEP {owned_at - killed_at:.2f}s after the kill")
    assert assert_only_the_holder_wrote(pair, 1.0) > 0


@pytest.mark.parametrize(
    "lease_env", [{"LEASE_DURATION": "5", "RENEW_DEADLINE": "3", "RETRY_PERIOD": "0.2"}]
)
def test_sigterm_releases_and_the_standby_takes_over_before_expiry(pair: Pair) -> None:
    leader, _ = pair.wait_owner()
    gw, sb = pair.gateways[leader], pair.gateways[pair.other(leader)]
    sent_at = time.monotonic()
    gw.signal(signal.SIGTERM)
    owner, owned_at = pair.wait_owner(not_=leader)
    assert owner == sb.name
    assert gw.wait() == 0
    audit = pair.kube.audit()
    old = [t for t, who in lease_writes(audit) if who == gw.identity]
    renewed_last, released = old[-2], old[-1]
    acquired = first_acquisition_after(audit, sb.identity, sent_at)
    # ORDER: old leader's last EC2/VTEP write < its release < new acquisition < old lease expiry
    last_old_write = max(t for t, who, _ in leader_writes(pair, audit) if who == gw.identity)
    assert last_old_write < released < acquired < renewed_last + 5.0
    print(
        f"\nSIGTERM: lease taken {acquired - sent_at:.2f}s, routes+VTEP owned "
        f"{owned_at - sent_at:.2f}s after the signal (lease duration 5s)"
    )
    assert_only_the_holder_wrote(pair, 5.0)


def test_partitioned_leader_stops_writing_before_the_other_acquires(pair: Pair) -> None:
    leader, _ = pair.wait_owner()
    gw, sb = pair.gateways[leader], pair.gateways[pair.other(leader)]
    with drift(pair) as broken:
        time.sleep(1.0)  # the leader repairs drift: it is writing when cut off
        cut_at = time.monotonic()
        pair.kube.partition(gw.identity)
        owner, owned_at = pair.wait_owner(not_=leader)
        time.sleep(0.5)
    assert owner == sb.name and broken[0] > 0
    audit = pair.kube.audit()
    acquired = first_acquisition_after(audit, sb.identity, cut_at)
    old_writes = [t for t, who, _ in leader_writes(pair, audit) if who == gw.identity]
    assert old_writes and max(old_writes) < acquired
    # Still cut off, the old leader has stopped for good: no writes after its renew deadline.
    assert gw.running and gw.metric("hybrid_gateway_leader_is_active") == 0.0
    print(f"\npartition: other owns routes+VTEP {owned_at - cut_at:.2f}s after the cut")
    pair.kube.heal(gw.identity)
    assert assert_only_the_holder_wrote(pair, 1.0) > 0


def test_twenty_handovers_and_no_write_by_a_non_holder(pair: Pair) -> None:
    took: list[float] = []
    with drift(pair):
        leader, _ = pair.wait_owner()
        for _ in range(20):
            cut_at = time.monotonic()
            pair.kube.partition(pair.gateways[leader].identity)
            new, owned_at = pair.wait_owner(not_=leader)
            pair.kube.heal(pair.gateways[leader].identity)
            took.append(owned_at - cut_at)
            leader = new
    holders = [who for _, who in lease_writes(pair.kube.audit())]
    changes = sum(1 for prev, cur in itertools.pairwise(holders) if prev != cur)
    assert changes >= 20
    writes = assert_only_the_holder_wrote(pair, 1.0)
    assert all(gw.running for gw in pair.gateways.values())
    print(
        f"\n20 hand-overs: {writes} leader writes, 0 by a non-holder; routes+VTEP moved in "
        f"{min(took):.2f}-{max(took):.2f}s (median {sorted(took)[10]:.2f}s) after the cut"
    )


def test_vtep_config_moves_while_ec2_is_still_blocked(pair: Pair) -> None:
    """The new leader publishes the CiliumVTEPConfig without waiting for EC2: with every EC2 call
    of the standby held at its proxy, the VTEP config points at it while every route still
    points at the old leader (hybrid to cloud traffic does not depend on EC2)."""
    leader, _ = pair.wait_owner()
    gw, sb = pair.gateways[leader], pair.gateways[pair.other(leader)]
    # The standby resolved its primary ENI and checked the tables at start, without leading.
    wait_until(
        "the standby prepared", lambda: sb.metric("hybrid_gateway_route_owner_prepared") == 1.0
    )
    # (and keeps re-reading its source/destination check, one DescribeInstances a period)
    assert sb.proxy.count("DescribeInstances") >= 1 and sb.proxy.count(*EC2_WRITES) == 0
    sb.proxy.reset()
    released = threading.Event()

    def hold(action: str, seq: int) -> None:
        released.wait(30.0)  # EC2 does not answer until the test lets it

    sb.proxy.fault = hold
    # A call the standby sent before the hold (its periodic route-table describe, say) may
    # still finish after the reset: only calls that arrived once the hold was in place count.
    held_from = time.monotonic()
    try:
        gw.signal(signal.SIGTERM)
        want = (sb.node_ip, vxlan_device_mac(sb.node_ip))
        deadline = time.monotonic() + 10.0
        while pair.vtep_endpoint() != want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pair.vtep_endpoint() == want, pair.logs()
        # routes not converged: all still on the old leader, none written, the new leader unready
        assert pair.world.all_point_at(pair.direct, leader)
        assert sb.proxy.count(*EC2_WRITES) == 0
        answered = [c for c in sb.proxy.snapshot() if c.started_mono >= held_from]
        assert answered == []  # every EC2 call since the hold is still held at the proxy
        assert sb.get(sb.health_port, "/readyz")[0] == 503
    finally:
        released.set()
    owner, _ = pair.wait_owner(not_=leader)
    assert owner == sb.name
    assert sb.wait_ready("ready (leader)\n") == (200, "ready (leader)\n")
    # The failover did not look the ENI up: the only DescribeInstances are the periodic
    # re-checks (resync 0.3 s here), one at a time, never two close together.
    lookups = [c.started_mono for c in sb.proxy.snapshot() if c.action == "DescribeInstances"]
    assert all(b - a > 0.15 for a, b in itertools.pairwise(lookups)), lookups
    assert_only_the_holder_wrote(pair, 1.0)


# --- fencing under EC2 throttling, shutdown, a slow API server (issue 8) ----------------------

RENEW_DEADLINE_S = float(FAST_LEASE[Env.RENEW_DEADLINE])
LEASE_DURATION_S = float(FAST_LEASE[Env.LEASE_DURATION])
#: The route-write client's connect timeout at these timings: half the slack, with its floor
#: (hybrid_gateway.timings.Timings.ec2_write_connect_timeout_s).
CONNECT_BUDGET_S = max(EC2_WRITE_TIMEOUT_FLOOR_S, (LEASE_DURATION_S - RENEW_DEADLINE_S) / 2)


def throttle_writes(action: str, seq: int) -> tuple[int, bytes] | None:
    """EC2 answers two of every three route writes with RequestLimitExceeded."""
    return (503, THROTTLE_BODY) if action in EC2_WRITES and seq % 3 != 2 else None


def test_a_throttled_partitioned_leader_sends_no_route_write_after_its_validity(
    pair: Pair,
) -> None:
    """EC2 throttles the leader only, drift keeps it writing, then it is cut off from the API
    server. Its validity ends at the latest `renew deadline` after its last successful Lease
    write ARRIVED at the server (it was sent no later than that); the EC2 emulator's proxy
    must see no route write from it after that moment plus the time one request may take to
    connect: the last check runs before botocore connects, and the route-write client's
    connect timeout (half the slack) bounds the rest (docs/daemon.md, "What EC2 fencing
    guarantees"). On a loaded machine a write whose check passed at the last instant reaches
    the proxy milliseconds later; it must never reach it after that bound, which ends before
    another replica may take the Lease."""
    leader, _ = pair.wait_owner()
    gw, sb = pair.gateways[leader], pair.gateways[pair.other(leader)]
    gw.proxy.fault = throttle_writes
    with drift(pair, period_s=0.3):
        time.sleep(2.0)  # the leader repairs drift through throttling: writes are in flight
        assert gw.proxy.count(*EC2_WRITES) > 0
        cut_at = time.monotonic()
        pair.kube.partition(gw.identity)
        owner, owned_at = pair.wait_owner(not_=leader)
        time.sleep(3.0)  # a write held back by a rate limiter would arrive by now
    assert owner == sb.name
    audit = pair.kube.audit()
    last_renewal = max(t for t, who in lease_writes(audit) if who == gw.identity)
    valid_until = last_renewal + RENEW_DEADLINE_S
    in_flight_until = valid_until + CONNECT_BUDGET_S
    assert in_flight_until < last_renewal + LEASE_DURATION_S
    late = [
        f"{c.action} {c.started_mono - valid_until:+.3f}s"
        for c in gw.proxy.snapshot()
        if c.action in EC2_WRITES and c.started_mono >= in_flight_until
    ]
    assert late == [], f"route writes after the leader's validity ended: {late}"
    assert any(c.injected for c in gw.proxy.snapshot())  # it really was throttled
    pair.kube.heal(gw.identity)
    print(
        f"\nthrottled + partitioned: other owns routes+VTEP {owned_at - cut_at:.2f}s after the cut"
    )
    assert_only_the_holder_wrote(pair, 1.0)


def signal_logged_at(log_text: str, name: str) -> float:
    """Wall-clock time of the daemon's `received <name>` log line (text format, local time)."""
    line = next(line for line in log_text.splitlines() if f"received {name}" in line)
    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


# A route write that passed its last lease check before the shutdown took effect is already on
# its way; on loopback it reaches the proxy within this margin.
IN_FLIGHT_MARGIN_S = 0.25


@pytest.mark.parametrize(
    "lease_env", [{"LEASE_DURATION": "5", "RENEW_DEADLINE": "3", "RETRY_PERIOD": "0.2"}]
)
def test_sigterm_mid_write_under_throttling_sends_nothing_and_starts_no_term(pair: Pair) -> None:
    leader, _ = pair.wait_owner()
    gw, sb = pair.gateways[leader], pair.gateways[pair.other(leader)]
    gw.proxy.fault = throttle_writes
    with drift(pair, period_s=0.3):
        time.sleep(2.0)
        assert gw.proxy.count(*EC2_WRITES) > 0  # mid-write, through throttling
        sent_at = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
        owner, _ = pair.wait_owner(not_=leader)
        time.sleep(2.0)
    assert owner == sb.name
    log_text = gw.log_path.read_text()
    effect = signal_logged_at(log_text, "SIGTERM")
    late = [
        f"{c.action} {c.started - effect:+.3f}s"
        for c in gw.proxy.snapshot()
        if c.action in EC2_WRITES and c.started > effect + IN_FLIGHT_MARGIN_S
    ]
    assert late == [], f"route writes after SIGTERM took effect: {late}"
    after_signal = log_text.split("received SIGTERM", 1)[1]
    assert "acquired leadership" not in after_signal, after_signal
    # at the API server: after the signal the old leader wrote the Lease at most twice (a
    # renewal already in flight, then the release), and the new holder took it afterwards
    audit = pair.kube.audit()
    old = [t for t, who in lease_writes(audit) if who == gw.identity and t > sent_at]
    assert 1 <= len(old) <= 2
    assert first_acquisition_after(audit, sb.identity, sent_at) > max(old)
    assert_only_the_holder_wrote(pair, 5.0)


@pytest.mark.parametrize(
    "lease_env", [{"LEASE_DURATION": "3", "RENEW_DEADLINE": "2", "RETRY_PERIOD": "1"}]
)
def test_a_leader_answered_1_2s_late_keeps_its_lease(pair: Pair) -> None:
    """Every API request of the leader answered 1.2 s late, as during a control-plane upgrade,
    with the default 3/2/1 s timings: its renewals complete within the renew deadline, so it
    keeps the lease and the pair does not fail over."""
    leader, _ = pair.wait_owner(timeout_s=30.0)
    gw = pair.gateways[leader]
    slowed_at = time.monotonic()
    pair.kube.set_latency(1.2, gw.identity)
    try:
        time.sleep(15.0)
    finally:
        pair.kube.set_latency(0.0, gw.identity)
    audit = pair.kube.audit()
    writes = [(t, who) for t, who in lease_writes(audit) if t > slowed_at]
    assert {who for _, who in writes} == {gw.identity}, "the standby took the lease"
    renewals = [slowed_at] + [t for t, _ in writes]
    gaps = [later - earlier for earlier, later in itertools.pairwise(renewals)]
    assert max(gaps) < 3.0, f"the Lease went {max(gaps):.2f}s without a renewal"
    assert len(writes) >= 8
    assert "lost leadership" not in gw.log_path.read_text()
    assert gw.metric("hybrid_gateway_leader_is_active") == 1.0
    print(f"\n1.2 s API latency: {len(writes)} renewals in 15 s, longest gap {max(gaps):.2f}s")


# --- the Lease deleted or edited by an admin, an API outage for both replicas -----------------


def admin_leases(pair: Pair) -> Any:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(pair.kube.kubeconfig("admin")))
    return client.CoordinationV1Api(api)


def lease_present(leases: Any) -> bool:
    try:
        leases.read_namespaced_lease(DEFAULT_LEASE_NAME, NAMESPACE)
    except Exception:
        return False
    return True


def writes_while_nobody_held(
    pair: Pair, audit: list[dict[str, Any]], removed: list[float]
) -> list[str]:
    """Leader writes that reached EC2 or the API server after the Lease was taken from its
    holder at a time in `removed` (server clock, plus the in-flight margin) and before the next
    successful Lease write by anyone: nobody held the lease then."""
    held = [t for t, _ in lease_writes(audit)]
    late = []
    for at in removed:
        next_holder = next((t for t in held if t > at), float("inf"))
        late += [
            f"{who} {what} {when - at:+.3f}s"
            for when, who, what in leader_writes(pair, audit)
            if at + IN_FLIGHT_MARGIN_S < when < next_holder
        ]
    return late


def test_an_admin_deleting_the_lease_never_gives_two_writers(pair: Pair) -> None:
    """A common runbook step: `kubectl delete lease`. Both replicas race to create it again
    (client-go does the same); whoever wins, the one that lost must not write after the other
    took it. Before, the old leader's renewal got an answer it ignored and it kept writing
    (its CiliumVTEPConfig watch repaired the config the new leader had just written)."""
    leases = admin_leases(pair)
    deleted: list[float] = []
    with drift(pair, period_s=0.3):
        for _ in range(4):
            pair.wait_owner()
            time.sleep(1.0)  # the leader is repairing drift: writes are going on
            leases.delete_namespaced_lease(DEFAULT_LEASE_NAME, NAMESPACE)
            deleted.append(
                max(
                    float(e["mono"])
                    for e in pair.kube.audit()
                    if e["verb"] == "delete" and e["resource"] == "leases"
                )
            )
            wait_until("the Lease taken again", lambda: lease_present(leases), 10)
        time.sleep(1.0)
    owner, _ = pair.wait_owner()
    audit = pair.kube.audit()
    assert writes_while_nobody_held(pair, audit, deleted) == []
    writes = assert_only_the_holder_wrote(pair, 1.0)
    paused = sum(
        gw.log_path.read_text().count("leader writes paused") for gw in pair.gateways.values()
    )
    assert paused >= 4, pair.logs()
    # and an Event says so (reason LeaseChangedDuringTerm, about the replica's pod)
    from kubernetes import client, config

    core = client.CoreV1Api(
        config.new_client_from_config(config_file=str(pair.kube.kubeconfig("admin")))
    )
    wait_until(
        "a LeaseChangedDuringTerm Event",
        lambda: [
            e
            for e in core.list_namespaced_event(NAMESPACE).items
            if e.reason == "LeaseChangedDuringTerm" and "leader writes paused" in e.message
        ],
        10,
    )
    print(f"\nLease deleted 4 times: {writes} leader writes, none by a non-holder; owner {owner}")


def test_an_admin_editing_the_holder_stops_the_leader_writing_at_once(pair: Pair) -> None:
    leases = admin_leases(pair)
    leader, _ = pair.wait_owner()
    with drift(pair, period_s=0.3):
        time.sleep(1.0)
        lease = leases.read_namespaced_lease(DEFAULT_LEASE_NAME, NAMESPACE)
        lease.spec.holder_identity = "maintenance"
        lease.spec.lease_duration_seconds = 3
        leases.replace_namespaced_lease(DEFAULT_LEASE_NAME, NAMESPACE, lease)
        edited = max(
            float(e["mono"])
            for e in pair.kube.audit()
            if e["identity"] == "admin" and e["verb"] == "update"
        )
        # "maintenance" never renews: after 3 s on the replicas' clocks one of them takes it
        identities = {gw.identity for gw in pair.gateways.values()}
        wait_until(
            "a replica took the Lease again",
            lambda: (
                leases.read_namespaced_lease(DEFAULT_LEASE_NAME, NAMESPACE).spec.holder_identity
                in identities
            ),
            20,
        )
        owner, _ = pair.wait_owner()
        time.sleep(1.0)
    audit = pair.kube.audit()
    taken = next(t for t, who in lease_writes(audit) if t > edited and who != "admin")
    assert taken - edited >= 3.0, "the edited duration counts from when the edit was seen"
    assert writes_while_nobody_held(pair, audit, [edited]) == []
    print(
        f"\nholder edited: {pair.gateways[leader].identity} stopped; {owner} took over "
        f"{taken - edited:.2f}s later"
    )


@pytest.mark.parametrize(
    "lease_env", [{"LEASE_DURATION": "3", "RENEW_DEADLINE": "2", "RETRY_PERIOD": "1"}]
)
def test_an_api_outage_for_both_replicas_is_quiet_and_changes_no_leader(pair: Pair) -> None:
    """The API server drops every request of both replicas for 8 s (a control-plane upgrade),
    with the default 3/2/1 s timings. The standby's observed lease expires during the outage;
    it must not spin on it (it sent 860 GETs/s before), and since its first read after the heal
    is a fresh observation, the old leader renews first and keeps the lease."""
    leader, _ = pair.wait_owner(timeout_s=30.0)
    gw, sb = pair.gateways[leader], pair.gateways[pair.other(leader)]
    time.sleep(2.0)
    cut_at = time.monotonic()
    for g in pair.gateways.values():
        pair.kube.partition(g.identity)
    time.sleep(8.0)
    for g in pair.gateways.values():
        pair.kube.heal(g.identity)
    healed_at = time.monotonic()
    time.sleep(10.0)
    audit = pair.kube.audit()
    rates = {}
    for g in pair.gateways.values():
        sent = [e for e in audit if e["identity"] == g.identity and cut_at < e["mono"] < healed_at]
        rates[g.name] = len(sent) / (healed_at - cut_at)
    after = {who for t, who in lease_writes(audit) if t > healed_at}
    print(
        f"\n8 s API outage, both replicas: requests/s leader {rates[leader]:.1f}, standby "
        f"{rates[sb.name]:.1f}; Lease writers after the heal: {sorted(after)}"
    )
    assert after == {gw.identity}, "the standby took the lease after the outage"
    assert max(rates.values()) < 30.0, rates  # a few loops, each backing off
    assert pair.owner() == leader
    assert_only_the_holder_wrote(pair, 3.0)
