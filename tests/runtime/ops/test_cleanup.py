"""`hybrid-gateway cleanup` after an uninstall: exactly the owned routes go (routes to gateway
ENIs and blackholes, in the owned tables, to the pod CIDRs), plus the CiliumVTEPConfig; the
dry run changes nothing."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from hybrid_gateway_contract import APP_NAME, CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL
from hybrid_gateway_testkit.ops_world import OTHER_CIDR, POD_CIDRS, OpsWorld

from .conftest import Run

RouteSet = set[tuple[str, str, str]]


def all_routes(ec2: Any, world: OpsWorld) -> RouteSet:
    """(table, destination, target) of every route of the world's VPC."""
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [world.vpc_id]}])
    return {
        (
            t["RouteTableId"],
            r["DestinationCidrBlock"],
            r.get("NetworkInterfaceId") or r.get("TransitGatewayId") or r.get("GatewayId") or "",
        )
        for t in tables["RouteTables"]
        for r in t["Routes"]
        if r.get("DestinationCidrBlock")
    }


def vtep_configs(kube: client.ApiClient) -> list[str]:
    listed = client.CustomObjectsApi(kube).list_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL
    )
    return [o["metadata"]["name"] for o in listed["items"]]


def uninstall(world: OpsWorld, ec2: Any, kube: client.ApiClient) -> RouteSet:
    """Remove the gateway's Deployment and pods (nodes stay), leave one route to a TGW and one
    blackhole in an owned table; returns the routes cleanup must delete."""
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    apps.delete_namespaced_deployment(APP_NAME, world.namespace)
    for pod in world.pods.values():
        core.delete_namespaced_pod(pod, world.namespace)
    second = world.owned_tables[1]
    ec2.replace_route(
        RouteTableId=second,
        DestinationCidrBlock=POD_CIDRS[0],
        TransitGatewayId=world.transit_gateway,
    )
    gone = ec2.create_network_interface(SubnetId=world.subnet_ids[1])["NetworkInterface"]
    ec2.replace_route(
        RouteTableId=second,
        DestinationCidrBlock=POD_CIDRS[1],
        NetworkInterfaceId=gone["NetworkInterfaceId"],
    )
    ec2.delete_network_interface(NetworkInterfaceId=gone["NetworkInterfaceId"])
    first = world.owned_tables[0]
    return {
        (first, POD_CIDRS[0], world.enis["a"]),
        (first, POD_CIDRS[1], world.enis["a"]),
        (second, POD_CIDRS[1], gone["NetworkInterfaceId"]),
    }


def test_dry_run_prints_the_plan_and_changes_nothing(
    run: Run, world: OpsWorld, ec2: Any, kube: client.ApiClient
) -> None:
    owned = uninstall(world, ec2, kube)
    before = all_routes(ec2, world)
    ran = run("cleanup", "--route-table-ids", ",".join(world.owned_tables))
    assert ran.code == 0, ran.out
    for table, cidr, target in owned:
        assert f"would delete {table} {cidr} -> {target}" in ran.out
    assert f"keep {world.owned_tables[1]} {POD_CIDRS[0]} -> {world.transit_gateway}" in ran.out
    assert "would delete ciliumvtepconfigs.cilium.io/hybrid-gateway" in ran.out
    assert "run again with --yes" in ran.out
    assert all_routes(ec2, world) == before
    assert vtep_configs(kube) == ["hybrid-gateway"]


def test_yes_removes_exactly_the_owned_routes_and_the_vtep_config(
    run: Run, world: OpsWorld, ec2: Any, kube: client.ApiClient
) -> None:
    owned = uninstall(world, ec2, kube)
    before = all_routes(ec2, world)
    ran = run(
        "cleanup", "--route-table-ids", ",".join(world.owned_tables), "--yes", "--output", "json"
    )
    assert ran.code == 0, ran.out
    report = ran.json()
    assert report["dryRun"] is False and report["errors"] == {}
    deleted = {
        (r["routeTableId"], r["destination"], r["target"])
        for r in report["routes"]
        if r["action"] == "delete" and r["outcome"] == "deleted"
    }
    assert deleted == owned
    after = all_routes(ec2, world)
    assert after == before - owned
    # what stays: the TGW route to a pod CIDR, the TGW route to another CIDR, the main table
    assert (world.owned_tables[1], POD_CIDRS[0], world.transit_gateway) in after
    assert (world.owned_tables[0], OTHER_CIDR, world.transit_gateway) in after
    assert {(world.main_table, c, world.enis["a"]) for c in POD_CIDRS} <= after
    assert vtep_configs(kube) == []
    again = run("cleanup", "--route-table-ids", ",".join(world.owned_tables), "--yes")
    assert "deleted" not in again.out
    assert again.code == 0 and "nothing to clean up" in again.out
    assert all_routes(ec2, world) == after


def test_cleanup_without_tables_after_uninstall_names_the_flag(
    run: Run, world: OpsWorld, ec2: Any, kube: client.ApiClient, capsys: Any
) -> None:
    uninstall(world, ec2, kube)
    before = all_routes(ec2, world)
    assert run("cleanup", "--yes").code == 2
    assert "--route-table-ids" in capsys.readouterr().err
    assert all_routes(ec2, world) == before


def test_yes_refuses_while_the_gateway_is_installed(
    run: Run, world: OpsWorld, ec2: Any, kube: client.ApiClient, capsys: Any
) -> None:
    before = all_routes(ec2, world)
    assert run("cleanup", "--yes").code == 2
    assert "still exists" in capsys.readouterr().err
    assert all_routes(ec2, world) == before and vtep_configs(kube) == ["hybrid-gateway"]
    forced = run("cleanup", "--yes", "--force")
    assert forced.code == 0
    assert all_routes(ec2, world) == {
        r for r in before if not (r[0] in world.owned_tables and r[1] in POD_CIDRS)
    }
