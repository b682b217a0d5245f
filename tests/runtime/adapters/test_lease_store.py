"""LeaseStore against the test API server: writes as the API server expects them.

The test server decodes renewTime/acquireTime as metav1.MicroTime the way the real one does
(Go's RFC3339Micro: exactly six fraction digits), keeps every Lease field, and audits every
request, dropped ones included.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_lease import LeaseApiError, LeaseStore
from kube_test_apiserver import ApiServer

NAMESPACE = "eks-hybrid-nodes-gateway"
NAME = "hybrid-gateway-leader"
ON_THE_SECOND = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)  # microsecond 0


def api(kube: ApiServer, identity: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kube.kubeconfig(identity)))


def raw_lease(kube: ApiServer) -> dict[str, object]:
    leases = client.CoordinationV1Api(api(kube, "tester"))
    reply = leases.read_namespaced_lease(NAME, NAMESPACE, _preload_content=False)
    data: dict[str, object] = json.loads(reply.data)
    return data


def test_times_at_a_whole_second_are_written_as_microtime(kube_api: ApiServer) -> None:
    store = LeaseStore(api(kube_api, "gw-a"), NAMESPACE, NAME, wall_clock=lambda: ON_THE_SECOND)
    created = store.write(store.get(2.0), "gw-a", 3.0, 2.0)
    renewed = store.write(created, "gw-a", 3.0, 2.0)
    spec = raw_lease(kube_api)["spec"]
    assert isinstance(spec, dict)
    assert spec["renewTime"] == spec["acquireTime"] == "2026-03-04T05:06:07.000000Z"
    assert renewed.holder == "gw-a"


def test_fields_we_do_not_manage_survive_acquisition_and_renewal(kube_api: ApiServer) -> None:
    leases = client.CoordinationV1Api(api(kube_api, "tester"))
    leases.create_namespaced_lease(
        NAMESPACE,
        client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=NAME,
                labels={"app.kubernetes.io/name": "eks-hybrid-nodes-gateway"},
                annotations={"example.com/owner": "platform"},
            ),
            spec=client.V1LeaseSpec(
                holder_identity=None,
                lease_duration_seconds=3,
                strategy="OldestEmulationVersion",
                preferred_holder="gw-b",
            ),
        ),
    )
    store = LeaseStore(api(kube_api, "gw-a"), NAMESPACE, NAME)
    acquired = store.write(store.get(2.0), "gw-a", 3.0, 2.0)
    first = raw_lease(kube_api)
    store.write(acquired, "gw-a", 3.0, 2.0)
    second = raw_lease(kube_api)
    for lease in (first, second):
        metadata, spec = lease["metadata"], lease["spec"]
        assert isinstance(metadata, dict) and isinstance(spec, dict)
        assert metadata["labels"] == {"app.kubernetes.io/name": "eks-hybrid-nodes-gateway"}
        assert metadata["annotations"] == {"example.com/owner": "platform"}
        assert spec["strategy"] == "OldestEmulationVersion"
        assert spec["preferredHolder"] == "gw-b"
        assert spec["holderIdentity"] == "gw-a"
    first_spec, second_spec = first["spec"], second["spec"]
    assert isinstance(first_spec, dict) and isinstance(second_spec, dict)
    assert second_spec["acquireTime"] == first_spec["acquireTime"]  # a renewal keeps it
    assert second_spec["leaseTransitions"] == first_spec["leaseTransitions"] == 1


def test_a_renewal_is_one_http_attempt(kube_api: ApiServer) -> None:
    """A dropped connection is not re-sent below us (urllib3 would re-send a PUT): the
    renewal's timeout bounds it, and the elector decides about the next attempt."""
    store = LeaseStore(api(kube_api, "gw-a"), NAMESPACE, NAME)
    held = store.write(store.get(2.0), "gw-a", 3.0, 2.0)
    kube_api.partition("gw-a")
    try:
        with pytest.raises(LeaseApiError):
            store.write(held, "gw-a", 3.0, 2.0)
    finally:
        kube_api.heal("gw-a")
    updates = [
        e
        for e in kube_api.audit()
        if e["identity"] == "gw-a" and e["verb"] == "update" and e.get("resource") == "leases"
    ]
    assert len(updates) == 1 and updates[0].get("dropped")
