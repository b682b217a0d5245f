"""The operations commands in active-active mode, against the emulators: the healthy world
turned active-active (ops_world.make_active_active: shard Leases, membership Leases, shard
routes, the shard VTEP endpoints), then one thing broken at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kubernetes import client

from hybrid_gateway_contract import (
    APP_NAME,
    CILIUM_GROUP,
    CILIUM_VERSION,
    DEFAULT_LEASE_NAME,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
    Env,
)
from hybrid_gateway_contract.sharding import member_lease_name, shard_lease_name
from hybrid_gateway_testkit.ops_world import (
    OTHER_CIDR,
    POD_CIDRS,
    OpsWorld,
    ShardWorld,
    make_active_active,
)
from kube_test_apiserver import ApiServer

from .conftest import ALL_CHECKS, Clients, Run
from .test_cleanup import all_routes, vtep_configs

AA_CHECKS = [*ALL_CHECKS, "SHARD-PLAN", "ROUTE-QUOTA"]


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
        "maxRoutesPerTable": 500,
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
    assert lines[0] == "Mode:    active-active, 4 shards, 8 shard routes per table (max 500)"
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


def replica_b_vanished(world: OpsWorld, kube: client.ApiClient) -> None:
    """Replica b's pod is gone and its Leases ran out (renewed 3 hours ago, 1 h duration)."""
    client.CoreV1Api(kube).delete_namespaced_pod(world.pods["b"], world.namespace)
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    leases = client.CoordinationV1Api(kube)
    for name in (
        shard_lease_name(DEFAULT_LEASE_NAME, 1),
        shard_lease_name(DEFAULT_LEASE_NAME, 3),
        member_lease_name(DEFAULT_LEASE_NAME, world.pods["b"]),
    ):
        leases.patch_namespaced_lease(name, world.namespace, {"spec": {"renewTime": long_ago}})


def test_an_expired_shard_lease_held_by_a_vanished_pod_shows_as_expired(
    run: Run, world: OpsWorld, shards: ShardWorld, kube: client.ApiClient
) -> None:
    """Shards 1 and 3 show as expired, held by a pod that is gone, on no instance; b holds no
    shard and is no live member."""
    replica_b_vanished(world, kube)
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


def test_status_names_a_refused_lease_group_list(
    run: Run, world: OpsWorld, shards: ShardWorld, kube_api: ApiServer
) -> None:
    """RBAC refuses Leases (the leader Lease read, then the group list): status names both
    refused reads and exits 1; the shards show no holder."""
    kube_api.inject_errors("operator", code=403, count=2, resource="leases")
    ran = run("status", "--no-scrape", "--output", "json")
    assert ran.code == 1
    status = ran.json()
    assert status["unavailable"] == {
        "kubernetes/lease": "403 Forbidden",
        "kubernetes/lease-group": "403 Forbidden",
    }
    assert {s["lease"]["state"] for s in status["shards"]} == {"absent"}


# --- preflight -----------------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in report["checks"]}


def check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_preflight_passes_a_healthy_active_active_gateway(run: Run, shards: ShardWorld) -> None:
    ran = run("preflight", "--output", "json")
    report = ran.json()
    assert verdicts(report) == dict.fromkeys(AA_CHECKS, "ok"), report
    assert [c["id"] for c in report["checks"]] == AA_CHECKS
    assert ran.code == 0
    assert check(report, "SHARD-PLAN")["evidence"][1] == (
        "4 shards, 8 shard routes per table, 4 VTEP endpoints of /18"
    )
    quota = check(report, "ROUTE-QUOTA")["evidence"]
    # table 0: local + 8 shard routes + the transit gateway route; table 1: local + 8
    assert [line.split(": ", 1)[1] for line in quota] == [
        "10 static route(s) now + 0 shard route(s) to add = 10 of 500",
        "9 static route(s) now + 0 shard route(s) to add = 9 of 500",
    ]
    assert check(report, "GATEWAY-LEASE")["evidence"][-1].startswith("2 live member(s)")
    assert check(report, "ROUTE-TARGETS")["evidence"] == [
        "16 of 16 shard routes target their shard owner's ENI (2 table(s))"
    ]


