"""Starting the server: in this process or as its own, and the CustomResourceDefinitions and
namespaces passed in (the server bakes in no custom resource of its own)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from hybrid_gateway_testkit.kube_api import CONTROL_PLANE_NICE, start_kube_api
from kube_test_apiserver import ApiServer, ApiServerError

from .conftest import SAMPLE_CRDS

WIDGETS = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "default": 3}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def api_client(server: ApiServer) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(server.kubeconfig("tester")))


@pytest.fixture
def widgets_file(tmp_path: Path) -> Path:
    """A file of two documents: a ConfigMap (not a CRD: skipped, as envtest skips it) and the
    Widget CRD."""
    path = tmp_path / "crds" / "widgets.yaml"
    path.parent.mkdir()
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    path.write_text(yaml.safe_dump_all([config_map, WIDGETS]))
    return path


@pytest.fixture
def in_process(tmp_path: Path, widgets_file: Path) -> Iterator[ApiServer]:
    server = ApiServer.start_in_process(
        tmp_path / "api", crds=[widgets_file], namespaces=["team-a"]
    )
    try:
        yield server
    finally:
        server.stop()


def test_in_process_serves_the_crds_and_namespaces_passed_in(in_process: ApiServer) -> None:
    api = api_client(in_process)
    try:
        custom = client.CustomObjectsApi(api)
        body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        body["spec"] = {}  # defaults apply under an existing parent, as in Kubernetes
        created = custom.create_namespaced_custom_object(
            "example.com", "v1", "team-a", "widgets", body
        )
        assert created["spec"] == {"size": 3}  # the schema's default: the CRD passed in decides
        names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
        assert {"default", "kube-system", "kube-public", "kube-node-lease", "team-a"} == names
        with pytest.raises(ApiException) as err:  # nothing baked in: no Cilium kinds
            custom.list_cluster_custom_object("cilium.io", "v2", "ciliumnodes")
        assert err.value.status == 404
    finally:
        api.close()
    assert in_process.running()
    first = next(r for r in in_process.audit() if r["identity"] == "tester")
    assert first["resource"] == "widgets"


def test_in_process_stop_closes_the_port(tmp_path: Path) -> None:
    server = ApiServer.start_in_process(tmp_path)
    port = urlsplit(server.url).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), 2):
        pass
    assert server.stop() == 0 and not server.running()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 2):
        pass


def test_a_process_serves_a_directory_of_crds(tmp_path: Path) -> None:
    with ApiServer.start(tmp_path / "api", crds=SAMPLE_CRDS) as server:
        api = api_client(server)
        try:
            resources = client.CustomObjectsApi(api).get_api_resources("cilium.io", "v2")
        finally:
            api.close()
        assert sorted(r.name for r in resources.resources if "/" not in r.name) == [
            "ciliumnodes",
            "ciliumvtepconfigs",
        ]


def bad_crd_cases(tmp_path: Path) -> list[tuple[list[Path], str]]:
    missing = tmp_path / "missing.yaml"
    no_crd = tmp_path / "configmap.yaml"
    no_crd.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    no_storage: dict[str, Any] = yaml.safe_load(yaml.safe_dump(WIDGETS))
    no_storage["spec"]["versions"][0]["storage"] = False
    unstored = tmp_path / "unstored.yaml"
    unstored.write_text(yaml.safe_dump(no_storage))
    widgets = tmp_path / "widgets.json"
    widgets.write_text(yaml.safe_dump(WIDGETS))
    clash: dict[str, Any] = yaml.safe_load(yaml.safe_dump(WIDGETS))
    clash["spec"].update(group="", names={"plural": "configmaps", "kind": "ConfigMap"})
    builtin = tmp_path / "builtin.yaml"
    builtin.write_text(yaml.safe_dump(clash))
    return [
        ([missing], f"CRD path {missing}: no such file or directory"),
        ([no_crd], f"CRD path {no_crd}: no CustomResourceDefinition in it"),
        ([broken], f"CRD file {broken}: "),
        ([unstored], f"CRD file {unstored}: CustomResourceDefinition 'widgets.example.com' lacks"),
        ([widgets, widgets], "widgets.example.com is already served"),
        ([builtin], "configmaps. is already served (built in)"),
    ]


def test_a_bad_crd_fails_the_start_naming_the_path(tmp_path: Path) -> None:
    for paths, message in bad_crd_cases(tmp_path):
        with pytest.raises(ApiServerError) as err:
            ApiServer.start_in_process(tmp_path / "api", crds=paths).stop()
        assert message in str(err.value), (message, str(err.value))


def test_a_bad_crd_fails_a_process_start_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ApiServerError, match=f"CRD path {missing}: no such file"):
        ApiServer.start(tmp_path / "api", crds=[missing]).stop()


def _niceness(pid: int) -> int:
    """The scheduling niceness of `pid` (field 19 of /proc/<pid>/stat, proc(5))."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative niceness needs root (CI is root)")
def test_the_gateway_tests_api_server_is_scheduled_ahead_of_the_daemons(tmp_path: Path) -> None:
    """The test API server stands for a control plane on other machines: the gateway's tests
    and lab start it ahead of their own processes; a plain start keeps the caller's."""
    with start_kube_api(tmp_path / "gateway") as server:
        assert _niceness(server.pid) == CONTROL_PLANE_NICE < os.getpriority(os.PRIO_PROCESS, 0)
    with ApiServer.start(tmp_path / "plain") as server:
        assert _niceness(server.pid) == os.getpriority(os.PRIO_PROCESS, 0)
