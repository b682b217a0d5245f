"""The route-cleanup Lambda handler against the EC2 emulator (moto server over HTTP, boto3).

moto reports every route as `active` (moto/ec2/models/route_tables.py: `Route.state`) and has no
stack in DELETE_IN_PROGRESS; the testkit proxy in front of it supplies what AWS would answer:
a route whose target ENI was deleted is a blackhole, and the stack's status is the one a
stack deletion (DELETE_IN_PROGRESS), a create rollback (ROLLBACK_IN_PROGRESS) or an update
rollback (UPDATE_ROLLBACK_IN_PROGRESS) shows (AWS CloudFormation user guide, "Stack status codes").
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from eks_hybrid_gateway.route_cleanup import handler_asset_dir
from eks_hybrid_gateway.route_cleanup_handler.index import (
    CleanupConfig,
    clean_up,
    client_config,
    handle,
)
from hybrid_gateway_testkit.ec2emu import THROTTLE_BODY, Ec2Proxy, ec2_client, moto_ec2

REGION = "us-west-2"
POD = "10.85.0.0/16"
OTHER_POD = "10.86.0.0/16"
STACK_TEMPLATE = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})


@dataclass
class World:
    """Gateway nodes (in the gateway SG), an owned and a foreign table, and the proxy."""

    ec2: Any  # through the proxy, as the handler sees the API
    direct: Any  # straight to moto, for seeding and checking
    cloudformation: Any
    proxy: Ec2Proxy
    stack_id: str
    gateway_sg: str
    owned: list[str]
    foreign: str
    gateway_enis: list[str]
    tgw: str
    gone_enis: set[str]
    deleting: bool = True
    status_while_deleting: str = "DELETE_IN_PROGRESS"

    def event(self, request: str = "Delete", **props: Any) -> dict[str, Any]:
        properties = {
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:x",
            "ClusterName": "c",
            "RouteTableIds": self.owned,
            "PodCidrs": [POD, OTHER_POD],
            "InstanceFilters": [{"Name": "instance.group-id", "Values": [self.gateway_sg]}],
            "SettleSeconds": "0",
            "MaxPasses": "3",
            **props,
        }
        event: dict[str, Any] = {
            "RequestType": request,
            "StackId": self.stack_id,
            "ResourceProperties": properties,
        }
        if request != "Create":
            event["PhysicalResourceId"] = "route-cleanup-c"
        return event

    def routes(self, table: str) -> dict[str, str]:
        [reply] = self.direct.describe_route_tables(RouteTableIds=[table])["RouteTables"]
        return {
            r["DestinationCidrBlock"]: r.get("NetworkInterfaceId")
            or r.get("TransitGatewayId")
            or r.get("GatewayId", "?")
            for r in reply["Routes"]
            if "DestinationCidrBlock" in r
        }


def _rewrite(world_ref: list[World]) -> Any:
    """Blackhole state for routes to deleted ENIs; DELETE_IN_PROGRESS for the stack."""

    def rewrite(action: str, body: bytes) -> bytes:
        if not world_ref:  # still seeding
            return body
        world = world_ref[0]
        text = body.decode()
        if action == "DescribeRouteTables":
            for eni in world.gone_enis:
                text = re.sub(
                    rf"(<networkInterfaceId>{eni}</networkInterfaceId>.*?<state>)active(</state>)",
                    r"\1blackhole\2",
                    text,
                    flags=re.S,
                )
        if action == "DescribeStacks" and world.deleting:
            status = world.status_while_deleting
            text = re.sub(
                r"<StackStatus>\w+</StackStatus>", f"<StackStatus>{status}</StackStatus>", text
            )
        return text.encode()

    return rewrite


@pytest.fixture
def world() -> Iterator[World]:
    import boto3

    with moto_ec2() as (host, port):
        endpoint = f"http://{host}:{port}"
        # moto keeps its state per process, across servers: start every test from nothing.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        ref: list[World] = []
        proxy = Ec2Proxy((host, port), label="handler", rewrite=_rewrite(ref)).start()
        try:
            direct = ec2_client(endpoint, REGION)
            session = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
            )
            cloudformation = session.client("cloudformation", endpoint_url=proxy.url)
            stack_id = cloudformation.create_stack(StackName="gw", TemplateBody=STACK_TEMPLATE)[
                "StackId"
            ]
            vpc = direct.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            subnet = direct.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
            gateway_sg = direct.create_security_group(
                GroupName="gateway", Description="gateway", VpcId=vpc
            )["GroupId"]
            other_sg = direct.create_security_group(
                GroupName="other", Description="other", VpcId=vpc
            )["GroupId"]

            def launch(security_group: str) -> str:
                """An instance in `security_group`; returns its primary ENI."""
                instance = direct.run_instances(
                    ImageId="ami-12c6146b",
                    MinCount=1,
                    MaxCount=1,
                    InstanceType="c6in.xlarge",
                    SubnetId=subnet,
                    SecurityGroupIds=[security_group],
                )["Instances"][0]
                eni: str = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
                return eni

            gateway_enis = [launch(gateway_sg), launch(gateway_sg)]
            launch(other_sg)  # a node of something else: its routes are never the gateway's
            owned = [
                direct.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(2)
            ]
            foreign = direct.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            tgw = direct.create_transit_gateway()["TransitGateway"]["TransitGatewayId"]
            built = World(
                ec2=session.client("ec2", endpoint_url=proxy.url),
                direct=direct,
                cloudformation=cloudformation,
                proxy=proxy,
                stack_id=stack_id,
                gateway_sg=gateway_sg,
                owned=owned,
                foreign=foreign,
                gateway_enis=gateway_enis,
                tgw=tgw,
                gone_enis=set(),
            )
            ref.append(built)
            proxy.reset()
            yield built
        finally:
            proxy.stop()


def _seed_the_four_cases(world: World) -> str:
    """Owned table 0: POD -> gateway ENI, OTHER_POD -> a deleted ENI (blackhole); owned table 1:
    POD -> transit gateway; foreign table: POD -> gateway ENI. Returns the deleted ENI."""
    direct = world.direct
    vpc_subnet = direct.describe_subnets()["Subnets"][0]["SubnetId"]
    stale: str = direct.create_network_interface(SubnetId=vpc_subnet)["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    first, second = world.owned
    direct.create_route(
        RouteTableId=first, DestinationCidrBlock=POD, NetworkInterfaceId=world.gateway_enis[0]
    )
    direct.create_route(
        RouteTableId=first, DestinationCidrBlock=OTHER_POD, NetworkInterfaceId=stale
    )
    direct.delete_network_interface(NetworkInterfaceId=stale)
    world.gone_enis.add(stale)
    direct.create_route(RouteTableId=second, DestinationCidrBlock=POD, TransitGatewayId=world.tgw)
    direct.create_route(
        RouteTableId=world.foreign,
        DestinationCidrBlock=POD,
        NetworkInterfaceId=world.gateway_enis[1],
    )
    return stale


def test_stack_deletion_removes_only_gateway_and_blackhole_routes_in_owned_tables(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    stale = _seed_the_four_cases(world)
    first, second = world.owned
    before_first = world.routes(first)
    assert before_first[POD] == world.gateway_enis[0] and before_first[OTHER_POD] == stale

    with caplog.at_level(logging.INFO, logger="hybrid-gateway-route-cleanup"):
        reply = handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)

    assert reply == {"PhysicalResourceId": "route-cleanup-c", "Data": {"Deleted": "2"}}
    assert POD not in world.routes(first) and OTHER_POD not in world.routes(first)
    assert world.routes(second)[POD] == world.tgw  # another target: kept
    assert world.routes(world.foreign)[POD] == world.gateway_enis[1]  # not an owned table: kept
    deletes = [c.params for c in world.proxy.snapshot() if c.action == "DeleteRoute"]
    assert sorted((d["RouteTableId"], d["DestinationCidrBlock"]) for d in deletes) == [
        (first, POD),
        (first, OTHER_POD),
    ]
    logged = caplog.text
    assert f"deleted {first} {POD} (was -> {world.gateway_enis[0]})" in logged
    assert f"deleted {first} {OTHER_POD} (was -> {stale})" in logged
    assert f"keep {second} {POD} -> {world.tgw} (other-target" in logged


def test_the_lambda_asset_runs_end_to_end_from_its_entry_point(world: World) -> None:
    """`index.on_event` imported from the staged asset, as Lambda does, with SDK-configured
    clients (AWS_ENDPOINT_URL points them at the emulator's proxy)."""
    _seed_the_four_cases(world)
    first = world.owned[0]
    code = (
        "import json, logging, sys; sys.path.insert(0, sys.argv[1]); import index;"
        "logging.basicConfig();"  # the Lambda runtime's root handler
        "print(json.dumps(index.on_event(json.loads(sys.argv[2]), None)))"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_ENDPOINT_URL": world.proxy.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", code, str(handler_asset_dir()), json.dumps(world.event())],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "PhysicalResourceId": "route-cleanup-c",
        "Data": {"Deleted": "2"},
    }
    assert f"deleted {first} {POD}" in result.stderr  # the Lambda log
    assert POD not in world.routes(first)
    assert world.routes(world.foreign)[POD] == world.gateway_enis[1]


