"""Both writers of the CiliumVTEPConfig adopt an object that lacks the gateway's Namespace as
owner, even when its endpoints are already right (written by an older gateway or the
reference's), and then leave it alone: against the project's test API server.

The owner is what removes the object when the gateway is uninstalled: Kubernetes' garbage
collector deletes a dependent once its owner is gone (Kubernetes documentation, "Garbage
Collection"), and the Namespace is gone only after every gateway pod in it has terminated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.leader.vtep import ReplicaVtepWriter, VtepOwner
from hybrid_gateway_contract import DEFAULT_NAMESPACE
from hybrid_gateway_contract.sharding import plan_shards
from kube_test_apiserver import ApiServer

VTEP = ("cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway")
VPC = [ipaddress.IPv4Network("10.0.0.0/16")]
NODE_IP, MAC = "10.0.1.10", "02:00:0a:00:01:0a"


@pytest.fixture
def apis(kube_api: ApiServer) -> Iterator[tuple[client.ApiClient, Any, str]]:
    """(the gateway's client, an admin CustomObjectsApi, the gateway Namespace's UID)."""
    gw = config.new_client_from_config(config_file=str(kube_api.kubeconfig("gw-a")))
    admin = config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin-user")))
    try:
        uid = client.CoreV1Api(admin).read_namespace(DEFAULT_NAMESPACE).metadata.uid
        yield gw, client.CustomObjectsApi(admin), str(uid)
    finally:
        gw.close()
        admin.close()


def writes(kube: ApiServer) -> int:
    return sum(
        1
        for e in kube.audit()
        if e["identity"] == "gw-a"
        and e.get("resource") == "ciliumvtepconfigs"
        and e["verb"] in ("create", "update")
    )


def owners(admin: Any) -> list[dict[str, str]]:
    return list(admin.get_cluster_custom_object(*VTEP)["metadata"].get("ownerReferences") or [])


def test_active_standby_adopts_an_unowned_object_with_the_right_endpoints(
    kube_api: ApiServer, apis: tuple[client.ApiClient, Any, str]
) -> None:
    gw, admin, uid = apis
    unowned = VtepOwner(
        VtepStore(gw, settings=WatchingSettings(request_timeout_s=5)),
        vpc_cidrs=VPC,
        node_ip=NODE_IP,
        mac=MAC,
    )
    assert unowned.sync(lambda: True)
    assert owners(admin) == [] and writes(kube_api) == 1
    owner = VtepOwner(
        VtepStore(
            gw, settings=WatchingSettings(request_timeout_s=5), owner_namespace=DEFAULT_NAMESPACE
        ),
        vpc_cidrs=VPC,
        node_ip=NODE_IP,
        mac=MAC,
    )
    assert owner.sync(lambda: True)
    assert owners(admin) == [
        {"apiVersion": "v1", "kind": "Namespace", "name": DEFAULT_NAMESPACE, "uid": uid}
    ]
    assert writes(kube_api) == 2
    assert owner.sync(lambda: True)
    assert writes(kube_api) == 2  # owned and right: nothing to write


def test_active_active_adopts_an_unowned_object_with_the_right_endpoints(
    kube_api: ApiServer, apis: tuple[client.ApiClient, Any, str]
) -> None:
    gw, admin, uid = apis
    plan = plan_shards([ipaddress.IPv4Network("10.80.0.0/16")], VPC, 2)

    def writer(store: VtepStore) -> ReplicaVtepWriter:
        return ReplicaVtepWriter(store, plan=plan, node_ip=NODE_IP, mac=MAC, fresh_s=0)

    unowned = writer(VtepStore(gw, settings=WatchingSettings(request_timeout_s=5)))
    assert unowned.lane(0).sync(lambda: True) and unowned.lane(1).sync(lambda: True)
    assert owners(admin) == [] and writes(kube_api) == 2
    owned = writer(
        VtepStore(
            gw, settings=WatchingSettings(request_timeout_s=5), owner_namespace=DEFAULT_NAMESPACE
        )
    )
    assert owned.lane(0).sync(lambda: True)
    assert [o["uid"] for o in owners(admin)] == [uid]
    assert writes(kube_api) == 3
    assert owned.lane(0).sync(lambda: True) and owned.lane(1).sync(lambda: True)
    assert writes(kube_api) == 3
