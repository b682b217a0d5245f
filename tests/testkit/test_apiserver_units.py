"""The server's rules for selectors, patch formats, CRD schemas and its bounded history, each
checked through the API a client sees (a server in this process: no start-up cost)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kube_test_apiserver import ApiServer

from .conftest import SAMPLE_CRDS

GROUP, VERSION, VTEPS, NODES = "cilium.io", "v2", "ciliumvtepconfigs", "ciliumnodes"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.ApiClient]:
    server = ApiServer.start_in_process(tmp_path_factory.mktemp("api"), crds=SAMPLE_CRDS)
    api = config.new_client_from_config(config_file=str(server.kubeconfig("rules")))
    try:
        yield api
    finally:
        api.close()
        server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": "x"}, False),
        ("a in (1, 2),b notin (3)", {"a": "2", "b": "4"}, True),
        ("a in (1,2),b notin (3)", {"a": "2", "b": "3"}, False),
        ("a=1,b", {"a": "1"}, False),
    ],
)
def test_label_selectors(
    api: client.ApiClient, selector: str, labels: dict[str, str], expected: bool
) -> None:
    core = client.CoreV1Api(api)
    name = unique("sel")
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    listed = core.list_namespaced_config_map(
        "default", label_selector=selector, field_selector=f"metadata.name={name}"
    )
    assert [cm.metadata.name for cm in listed.items] == ([name] if expected else [])


def test_selector_errors_are_400(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default", field_selector="spec.nodeName=x")
    assert err.value.status == 400 and "spec.nodeName" in status_of(err.value)["message"]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default", label_selector="!a in (1)")
    assert err.value.status == 400


def test_merge_patch_follows_rfc_7386(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = unique("merge")
    core.create_namespaced_config_map(
        "default",
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"k": "v", "keep": "1"}),
            data={"b": "1", "c": "2"},
        ),
    )
    patch = {"metadata": {"labels": {"k": None}}, "data": {"b": None, "d": "3"}}
    core.patch_namespaced_config_map(name, "default", patch, _content_type=MERGE_PATCH)
    patched = core.read_namespaced_config_map(name, "default")
    assert (patched.metadata.labels, patched.data) == ({"keep": "1"}, {"c": "2", "d": "3"})
    custom = client.CustomObjectsApi(api)  # a list is replaced, not merged
    node = unique("merge-node")
    body = {"metadata": {"name": node}, "spec": {"ipam": {"podCIDRs": ["10.0.1.0/24"]}}}
    custom.create_cluster_custom_object(GROUP, VERSION, NODES, body)
    replaced = custom.patch_cluster_custom_object(
        GROUP, VERSION, NODES, node, {"spec": {"ipam": {"podCIDRs": ["10.0.3.0/24"]}}}
    )
    assert replaced["spec"]["ipam"]["podCIDRs"] == ["10.0.3.0/24"]


def test_json_patch_operations(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    name = unique("json")
    body = {
        "metadata": {"name": name, "labels": {"app": "x"}, "annotations": {"seed": "1"}},
        "spec": {"ipam": {"podCIDRs": ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]}},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, NODES, body)
    operations = [
        {"op": "replace", "path": "/spec/ipam/podCIDRs/1", "value": "10.0.9.0/24"},
        {"op": "add", "path": "/spec/ipam/podCIDRs/-", "value": "10.0.4.0/24"},
        {"op": "remove", "path": "/metadata/labels/app"},
        {"op": "copy", "from": "/metadata/annotations/seed", "path": "/metadata/annotations/copy"},
        {"op": "move", "from": "/metadata/annotations/copy", "path": "/metadata/annotations/moved"},
        {"op": "test", "path": "/spec/ipam/podCIDRs/0", "value": "10.0.1.0/24"},
        {"op": "add", "path": "/metadata/labels/a~1b", "value": "y"},
    ]
    patched = custom.patch_cluster_custom_object(
        GROUP, VERSION, NODES, name, operations, _content_type=JSON_PATCH
    )
    assert patched["spec"]["ipam"]["podCIDRs"] == [
        "10.0.1.0/24",
        "10.0.9.0/24",
        "10.0.3.0/24",
        "10.0.4.0/24",
    ]
    assert patched["metadata"]["labels"] == {"a/b": "y"}
    assert patched["metadata"]["annotations"] == {"seed": "1", "moved": "1"}
    with pytest.raises(ApiException) as err:
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            NODES,
            name,
            [{"op": "remove", "path": "/spec/missing"}],
            _content_type=JSON_PATCH,
        )
    assert err.value.status == 422


def test_crd_schema_names_every_bad_field(api: client.ApiClient) -> None:
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CiliumVTEPConfig",
        "metadata": {"name": "Bad_Name"},
        "spec": {
            "cidrMask": "255.255.0",
            "endpoints": [
                {"name": "e", "tunnelEndpoint": "1.2.3.4", "cidr": "10.0.0.0/8", "mac": 5}
            ],
        },
    }
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, VTEPS, obj)
    status = status_of(err.value)
    assert err.value.status == 422
    fields = [c["field"] for c in status["details"]["causes"]]
    assert fields == ["metadata.name", "spec.cidrMask", "spec.endpoints[0].mac"]
    assert status["message"].startswith('CiliumVTEPConfig.cilium.io "Bad_Name" is invalid: [')
    assert "must be of type string" in status["message"]


def test_crd_defaults_are_applied_before_validation(api: client.ApiClient) -> None:
    endpoint = {
        "name": "e",
        "tunnelEndpoint": "1.2.3.4",
        "cidr": "10.0.0.0/8",
        "mac": "02:00:00:00:00:01",
    }
    obj = {"metadata": {"name": unique("defaults")}, "spec": {"endpoints": [endpoint]}}
    created = client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, VTEPS, obj)
    assert created["spec"]["cidrMask"] == "255.255.255.0"


def watched(core: client.CoreV1Api, resource_version: str) -> list[str]:
    """The names of the ConfigMaps a watch from `resource_version` delivers at once."""
    return [
        event["object"].metadata.name
        for event in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=resource_version,
            timeout_seconds=1,
        )
    ]


def test_history_is_bounded_and_expires_old_positions(tmp_path: Path) -> None:
    with ApiServer.start_in_process(tmp_path, history_size=3) as server:
        api = config.new_client_from_config(config_file=str(server.kubeconfig("history")))
        core = client.CoreV1Api(api)
        try:
            versions = [
                core.create_namespaced_config_map(
                    "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm{i}"))
                ).metadata.resource_version
                for i in range(5)
            ]
            # Three events kept: a watch from the second write gets the last three ...
            assert watched(core, versions[1]) == ["cm2", "cm3", "cm4"]
            # ... and one from the first is 410 Expired.
            with pytest.raises(ApiException) as err:
                watched(core, versions[0])
            assert err.value.status == 410
            assert server.compact() == versions[4]
            with pytest.raises(ApiException) as err:
                watched(core, versions[3])
            assert err.value.status == 410
            assert watched(core, versions[4]) == []
        finally:
            api.close()


def test_only_a_compaction_expires_a_continued_list_not_the_bounded_history(
    tmp_path: Path,
) -> None:
    """The history bound stands for the watch cache, which a continued list does not read."""
    with ApiServer.start_in_process(tmp_path, history_size=2) as server:
        api = config.new_client_from_config(config_file=str(server.kubeconfig("pages")))
        core = client.CoreV1Api(api)
        try:
            for i in range(4):
                core.create_namespaced_config_map(
                    "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm{i}"))
                )
            first = core.list_namespaced_config_map("default", limit=1)
            for i in range(4, 7):  # more writes since the token than the history keeps
                core.create_namespaced_config_map(
                    "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm{i}"))
                )
            rest = core.list_namespaced_config_map("default", _continue=first.metadata._continue)
            assert [cm.metadata.name for cm in rest.items][:3] == ["cm1", "cm2", "cm3"]
            again = core.list_namespaced_config_map("default", limit=1)
            core.create_namespaced_config_map(  # compacted past the token's version, as etcd
                "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm7"))
            )
            server.compact()
            with pytest.raises(ApiException) as err:
                core.list_namespaced_config_map("default", _continue=again.metadata._continue)
            assert err.value.status == 410
        finally:
            api.close()