def test_active_active_shard_routes_are_deleted_with_the_whole_pod_networks(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Active-active: each shard's owner routed the shard's /18 of every pod /16 to its ENI
    (`plan_shards` with 4 shards). The /18s go, and so does a whole /16 left from
    active-standby and a /17 to a gateway ENI (the forward prefixes follow the allocated node
    CIDRs, so any prefix inside a pod CIDR may be one); a /18 to a transit gateway stays."""
    from hybrid_gateway_contract.sharding import plan_shards

    first, second = world.owned
    pods = [ipaddress.IPv4Network(POD), ipaddress.IPv4Network(OTHER_POD)]
    plan = plan_shards(pods, [ipaddress.IPv4Network("10.0.0.0/16")], 4)  # as the gateway plans
    written: list[str] = []
    for shard in plan.shards:
        eni = world.gateway_enis[shard.index % 2]  # two replicas, two shards each
        for prefix in shard.pod_prefixes:
            world.direct.create_route(
                RouteTableId=first, DestinationCidrBlock=prefix, NetworkInterfaceId=eni
            )
            written.append(prefix)
    assert len(written) == 8
    world.direct.create_route(
        RouteTableId=first, DestinationCidrBlock=POD, NetworkInterfaceId=world.gateway_enis[0]
    )
    world.direct.create_route(
        RouteTableId=second,
        DestinationCidrBlock="10.85.0.0/17",
        NetworkInterfaceId=world.gateway_enis[0],
    )
    world.direct.create_route(
        RouteTableId=second, DestinationCidrBlock="10.85.64.0/18", TransitGatewayId=world.tgw
    )

    with caplog.at_level(logging.INFO, logger="hybrid-gateway-route-cleanup"):
        reply = handle(world.event(Shards="4"), ec2=world.ec2, cloudformation=world.cloudformation)

    assert reply["Data"] == {"Deleted": "10"}
    remaining = world.routes(first)
    assert not set(written) & set(remaining) and POD not in remaining
    assert "10.85.0.0/17" not in world.routes(second)
    assert world.routes(second)["10.85.64.0/18"] == world.tgw
    deletes = [c.params for c in world.proxy.snapshot() if c.action == "DeleteRoute"]
    assert sorted(d["DestinationCidrBlock"] for d in deletes) == sorted(
        [*written, POD, "10.85.0.0/17"]
    )
    assert f"keep {second} 10.85.64.0/18 -> {world.tgw} (other-target" in caplog.text


def test_a_second_delete_is_a_no_op(world: World) -> None:
    """CloudFormation may retry a Delete: the second run finds nothing and succeeds."""
    _seed_the_four_cases(world)
    handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)
    world.proxy.reset()
    reply = handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)
    assert reply["Data"] == {"Deleted": "0"}
    assert world.proxy.count("DeleteRoute") == 0


def test_a_route_someone_else_deleted_meanwhile_counts_as_deleted(world: World) -> None:
    """InvalidRoute.NotFound between our read and our write is success (idempotent delete)."""
    _seed_the_four_cases(world)
    first = world.owned[0]
    config = CleanupConfig.from_properties(world.event()["ResourceProperties"])

    def deleted_by_someone_else(action: str, seq: int) -> tuple[int, bytes] | None:
        if action != "DeleteRoute" or seq != 0:
            return None
        # The first deletion planned is (first, POD): it vanishes just before ours arrives.
        world.direct.delete_route(RouteTableId=first, DestinationCidrBlock=POD)
        return 400, _error_xml("InvalidRoute.NotFound", "no route")

    world.proxy.fault = deleted_by_someone_else
    deleted = clean_up(world.ec2, config, sleep=lambda s: None)
    assert deleted == [f"{first} {POD}", f"{first} {OTHER_POD}"]
    assert POD not in world.routes(first) and OTHER_POD not in world.routes(first)
    assert world.proxy.count("DeleteRoute") == 2


def test_delete_during_an_update_rollback_leaves_the_routes(world: World) -> None:
    """A Delete while the stack is not being deleted (replacement, rollback) changes nothing."""
    _seed_the_four_cases(world)
    world.deleting = False
    reply = handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)
    assert reply["Data"] == {"Deleted": "0"}
    assert world.proxy.count("DeleteRoute", "DescribeRouteTables") == 0
    assert world.routes(world.owned[0])[POD] == world.gateway_enis[0]


def test_a_create_rollback_removes_the_routes_written_before_the_failure(world: World) -> None:
    """A failed creation deletes every resource the stack made (ROLLBACK_IN_PROGRESS): routes
    the gateway wrote meanwhile would otherwise stay as blackholes in an existing VPC."""
    _seed_the_four_cases(world)
    world.status_while_deleting = "ROLLBACK_IN_PROGRESS"
    reply = handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)
    assert reply["Data"] == {"Deleted": "2"}
    assert POD not in world.routes(world.owned[0])


@pytest.mark.parametrize(
    "status", ["UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"]
)
def test_a_delete_within_an_update_leaves_the_routes(world: World, status: str) -> None:
    _seed_the_four_cases(world)
    world.status_while_deleting = status
    reply = handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)
    assert reply["Data"] == {"Deleted": "0"}
    assert world.routes(world.owned[0])[POD] == world.gateway_enis[0]


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_change_nothing_and_keep_the_physical_id(
    world: World, request_type: str
) -> None:
    _seed_the_four_cases(world)
    reply = handle(world.event(request_type), ec2=world.ec2, cloudformation=world.cloudformation)
    assert reply == {"PhysicalResourceId": "route-cleanup-c"}
    assert world.proxy.count() == 0  # not even a read


def test_routes_that_keep_coming_back_fail_the_deletion_with_their_names(world: World) -> None:
    """A gateway pod still running rewrites the route after every pass: fail, naming it."""
    _seed_the_four_cases(world)
    first = world.owned[0]

    def gateway_rewrites_route(_seconds: float) -> None:
        world.direct.create_route(
            RouteTableId=first, DestinationCidrBlock=POD, NetworkInterfaceId=world.gateway_enis[0]
        )

    config = CleanupConfig.from_properties(world.event()["ResourceProperties"])
    with pytest.raises(RuntimeError, match=rf"came back after 3 passes .*{first} {POD}"):
        clean_up(world.ec2, config, sleep=gateway_rewrites_route)
    assert world.proxy.count("DeleteRoute") == 2 + 1 + 1  # pass 1: both; passes 2, 3: the one


def test_a_route_that_comes_back_once_is_deleted_on_the_next_pass(world: World) -> None:
    _seed_the_four_cases(world)
    first = world.owned[0]
    rewrites = iter([True])

    def one_late_write(_seconds: float) -> None:
        if next(rewrites, False):
            world.direct.create_route(
                RouteTableId=first,
                DestinationCidrBlock=POD,
                NetworkInterfaceId=world.gateway_enis[0],
            )

    config = CleanupConfig.from_properties(world.event()["ResourceProperties"])
    deleted = clean_up(world.ec2, config, sleep=one_late_write)
    assert deleted.count(f"{first} {POD}") == 2
    assert POD not in world.routes(first)


def _error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error></Errors><RequestID>1</RequestID></Response>"
    ).encode()


@pytest.mark.parametrize(
    ("code", "status"), [("UnauthorizedOperation", 403), ("InvalidRouteTableID.NotFound", 400)]
)
def test_a_failed_deletion_raises_with_the_route_and_the_error(
    world: World, code: str, status: int
) -> None:
    """Raised exceptions reach CloudFormation as FAILED through the Provider framework."""
    _seed_the_four_cases(world)
    world.proxy.fault = lambda action, seq: (
        (status, _error_xml(code, "denied")) if action == "DeleteRoute" else None
    )
    with pytest.raises(RuntimeError, match=rf"could not delete 2 gateway route\(s\): .*{code}"):
        handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)


def test_throttled_deletions_are_retried_by_the_sdk(world: World) -> None:
    """RequestLimitExceeded on the first DeleteRoute calls: the Lambda's client retries them."""
    import boto3

    _seed_the_four_cases(world)
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    ec2 = session.client("ec2", endpoint_url=world.proxy.url, config=client_config())
    world.proxy.fault = lambda action, seq: (
        (503, THROTTLE_BODY) if action == "DeleteRoute" and seq < 2 else None
    )
    reply = handle(world.event(), ec2=ec2, cloudformation=world.cloudformation)
    assert reply["Data"] == {"Deleted": "2"}
    calls = [c for c in world.proxy.snapshot() if c.action == "DeleteRoute"]
    assert [c.injected for c in calls] == [True, True, False, False]
    assert POD not in world.routes(world.owned[0])


def test_an_unreachable_describe_fails_instead_of_reporting_success(world: World) -> None:
    _seed_the_four_cases(world)
    world.proxy.fault = lambda action, seq: (
        (500, _error_xml("InternalError", "boom")) if action == "DescribeRouteTables" else None
    )
    with pytest.raises(Exception, match="InternalError"):
        handle(world.event(), ec2=world.ec2, cloudformation=world.cloudformation)
    assert world.routes(world.owned[0])[POD] == world.gateway_enis[0]


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"RouteTableIds": []}, r"RouteTableIds: a non-empty list is required"),
        ({"PodCidrs": "10.85.0.0/16"}, r"PodCidrs: a non-empty list is required"),
        ({"InstanceFilters": []}, r"InstanceFilters: a non-empty list is required"),
        ({"SettleSeconds": "soon"}, r"SettleSeconds: 'soon' is not a number"),
        ({"Shards": "four"}, r"Shards: 'four' is not a shard count"),
    ],
)
def test_bad_properties_fail_the_create(world: World, props: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        handle(world.event("Create", **props), ec2=world.ec2, cloudformation=world.cloudformation)


def test_the_asset_imports_the_bundled_planner_without_site_packages() -> None:
    """What Lambda runs: index.py beside a copy of the contract package, no editable installs."""
    asset = handler_asset_dir()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import index, hybrid_gateway_contract;"
        "print(hybrid_gateway_contract.__file__); print(callable(index.on_event))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(asset)],
        capture_output=True,
        text=True,
        check=True,
    )
    contract_file, callable_entry = result.stdout.split()
    assert contract_file.startswith(str(asset))
    assert callable_entry == "True"
