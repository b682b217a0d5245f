"""The pod role's IAM policy grants what the leader's route work really calls, no less.

The leader's route owner runs against the EC2 emulator (moto over HTTP) behind a recording
proxy, through a hand-over that needs every kind of call (find the primary ENI, read the
tables, create and replace routes, delete a stale shard route). Each action it sent must be
allowed by the synthesized policy, and the tables the Deployment tells the runtime to program
must be exactly the tables the policy lets it write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hybrid_gateway.adapters.ec2 import Ec2Routes, make_client
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.ec2emu import Ec2Proxy, ec2_client, moto_ec2, seed_world

EXISTING = "HybridGatewayExistingCluster"
POD_CIDRS = ["10.85.0.0/16", "10.86.0.0/16"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pod_policy_statements(template: dict[str, Any], cfn: Any) -> list[dict[str, Any]]:
    role_id, _ = cfn.single(
        (k, v)
        for k, v in cfn.resources_of_type(template, "AWS::IAM::Role")
        if k.startswith("HybridGatewayPodRole")
    )
    [policy] = [
        p
        for _, p in cfn.resources_of_type(template, "AWS::IAM::Policy")
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


@pytest.fixture
def recorded_actions(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """EC2 actions the route owner sends while taking over routes from the other gateway."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with moto_ec2() as address:
        host, port = address
        direct = ec2_client(f"http://{host}:{port}")
        world = seed_world(direct, tables=2, pod_cidrs=POD_CIDRS)
        # One route already points at the other gateway (replace), the rest are absent (create).
        direct.create_route(
            RouteTableId=world.table_ids[0],
            DestinationCidrBlock=POD_CIDRS[0],
            NetworkInterfaceId=world.enis["a"],
        )
        # A shard route left by active-active (a switch back): the leader deletes it.
        direct.create_route(
            RouteTableId=world.table_ids[1],
            DestinationCidrBlock="10.86.64.0/18",
            NetworkInterfaceId=world.enis["a"],
        )
        proxy = Ec2Proxy(address, label="iam").start()
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
        try:
            owner = RouteOwner(
                Ec2Routes(make_client("us-east-1")),
                instance_id=world.instances["b"],
                table_ids=world.table_ids,
                pod_cidrs=POD_CIDRS,
                allow_takeover=False,
                metrics=GatewayMetrics(),
            )
            owner.prepare()  # what every replica calls at start
            assert owner.sync(lambda: True).converged
            assert world.all_point_at(direct, "b")
            # The start-up permission probe is recorded as `DryRun:<Action>`: EC2 authorizes a
            # DryRun request as the action itself (EC2 API reference, "DryRun": DryRunOperation
            # if you have the required permissions, else UnauthorizedOperation).
            yield {call.action.removeprefix("DryRun:") for call in proxy.snapshot()}
        finally:
            proxy.stop()


def test_every_ec2_action_the_leader_sends_is_allowed(
    synthesized: Any, cfn: Any, recorded_actions: set[str]
) -> None:
    # The hand-over exercised every kind of call, so the check below covers them all.
    assert {
        "DescribeInstances",
        "DescribeRouteTables",
        "CreateRoute",
        "ReplaceRoute",
        "DeleteRoute",
    } <= recorded_actions
    statements = _pod_policy_statements(synthesized.templates[EXISTING], cfn)
    allowed = {
        action for s in statements if s["Effect"] == "Allow" for action in _as_list(s["Action"])
    }
    missing = sorted(f"ec2:{a}" for a in recorded_actions if f"ec2:{a}" not in allowed)
    assert missing == [], f"the runtime calls actions the pod role lacks: {missing}"


def test_runtime_programs_exactly_the_tables_it_may_write(synthesized: Any, cfn: Any) -> None:
    template = synthesized.templates[EXISTING]
    writes = [
        s
        for s in _pod_policy_statements(template, cfn)
        if "ec2:ReplaceRoute" in _as_list(s["Action"])
    ]
    writable = {
        cfn.render(resource).rsplit("route-table/", 1)[-1]
        for s in writes
        for resource in _as_list(s["Resource"])
    }
    objects = cfn.manifest_objects(template, "HybridGatewayManifests")
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert set(env["ROUTE_TABLE_IDS"].split(",")) == writable
