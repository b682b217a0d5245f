"""CRUD through the official client: versions, conflicts, scopes, schemas, Status bodies."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    DEFAULT_NAMESPACE,
    VTEP_CONFIG_KIND,
    VTEP_CONFIGS_PLURAL,
)

MERGE = "application/merge-patch+json"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def vtep_config(name: str, mac: str = "02:11:22:33:44:55") -> dict[str, Any]:
    return {
        "apiVersion": f"{CILIUM_GROUP}/{CILIUM_VERSION}",
        "kind": VTEP_CONFIG_KIND,
        "metadata": {"name": name},
        "spec": {
            "endpoints": [
                {
                    "name": "vpc-gateway-0",
                    "tunnelEndpoint": "10.0.0.10",
                    "cidr": "10.0.0.0/16",
                    "mac": mac,
                }
            ]
        },
    }


def cilium_node(name: str, ip: str = "192.168.1.10", hybrid: bool = True) -> dict[str, Any]:
    labels = {"eks.amazonaws.com/compute-type": "hybrid" if hybrid else "ec2"}
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNode",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "addresses": [
                {"type": "InternalIP", "ip": ip},
                {"type": "CiliumInternalIP", "ip": "10.85.0.1"},
            ],
            "ipam": {"podCIDRs": ["10.85.0.0/24", "10.86.0.0/24"]},
        },
    }


def test_preexisting_namespaces_include_the_gateway_namespace(admin: client.ApiClient) -> None:
    names = {ns.metadata.name for ns in client.CoreV1Api(admin).list_namespace().items}
    assert {"default", "kube-system", DEFAULT_NAMESPACE} <= names


def test_namespace_create_get_delete(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    name = unique("ns")
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == name
    assert core.read_namespace(name).metadata.uid == created.metadata.uid
    core.delete_namespace(name)
    with pytest.raises(ApiException) as err:
        core.read_namespace(name)
    assert err.value.status == 404


def test_lease_crud_and_resource_versions_increase(admin: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(admin)
    name = unique("lease")
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1LeaseSpec(holder_identity="gw-a", lease_duration_seconds=3),
    )
    created = leases.create_namespaced_lease(DEFAULT_NAMESPACE, body)
    assert created.metadata.uid and created.metadata.creation_timestamp
    created.spec.holder_identity = "gw-b"
    updated = leases.replace_namespaced_lease(name, DEFAULT_NAMESPACE, created)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    assert updated.metadata.uid == created.metadata.uid
    patched = leases.patch_namespaced_lease(
        name, DEFAULT_NAMESPACE, {"spec": {"leaseTransitions": 4}}, _content_type=MERGE
    )
    assert (patched.spec.holder_identity, patched.spec.lease_transitions) == ("gw-b", 4)
    listed = leases.list_namespaced_lease(DEFAULT_NAMESPACE, field_selector=f"metadata.name={name}")
    assert [item.metadata.name for item in listed.items] == [name]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)
    status = leases.delete_namespaced_lease(name, DEFAULT_NAMESPACE)
    assert status.status == "Success"
    with pytest.raises(ApiException) as err:
        leases.read_namespaced_lease(name, DEFAULT_NAMESPACE)
    assert err.value.status == 404
    assert status_of(err.value)["message"] == f'leases.coordination.k8s.io "{name}" not found'


def test_create_twice_is_409_already_exists(admin: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(admin)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name=unique("lease")))
    leases.create_namespaced_lease("default", body)
    with pytest.raises(ApiException) as err:
        leases.create_namespaced_lease("default", body)
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "AlreadyExists"


def test_stale_update_is_409_conflict_and_unconditional_put_wins(admin: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(admin)
    name = unique("lease")
    first = leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=name))
    )
    first.spec = client.V1LeaseSpec(holder_identity="a")
    leases.replace_namespaced_lease(name, "default", first)
    first.spec = client.V1LeaseSpec(holder_identity="b")  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease(name, "default", first)
    status = status_of(err.value)
    assert (err.value.status, status["reason"], status["kind"]) == (409, "Conflict", "Status")
    assert "the object has been modified" in status["message"]
    assert leases.read_namespaced_lease(name, "default").spec.holder_identity == "a"
    # Leases do not allow unconditional updates (kubernetes
    # pkg/registry/coordination/lease/strategy.go AllowUnconditionalUpdate false): 422.
    first.metadata.resource_version = None
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease(name, "default", first)
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    assert "must be specified for an update" in status["message"]
    # ConfigMaps do (pkg/registry/core/configmap/strategy.go): the PUT without a version wins.
    core = client.CoreV1Api(admin)
    cm_name = unique("cm")
    cm = core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=cm_name), data={"a": "1"})
    )
    core.replace_namespaced_config_map(
        cm_name, "default", client.V1ConfigMap(metadata=cm.metadata, data={"a": "2"})
    )
    unconditional = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=cm_name), data={"a": "3"})
    assert core.replace_namespaced_config_map(cm_name, "default", unconditional).data == {"a": "3"}


def test_put_of_a_deleted_lease_with_its_uid_is_409_and_without_creates_it(
    admin: client.ApiClient,
) -> None:
    """kube-apiserver's generic registry (k8s.io/apiserver registry/generic/registry/store.go
    `Update`): Leases allow create-on-update, and a metadata.uid in the body is a precondition
    checked against the empty object when none is stored, so a renewal of a deleted Lease (the
    body read before the deletion, uid and resourceVersion included) is 409 Conflict; without
    the uid the PUT creates the Lease (201), its resourceVersion ignored."""
    leases = client.CoordinationV1Api(admin)
    name = unique("lease")
    spec = client.V1LeaseSpec(holder_identity="gw-a", lease_duration_seconds=3)
    held = leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=name), spec=spec)
    )
    leases.delete_namespaced_lease(name, "default")
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease(name, "default", held)
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (409, "Conflict")
    assert f"UID in precondition: {held.metadata.uid}, UID in object meta: " in status["message"]
    with pytest.raises(ApiException) as missing:
        leases.read_namespaced_lease(name, "default")
    assert missing.value.status == 404  # the conflicting PUT created nothing

    held.metadata.uid = None  # resourceVersion still set: ignored on create-on-update
    created, code, _ = leases.replace_namespaced_lease_with_http_info(name, "default", held)
    assert code == 201
    assert created.metadata.uid and created.spec.holder_identity == "gw-a"
    assert int(created.metadata.resource_version) > int(held.metadata.resource_version)
    # a uid that does not match the stored object is a conflict too
    created.metadata.uid = str(uuid.uuid4())
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease(name, "default", created)
    assert err.value.status == 409


def test_put_of_a_missing_object_of_other_kinds_is_404(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map(
            "missing", "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="missing"))
        )
    assert err.value.status == 404


def test_patch_with_stale_resource_version_conflicts(admin: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(admin)
    name = unique("lease")
    created = leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=name))
    )
    leases.patch_namespaced_lease(
        name, "default", {"spec": {"holderIdentity": "x"}}, _content_type=MERGE
    )
    stale = {
        "metadata": {"resourceVersion": created.metadata.resource_version},
        "spec": {"holderIdentity": "y"},
    }
    with pytest.raises(ApiException) as err:
        leases.patch_namespaced_lease(name, "default", stale, _content_type=MERGE)
    assert err.value.status == 409


def test_json_patch_and_strategic_merge_patch(admin: client.ApiClient) -> None:
    """The client sends a list as JSON patch and a dict as strategic merge patch (built-ins)."""
    leases = client.CoordinationV1Api(admin)
    name = unique("lease")
    leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=name))
    )
    patched = leases.patch_namespaced_lease(
        name, "default", [{"op": "add", "path": "/spec", "value": {"holderIdentity": "j"}}]
    )
    assert patched.spec.holder_identity == "j"
    patched = leases.patch_namespaced_lease(name, "default", {"spec": {"leaseTransitions": 2}})
    assert (patched.spec.holder_identity, patched.spec.lease_transitions) == ("j", 2)
    with pytest.raises(ApiException) as err:
        leases.patch_namespaced_lease(
            name, "default", [{"op": "test", "path": "/spec/holderIdentity", "value": "other"}]
        )
    assert err.value.status == 422
    assert leases.read_namespaced_lease(name, "default").spec.holder_identity == "j"


def test_delete_precondition_mismatch_is_409(admin: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(admin)
    name = unique("lease")
    created = leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=name))
    )
    leases.patch_namespaced_lease(
        name, "default", {"spec": {"holderIdentity": "x"}}, _content_type=MERGE
    )
    options = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=created.metadata.resource_version)
    )
    with pytest.raises(ApiException) as err:
        leases.delete_namespaced_lease(name, "default", body=options)
    assert err.value.status == 409
    assert "precondition" in status_of(err.value)["message"]
    leases.read_namespaced_lease(name, "default")  # still there


def test_missing_namespace_is_404_on_create_and_empty_on_list(admin: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(admin)
    with pytest.raises(ApiException) as err:
        leases.create_namespaced_lease(
            "no-such-ns", client.V1Lease(metadata=client.V1ObjectMeta(name="x"))
        )
    assert err.value.status == 404
    assert status_of(err.value)["message"] == 'namespaces "no-such-ns" not found'
    assert leases.list_namespaced_lease("no-such-ns").items == []


def test_cluster_scoped_kind_under_a_namespace_is_404(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, "default", CILIUM_NODES_PLURAL
        )
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, "default", VTEP_CONFIGS_PLURAL, vtep_config("x")
        )
    assert err.value.status == 404


def test_ciliumnode_crud_with_label_selectors(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    hybrid, cloud = unique("hybrid"), unique("cloud")
    custom.create_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, cilium_node(hybrid)
    )
    custom.create_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, cilium_node(cloud, hybrid=False)
    )

    def names(selector: str) -> set[str]:
        found = custom.list_cluster_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, label_selector=selector
        )
        return {item["metadata"]["name"] for item in found["items"]} & {hybrid, cloud}

    assert names("eks.amazonaws.com/compute-type=hybrid") == {hybrid}
    assert names("eks.amazonaws.com/compute-type!=hybrid") == {cloud}
    assert names("eks.amazonaws.com/compute-type") == {hybrid, cloud}
    assert names("!eks.amazonaws.com/compute-type") == set()
    assert names("eks.amazonaws.com/compute-type in (ec2,other)") == {cloud}

    node = custom.get_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, hybrid
    )
    assert node["spec"]["ipam"]["podCIDRs"] == ["10.85.0.0/24", "10.86.0.0/24"]
    assert node["metadata"]["generation"] == 1
    node["spec"]["addresses"][0]["ip"] = "192.168.1.99"
    replaced = custom.replace_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, hybrid, node
    )
    assert replaced["metadata"]["generation"] == 2
    gone = custom.delete_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, hybrid
    )
    assert gone["metadata"]["name"] == hybrid  # custom resources return the deleted object


def test_vtepconfig_schema_rejects_bad_mac_naming_the_field(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    with pytest.raises(ApiException) as err:
        custom.create_cluster_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, vtep_config("bad-mac", mac="zz:zz")
        )
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (422, "Invalid")
    assert "spec.endpoints[0].mac" in status["message"]
    assert status["details"]["causes"][0]["field"] == "spec.endpoints[0].mac"


def test_vtepconfig_schema_limits_and_required_fields(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    nine = vtep_config("too-many")
    nine["spec"]["endpoints"] = [
        {
            "name": f"vpc-gateway-{i}",
            "tunnelEndpoint": "10.0.0.10",
            "cidr": f"10.{i}.0.0/16",
            "mac": "02:00:00:00:00:01",
        }
        for i in range(9)
    ]
    with pytest.raises(ApiException) as err:
        custom.create_cluster_custom_object(CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, nine)
    assert err.value.status == 422
    assert "spec.endpoints: Too many: 9" in status_of(err.value)["message"]
    missing = vtep_config("missing")
    del missing["spec"]["endpoints"][0]["tunnelEndpoint"]
    with pytest.raises(ApiException) as err:
        custom.create_cluster_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, missing
        )
    assert "spec.endpoints[0].tunnelEndpoint: Required value" in status_of(err.value)["message"]


def test_vtepconfig_defaults_pruning_and_status_subresource(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    name = unique("vtep")
    body = vtep_config(name)
    body["spec"]["unknownField"] = 1
    body["status"] = {"endpointCount": 99}
    created = custom.create_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, body
    )
    assert created["spec"]["cidrMask"] == "255.255.255.0"  # CRD default applied
    assert "unknownField" not in created["spec"]  # pruned like a structural schema
    assert "status" not in created  # status is ignored on create with a status subresource

    status = custom.patch_cluster_custom_object_status(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, name, {"status": {"endpointCount": 1}}
    )
    assert status["status"] == {"endpointCount": 1}
    assert status["metadata"]["generation"] == 1  # status writes never bump generation

    status["status"] = {"endpointCount": 7}
    status["spec"]["endpoints"][0]["tunnelEndpoint"] = "10.0.0.11"
    main = custom.replace_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, name, status
    )
    assert main["status"] == {"endpointCount": 1}  # status ignored on the main resource
    assert main["metadata"]["generation"] == 2

    again = custom.replace_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, name, main
    )
    assert again["metadata"]["resourceVersion"] == main["metadata"]["resourceVersion"]  # no-op


def test_strategic_merge_patch_on_a_custom_resource_is_415(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    name = unique("vtep")
    custom.create_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, vtep_config(name)
    )
    with pytest.raises(ApiException) as err:
        custom.patch_cluster_custom_object(
            CILIUM_GROUP,
            CILIUM_VERSION,
            VTEP_CONFIGS_PLURAL,
            name,
            {"spec": {}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 415


def test_events_create_list_patch(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="gw."),
        involved_object=client.V1ObjectReference(
            kind="Lease", name="hybrid-gateway-leader", namespace=DEFAULT_NAMESPACE
        ),
        reason="NodeSkipped",
        message="no InternalIP",
        type="Warning",
        count=1,
    )
    created = core.create_namespaced_event(DEFAULT_NAMESPACE, event)
    assert created.metadata.name.startswith("gw.") and len(created.metadata.name) == 8
    patched = core.patch_namespaced_event(
        created.metadata.name, DEFAULT_NAMESPACE, {"count": 2}, _content_type=MERGE
    )
    assert patched.count == 2
    listed = core.list_namespaced_event(DEFAULT_NAMESPACE)
    assert created.metadata.name in {e.metadata.name for e in listed.items}


def test_list_pagination_with_limit_and_continue(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    ns = unique("page")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    leases = client.CoordinationV1Api(admin)
    for i in range(5):
        leases.create_namespaced_lease(
            ns, client.V1Lease(metadata=client.V1ObjectMeta(name=f"l{i}"))
        )
    first = leases.list_namespaced_lease(ns, limit=2)
    second = leases.list_namespaced_lease(ns, limit=2, _continue=first.metadata._continue)
    third = leases.list_namespaced_lease(ns, limit=2, _continue=second.metadata._continue)
    pages = [[i.metadata.name for i in page.items] for page in (first, second, third)]
    assert pages == [["l0", "l1"], ["l2", "l3"], ["l4"]]
    assert third.metadata._continue is None
    assert first.metadata.remaining_item_count == 3


def test_discovery_endpoints(admin: client.ApiClient) -> None:
    assert client.VersionApi(admin).get_code().major == "1"
    groups = {g.name for g in client.ApisApi(admin).get_api_versions().groups}
    assert {"coordination.k8s.io", "cilium.io"} <= groups
    resources = client.CoordinationV1Api(admin).get_api_resources().resources
    assert [r.name for r in resources] == ["leases"]


def test_lease_times_are_stored_as_utc_microtime(admin: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(admin)
    name = unique("lease")
    offset = dt.timezone(dt.timedelta(hours=2))
    renew = dt.datetime(2026, 1, 2, 5, 4, 5, 123456, tzinfo=offset)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1LeaseSpec(holder_identity="a", renew_time=renew),
    )
    leases.create_namespaced_lease("default", body)
    raw = leases.read_namespaced_lease(name, "default", _preload_content=False)
    assert json.loads(raw.data)["spec"]["renewTime"] == "2026-01-02T03:04:05.123456Z"
    assert leases.read_namespaced_lease(name, "default").spec.renew_time == renew
    with pytest.raises(ApiException) as err:
        leases.patch_namespaced_lease(
            name, "default", {"spec": {"renewTime": "yesterday"}}, _content_type=MERGE
        )
    assert err.value.status == 400
    assert "spec.renewTime" in status_of(err.value)["message"]
    # Go's RFC3339Micro layout wants all six fraction digits, as `isoformat()` omits at 0 us
    for raw_time in ("2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05.123Z"):
        with pytest.raises(ApiException) as err:
            leases.patch_namespaced_lease(
                name, "default", {"spec": {"renewTime": raw_time}}, _content_type=MERGE
            )
        assert err.value.status == 400, raw_time
    leases.patch_namespaced_lease(
        name, "default", {"spec": {"renewTime": "2026-01-02T03:04:05.000000Z"}}, _content_type=MERGE
    )


def test_the_dynamic_client_discovers_and_lists_custom_resources(admin: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(admin)
    nodes = dyn.resources.get(api_version="cilium.io/v2", kind="CiliumNode")
    assert nodes.namespaced is False
    name = unique("dyn")
    nodes.create(body=cilium_node(name))
    assert name in {item.metadata.name for item in nodes.get().items}


def test_events_about_cluster_scoped_objects_must_live_in_default(admin: client.ApiClient) -> None:
    """The real server's rule: a CiliumNode's Event in another namespace is 422."""
    core = client.CoreV1Api(admin)

    def event(namespace: str) -> client.CoreV1Event:
        return client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="node.", namespace=namespace),
            involved_object=client.V1ObjectReference(kind="CiliumNode", name="n1"),
            reason="NodeSkipped",
        )

    with pytest.raises(ApiException) as err:
        core.create_namespaced_event(DEFAULT_NAMESPACE, event(DEFAULT_NAMESPACE))
    assert err.value.status == 422
    assert "involvedObject.namespace" in status_of(err.value)["message"]
    assert core.create_namespaced_event("default", event("default")).metadata.name


def test_concurrent_updates_from_one_version_have_exactly_one_winner(
    client_for: Any,
) -> None:
    """Optimistic concurrency is atomic: the Lease elector's safety rests on it."""
    contenders = [client.CoordinationV1Api(client_for(f"racer-{i}")) for i in range(8)]
    name = unique("race")
    base = contenders[0].create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=name))
    )
    outcomes: list[str] = []
    barrier = threading.Barrier(len(contenders))

    def race(index: int, api: client.CoordinationV1Api) -> None:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=name, resource_version=base.metadata.resource_version
            ),
            spec=client.V1LeaseSpec(holder_identity=f"racer-{index}"),
        )
        barrier.wait()
        try:
            api.replace_namespaced_lease(name, "default", body)
            outcomes.append(f"racer-{index}")
        except ApiException as exc:
            outcomes.append(str(exc.status))

    threads = [threading.Thread(target=race, args=pair) for pair in enumerate(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    winners = [o for o in outcomes if o.startswith("racer-")]
    assert len(winners) == 1 and outcomes.count("409") == len(contenders) - 1
    holder = contenders[0].read_namespaced_lease(name, "default").spec.holder_identity
    assert holder == winners[0]


def test_finalizers_hold_deletion_until_removed(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    name = unique("fin")
    body = vtep_config(name)
    body["metadata"]["finalizers"] = ["example.com/cleanup"]
    custom.create_cluster_custom_object(CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, body)
    pending = custom.delete_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, name
    )
    assert pending["metadata"]["deletionTimestamp"]
    still = custom.get_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, name
    )
    assert still["metadata"]["deletionTimestamp"] == pending["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as err:
        custom.patch_cluster_custom_object(
            CILIUM_GROUP,
            CILIUM_VERSION,
            VTEP_CONFIGS_PLURAL,
            name,
            {"metadata": {"finalizers": ["example.com/cleanup", "example.com/more"]}},
        )
    assert err.value.status == 422 and "no new finalizers" in status_of(err.value)["message"]
    custom.patch_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, name, {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as err:
        custom.get_cluster_custom_object(CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, name)
    assert err.value.status == 404


def test_label_values_are_validated_like_the_real_server(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    node = cilium_node(unique("lbl"))
    node["metadata"]["labels"]["pod-cidr"] = "10.85.0.0/24"  # "/" is not allowed in a value
    with pytest.raises(ApiException) as err:
        custom.create_cluster_custom_object(CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, node)
    assert err.value.status == 422
    assert status_of(err.value)["details"]["causes"][0]["field"] == "metadata.labels.pod-cidr"
    node["metadata"]["labels"] = {"example.com/ok": "v1.2_3", "bad key!": "x"}
    with pytest.raises(ApiException) as err:
        custom.create_cluster_custom_object(CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, node)
    assert '"bad key!"' in status_of(err.value)["message"]
