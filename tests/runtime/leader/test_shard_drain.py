"""What an operator sees when a stopping active-active replica's drain falls short.

`ShardGroup.drain` keeps a stopping replica (and its node) until its released shards' routes
and VTEP endpoints point at the new owner. When the new owner's write pacing cannot move them
within what the termination grace period leaves (`shut_down` computes that after stopping the
shard work), it says so at once (`ShardDrainTooShort`); when something still points here at the
deadline, or it cannot read whether it does, it says what (`ShardDrainIncomplete`); when
everything moved, it says nothing. These tests build the group as the daemon does
(`build_shard_group`) against the test API server and the EC2 emulator (through a recording
proxy), and read the Events back from the API server as `kubectl get events` would.

The group runs on a fake clock (its drain polls wait on it too), so a 13 s drain is 52 real
polls of the API server and EC2, a few seconds, and its length is asserted by that clock.
The other replica, gw-b, is played by the test at given fake times: it renews its Leases every
second (and this replica's group watch lists them, as the watch would deliver them), takes the
released shard's Lease, and writes the VTEP endpoints and routes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_events import EventRecorder, ObjectRef
from hybrid_gateway.config import load_config
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.core.pacing import DrainBudget, drain_budget
from hybrid_gateway.core.vtep import dotted_mask
from hybrid_gateway.leader.assembly import OwnershipInputs
from hybrid_gateway.leader.shard_assembly import build_shard_group
from hybrid_gateway.leader.shards import (
    DRAIN_FLOOR_S,
    DRAIN_MARGIN_S,
    DRAIN_POLL_S,
    DRAIN_TAKEOVER_LEASES,
    ShardGroup,
)
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.reporting import Reporting
from hybrid_gateway.supervisor import Supervisor, Task
from hybrid_gateway.timings import SHUTDOWN_JOIN_S, SHUTDOWN_REST_S, Timings
from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    DEFAULT_NAMESPACE,
    TERMINATION_GRACE_PERIOD_S,
    VTEP_CONFIG_KIND,
    VTEP_CONFIG_NAME,
    Env,
)
from hybrid_gateway_contract.plans import PLAN_LABEL
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL, member_lease_name, shard_lease_name
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.ec2emu import UNAUTHORIZED_BODY, Ec2Proxy, VpcWorld
from hybrid_gateway_testkit.waiting import running, wait_until
from kube_test_apiserver import ApiServer

NAMESPACE = DEFAULT_NAMESPACE
ME, OTHER = "gw-a", "gw-b"
NODE_IPS = {ME: "10.0.1.10", OTHER: "10.0.1.11"}
INSTANCE = {ME: "a", OTHER: "b"}  # the seeded VPC world's instance names
POD_CIDR = "10.80.0.0/16"
SHARDS = 2
#: Shard 0 is gw-b's all along; gw-a held shard 1 and released it on SIGTERM.
KEPT, RELEASED = 0, 1
#: Hybrid nodes with /25 pod CIDRs from the start of the pool, as Cilium's cluster-pool IPAM
#: hands them out (cilium/cilium pkg/ipam/cidrset/cidr_set.go `AllocateNext`): the spread
#: then gives the released shard 8 prefixes, 24 route writes over the world's 3 tables.
NODES = 20
POOL = list(ipaddress.IPv4Network(POD_CIDR).subnets(new_prefix=25))
LEASE_S = 3  # the default lease duration, as gw-b writes it
#: What `shut_down` leaves the drain of a 30 s grace period when the shard work took all of
#: its join time to stop (a write stuck until its timeout), and when it stopped at once.
LIMIT_AFTER_SLOW_STOP_S = (
    TERMINATION_GRACE_PERIOD_S - SHUTDOWN_JOIN_S - 2 * SHUTDOWN_REST_S - DRAIN_MARGIN_S
)
LIMIT_AFTER_QUICK_STOP_S = TERMINATION_GRACE_PERIOD_S - 2 * SHUTDOWN_REST_S - DRAIN_MARGIN_S
REASONS = ("ShardDrainTooShort", "ShardDrainIncomplete")


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeClock:
    """The group's clock and sleep: `sleep` moves time on, then lets the world act on what is
    due by then (gw-b's renewals and writes), in time order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._due: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._due.append((when, action))
        self._due.sort(key=lambda item: item[0])

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        while self._due and self._due[0][0] <= self.now:
            _when, action = self._due.pop(0)
            action()


@dataclass
class Stage:
    """gw-a's shard group, built as the daemon builds it, and gw-b played by the test."""

    group: ShardGroup
    clock: FakeClock
    admin: client.ApiClient
    direct: Any
    world: VpcWorld
    lease_name: str
    timings: Timings  # as the daemon derives them from the config
    held_by_other: set[str] = field(default_factory=set)  # Lease names gw-b holds

    @property
    def labels(self) -> dict[str, str]:
        return {LEASE_GROUP_LABEL: self.lease_name, PLAN_LABEL: self.group.plan_digest}

    @property
    def leases(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.admin)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin)

    def prefixes(self, shard: int) -> tuple[str, ...]:
        spread = self.group.forward.current()
        assert spread is not None
        return spread.prefixes[shard]

    def endpoint_names(self, shard: int) -> list[str]:
        return [name for name, _cidr in self.group.plan.shards[shard].vtep_endpoints]

    # -- gw-b ------------------------------------------------------------------------------
    def write_lease(self, name: str, holder: str | None) -> None:
        """Create or replace Lease `name` as its holder writes it (renewed now)."""
        metadata: dict[str, Any] = {"name": name, "labels": self.labels}
        body = {
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": LEASE_S,
                "renewTime": _rfc3339(dt.datetime.now(dt.UTC)),
                "leaseTransitions": 1,
            },
        }
        try:
            current = self.leases.read_namespaced_lease(name, NAMESPACE)
        except client.ApiException as exc:
            assert exc.status == 404, exc
            self.leases.create_namespaced_lease(NAMESPACE, body)
        else:
            metadata["resourceVersion"] = current.metadata.resource_version
            self.leases.replace_namespaced_lease(name, NAMESPACE, body)
        if holder == OTHER:
            self.held_by_other.add(name)
        else:
            self.held_by_other.discard(name)

    def renew_and_list(self) -> None:
        """gw-b renews what it holds; gw-a's group watch hands the renewals to the group."""
        for name in sorted(self.held_by_other):
            self.write_lease(name, OTHER)
        self.group.group_watch.list()

    def renew_every_second(self, until_s: float) -> None:
        for second in range(1, int(until_s) + 2):
            self.clock.at(self.clock.now + second, self.renew_and_list)

    def take_over(self) -> None:
        self.write_lease(shard_lease_name(self.lease_name, RELEASED), OTHER)
        self.group.group_watch.list()

    def point_endpoints(self, shard: int, node: str) -> None:
        obj = self.custom.get_cluster_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, "ciliumvtepconfigs", VTEP_CONFIG_NAME
        )
        for endpoint in obj["spec"]["endpoints"]:
            if endpoint["name"] in self.endpoint_names(shard):
                endpoint["tunnelEndpoint"] = NODE_IPS[node]
                endpoint["mac"] = vxlan_device_mac(NODE_IPS[node])
        self.custom.replace_cluster_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, "ciliumvtepconfigs", VTEP_CONFIG_NAME, obj
        )

    def point_routes(self, shard: int, node: str, *, create: bool = False) -> None:
        write = self.direct.create_route if create else self.direct.replace_route
        for table in self.world.table_ids:
            for prefix in self.prefixes(shard):
                write(
                    RouteTableId=table,
                    DestinationCidrBlock=prefix,
                    NetworkInterfaceId=self.world.enis[INSTANCE[node]],
                )

    # -- what the operator sees --------------------------------------------------------------
    def events(self) -> dict[str, list[client.CoreV1Event]]:
        """The drain's Events about gw-a's Pod, by reason, as `kubectl get events` lists them."""
        listed = client.CoreV1Api(self.admin).list_namespaced_event(NAMESPACE).items
        out: dict[str, list[client.CoreV1Event]] = {reason: [] for reason in REASONS}
        for event in listed:
            if event.reason in out and event.involved_object.name == ME:
                out[event.reason].append(event)
        return out

    def the_incomplete_event(self, waited: float) -> client.CoreV1Event:
        """The one Event of a drain that fitted its budget but ended with something still
        here: no ShardDrainTooShort, one ShardDrainIncomplete Warning, sent once, naming the
        time waited."""
        events = self.events()
        assert events["ShardDrainTooShort"] == []
        (incomplete,) = events["ShardDrainIncomplete"]
        assert incomplete.type == "Warning" and (incomplete.count or 1) == 1
        assert f"after {waited:.1f}s" in incomplete.message, incomplete.message
        return incomplete

    def move(self, *, limit_s: float) -> DrainBudget:
        """What the released shard's move needs and the wait the drain gives it under
        `limit_s`, by the same rule and takeover the drain uses (`drain_budget`)."""
        return drain_budget(
            self.group.route_writes_to_move([RELEASED]),
            takeover_s=DRAIN_TAKEOVER_LEASES * LEASE_S,
            floor_s=DRAIN_FLOOR_S,
            limit_s=limit_s,
        )

    def drain(self, *, limit_s: float) -> float:
        """gw-a's drain of the released shard as `shut_down` calls it; the fake seconds it
        waited."""
        started = self.clock.now
        self.group.drain(
            [RELEASED],
            takeover_s=DRAIN_TAKEOVER_LEASES * LEASE_S,
            limit_s=limit_s,
        )
        return self.clock.now - started