def test_preflight_on_a_vanished_replica(
    run: Run, world: OpsWorld, shards: ShardWorld, kube: client.ApiClient
) -> None:
    replica_b_vanished(world, kube)
    report = run("preflight", "--output", "json").json()
    assert {k: v for k, v in verdicts(report).items() if v != "ok"} == {
        "GATEWAY-LEASE": "fail",  # shards 1 and 3 expired
        "ROUTE-TARGETS": "warn",  # their routes still at b's ENI: a gateway, not the owner
        "VTEP-CONFIG": "fail",  # their endpoints at b's node, which holds no live Lease
        "GATEWAY-REPLICAS": "warn",  # 1 of 2
    }
    vtep = check(report, "VTEP-CONFIG")["evidence"]
    assert vtep[1].endswith(
        f"(shard 1, owner {world.pods['b']}): no running holder {world.ips['b']}"
    )
    targets = check(report, "ROUTE-TARGETS")["evidence"]
    assert targets[0] == "8 of 16 shard routes target their shard owner's ENI (2 table(s))"
    assert targets[1] == (
        f"{world.owned_tables[0]} {shards.plan.shards[1].pod_prefixes[0]} (shard 1, holder "
        f"{world.pods['b']} on no gateway instance): other gateway {world.enis['b']}"
    )
    lease = check(report, "GATEWAY-LEASE")["evidence"]
    assert lease[1].startswith(f"{shard_lease_name(DEFAULT_LEASE_NAME, 1)}: expired, held by")
    assert lease[-1] == f"1 live member(s): {world.pods['a']}"
    assert "access to Leases" in check(report, "GATEWAY-LEASE")["fix"]


