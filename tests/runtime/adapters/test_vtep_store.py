"""CiliumVTEPConfig writes check the lease before EVERY HTTP attempt (test API server, which
audits dropped requests too). Without that, urllib3's default retries re-send a PUT after a
dropped connection, below any check of ours."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_vtep import (
    OWNER_RETRY_S,
    VtepApiError,
    VtepStore,
    VtepWriteNotAllowedError,
)
from hybrid_gateway_contract import DEFAULT_NAMESPACE
from kube_test_apiserver import ApiServer

BODY: dict[str, Any] = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumVTEPConfig",
    "metadata": {"name": "hybrid-gateway"},
    "spec": {
        "endpoints": [
            {
                "name": "vpc-gateway",
                "tunnelEndpoint": "10.0.1.10",
                "cidr": "10.0.0.0/16",
                "mac": "02:00:00:00:00:01",
            }
        ]
    },
}


def vtep_writes(kube: ApiServer) -> list[dict[str, Any]]:
    return [
        e
        for e in kube.audit()
        if e["identity"] == "gw-a"
        and e.get("resource") == "ciliumvtepconfigs"
        and e["verb"] in ("create", "update")
    ]


@pytest.fixture
def store(kube_api: ApiServer) -> VtepStore:
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("gw-a")))
    return VtepStore(api, settings=WatchingSettings(request_timeout_s=2.0))


def test_no_attempt_without_a_valid_lease(kube_api: ApiServer, store: VtepStore) -> None:
    with pytest.raises(VtepWriteNotAllowedError):
        store.create(dict(BODY), lambda: False)
    assert vtep_writes(kube_api) == []


def test_the_lease_is_checked_before_each_retry(kube_api: ApiServer, store: VtepStore) -> None:
    store.create(dict(BODY), lambda: True)
    current = store.get()
    assert current is not None
    checks = [0]

    def guard() -> bool:  # valid for the first attempt only
        checks[0] += 1
        return checks[0] == 1

    kube_api.partition("gw-a")  # connections dropped: a PUT that urllib3 would re-send
    try:
        with pytest.raises(VtepWriteNotAllowedError):
            store.replace(current, guard)
    finally:
        kube_api.heal("gw-a")
    updates = [e for e in vtep_writes(kube_api) if e["verb"] == "update"]
    assert len(updates) == 1 and updates[0].get("dropped")
    assert checks[0] == 2


def test_connection_errors_are_retried_a_bounded_number_of_times(
    kube_api: ApiServer, store: VtepStore
) -> None:
    store.create(dict(BODY), lambda: True)
    current = store.get()
    assert current is not None
    kube_api.partition("gw-a")
    try:
        with pytest.raises(VtepApiError):
            store.replace(current, lambda: True)
    finally:
        kube_api.heal("gw-a")
    assert len([e for e in vtep_writes(kube_api) if e["verb"] == "update"]) == 3


# --- the gateway's Namespace owns the object ----------------------------------------------------


def owned_store(kube: ApiServer, namespace: str, clock: Any = None) -> VtepStore:
    api = config.new_client_from_config(config_file=str(kube.kubeconfig("gw-a")))
    extra = {} if clock is None else {"clock": clock}
    return VtepStore(
        api, settings=WatchingSettings(request_timeout_s=2.0), owner_namespace=namespace, **extra
    )


def namespace_uid(kube: ApiServer, name: str) -> str:
    api = config.new_client_from_config(config_file=str(kube.kubeconfig("admin")))
    return str(client.CoreV1Api(api).read_namespace(name).metadata.uid)


def test_written_objects_name_the_gateway_namespace_as_owner(kube_api: ApiServer) -> None:
    """Kubernetes' garbage collector deletes the object once its owner is gone (Kubernetes
    documentation, "Garbage Collection"), so uninstalling the gateway removes it."""
    store = owned_store(kube_api, DEFAULT_NAMESPACE)
    uid = namespace_uid(kube_api, DEFAULT_NAMESPACE)
    owner = {"apiVersion": "v1", "kind": "Namespace", "name": DEFAULT_NAMESPACE, "uid": uid}
    store.create(dict(BODY), lambda: True)
    created = store.get()
    assert created is not None
    assert created["metadata"]["ownerReferences"] == [owner]
    assert "blockOwnerDeletion" not in created["metadata"]["ownerReferences"][0]
    assert store.owned(created)
    # An object written without one (an older gateway, the reference's) is adopted by the
    # next replace; another owner it has stays.
    other = {"apiVersion": "v1", "kind": "Namespace", "name": "platform", "uid": "u-1"}
    created["metadata"]["ownerReferences"] = [other]
    plain = VtepStore(  # a store that writes no owner
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("gw-b"))),
        settings=WatchingSettings(request_timeout_s=2.0),
    )
    plain.replace(created, lambda: True)
    unowned = store.get()
    assert unowned is not None and not store.owned(unowned)
    store.replace(unowned, lambda: True)
    adopted = store.get()
    assert adopted is not None
    assert adopted["metadata"]["ownerReferences"] == [other, owner]
    assert adopted["spec"] == created["spec"]


def test_an_unreadable_namespace_leaves_the_object_unowned_and_is_retried(
    kube_api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    store = owned_store(kube_api, "gone", clock=lambda: now[0])
    store.create(dict(BODY), lambda: True)
    created = store.get()
    assert created is not None
    assert "ownerReferences" not in created["metadata"]
    assert store.owned(created)  # nothing to adopt it with: no rewrite loop
    assert "cannot read Namespace gone (404 Not Found)" in caplog.text
    reads = [e for e in kube_api.audit() if e.get("resource") == "namespaces"]
    store.replace(created, lambda: True)  # within the retry period: not read again
    assert [e for e in kube_api.audit() if e.get("resource") == "namespaces"] == reads
    now[0] = OWNER_RETRY_S
    store.replace(store.get() or {}, lambda: True)
    assert len([e for e in kube_api.audit() if e.get("resource") == "namespaces"]) == len(reads) + 1
