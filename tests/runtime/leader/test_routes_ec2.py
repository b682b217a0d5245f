"""Route ownership against a real EC2 API emulator over HTTP (moto server), through a proxy."""

from __future__ import annotations

import threading
import time
from ipaddress import IPv4Network
from typing import Any

import pytest

from hybrid_gateway.adapters.ec2 import (
    DEFAULT_WRITE_TIMEOUTS,
    Ec2Error,
    Ec2Routes,
    PrimaryInterface,
    WriteNotAllowedError,
    WriteTimeouts,
    make_client,
    primary_interface,
)
from hybrid_gateway.core.pacing import TokenBucket
from hybrid_gateway.core.routes import RouteKey, plan_retired_routes
from hybrid_gateway.leader import routes as leader_routes
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.ec2emu import (
    DRY_RUN_PREFIX,
    INTERNAL_BODY,
    THROTTLE_BODY,
    UNAUTHORIZED_BODY,
    Call,
    Ec2Proxy,
    VpcWorld,
    point_all,
)
from hybrid_gateway_testkit.waiting import wait_until

WRITES = ("CreateRoute", "ReplaceRoute")
DENIED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>UnauthorizedOperation</Code><Message>You are not authorized.</Message>"
    b"</Error></Errors><RequestID>1</RequestID></Response>"
)


def owner(
    world: VpcWorld,
    name: str,
    *,
    allow_takeover: bool = False,
    metrics: GatewayMetrics | None = None,
    table_ids: list[str] | None = None,
    reports: list[tuple[str, str]] | None = None,
    max_attempts: int = 8,
    write_timeouts: WriteTimeouts = DEFAULT_WRITE_TIMEOUTS,
) -> RouteOwner:
    sink = reports if reports is not None else []
    return RouteOwner(
        Ec2Routes(
            make_client("us-east-1", max_attempts=max_attempts), write_timeouts=write_timeouts
        ),
        instance_id=world.instances[name],
        table_ids=world.table_ids if table_ids is None else table_ids,
        pod_cidrs=world.pod_cidrs,
        allow_takeover=allow_takeover,
        metrics=metrics or GatewayMetrics(),
        report=lambda reason, message, warning=True: sink.append((reason, message)),
    )


#: For tests that count calls: the emulator runs in the test process on a shared machine and,
#: loaded, sometimes answers a route write later than the daemon's write timeout, which EC2's
#: write latency does not approach; the attempt is then read back and may be sent again (its
#: own tests below). Counting tests give it EC2's answer time instead.
ANSWERED = WriteTimeouts(5.0, 5.0)


def always(_: object = None) -> bool:
    return True