def test_preflight_on_a_shard_route_at_a_foreign_eni(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any
) -> None:
    foreign = ec2.create_network_interface(SubnetId=world.subnet_ids[1])["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    prefix = shards.plan.shards[1].pod_prefixes[0]
    ec2.replace_route(
        RouteTableId=world.owned_tables[0], DestinationCidrBlock=prefix, NetworkInterfaceId=foreign
    )
    report = run("preflight", "--output", "json").json()
    assert {k: v for k, v in verdicts(report).items() if v != "ok"} == {"ROUTE-TARGETS": "fail"}
    targets = check(report, "ROUTE-TARGETS")
    assert (
        f"{world.owned_tables[0]} {prefix} (shard 1, owner {world.instances['b']}): "
        f"not a gateway {foreign}"
    ) in targets["evidence"]
    assert targets["evidence"][0].startswith("15 of 16 shard routes")
    assert "Find who owns that ENI route" in targets["fix"]


def test_preflight_counts_the_route_quota_per_table(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any
) -> None:
    """With a quota of 9 the plan itself fits (8 shard routes + 1 local route), but the
    first table also holds a transit gateway route: 10 > 9. Missing shard routes count as
    routes still to add."""
    ec2.delete_route(
        RouteTableId=world.owned_tables[1],
        DestinationCidrBlock=shards.plan.shards[0].pod_prefixes[0],
    )
    report = run("preflight", "--output", "json", "--max-routes-per-table", "9").json()
    quota = check(report, "ROUTE-QUOTA")
    assert quota["verdict"] == "fail"
    assert quota["evidence"] == [
        f"{world.owned_tables[0]}: 10 static route(s) now + 0 shard route(s) to add = 10 of 9 "
        "(TOO MANY)",
        f"{world.owned_tables[1]}: 8 static route(s) now + 1 shard route(s) to add = 9 of 9",
    ]
    assert "Routes per route table" in quota["fix"]
    assert verdicts(report)["SHARD-PLAN"] == "ok"
    assert verdicts(report)["ROUTE-TARGETS"] == "fail"  # the deleted route is absent


def test_preflight_names_shard_settings_the_daemon_would_refuse(
    run: Run, world: OpsWorld, shards: ShardWorld, kube: client.ApiClient
) -> None:
    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment(APP_NAME, world.namespace)
    container = deployment.spec.template.spec.containers[0]
    for env in container.env:
        if env.name == Env.SHARDS:
            env.value = "3"
    deployment.spec.replicas = 1
    apps.replace_namespaced_deployment(APP_NAME, world.namespace, deployment)
    report = run("preflight", "--output", "json").json()
    plan = check(report, "SHARD-PLAN")
    assert plan["verdict"] == "fail"
    assert "shards 3: must be a power of two from 2 to 64" in plan["evidence"]
    for check_id in ("ROUTE-QUOTA", "ROUTE-TARGETS", "VTEP-CONFIG", "GATEWAY-LEASE"):
        assert check(report, check_id)["verdict"] == "skipped"
        assert "SHARD-PLAN" in check(report, check_id)["evidence"][0]
    replicas = check(report, "GATEWAY-REPLICAS")
    assert replicas["verdict"] == "fail" and "at least 2 replicas" in replicas["fix"]
    small = run("preflight", "--output", "json", "--shards", "4", "--max-routes-per-table", "8")
    problems = check(small.json(), "SHARD-PLAN")["evidence"]
    assert any(
        line.startswith("max routes per table 8: ") and "more than a table may hold" in line
        for line in problems
    )


def test_preflight_warns_while_the_active_standby_leader_still_holds_its_lease(
    run: Run, world: OpsWorld, shards: ShardWorld, kube: client.ApiClient
) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    client.CoordinationV1Api(kube).create_namespaced_lease(
        world.namespace,
        {
            "metadata": {"name": DEFAULT_LEASE_NAME},
            "spec": {
                "holderIdentity": "old-leader",
                "leaseDurationSeconds": 3600,
                "renewTime": now,
            },
        },
    )
    report = run("preflight", "--output", "json").json()
    lease = check(report, "GATEWAY-LEASE")
    assert lease["verdict"] == "warn"
    assert "still held by old-leader" in lease["evidence"][-1]
    status = run("status", "--no-scrape", "--output", "json").json()
    assert status["activeStandbyLeader"] == "old-leader"


# --- cleanup -------------------------------------------------------------------------------------


def uninstall(world: OpsWorld, kube: client.ApiClient) -> None:
    client.AppsV1Api(kube).delete_namespaced_deployment(APP_NAME, world.namespace)
    for pod in world.pods.values():
        client.CoreV1Api(kube).delete_namespaced_pod(pod, world.namespace)


def shard_routes(world: OpsWorld, shards: ShardWorld) -> set[tuple[str, str, str]]:
    return {
        (table, prefix, world.enis[shards.owners[shard.index]])
        for table in world.owned_tables
        for shard in shards.plan.shards
        for prefix in shard.pod_prefixes
    }


def test_cleanup_after_an_active_active_uninstall_removes_the_shard_routes(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any, kube: client.ApiClient
) -> None:
    """Without the Deployment the mode comes from --mode/--shards; only shard routes at
    gateway ENIs go, a shard prefix routed to a transit gateway stays."""
    uninstall(world, kube)
    tgw_prefix = shards.plan.shards[3].pod_prefixes[1]
    ec2.replace_route(
        RouteTableId=world.owned_tables[1],
        DestinationCidrBlock=tgw_prefix,
        TransitGatewayId=world.transit_gateway,
    )
    owned = shard_routes(world, shards) - {
        (world.owned_tables[1], tgw_prefix, world.enis[shards.owners[3]])
    }
    before = all_routes(ec2, world)
    tables = ",".join(world.owned_tables)
    flags = ("--route-table-ids", tables, "--mode", "active-active", "--shards", "4")
    dry = run("cleanup", *flags)
    assert dry.code == 0, dry.out
    for table, prefix, target in owned:
        assert f"would delete {table} {prefix} -> {target}" in dry.out
    assert f"keep {world.owned_tables[1]} {tgw_prefix} -> {world.transit_gateway}" in dry.out
    assert all_routes(ec2, world) == before
    ran = run("cleanup", *flags, "--yes", "--output", "json")
    assert ran.code == 0, ran.out
    deleted = {
        (r["routeTableId"], r["destination"], r["target"])
        for r in ran.json()["routes"]
        if r["outcome"] == "deleted"
    }
    assert deleted == owned
    after = all_routes(ec2, world)
    assert after == before - owned
    assert (world.owned_tables[0], OTHER_CIDR, world.transit_gateway) in after
    assert {(world.main_table, c, world.enis["a"]) for c in POD_CIDRS} <= after  # not owned
    assert vtep_configs(kube) == []


def test_cleanup_without_the_mode_names_the_shard_routes_it_keeps(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any, kube: client.ApiClient
) -> None:
    """After an uninstall nothing says the gateway was active-active: the shard routes are
    not deleted on a guess, but each is named with the flags that remove it."""
    uninstall(world, kube)
    before = all_routes(ec2, world)
    ran = run("cleanup", "--route-table-ids", ",".join(world.owned_tables), "--yes")
    assert ran.code == 0, ran.out
    kept = [line for line in ran.out.splitlines() if "a shard route" in line]
    assert len(kept) == len(shard_routes(world, shards)) == 16
    assert all("--mode active-active --shards" in line for line in kept)
    assert all_routes(ec2, world) == before  # no whole pod CIDR route in the owned tables
    report = run(
        "cleanup", "--route-table-ids", ",".join(world.owned_tables), "--output", "json"
    ).json()
    assert len(report["unplannedInsidePodCidrs"]) == 16


def test_forced_cleanup_reads_the_mode_from_the_deployment(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any
) -> None:
    before = all_routes(ec2, world)
    ran = run("cleanup", "--yes", "--force")
    assert ran.code == 0, ran.out
    assert all_routes(ec2, world) == before - shard_routes(world, shards)


def test_switching_back_to_active_standby_removes_only_the_shard_routes(
    run: Run, world: OpsWorld, shards: ShardWorld, clients: Clients, capsys: Any
) -> None:
    """The Deployment runs active-standby again and its leader has written the whole pod CIDR
    routes; the shard routes (more specific, so still winning) must go, but only once no
    shard owner runs; the leader's routes and CiliumVTEPConfig stay."""
    ec2, _eks, kube = clients
    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment(APP_NAME, world.namespace)
    container = deployment.spec.template.spec.containers[0]
    container.env = [e for e in container.env if e.name not in (Env.MODE, Env.SHARDS)]
    apps.replace_namespaced_deployment(APP_NAME, world.namespace, deployment)
    leader_routes = set()
    for table in world.owned_tables:
        for cidr in POD_CIDRS:
            ec2.create_route(
                RouteTableId=table, DestinationCidrBlock=cidr, NetworkInterfaceId=world.enis["a"]
            )
            leader_routes.add((table, cidr, world.enis["a"]))
    before = all_routes(ec2, world)
    flags = ("--shard-routes-only", "--yes")
    assert run("cleanup", *flags).code == 2
    assert "--shard-routes-only: no shard count: give --mode active-active" in (
        capsys.readouterr().err
    )
    aa = ("--mode", "active-active", "--shards", "4")
    assert run("cleanup", *flags, *aa).code == 2
    refused = capsys.readouterr().err
    assert f"{shard_lease_name(DEFAULT_LEASE_NAME, 0)}, " in refused and "still held" in refused
    assert all_routes(ec2, world) == before
    leases = client.CoordinationV1Api(kube)
    for index in range(4):  # the active-active replicas stopped: SIGTERM releases every shard
        leases.patch_namespaced_lease(
            shard_lease_name(DEFAULT_LEASE_NAME, index),
            world.namespace,
            {"spec": {"holderIdentity": None}},
        )
    ran = run("cleanup", *flags, *aa)
    assert ran.code == 0, ran.out
    assert "ciliumvtepconfigs" not in ran.out
    after = all_routes(ec2, world)
    assert after == before - shard_routes(world, shards)
    assert leader_routes <= after
    assert vtep_configs(kube) == ["hybrid-gateway"]


def test_a_mode_the_daemon_refuses_is_named_even_in_active_standby(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    """MODE misspelt: the daemon would stop at start-up (config.py), so preflight says so
    (the other checks judge the settings as active-standby, the daemon's default)."""
    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment(APP_NAME, world.namespace)
    container = deployment.spec.template.spec.containers[0]
    container.env = [*container.env, client.V1EnvVar(name=Env.MODE, value="active-activ")]
    apps.replace_namespaced_deployment(APP_NAME, world.namespace, deployment)
    ran = run("preflight", "--output", "json")
    report = ran.json()
    assert ran.code == 2
    assert verdicts(report) == dict.fromkeys(ALL_CHECKS, "ok") | {"SHARD-PLAN": "fail"}
    assert check(report, "SHARD-PLAN")["evidence"][1] == (
        "invalid MODE 'active-activ': must be one of active-standby, active-active"
    )


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--shards", "3"], "--shards: '3': must be a power of two from 2 to 64"),
        (["--mode", "both"], "--mode: 'both': must be one of active-standby, active-active"),
        (["--max-routes-per-table", "0"], "--max-routes-per-table: '0': must be a positive"),
    ],
)
def test_bad_shard_flags_exit_2_naming_flag_and_value(
    run: Run, flags: list[str], named: str, capsys: Any
) -> None:
    with pytest.raises(SystemExit) as exited:
        run("status", *flags)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_cleanup_names_a_shard_count_that_cannot_cut_the_pod_cidrs(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any, capsys: Any
) -> None:
    before = all_routes(ec2, world)
    narrow = ("--pod-cidrs", "10.100.0.0/30", "--mode", "active-active", "--shards", "8")
    assert run("cleanup", *narrow).code == 2
    assert "cannot plan the cleanup: shards 8: remote pod network 10.100.0.0/30" in (
        capsys.readouterr().err
    )
    assert all_routes(ec2, world) == before