@pytest.fixture
def stage(
    kube_api: ApiServer, ec2_proxy: Ec2Proxy, direct: Any, world: VpcWorld
) -> Iterator[Stage]:
    """Just after gw-a's SIGTERM: it released shard 1's Lease (and its membership); gw-b, a
    live member, holds shard 0; shard 1's routes and VTEP endpoints still point at gw-a, shard
    0's at gw-b."""
    admin = config.new_client_from_config(config_file=str(kube_api.kubeconfig("test-admin")))
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig(ME)))
    try:
        custom = client.CustomObjectsApi(admin)
        for i in range(NODES):
            body = cilium_node(f"hybrid-{i:04d}", f"192.168.0.{i + 1}", [str(POOL[i])])
            custom.create_cluster_custom_object(CILIUM_GROUP, CILIUM_VERSION, "ciliumnodes", body)
        env = {
            Env.POD_NAME: ME,
            Env.POD_NAMESPACE: NAMESPACE,
            Env.NODE_IP: NODE_IPS[ME],
            Env.VPC_CIDR: "10.0.0.0/16",
            Env.POD_CIDRS: ",".join(world.pod_cidrs),
            Env.ROUTE_TABLE_IDS: ",".join(world.table_ids),
            Env.AWS_REGION: "us-east-1",
            Env.AWS_INSTANCE_ID: world.instances[INSTANCE[ME]],
            Env.MODE: "active-active",
            Env.SHARDS: str(SHARDS),
        }
        cfg = load_config(env, ["--no-dataplane"])
        reporting = Reporting(
            # what AsyncEvents hands each Event to in the daemon
            EventRecorder(client.CoreV1Api(api_client), host=ME),
            ObjectRef("v1", "Pod", ME, NAMESPACE),
            GatewayMetrics(),
        )
        timings = Timings.from_config(cfg)
        inputs = OwnershipInputs(
            cfg,
            timings,
            api_client,
            reporting,
            vxlan_device_mac(NODE_IPS[ME]),
            lambda: True,
        )
        clock = FakeClock()
        group = build_shard_group(inputs, clock=clock, sleep=clock.sleep)
        # Route ownership prepared (instance, primary ENI, tables) through the EC2 proxy.
        with running(group.routes.run):
            wait_until("route ownership", lambda: group.routes.ownership_problem() is None)
        group.forward.nodes.watch.list()
        assert group.forward.recompute()
        stage = Stage(group, clock, admin, direct, world, cfg.lease_name, timings)
        # The routes and endpoints as the two owners wrote them before the SIGTERM.
        stage.point_routes(KEPT, OTHER, create=True)
        stage.point_routes(RELEASED, ME, create=True)
        plan = group.plan
        spec: dict[str, Any] = {
            "endpoints": [
                {
                    "name": name,
                    "tunnelEndpoint": NODE_IPS[OTHER if shard.index == KEPT else ME],
                    "cidr": cidr,
                    "mac": vxlan_device_mac(NODE_IPS[OTHER if shard.index == KEPT else ME]),
                }
                for shard in plan.shards
                for name, cidr in shard.vtep_endpoints
            ]
        }
        if plan.vtep_prefix_length is not None:
            spec["cidrMask"] = dotted_mask(plan.vtep_prefix_length)
        custom.create_cluster_custom_object(
            CILIUM_GROUP,
            CILIUM_VERSION,
            "ciliumvtepconfigs",
            {
                "apiVersion": f"{CILIUM_GROUP}/{CILIUM_VERSION}",
                "kind": VTEP_CONFIG_KIND,
                "metadata": {"name": VTEP_CONFIG_NAME},
                "spec": spec,
            },
        )
        stage.write_lease(member_lease_name(cfg.lease_name, OTHER), OTHER)
        stage.write_lease(member_lease_name(cfg.lease_name, ME), None)  # released
        stage.write_lease(shard_lease_name(cfg.lease_name, KEPT), OTHER)
        stage.write_lease(shard_lease_name(cfg.lease_name, RELEASED), None)  # released
        group.group_watch.list()
        yield stage
    finally:
        api_client.close()
        admin.close()


