"""CiliumVTEPConfig writes check the lease before EVERY HTTP attempt (test API server, which
audits dropped requests too). Without that, urllib3's default retries re-send a PUT after a
dropped connection, below any check of ours."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import config

from hybrid_gateway.adapters.kube_vtep import VtepApiError, VtepStore, VtepWriteNotAllowedError
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
    return VtepStore(api, timeout_s=2.0)


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
