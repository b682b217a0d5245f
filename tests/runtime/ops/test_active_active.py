"""The operations commands in active-active mode, against the emulators: the healthy world
turned active-active (ops_world.make_active_active: shard Leases, membership Leases, shard
routes, the shard VTEP endpoints), then one thing broken at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kubernetes import client

from hybrid_gateway_contract import DEFAULT_LEASE_NAME
from hybrid_gateway_contract.sharding import shard_lease_name
from hybrid_gateway_testkit.ops_world import POD_CIDRS, OpsWorld, ShardWorld, make_active_active

from .conftest import Clients, Run


@pytest.fixture
def shards(world: OpsWorld, clients: Clients) -> ShardWorld:
    ec2, _eks, kube = clients
    return make_active_active(world, ec2, kube, shards=4)


def shard_of(status: dict[str, Any], index: int) -> dict[str, Any]:
    return next(s for s in status["shards"] if s["index"] == index)


# --- status --------------------------------------------------------------------------------------


def test_status_shows_each_shard_its_holder_routes_and_endpoints(
    run: Run, world: OpsWorld, shards: ShardWorld
) -> None:
    ran = run("status", "--no-scrape", "--output", "json")
    assert ran.code == 0, ran.out
    status = ran.json()
    assert status["mode"] == "active-active"
    assert status["shardPlan"] == {
        "shards": 4,
        "routesPerTable": 8,
        "maxRoutesPerTable": 50,
        "vtepPrefixLength": 18,
    }
    assert status["shardPlanProblems"] == []
    assert [s["index"] for s in status["shards"]] == [0, 1, 2, 3]
    for shard in shards.plan.shards:
        seen = shard_of(status, shard.index)
        owner = shards.owners[shard.index]
        assert seen["podPrefixes"] == list(shard.pod_prefixes)
        assert seen["lease"]["name"] == shard_lease_name(DEFAULT_LEASE_NAME, shard.index)
        assert (seen["lease"]["holder"], seen["lease"]["state"]) == (world.pods[owner], "live")
        assert (seen["instanceId"], seen["eni"]) == (world.instances[owner], world.enis[owner])
        assert {(r["routeTableId"], r["destination"], r["points_at"]) for r in seen["routes"]} == {
            (t, p, "owner") for t in world.owned_tables for p in shard.pod_prefixes
        }
        assert [(e["name"], e["cidr"], e["points_at"]) for e in seen["vtepEndpoints"]] == [
            (name, cidr, "owner") for name, cidr in shard.vtep_endpoints
        ]
    assert status["routes"] == []  # no whole pod CIDR route left in the owned tables
    assert status["liveMembers"] == 2
    assert {m["identity"] for m in status["members"]} == set(world.pods.values())
    replicas = {r["pod"]: r for r in status["replicas"]}
    assert replicas[world.pods["a"]]["shards"] == [0, 2]
    assert replicas[world.pods["b"]]["shards"] == [1, 3]
    assert status["leader"] is None  # no leader Lease in active-active mode


def test_status_table_in_active_active(run: Run, world: OpsWorld, shards: ShardWorld) -> None:
    ran = run("status", "--no-scrape")
    assert ran.code == 0, ran.out
    lines = ran.out.splitlines()
    assert lines[0] == "Mode:    active-active, 4 shards, 8 shard routes per table (max 50)"
    assert "Members: 2 live" in lines
    assert "Leader:" not in ran.out
    shard_row = next(line for line in lines if line.startswith("1 "))
    cells = shard_row.split()  # shard, holder, state, "(1.2s", "ago)", instance, ENI, prefixes
    assert cells[:3] == ["1", world.pods["b"], "live"]
    assert cells[5:] == [world.instances["b"], world.enis["b"], "10.100.64.0/18,", "10.102.64.0/18"]
    route_row = next(
        line
        for line in lines
        if line.startswith(world.owned_tables[0]) and shards.plan.shards[3].pod_prefixes[0] in line
    )
    assert route_row.split() == [
        world.owned_tables[0],
        "3",
        shards.plan.shards[3].pod_prefixes[0],
        world.enis["b"],
        "owner",
    ]
    assert any(line.startswith("vpc-gateway-2 ") and line.endswith(" owner") for line in lines)
    assert f"{world.pods['a']} (shards 0,2)" in ran.out
    assert "Whole pod CIDR routes (active-standby's): none" in ran.out


def test_an_expired_shard_lease_held_by_a_vanished_pod_shows_as_expired(
    run: Run, world: OpsWorld, shards: ShardWorld, kube: client.ApiClient
) -> None:
    """Replica b's pod is gone and its shard Leases ran out (renewed 3 hours ago, 1h
    duration): shards 1 and 3 show as expired, held by a pod that is gone, on no instance; b
    holds no shard and is no live member."""
    client.CoreV1Api(kube).delete_namespaced_pod(world.pods["b"], world.namespace)
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    leases = client.CoordinationV1Api(kube)
    for index in (1, 3):
        leases.patch_namespaced_lease(
            shard_lease_name(DEFAULT_LEASE_NAME, index),
            world.namespace,
            {"spec": {"renewTime": long_ago}},
        )
    from hybrid_gateway_contract.sharding import member_lease_name

    leases.patch_namespaced_lease(
        member_lease_name(DEFAULT_LEASE_NAME, world.pods["b"]),
        world.namespace,
        {"spec": {"renewTime": long_ago}},
    )
    status = run("status", "--no-scrape", "--output", "json").json()
    for index in (1, 3):
        lease = shard_of(status, index)["lease"]
        assert (lease["holder"], lease["state"]) == (world.pods["b"], "expired")
        assert lease["holderIsGatewayPod"] is False
        assert shard_of(status, index)["instanceId"] is None
        # b's ENI still carries the routes: another gateway's, not the (gone) owner's
        assert {r["points_at"] for r in shard_of(status, index)["routes"]} == {"other gateway"}
    assert shard_of(status, 0)["lease"]["state"] == "live"
    assert status["liveMembers"] == 1
    table = run("status", "--no-scrape").out
    row = next(line for line in table.splitlines() if line.startswith("3 "))
    assert f"{world.pods['b']} (gone)" in row and " expired (" in row


def test_a_shard_route_at_a_foreign_eni_and_a_leftover_whole_cidr_route(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any
) -> None:
    """A shard prefix routed to an ENI that is no gateway's, and a whole pod CIDR route
    at a gateway ENI as active-standby left it: each shown for what it is."""
    foreign = ec2.create_network_interface(SubnetId=world.subnet_ids[1])["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    prefix = shards.plan.shards[2].pod_prefixes[1]
    table = world.owned_tables[1]
    ec2.replace_route(RouteTableId=table, DestinationCidrBlock=prefix, NetworkInterfaceId=foreign)
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock=POD_CIDRS[0], NetworkInterfaceId=world.enis["a"]
    )
    ec2.delete_route(RouteTableId=world.owned_tables[0], DestinationCidrBlock=prefix)
    status = run("status", "--no-scrape", "--output", "json").json()
    routes = {(r["routeTableId"], r["destination"]): r for r in shard_of(status, 2)["routes"]}
    assert (routes[(table, prefix)]["target"], routes[(table, prefix)]["points_at"]) == (
        foreign,
        "not a gateway",
    )
    assert routes[(world.owned_tables[0], prefix)]["points_at"] == "absent"
    assert status["routes"] == [
        {
            "routeTableId": table,
            "destination": POD_CIDRS[0],
            "target": world.enis["a"],
            "points_at": "left from active-standby",
        }
    ]
    text = run("status", "--no-scrape").out
    assert f"{table} {POD_CIDRS[0]}" in " ".join(text.split())


def test_a_vtep_endpoint_at_the_wrong_replica(
    run: Run, world: OpsWorld, shards: ShardWorld, kube: client.ApiClient
) -> None:
    from hybrid_gateway_contract import (
        CILIUM_GROUP,
        CILIUM_VERSION,
        VTEP_CONFIG_NAME,
        VTEP_CONFIGS_PLURAL,
    )

    custom = client.CustomObjectsApi(kube)
    current = custom.get_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, VTEP_CONFIG_NAME
    )
    endpoints = current["spec"]["endpoints"]
    endpoints[0]["tunnelEndpoint"] = world.ips["b"]  # shard 0 is a's
    endpoints[1]["tunnelEndpoint"] = "10.0.99.99"
    del endpoints[2]
    custom.replace_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, VTEP_CONFIG_NAME, current
    )
    status = run("status", "--no-scrape", "--output", "json").json()
    states = {e["name"]: e["points_at"] for s in status["shards"] for e in s["vtepEndpoints"]}
    assert states == {
        "vpc-gateway-0": "other gateway",
        "vpc-gateway-1": "not a gateway",
        "vpc-gateway-2": "absent",
        "vpc-gateway-3": "owner",
    }


def test_active_standby_keeps_its_output(run: Run, world: OpsWorld) -> None:
    """No shard keys and the leader line in active-standby mode."""
    status = run("status", "--no-scrape", "--output", "json").json()
    assert not {"mode", "shards", "members", "shardPlan"} & set(status)
    assert all("shards" not in r for r in status["replicas"])