def test_preflight_counts_a_prefix_list_route_at_its_max_entries(
    run: Run, world: OpsWorld, shards: ShardWorld, ec2: Any
) -> None:
    """A route to a prefix list counts against "Routes per route table" at the list's max
    entries, not as one route (Amazon VPC quotas page, customer-managed prefix lists): a list
    of max 20 entries in the first table takes its 10 static routes (8 shard routes, the local
    route, a transit gateway route) to 30."""
    listed = ec2.create_managed_prefix_list(
        PrefixListName="partners",
        MaxEntries=20,
        AddressFamily="IPv4",
        Entries=[{"Cidr": "192.0.2.0/24"}],
    )["PrefixList"]["PrefixListId"]
    ec2.create_route(
        RouteTableId=world.owned_tables[0],
        DestinationPrefixListId=listed,
        TransitGatewayId=world.transit_gateway,
    )
    report = run("preflight", "--output", "json", "--max-routes-per-table", "28").json()
    quota = check(report, "ROUTE-QUOTA")
    assert quota["verdict"] == "fail"
    assert quota["evidence"][0] == (
        f"{world.owned_tables[0]}: 10 static route(s) now + 20 for 1 prefix list route(s) at "
        "their max entries + 0 shard route(s) to add = 30 of 28 (TOO MANY)"
    )
    assert quota["evidence"][1].endswith("= 9 of 28")
