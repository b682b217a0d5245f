"""One CiliumVTEPConfig write per replica for all its shards, and status writes that cost nothing.

Against the project's test API server (the CRD as shipped, with its status subresource): the
replica's shard lanes, run at once from their own threads, publish every held shard's endpoint
in ONE replace at the version they read, never conflicting with each other; another replica
writing meanwhile makes that replace 409 and the merge is redone. An agent's `.status` write
(the Cilium agents write status: cilium/cilium pkg/k8s/apis/cilium.io/v2/vtep_types.go) leaves
`metadata.generation` as it was, so the watch does not wake the lanes, and a wake-up after a
spec change costs one read per replica, not one per shard.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.leader.vtep import ReplicaVtepWriter
from hybrid_gateway_contract.sharding import ShardPlan, plan_shards
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

VTEP = ("cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway")
PLAN: ShardPlan = plan_shards(
    [ipaddress.IPv4Network("10.80.0.0/16")], [ipaddress.IPv4Network("10.0.0.0/16")], 4
)
MAC_A, MAC_B = "02:00:0a:00:01:0a", "02:00:0a:00:01:0b"


@pytest.fixture
def apis(kube_api: ApiServer) -> Iterator[tuple[client.ApiClient, client.ApiClient, Any]]:
    """(gw-a's client, gw-b's client, an admin CustomObjectsApi)."""
    a = config.new_client_from_config(config_file=str(kube_api.kubeconfig("gw-a")))
    b = config.new_client_from_config(config_file=str(kube_api.kubeconfig("gw-b")))
    admin = config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin-user")))
    try:
        yield a, b, client.CustomObjectsApi(admin)
    finally:
        for c in (a, b, admin):
            c.close()


def vtep_calls(kube: ApiServer, identity: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in kube.audit():
        if entry["identity"] == identity and entry.get("resource") == "ciliumvtepconfigs":
            key = f"{entry['verb']} {entry['status']}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def endpoints(admin: Any) -> dict[str, str]:
    obj = admin.get_cluster_custom_object(*VTEP)
    return {e["name"]: e["tunnelEndpoint"] for e in obj["spec"]["endpoints"]}


def test_all_held_shards_go_out_in_one_write_and_a_change_costs_one_read(
    kube_api: ApiServer, apis: tuple[client.ApiClient, client.ApiClient, Any]
) -> None:
    a, _b, admin = apis
    held = [0, 1, 2, 3]  # e.g. a failover: the survivor's terms start together
    writer = ReplicaVtepWriter(
        VtepStore(a, settings=WatchingSettings(request_timeout_s=5)),
        plan=PLAN,
        node_ip="10.0.1.10",
        mac=MAC_A,
        fresh_s=60,
        terms=lambda: dict.fromkeys(held, lambda: True),
    )
    lanes = [writer.lane(s) for s in held]
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda lane=lane: results.append(lane.sync(lambda: True)))
        for lane in lanes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [True] * 4
    assert set(endpoints(admin).values()) == {"10.0.1.10"} and len(endpoints(admin)) == 4
    calls = vtep_calls(kube_api, "gw-a")
    assert calls.get("create 201") == 1 and not any(k.endswith(" 409") for k in calls), calls
    assert writer.writes == 1

    # A spec change seen by the watch: every lane looks again, the object is read once.
    reads = writer.reads
    writer.changed()
    assert all(lane.sync(lambda: True) for lane in lanes)
    assert writer.reads == reads + 1 and writer.writes == 1


def test_another_replica_writing_meanwhile_is_merged_not_overwritten(
    kube_api: ApiServer, apis: tuple[client.ApiClient, client.ApiClient, Any]
) -> None:
    a, b, admin = apis
    writer_a = ReplicaVtepWriter(
        VtepStore(a, settings=WatchingSettings(request_timeout_s=5)),
        plan=PLAN,
        node_ip="10.0.1.10",
        mac=MAC_A,
        fresh_s=60,
    )
    writer_b = ReplicaVtepWriter(
        VtepStore(b, settings=WatchingSettings(request_timeout_s=5)),
        plan=PLAN,
        node_ip="10.0.1.11",
        mac=MAC_B,
        fresh_s=60,
    )
    assert writer_a.lane(0).sync(lambda: True) and writer_a.lane(1).sync(lambda: True)
    assert writer_b.lane(2).sync(lambda: True) and writer_b.lane(3).sync(lambda: True)
    names = [n for s in PLAN.shards for n, _c in s.vtep_endpoints]
    assert endpoints(admin) == {
        names[0]: "10.0.1.10",
        names[1]: "10.0.1.10",
        names[2]: "10.0.1.11",
        names[3]: "10.0.1.11",
    }
    # Shard 1's term ends at a: a write for shard 0 leaves shard 1's endpoint as it is.
    admin_obj = admin.get_cluster_custom_object(*VTEP)
    admin_obj["spec"]["endpoints"] = [
        e for e in admin_obj["spec"]["endpoints"] if e["name"] != names[0]
    ]
    admin.replace_cluster_custom_object(*VTEP, admin_obj)
    writer_a.changed()
    assert writer_a.lane(1).sync(lambda: False) is False
    assert writer_a.lane(0).sync(lambda: True)
    assert endpoints(admin)[names[0]] == "10.0.1.10"


def test_status_writes_do_not_wake_the_lanes_and_spec_changes_do(
    kube_api: ApiServer, apis: tuple[client.ApiClient, client.ApiClient, Any]
) -> None:
    a, _b, admin = apis
    writer = ReplicaVtepWriter(
        VtepStore(a, settings=WatchingSettings(request_timeout_s=5)),
        plan=PLAN,
        node_ip="10.0.1.10",
        mac=MAC_A,
        fresh_s=60,
    )
    assert writer.lane(0).sync(lambda: True)
    changes: list[str] = []
    listed = threading.Event()
    watch = VtepStore(
        a, settings=WatchingSettings.derived(window_s=2, request_timeout_s=5, max_backoff_s=5.0)
    ).watcher(on_change=changes.append, on_listed=listed.set)
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert listed.wait(10)
        for i in range(5):  # an agent reporting its sync status, again and again
            obj = admin.get_cluster_custom_object(*VTEP)
            obj["status"] = {"endpointCount": i + 1}
            admin.replace_cluster_custom_object_status(*VTEP, obj)
        obj = admin.get_cluster_custom_object(*VTEP)
        assert obj["status"]["endpointCount"] == 5  # five new versions, one generation
        obj["spec"]["endpoints"][0]["tunnelEndpoint"] = "10.0.1.99"  # an edit of the spec
        admin.replace_cluster_custom_object(*VTEP, obj)
        wait_until("the spec change", lambda: changes == ["MODIFIED"], timeout_s=10)
    finally:
        stop.set()
        thread.join(10)
    assert changes == ["MODIFIED"]
