"""Route ownership against a real EC2 API emulator over HTTP (moto server), through a proxy."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid_gateway.adapters.ec2 import Ec2Routes, WriteNotAllowedError, make_client
from hybrid_gateway.core.routes import RouteKey
from hybrid_gateway.leader import routes as leader_routes
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.ec2emu import (
    INTERNAL_BODY,
    THROTTLE_BODY,
    Ec2Proxy,
    VpcWorld,
    point_all,
)

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
) -> RouteOwner:
    return RouteOwner(
        Ec2Routes(make_client("us-east-1")),
        instance_id=world.instances[name],
        table_ids=world.table_ids,
        pod_cidrs=world.pod_cidrs,
        allow_takeover=allow_takeover,
        metrics=metrics or GatewayMetrics(),
    )


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
    route_owner = RouteOwner(
        Ec2Routes(make_client("us-east-1", max_attempts=2)),
        instance_id=world.instances["a"],
        table_ids=world.table_ids,
        pod_cidrs=world.pod_cidrs,
        allow_takeover=False,
        metrics=metrics,
    )
    first = route_owner.sync(always)
    assert not first.converged and len(first.failed) == 6
    assert (
        metrics.registry.get_sample_value("hybrid_gateway_aws_route_table_update_errors_total") == 6
    )
    throttled[0] = False
    assert route_owner.sync(always).converged
    assert world.all_point_at(direct, "a")


def test_ec2_calls_per_leadership_change(world: VpcWorld, direct: Any, ec2_proxy: Ec2Proxy) -> None:
    """Each hand-over costs one DescribeRouteTables plus one write per (table, CIDR) to move;
    the primary ENI is looked up once per process."""
    gateways = {name: owner(world, name) for name in ("a", "b")}
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
    assert counts == [(1, 1, n), (1, 1, n), (0, 1, n), (0, 1, n)]


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
    route_owner = RouteOwner(
        Ec2Routes(make_client("us-east-1")),
        instance_id=world.instances["a"],
        table_ids=[gone, *world.table_ids],
        pod_cidrs=world.pod_cidrs,
        allow_takeover=False,
        metrics=GatewayMetrics(),
    )
    result = route_owner.sync(always)
    assert result.missing_tables == [gone] and not result.converged
    assert world.all_point_at(direct, "a")
    assert ec2_proxy.count("DescribeRouteTables") == 2
