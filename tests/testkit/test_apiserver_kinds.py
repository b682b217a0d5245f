"""The kinds preflight and status read (ConfigMaps, Nodes, Pods, Deployments, DaemonSets, CRDs),
their scopes, the OpenAPI v3 index, media types and TLS, through the official client."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kube_test_apiserver import ApiServer

from .conftest import ClientFor


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def raw(server: ApiServer, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
    """A request as-is (no client-side serialisation), returning (status, decoded JSON)."""
    headers = {"Authorization": f"Bearer {server.token('admin')}", **headers}
    pool = urllib3.PoolManager()
    reply = pool.request(method, server.url + path, body=body or None, headers=headers)
    return reply.status, json.loads(reply.data)


def test_namespaced_kinds_live_in_their_namespace(admin: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    name = unique("kinds")
    core.create_namespaced_config_map(
        "kube-system", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"a": "1"})
    )
    labels = {"app": name}
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="i")]),
    )
    selector = client.V1LabelSelector(match_labels=labels)
    apps.create_namespaced_deployment(
        "default",
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DeploymentSpec(replicas=2, selector=selector, template=template),
        ),
    )
    apps.create_namespaced_daemon_set(
        "kube-system",
        client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DaemonSetSpec(selector=selector, template=template),
        ),
    )
    assert core.read_namespaced_config_map(name, "kube-system").data == {"a": "1"}
    assert apps.read_namespaced_deployment(name, "default").spec.replicas == 2
    assert apps.read_namespaced_daemon_set(name, "kube-system").spec.template.spec.containers
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map(name, "default")
    assert err.value.status == 404
    assert [d.metadata.name for d in apps.list_deployment_for_all_namespaces().items].count(
        name
    ) == 1


def test_pod_status_is_a_subresource(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    name = unique("pod")
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(node_name="n1", containers=[client.V1Container(name="c", image="i")]),
        status=client.V1PodStatus(phase="Running"),
    )
    created = core.create_namespaced_pod("default", body)
    assert created.status is None  # status is ignored on create, as on a real server
    core.patch_namespaced_pod_status(
        name, "default", {"status": {"phase": "Running", "hostIP": "127.0.0.1"}}
    )
    pod = core.read_namespaced_pod(name, "default")
    assert (pod.status.phase, pod.status.host_ip, pod.spec.node_name) == (
        "Running",
        "127.0.0.1",
        "n1",
    )


def test_cluster_scoped_kinds_have_no_namespace(
    shared_api: ApiServer, admin: client.ApiClient
) -> None:
    core = client.CoreV1Api(admin)
    extensions = client.ApiextensionsV1Api(admin)
    node = unique("node")
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(name=node, labels={"hybrid-gateway-node": "true"}),
            spec=client.V1NodeSpec(provider_id="aws:///us-east-1a/i-0123456789abcdef0"),
        )
    )
    assert core.read_node(node).spec.provider_id.endswith("i-0123456789abcdef0")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    extensions.create_custom_resource_definition(crd)
    assert extensions.read_custom_resource_definition("widgets.example.com").spec.group == (
        "example.com"
    )
    status, body = raw(shared_api, "GET", f"/api/v1/namespaces/default/nodes/{node}")
    assert (status, body["reason"]) == (404, "NotFound")


def test_openapi_v3_index_and_documents_advertise_field_validation(
    shared_api: ApiServer,
) -> None:
    status, index = raw(shared_api, "GET", "/openapi/v3")
    assert status == 200
    assert {"api/v1", "apis/apps/v1", "apis/cilium.io/v2"} <= set(index["paths"])
    url = index["paths"]["apis/cilium.io/v2"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/cilium.io/v2?hash=")
    status, document = raw(shared_api, "GET", url)
    patch = document["paths"]["/apis/cilium.io/v2/ciliumvtepconfigs/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "CiliumVTEPConfig"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert raw(shared_api, "GET", "/openapi/v3/apis/nothing.example/v1")[0] == 404


@pytest.mark.parametrize(
    "content_type", ["application/vnd.kubernetes.protobuf", "application/cbor", "text/plain"]
)
def test_unsupported_body_media_types_are_415(shared_api: ApiServer, content_type: str) -> None:
    status, body = raw(
        shared_api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap",
        **{"Content-Type": content_type},
    )
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    assert body["message"].endswith(
        "accepted media types include: application/json, application/yaml"
    )


def test_yaml_bodies_are_accepted(shared_api: ApiServer) -> None:
    name = unique("yaml")
    document = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: '1'\n"
    status, body = raw(
        shared_api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        document.encode(),
        **{"Content-Type": "application/yaml"},
    )
    assert (status, body["data"]) == (201, {"a": "1"})


def test_tls_serving_with_the_certificate_in_the_kubeconfig(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with ApiServer.start(tmp_path_factory.mktemp("tls"), tls=True) as server:
        assert server.url.startswith("https://")
        api = config.new_client_from_config(config_file=str(server.kubeconfig("reader")))
        try:
            names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
        finally:
            api.close()
        assert "kube-system" in names
        plain = urllib3.PoolManager(cert_reqs="CERT_NONE")
        with pytest.raises(urllib3.exceptions.HTTPError):
            plain.request("GET", server.url.replace("https", "http") + "/version", retries=False)


def test_client_for_fixture_still_serves_plain_http(client_for: ClientFor) -> None:
    assert client_for("plain").configuration.host.startswith("http://")