def test_a_move_the_grace_period_cannot_fit_is_named_at_once_and_the_wait_ends_there(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    """The shard work took its whole join time to stop, so 13 s are left for the drain; the
    new owner's pacing needs 6 s of takeover and 9.6 s for the 24 route writes. The replica
    says so before it waits (Event and log line, with the writes and the budget), waits the
    13 s (by its clock) and, with the routes still here (gw-b's writes are held back), names
    them when it stops."""
    stage.take_over()
    stage.point_endpoints(RELEASED, OTHER)
    writes = stage.group.route_writes_to_move([RELEASED])
    assert writes == len(stage.prefixes(RELEASED)) * len(stage.world.table_ids) == 24
    move = stage.move(limit_s=LIMIT_AFTER_SLOW_STOP_S)
    assert move.too_short and move.budget_s == LIMIT_AFTER_SLOW_STOP_S == 13
    stage.renew_every_second(move.budget_s)
    with caplog.at_level(logging.INFO, logger="hybrid_gateway"):
        waited = stage.drain(limit_s=LIMIT_AFTER_SLOW_STOP_S)
    assert move.budget_s <= waited < move.budget_s + DRAIN_POLL_S
    events = stage.events()
    (short,) = events["ShardDrainTooShort"]
    assert short.type == "Warning" and (short.count or 1) == 1
    assert f"moving {writes} route write(s) may take {move.needed_s:.0f}s" in short.message
    assert f"grace period leaves {move.budget_s:.0f}s" in short.message
    lines = [r for r in caplog.records if r.name == "hybrid_gateway"]
    warned = [i for i, r in enumerate(lines) if r.getMessage() == short.message]
    stopping = [i for i, r in enumerate(lines) if r.getMessage().startswith("stopping with")]
    assert len(warned) == 1 and lines[warned[0]].levelno == logging.WARNING
    assert warned[0] < stopping[0]  # said before the wait, not after it
    (incomplete,) = events["ShardDrainIncomplete"]
    assert incomplete.type == "Warning" and (incomplete.count or 1) == 1
    assert f"{ME} stops with {writes} route(s) still pointing here" in incomplete.message
    assert f"after {waited:.1f}s" in incomplete.message


@pytest.mark.parametrize("left", ["endpoints", "owner"])
def test_a_drain_that_ends_with_something_still_here_names_what(
    stage: Stage, caplog: pytest.LogCaptureFixture, left: str
) -> None:
    """The move fits the grace period (no ShardDrainTooShort) and still does not happen in
    time: gw-b took the shard and wrote its routes but not the VTEP endpoints, or gw-b, a live
    member, never took the shard. At the deadline one Event names what is left."""
    if left == "endpoints":
        stage.take_over()
        stage.point_routes(RELEASED, OTHER)
        what = f"VTEP endpoint(s) {','.join(sorted(stage.endpoint_names(RELEASED)))} still"
    else:
        what = f"shard(s) {RELEASED} without a new owner"
    move = stage.move(limit_s=LIMIT_AFTER_QUICK_STOP_S)
    assert not move.too_short
    stage.renew_every_second(move.budget_s)
    with caplog.at_level(logging.INFO, logger="hybrid_gateway"):
        waited = stage.drain(limit_s=LIMIT_AFTER_QUICK_STOP_S)
    assert move.budget_s <= waited < move.budget_s + DRAIN_POLL_S
    incomplete = stage.the_incomplete_event(waited)
    assert f"{ME} stops with {what}" in incomplete.message, incomplete.message
    assert any(what in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_a_drain_whose_shard_moved_ends_then_and_tells_the_operator_nothing(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    """gw-b takes the Lease after 1 s, writes the VTEP endpoints at 2 s and the last route at
    5 s (the fake clock's): the drain ends at the first poll that sees it all moved, well
    before its budget, and raises neither Event."""
    start = stage.clock.now
    stage.clock.at(start + 1.0, stage.take_over)
    stage.clock.at(start + 2.0, lambda: stage.point_endpoints(RELEASED, OTHER))
    stage.clock.at(start + 5.0, lambda: stage.point_routes(RELEASED, OTHER))
    stage.renew_every_second(6.0)
    with caplog.at_level(logging.INFO, logger="hybrid_gateway"):
        waited = stage.drain(limit_s=LIMIT_AFTER_QUICK_STOP_S)
    assert waited == 5.0  # polled every DRAIN_POLL_S; the routes landed at 5 s
    assert stage.events() == {"ShardDrainTooShort": [], "ShardDrainIncomplete": []}
    assert any(r.getMessage().startswith(f"shards {RELEASED} moved in") for r in caplog.records)


@pytest.mark.parametrize("unreadable", ["CiliumVTEPConfig", "route tables"])
def test_a_drain_that_cannot_read_where_traffic_points_waits_its_whole_budget_and_says_so(
    stage: Stage, kube_api: ApiServer, ec2_proxy: Ec2Proxy, unreadable: str
) -> None:
    """gw-b takes the shard and moves its VTEP endpoints and routes at once, but gw-a cannot
    read one of them: its RBAC no longer lets it get the CiliumVTEPConfig (the API server
    answers 403), or its IAM role no longer allows ec2:DescribeRouteTables (EC2 answers
    UnauthorizedOperation, which botocore does not retry: botocore `retries/standard.py`).
    A move it cannot see is a move it cannot prove, so it waits its whole budget and then
    one Event names the part it could not read, with the error."""
    stage.take_over()
    stage.point_endpoints(RELEASED, OTHER)
    stage.point_routes(RELEASED, OTHER)
    if unreadable == "CiliumVTEPConfig":
        kube_api.inject_errors(ME, code=403, count=10_000, resource="ciliumvtepconfigs")
        error = "403 Forbidden"
    else:
        ec2_proxy.fault = lambda action, _seq: (
            (403, UNAUTHORIZED_BODY) if action == "DescribeRouteTables" else None
        )
        error = "UnauthorizedOperation"
    move = stage.move(limit_s=LIMIT_AFTER_QUICK_STOP_S)
    assert not move.too_short
    stage.renew_every_second(move.budget_s)
    described_before = ec2_proxy.count("DescribeRouteTables")
    waited = stage.drain(limit_s=LIMIT_AFTER_QUICK_STOP_S)
    assert move.budget_s <= waited < move.budget_s + DRAIN_POLL_S
    incomplete = stage.the_incomplete_event(waited)
    assert f"{ME} stops with {unreadable} unreadable (" in incomplete.message, incomplete.message
    assert error in incomplete.message, incomplete.message
    if unreadable == "route tables":  # it kept asking, once a poll, to the end
        described = ec2_proxy.count("DescribeRouteTables") - described_before
        assert described == round(waited / DRAIN_POLL_S) + 1, described


def test_shut_down_gives_the_drain_what_the_grace_period_leaves_after_stopping(
    stage: Stage,
) -> None:
    """SIGTERM on gw-a, which holds shard 1: `shut_down` stops the shard work, releases the
    Lease and drains with what the 30 s grace period leaves. The shard work takes STOP_S of
    the group's clock to stop (a write in flight until just before the join time ends), so
    the drain gets 30 - STOP_S - 2 * shutdown_rest_s - DRAIN_MARGIN_S, too short for the
    24 route writes: it says so with that figure, waits exactly that long, and only then
    stops the rest. Every other supervised task is registered and never started (nothing
    to join); the shard work's task is a stand-in that only takes its time to stop."""
    stop_s = SHUTDOWN_JOIN_S - 1.0
    limit_s = TERMINATION_GRACE_PERIOD_S - stop_s - 2 * SHUTDOWN_REST_S - DRAIN_MARGIN_S
    group, clock = stage.group, stage.clock
    (slot,) = [s for s in group.slots if s.index == RELEASED]
    # Before the SIGTERM gw-a held shard 1: its elector's last round read itself as holder.
    stage.write_lease(slot.lease_name, ME)
    slot.elector.try_once()
    assert slot.elector.holder == ME
    move = stage.move(limit_s=limit_s)
    assert move.too_short and move.budget_s == limit_s == 14

    def shard_work(stop: threading.Event) -> None:
        stop.wait(60.0)
        clock.sleep(stop_s)  # its last write comes back, on the group's clock

    supervisor = Supervisor()
    supervisor.add(Task(slot.work_task, shard_work))
    supervisor.start()
    timings = stage.timings
    assert (timings.shutdown_join_s, timings.shutdown_rest_s) == (SHUTDOWN_JOIN_S, SHUTDOWN_REST_S)
    for task in group.tasks(timings):
        if task.name != slot.work_task:
            supervisor.add(task)  # added after start(): never started
    stage.renew_every_second(stop_s + limit_s)
    started = clock.now
    rest_stopped: list[float] = []
    group.shut_down(supervisor, timings, stop_rest=lambda: rest_stopped.append(clock.now))

    released = stage.leases.read_namespaced_lease(slot.lease_name, NAMESPACE)
    assert released.spec.holder_identity in (None, "")
    (rest_at,) = rest_stopped
    drained = rest_at - started - stop_s
    assert limit_s <= drained < limit_s + DRAIN_POLL_S
    events = stage.events()
    (short,) = events["ShardDrainTooShort"]
    assert f"grace period leaves {limit_s:.0f}s" in short.message, short.message
    (incomplete,) = events["ShardDrainIncomplete"]  # gw-b never took the shard
    assert f"{ME} stops with shard(s) {RELEASED} without a new owner" in incomplete.message