def test_routes_are_created_and_replaced_to_the_primary_eni(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    # GIVEN table 0 already points both CIDRs at gateway a, the other tables have nothing
    t0 = world.table_ids[0]
    for cidr in world.pod_cidrs:
        direct.create_route(
            RouteTableId=t0, DestinationCidrBlock=cidr, NetworkInterfaceId=world.enis["a"]
        )
    metrics = GatewayMetrics()
    # WHEN gateway b syncs
    result = owner(world, "b", metrics=metrics).sync(lambda: True)
    # THEN every route targets b's primary ENI, with 2 replaces and 4 creates
    assert result.converged
    assert world.all_point_at(direct, "b")
    assert set(result.plan.replace) == {RouteKey(t0, c) for c in world.pod_cidrs}
    assert len(result.plan.create) == 4
    assert ec2_proxy.count("DescribeInstances") == 1
    assert ec2_proxy.count("DescribeRouteTables") == 1
    assert ec2_proxy.count("ReplaceRoute") == 2 and ec2_proxy.count("CreateRoute") == 4
    assert metrics.registry.get_sample_value("hybrid_gateway_aws_route_table_update_total") == 6
    assert {c.params["NetworkInterfaceId"] for c in ec2_proxy.snapshot() if c.action in WRITES} == {
        world.enis["b"]
    }


def test_drift_is_repaired_and_a_converged_sync_writes_nothing(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    route_owner = owner(world, "b")
    assert route_owner.sync(always).converged
    ec2_proxy.reset()
    # a converged re-check: one describe, no writes
    assert route_owner.sync(always).written == []
    assert (ec2_proxy.count(), ec2_proxy.count("DescribeRouteTables")) == (1, 1)
    # someone edits one route and deletes another
    t1, t2 = world.table_ids[1], world.table_ids[2]
    direct.replace_route(
        RouteTableId=t1, DestinationCidrBlock="10.80.0.0/16", NetworkInterfaceId=world.enis["a"]
    )
    direct.delete_route(RouteTableId=t2, DestinationCidrBlock="10.81.0.0/16")
    ec2_proxy.reset()
    result = route_owner.sync(always)
    assert set(result.written) == {RouteKey(t1, "10.80.0.0/16"), RouteKey(t2, "10.81.0.0/16")}
    assert world.all_point_at(direct, "b")
    assert ec2_proxy.count("ReplaceRoute", "CreateRoute") == 2


def test_gateway_routes_are_not_taken_over_unless_allowed(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    t0, t1 = world.table_ids[0], world.table_ids[1]
    tgw = direct.create_transit_gateway()["TransitGateway"]["TransitGatewayId"]
    igw = direct.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    direct.attach_internet_gateway(InternetGatewayId=igw, VpcId=world.vpc_id)
    direct.create_route(RouteTableId=t0, DestinationCidrBlock="10.80.0.0/16", TransitGatewayId=tgw)
    direct.create_route(RouteTableId=t1, DestinationCidrBlock="10.81.0.0/16", GatewayId=igw)
    metrics = GatewayMetrics()
    refusing = owner(world, "a", metrics=metrics)

    result = refusing.sync(always)
    routes = world.routes(direct)
    assert routes[(t0, "10.80.0.0/16")] == tgw and routes[(t1, "10.81.0.0/16")] == igw
    assert {r.target_id for r in result.plan.refused} == {tgw, igw}
    assert result.converged  # refusals are policy, not failures
    assert metrics.registry.get_sample_value("hybrid_gateway_route_takeover_refused") == 2
    assert result.refusals_changed  # reported once ...
    assert not refusing.sync(always).refusals_changed  # ... not on every re-check
    sent = [c for c in ec2_proxy.snapshot() if c.action in WRITES]
    assert all(
        (c.params["RouteTableId"], c.params["DestinationCidrBlock"])
        not in {(t0, "10.80.0.0/16"), (t1, "10.81.0.0/16")}
        for c in sent
    )

    allowed = owner(world, "a", allow_takeover=True)
    assert len(allowed.sync(always).written) == 2
    assert world.all_point_at(direct, "a")


def test_throttling_and_server_errors_converge_without_crashing(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    point_all(direct, world, world.enis["a"])

    def fault(action: str, seq: int) -> tuple[int, bytes] | None:
        if action == "DescribeRouteTables" and seq == 0:
            return 500, INTERNAL_BODY
        if action in WRITES and seq < 3:
            return 503, THROTTLE_BODY  # EC2's RequestLimitExceeded
        if action in WRITES and seq < 6:
            return 500, INTERNAL_BODY
        return None

    ec2_proxy.fault = fault
    route_owner = owner(world, "b")
    results = []
    for _ in range(6):
        results.append(route_owner.sync(always))
        if results[-1].converged:
            break
    assert results[-1].converged
    assert world.all_point_at(direct, "b")
    injected = [c for c in ec2_proxy.snapshot() if c.injected]
    assert any(c.action == "DescribeRouteTables" for c in injected)
    assert sum(c.action in WRITES for c in injected) >= 6


def test_refused_writes_are_reported_as_failures_then_recover(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """E.g. a missing IAM permission: not retried by the SDK, counted, logged, retried later."""
    throttled = [True]
    ec2_proxy.fault = lambda action, seq: (
        (403, DENIED_BODY) if throttled[0] and action in WRITES else None
    )
    metrics = GatewayMetrics()
    route_owner = owner(world, "a", metrics=metrics, max_attempts=2)
    first = route_owner.sync(always)
    assert not first.converged and len(first.failed) == 6
    assert (
        metrics.registry.get_sample_value("hybrid_gateway_aws_route_table_update_errors_total") == 6
    )
    throttled[0] = False
    assert route_owner.sync(always).converged
    assert world.all_point_at(direct, "a")


def test_ec2_calls_per_leadership_change(world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy) -> None:
    """Both replicas prepare at start (ENI and tables); each hand-over then costs one
    DescribeRouteTables plus one write per (table, CIDR) to move, nothing else."""
    gateways = {name: owner(world, name, write_timeouts=ANSWERED) for name in ("a", "b")}
    for gateway in gateways.values():
        gateway.prepare()
    assert (ec2_proxy.count("DescribeInstances"), ec2_proxy.count("DescribeRouteTables")) == (2, 2)
    counts = []
    for name in ("a", "b", "a", "b"):
        ec2_proxy.reset()
        assert gateways[name].sync(always).converged
        assert world.all_point_at(direct, name)
        counts.append(
            (
                ec2_proxy.count("DescribeInstances"),
                ec2_proxy.count("DescribeRouteTables"),
                ec2_proxy.count(*WRITES),
            )
        )
    n = len(world.table_ids) * len(world.pod_cidrs)
    assert counts == [(0, 1, n)] * 4


def test_no_write_is_sent_without_a_valid_lease(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = Ec2Routes(make_client("us-east-1"))
    with pytest.raises(WriteNotAllowedError):
        routes.create_route(
            RouteKey(world.table_ids[0], "10.80.0.0/16"), world.enis["a"], lambda: False
        )
    assert ec2_proxy.count(*WRITES) == 0

    # The guard flips during a sync (writes one at a time here, so exactly after the second
    # reached EC2): the writes after that moment are withheld.
    monkeypatch.setattr(leader_routes, "MAX_PARALLEL_WRITES", 1)
    result = owner(world, "a").sync(lambda: ec2_proxy.count(*WRITES) < 2)
    assert result.suppressed and not result.converged
    assert ec2_proxy.count(*WRITES) == 2


def test_a_missing_table_does_not_stop_the_others(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    gone = "rtb-0123456789abcdef0"
    route_owner = owner(world, "a", table_ids=[gone, *world.table_ids])
    result = route_owner.sync(always)
    assert result.missing_tables == [gone] and not result.converged
    assert world.all_point_at(direct, "a")
    assert ec2_proxy.count("DescribeRouteTables") == 2


# --- start-up preparation and the primary ENI (issue 8) ---------------------------------------


def _disable_check(direct: Any, eni: str, on: bool) -> None:
    direct.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": on})


def test_source_dest_check_on_makes_the_replica_unready_and_is_reported(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    _disable_check(direct, world.enis["a"], True)
    metrics = GatewayMetrics()
    reports: list[tuple[str, str]] = []
    route_owner = owner(world, "a", metrics=metrics, reports=reports)
    with pytest.raises(Ec2Error, match="SourceDestCheckEnabled"):
        route_owner.prepare()
    problem = route_owner.problem()
    assert problem is not None and world.enis["a"] in problem
    assert not route_owner.forwarding_allowed() and not route_owner.prepared
    assert [reason for reason, _ in reports] == ["RouteTablesNotUsable"]
    assert world.enis["a"] in reports[0][1]
    assert metrics.registry.get_sample_value("hybrid_gateway_primary_eni_source_dest_check") == 1
    with pytest.raises(Ec2Error):
        route_owner.prepare()
    assert len(reports) == 1  # the same problem is sent once
    # the operator fixes the launch template / ENI: the next attempt succeeds
    _disable_check(direct, world.enis["a"], False)
    route_owner.prepare()
    assert route_owner.problem() is None and route_owner.forwarding_allowed()
    assert metrics.registry.get_sample_value("hybrid_gateway_primary_eni_source_dest_check") == 0
    assert metrics.registry.get_sample_value("hybrid_gateway_route_prepare_errors_total") == 2


def test_a_write_retried_after_the_check_was_read_on_is_not_sent(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose first attempt is throttled waits and retries (adapters/ec2.py). If the
    replica reads the source/destination check as ON meanwhile (the periodic re-read,
    `recheck_interface`), no further attempt goes out: the ENI drops what it forwards. Each
    attempt is checked, like the lease guard, not only the first."""
    point_all(direct, world, world.enis["b"])
    reports: list[tuple[str, str]] = []
    route_owner = owner(world, "a", reports=reports)
    route_owner.prepare()
    monkeypatch.setattr(leader_routes, "MAX_PARALLEL_WRITES", 1)  # one write at a time

    def fault(action: str, seq: int) -> tuple[int, bytes] | None:
        if action in WRITES and seq == 0:
            # an operator turns the check on while the first write is in flight, and the
            # replica's periodic re-read sees it before the throttled write is retried
            _disable_check(direct, world.enis["a"], True)
            route_owner.recheck_interface()
            return 503, THROTTLE_BODY
        return None

    ec2_proxy.reset()
    ec2_proxy.fault = fault
    result = route_owner.sync(always)
    writes = [c for c in ec2_proxy.snapshot() if c.action in WRITES]
    assert [c.injected for c in writes] == [True], writes  # the throttled one, no retry
    assert not result.converged and not result.written
    assert len(result.failed) == len(world.table_ids) * len(world.pod_cidrs)
    assert all("source/destination check" in error for _, error in result.failed), result
    assert not result.suppressed  # the lease is fine: failed, not withheld
    assert set(world.routes(direct).values()) == {world.enis["b"]}
    assert [reason for reason, _ in reports] == ["SourceDestCheckEnabled"]


def test_a_stale_table_id_fails_preparation_at_start(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    gone = "rtb-0123456789abcdef0"
    reports: list[tuple[str, str]] = []
    route_owner = owner(world, "a", table_ids=[*world.table_ids, gone], reports=reports)
    with pytest.raises(Ec2Error, match=gone):
        route_owner.prepare()
    assert gone in (route_owner.problem() or "") and gone in reports[0][1]
    assert route_owner.forwarding_allowed()  # a table problem does not stop acquisition
    assert ec2_proxy.count(*WRITES) == 0


def test_preparation_is_retried_in_the_background_until_ec2_answers(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    down = [True]
    ec2_proxy.fault = lambda action, seq: (500, INTERNAL_BODY) if down[0] else None
    metrics = GatewayMetrics()
    route_owner = owner(world, "a", metrics=metrics, max_attempts=1)
    stop = threading.Event()
    thread = threading.Thread(
        target=route_owner.prepare_until_ready, args=(stop,), kwargs={"max_backoff_s": 0.2}
    )
    thread.start()
    try:
        wait_until(
            "two failed attempts",
            lambda: (
                (
                    metrics.registry.get_sample_value("hybrid_gateway_route_prepare_errors_total")
                    or 0
                )
                >= 2
            ),
            10.0,
        )
        assert not route_owner.prepared and route_owner.problem() is not None
        down[0] = False
        thread.join(10.0)
        assert not thread.is_alive() and route_owner.problem() is None
        assert metrics.registry.get_sample_value("hybrid_gateway_route_owner_prepared") == 1
    finally:
        stop.set()
        thread.join(5.0)


def test_no_route_tables_needs_no_ec2_at_all(ec2_proxy: Ec2Proxy) -> None:
    route_owner = RouteOwner(
        Ec2Routes(make_client("us-east-1")),
        instance_id="i-0123456789abcdef0",
        table_ids=[],
        pod_cidrs=["10.80.0.0/16"],
        allow_takeover=False,
        metrics=GatewayMetrics(),
    )
    route_owner.prepare()
    assert route_owner.prepared and route_owner.sync(always).converged
    assert ec2_proxy.count() == 0


def _reply(*enis: tuple[str, int, int, bool]) -> dict[str, Any]:
    return {
        "Reservations": [
            {
                "Instances": [
                    {
                        "InstanceId": "i-1",
                        "NetworkInterfaces": [
                            {
                                "NetworkInterfaceId": eni,
                                "SourceDestCheck": check,
                                "Attachment": {"DeviceIndex": device, "NetworkCardIndex": card},
                            }
                            for eni, device, card, check in enis
                        ],
                    }
                ]
            }
        ]
    }


def test_the_primary_eni_is_device_0_on_network_card_0() -> None:
    """An instance with several network cards has a DeviceIndex-0 interface on each card."""
    reply = _reply(
        ("eni-card1", 0, 1, False), ("eni-second", 1, 0, False), ("eni-primary", 0, 0, True)
    )
    assert primary_interface(reply, "i-1") == PrimaryInterface("eni-primary", True)
    without_card = _reply(("eni-x", 0, 0, False))
    del without_card["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]["Attachment"][
        "NetworkCardIndex"
    ]
    assert primary_interface(without_card, "i-1").eni_id == "eni-x"
    with pytest.raises(Ec2Error, match="NoPrimaryInterface"):
        primary_interface(_reply(("eni-card1", 0, 1, False)), "i-1")


def test_paced_writes_leave_no_faster_than_the_bucket_allows(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """Active-active paces its route writes (core/pacing.py): with a burst of 2 and 10 per
    second, the k-th write of a wave is SENT no earlier than (k - 2) / 10 s after the first.
    A lower bound on spacing, which a loaded machine cannot make fail."""
    bucket = TokenBucket(burst=2, rate_per_s=10.0, clock=time.monotonic)
    paced = RouteOwner(
        Ec2Routes(make_client("us-east-1"), pacing=bucket),
        instance_id=world.instances["b"],
        table_ids=world.table_ids,
        pod_cidrs=world.pod_cidrs,
        allow_takeover=False,
        metrics=GatewayMetrics(),
    )
    assert paced.sync(always).converged
    sent = sorted(c.started_mono for c in ec2_proxy.snapshot() if c.action in WRITES)
    assert len(sent) == len(world.table_ids) * len(world.pod_cidrs) >= 6
    for k, when in enumerate(sent):
        assert when - sent[0] >= (k - 2) / 10.0 - 0.02, f"write {k} left early"
    print(f"{len(sent)} paced writes over {sent[-1] - sent[0]:.2f}s")


# --- the route-write permission, asked at start with EC2's DryRun ---------------------------------


def test_a_missing_route_write_permission_is_found_at_start_and_changes_nothing(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """IAM denies ReplaceRoute in one table (e.g. a policy scoped by tag): the replica is not
    ready, naming the write and the table, one Event says so, and the dry runs wrote nothing."""
    denied_table = world.table_ids[1]
    denied = [True]
    reports: list[tuple[str, str]] = []
    route_owner = owner(world, "a", reports=reports)
    # The dry runs of one preparation go table by table, CreateRoute then ReplaceRoute: the
    # second ReplaceRoute dry run is the second table's.
    ec2_proxy.fault = lambda action, seq: (
        (403, UNAUTHORIZED_BODY)
        if denied[0] and action == DRY_RUN_PREFIX + "ReplaceRoute" and seq == 1
        else None
    )
    with pytest.raises(Ec2Error, match="UnauthorizedOperation"):
        route_owner.prepare()
    problem = route_owner.problem() or ""
    assert f"ReplaceRoute in {denied_table}" in problem and "ec2:ReplaceRoute" in problem
    assert world.table_ids[0] not in problem and world.table_ids[2] not in problem
    assert [reason for reason, _ in reports] == ["RouteWritesNotAllowed"]
    assert route_owner.problem() is not None
    # EC2 was asked once per table and write, and nothing was written
    assert ec2_proxy.count(DRY_RUN_PREFIX + "CreateRoute") == 3
    assert ec2_proxy.count(DRY_RUN_PREFIX + "ReplaceRoute") == 3
    assert ec2_proxy.count(*WRITES) == 0
    assert set(world.routes(direct).values()) == {"absent"}
    # the permission is granted: the next attempt succeeds and the problem clears
    denied[0] = False
    route_owner.prepare()
    assert route_owner.prepared and route_owner.problem() is None
    assert len(reports) == 1  # and no new Event


def test_dry_runs_are_answered_as_ec2_does(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """moto would carry a DryRun route write out; the test world answers DryRunOperation."""
    routes = Ec2Routes(make_client("us-east-1"))
    key = RouteKey(world.table_ids[0], world.pod_cidrs[0])
    assert routes.write_allowed("CreateRoute", key, world.enis["a"])
    assert routes.write_allowed("ReplaceRoute", key, world.enis["a"])
    assert world.routes(direct)[(key.table_id, key.destination)] == "absent"
    ec2_proxy.fault = lambda action, seq: (
        (403, UNAUTHORIZED_BODY) if action.startswith(DRY_RUN_PREFIX) else None
    )
    assert not routes.write_allowed("CreateRoute", key, world.enis["a"])


def test_retired_shard_routes_are_deleted_after_the_new_ones_and_only_with_a_valid_lease(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """Active-active: a shard whose prefixes moved writes its new ones and deletes the old
    ones its retirement planner names (a DeleteRoute per table) once they are written, guarded
    like every write;
    a route already gone counts as deleted."""
    old, new = "10.80.0.0/18", ["10.80.0.0/19", "10.80.32.0/19"]
    for table in world.table_ids:
        direct.create_route(
            RouteTableId=table, DestinationCidrBlock=old, NetworkInterfaceId=world.enis["a"]
        )
    gone = RouteKey(world.table_ids[0], "10.80.192.0/18")  # never existed
    keys = tuple(RouteKey(t, old) for t in world.table_ids)

    def retire(observed: Any) -> tuple[tuple[RouteKey, ...], tuple[RouteKey, ...]]:
        assert set(observed) == set(world.table_ids)
        return (*keys, gone), ()

    routes = owner(world, "b")
    withheld = routes.sync(lambda: False, new, retire)
    assert withheld.suppressed and ec2_proxy.count("DeleteRoute") == 0
    result = routes.sync(always, new, retire)
    assert result.converged
    assert set(result.deleted) == {*keys, gone}
    assert len(result.written) == len(new) * len(world.table_ids)
    reply = direct.describe_route_tables(RouteTableIds=world.table_ids)
    destinations = {
        (t["RouteTableId"], r["DestinationCidrBlock"])
        for t in reply["RouteTables"]
        for r in t["Routes"]
    }
    assert not destinations & {(k.table_id, k.destination) for k in keys}
    assert {(t, p) for t in world.table_ids for p in new} <= destinations
    assert ec2_proxy.count("DeleteRoute") == len(keys) + 1


def test_a_retired_route_goes_in_the_sync_that_wrote_its_replacements_and_not_before(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """The retirement planner (core/routes.plan_retired_routes, as the spread feeds it) runs on
    the tables as described PLUS the routes this sync wrote: the old /18 is deleted in the
    same sync that wrote the two /19s replacing it (planned on the description alone, it would
    see no replacement and wait for the next sync, a resync period later), and a sync whose
    replacement writes failed deletes nothing."""
    pods = [IPv4Network(c) for c in world.pod_cidrs]
    old, new = "10.80.0.0/18", ["10.80.0.0/19", "10.80.32.0/19"]
    for table in world.table_ids:
        direct.create_route(
            RouteTableId=table, DestinationCidrBlock=old, NetworkInterfaceId=world.enis["a"]
        )

    def retire(observed: Any) -> tuple[tuple[RouteKey, ...], tuple[RouteKey, ...]]:
        return plan_retired_routes(observed, world.table_ids, pods, new, new)

    routes = owner(world, "b", max_attempts=1)
    ec2_proxy.fault = lambda action, seq: (500, INTERNAL_BODY) if action == "CreateRoute" else None
    failed = routes.sync(always, new, retire)
    assert failed.failed and not failed.deleted
    assert ec2_proxy.count("DeleteRoute") == 0
    ec2_proxy.fault = None
    result = routes.sync(always, new, retire)
    assert result.converged and not result.retiring
    assert set(result.deleted) == {RouteKey(t, old) for t in world.table_ids}
    calls = [c.action for c in ec2_proxy.snapshot() if not c.injected]
    last_write = max(i for i, a in enumerate(calls) if a == "CreateRoute")
    first_delete = min(i for i, a in enumerate(calls) if a == "DeleteRoute")
    assert last_write < first_delete  # every replacement was in place first


def _slowed(proxy: Ec2Proxy, actions: tuple[str, ...], delay_s: float) -> None:
    """Every call of `actions` answered `delay_s` late (then forwarded), as a slow EC2 would."""

    def fault(action: str, _seq: int) -> None:
        if action in actions:
            time.sleep(delay_s)

    proxy.fault = fault


def _overlapping(calls: list[Call]) -> bool:
    """Every call arrived before the first of them was answered: all were in flight at once."""
    return max(c.started for c in calls) < min(c.finished for c in calls)


def test_slow_writes_and_the_deletes_they_retire_each_overlap_in_one_sync(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """A moved cut (active-active: a shard's prefixes changed) writes the new prefixes and
    deletes the retired routes in the same sync, the deletes after every write. With each EC2
    write slow (a loaded or throttled account), the writes all overlap, and so do the deletes:
    the sync takes about two write times, not one per route."""
    pods = [IPv4Network(c) for c in world.pod_cidrs]
    old, new = "10.80.0.0/18", ["10.80.0.0/19", "10.80.32.0/19"]
    for table in world.table_ids:
        direct.create_route(
            RouteTableId=table, DestinationCidrBlock=old, NetworkInterfaceId=world.enis["a"]
        )
    routes = RouteOwner(
        Ec2Routes(make_client("us-east-1"), write_timeouts=WriteTimeouts(5.0, 5.0)),
        instance_id=world.instances["b"],
        table_ids=world.table_ids,
        pod_cidrs=world.pod_cidrs,
        allow_takeover=False,
        metrics=GatewayMetrics(),
    )
    routes.prepare()
    _slowed(ec2_proxy, ("CreateRoute", "DeleteRoute"), 0.5)
    result = routes.sync(
        always, new, lambda observed: plan_retired_routes(observed, world.table_ids, pods, new, new)
    )
    assert result.converged and len(result.deleted) == len(world.table_ids)
    creates = [c for c in ec2_proxy.snapshot() if c.action == "CreateRoute"]
    deletes = [c for c in ec2_proxy.snapshot() if c.action == "DeleteRoute"]
    assert len(creates) == len(new) * len(world.table_ids) and len(deletes) == 3
    assert _overlapping(creates), sorted((c.started, c.finished) for c in creates)
    assert _overlapping(deletes), sorted((c.started, c.finished) for c in deletes)
    assert max(c.finished for c in creates) < min(c.started for c in deletes)


def test_the_bound_on_writes_in_flight_holds_over_every_sync_of_the_replica(
    world: VpcWorld, ec2_proxy: Ec2Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Active-active runs one sync per shard at once through the replica's one route owner:
    the bound on writes in flight is the replica's, not each sync's."""
    monkeypatch.setattr(leader_routes, "MAX_PARALLEL_WRITES", 2)
    routes = owner(world, "b", write_timeouts=ANSWERED)  # 0.3 s + a loaded emulator
    routes.prepare()
    _slowed(ec2_proxy, WRITES, 0.3)
    shards = [["10.80.0.0/17"], ["10.80.128.0/17"]]  # 3 tables: 3 writes per shard
    threads = [threading.Thread(target=routes.sync, args=(always, s)) for s in shards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    calls = [c for c in ec2_proxy.snapshot() if c.action in WRITES]
    assert len(calls) == 6
    most = max(sum(1 for o in calls if o.started <= c.started < o.finished) for c in calls)
    assert most <= 2, sorted((c.started, c.finished) for c in calls)


def test_a_takeover_writes_from_the_prefetched_tables_before_any_describe(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """A standby describes its tables every few seconds through the write client
    (`prefetch`); its first sync as leader plans from that and sends the writes without a
    describe of its own, each still behind the lease guard. A later sync describes."""
    point_all(direct, world, world.enis["a"])
    routes = owner(world, "b", write_timeouts=ANSWERED)
    routes.prepare()
    assert routes.prefetch() and not routes.prefetch()  # at most every PREFETCH_EVERY_S
    ec2_proxy.reset()
    withheld = routes.sync(lambda: False, takeover=True)
    assert withheld.suppressed and ec2_proxy.count(*WRITES) == 0
    result = routes.sync(always, takeover=True)
    assert result.converged and world.all_point_at(direct, "b")
    assert ec2_proxy.count("DescribeRouteTables") == 0
    again = routes.sync(always, takeover=False)
    assert again.converged and ec2_proxy.count("DescribeRouteTables") == 1


def test_a_takeover_from_stale_prefetched_tables_describes_and_converges_in_the_same_sync(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What changed since the prefetch makes a planned write fail (a route deleted meanwhile
    cannot be replaced): the sync describes and writes what is still wrong at once. A
    prefetch older than PREFETCH_MAX_AGE_S is not used at all."""
    point_all(direct, world, world.enis["a"])
    routes = owner(world, "b")
    routes.prepare()
    routes.prefetch()
    gone = RouteKey(world.table_ids[0], world.pod_cidrs[0])
    direct.delete_route(RouteTableId=gone.table_id, DestinationCidrBlock=gone.destination)
    result = routes.sync(always, takeover=True)
    assert result.converged and world.all_point_at(direct, "b")
    assert gone in result.written
    point_all(direct, world, world.enis["a"])
    monkeypatch.setattr(leader_routes, "PREFETCH_MAX_AGE_S", 0.0)
    ec2_proxy.reset()
    assert routes.sync(always, takeover=True).converged
    calls = [c.action for c in ec2_proxy.snapshot()]
    assert calls[0] == "DescribeRouteTables", calls


def test_prefetch_failures_are_counted_by_reason_and_a_streak_is_one_event_per_reason(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replica describes its tables every few seconds for a takeover (`prefetch`). Each
    failure is counted by reason; once the last description is too old to plan a takeover
    from (PREFETCH_MAX_AGE_S), the streak sends one RoutePrefetchFailing Event, one more only
    when its reason changes, and a Normal RoutePrefetchRecovered Event when a describe works
    again. The description's age is a gauge. EC2's answers: throttled (503
    RequestLimitExceeded), denied (403 UnauthorizedOperation), slower than the write client's
    read timeout."""
    metrics = GatewayMetrics()
    events: list[tuple[str, str, bool]] = []

    def report(reason: str, message: str, *, warning: bool = True) -> None:
        events.append((reason, message, warning))

    routes = RouteOwner(
        Ec2Routes(make_client("us-east-1")),
        instance_id=world.instances["b"],
        table_ids=world.table_ids,
        pod_cidrs=world.pod_cidrs,
        allow_takeover=False,
        metrics=metrics,
        report=report,
    )

    def failures(reason: str) -> float | None:
        return metrics.registry.get_sample_value(
            "hybrid_gateway_route_prefetch_failures_total", {"reason": reason}
        )

    def age() -> float:
        return metrics.registry.get_sample_value("hybrid_gateway_route_prefetch_age_seconds") or 0

    routes.prepare()
    assert failures("throttled") == 0 and failures("denied") == 0
    answer: list[tuple[int, bytes] | None] = [(503, THROTTLE_BODY)]
    ec2_proxy.fault = lambda action, seq: answer[0] if action == "DescribeRouteTables" else None
    # a failure while the last description is young enough for a takeover: counted, no Event
    with pytest.raises(Ec2Error):
        routes.prefetch()
    assert failures("throttled") == 1 and events == []
    # from here on every description is too old for a takeover: the streak costs something
    monkeypatch.setattr(leader_routes, "PREFETCH_MAX_AGE_S", 0.0)
    for _ in range(3):
        with pytest.raises(Ec2Error):
            routes.prefetch()
    assert failures("throttled") == 4
    assert [(reason, warning) for reason, _m, warning in events] == [("RoutePrefetchFailing", True)]
    assert "throttled" in events[0][1] and "RequestLimitExceeded" in events[0][1]
    answer[0] = (403, UNAUTHORIZED_BODY)
    for _ in range(2):
        with pytest.raises(Ec2Error):
            routes.prefetch()
    assert failures("denied") == 2
    assert [reason for reason, _m, _w in events] == ["RoutePrefetchFailing"] * 2
    assert "denied" in events[1][1] and "UnauthorizedOperation" in events[1][1]
    answer[0] = None
    ec2_proxy.latency_s = 3 * DEFAULT_WRITE_TIMEOUTS.read_s  # a prefetch is the write client's
    with pytest.raises(Ec2Error):
        routes.prefetch()
    assert failures("timeout") == 1 and len(events) == 3
    stale = age()
    assert stale > 0
    ec2_proxy.latency_s = 0.0
    # The emulator runs in this process: on a loaded machine it may still answer later than the
    # write client's 0.5 s read timeout. Such an attempt is one more timeout of the same streak
    # (no Event: the reason did not change), so a few attempts are allowed before the recovery.
    for _attempt in range(5):
        try:
            assert routes.prefetch()
            break
        except Ec2Error:
            continue
    else:
        pytest.fail("no prefetch succeeded in 5 attempts once EC2 answered at once again")
    assert [reason for reason, _m, _w in events] == ["RoutePrefetchFailing"] * 3 + [
        "RoutePrefetchRecovered"
    ]
    assert events[-1][2] is False
    assert age() < stale
    assert failures("other") == 0 and failures("unreachable") == 0


def test_a_write_applied_but_answered_too_late_is_read_back_and_not_sent_again(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """EC2 applies every write, but each answer outlasts the write client's read timeout (a
    slow reply, a lost packet): the writer cannot tell whether the write landed. Before it
    sends the write again it describes the table, finds the route already at its ENI, and
    sends nothing more: each route is written once (no second token of the account's bucket
    for mutating actions), and a CreateRoute is not refused as RouteAlreadyExists by its own
    first attempt."""
    t0 = world.table_ids[0]
    direct.create_route(
        RouteTableId=t0, DestinationCidrBlock=world.pod_cidrs[0], NetworkInterfaceId=world.enis["a"]
    )
    # The read-back is a describe through the same client, so it shares the write read
    # timeout. The emulator runs in this process: loaded (a full CI run lints beside it), its
    # describe once took longer than the daemon's 0.5 s, the read-back failed and the write was
    # sent again, as designed. This test is about the read-back's success path, so its client
    # gets a read timeout a loaded emulator meets, and every write answer outlasts it.
    timeouts = WriteTimeouts(connect_s=DEFAULT_WRITE_TIMEOUTS.connect_s, read_s=2.0)
    late_s = timeouts.read_s + 1.0

    def answer_late(action: str, body: bytes) -> bytes:
        if action in WRITES:  # moto has applied it: only the answer is late
            time.sleep(late_s)
        return body

    ec2_proxy.rewrite = answer_late
    result = owner(world, "b", write_timeouts=timeouts).sync(always)
    assert result.converged, result.failed
    assert world.all_point_at(direct, "b")
    time.sleep(late_s + 1.0)  # a write sent again would be recorded by now
    routes = len(world.table_ids) * len(world.pod_cidrs)
    assert ec2_proxy.count("ReplaceRoute") == 1
    assert ec2_proxy.count("CreateRoute") == routes - 1
    described = ec2_proxy.count("DescribeRouteTables")
    assert described >= 1 + routes, described  # the sync's own, then one per write read back


def test_a_write_whose_read_back_gets_no_answer_is_sent_again_and_reported_failed(
    world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy
) -> None:
    """The failure path of the read-back: EC2 applies every write but neither the writes nor
    the describes that would read them back are answered in time. The writer cannot know the
    outcome, so it sends the write again (a CreateRoute then meets its own first attempt) and,
    with its attempts spent, reports the route as failed: never converged on a guess. The next
    sync, with EC2 answering again, reads every route in place and writes nothing."""
    t0 = world.table_ids[0]
    direct.create_route(
        RouteTableId=t0, DestinationCidrBlock=world.pod_cidrs[0], NetworkInterfaceId=world.enis["a"]
    )
    late_s = DEFAULT_WRITE_TIMEOUTS.read_s + 1.0
    described = [0]

    def nothing_answered_in_time(action: str, body: bytes) -> bytes:
        if action == "DescribeRouteTables":
            described[0] += 1
            if described[0] == 1:  # the sync's own picture; only the read-backs go unanswered
                return body
        if action in (*WRITES, "DescribeRouteTables"):
            time.sleep(late_s)
        return body

    ec2_proxy.rewrite = nothing_answered_in_time
    gateway = owner(world, "b")
    result = gateway.sync(always)
    routes = len(world.table_ids) * len(world.pod_cidrs)
    assert not result.converged
    assert len(result.failed) == routes, result.failed
    assert all("ReadTimeoutError" in why for _key, why in result.failed), result.failed
    assert world.all_point_at(direct, "b")  # EC2 applied them: only the answers were lost
    assert ec2_proxy.count("CreateRoute") > routes - 1  # sent again: the outcome was unknown

    ec2_proxy.rewrite = None
    time.sleep(late_s)  # the last late answers drain before counting again
    ec2_proxy.reset()
    again = owner(world, "b", write_timeouts=ANSWERED).sync(always)
    assert again.converged, again.failed
    assert not again.written
    assert ec2_proxy.count("CreateRoute", "ReplaceRoute") == 0
