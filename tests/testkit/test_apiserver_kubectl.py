"""kubectl as an independent client of the test API server (served over TLS: client-go sends a
bearer token only over TLS).

kubectl is required, not optional: without it this module fails with the way to get it (the
Makefile's system-deps target names it too). `KUBECTL` may point at a specific binary.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

from .conftest import SAMPLE_CRDS

KUBECTL_HELP = (
    "kubectl is needed by the kubectl client tests: install kubectl 1.33 "
    "(https://kubernetes.io/docs/tasks/tools/) or set KUBECTL=/path/to/kubectl"
)


@pytest.fixture(scope="module")
def kubectl_bin() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        pytest.fail(KUBECTL_HELP)
    return found


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer.start(tmp_path_factory.mktemp("kube-api-tls"), tls=True, crds=SAMPLE_CRDS)
    try:
        yield server
    finally:
        server.stop()


class Kubectl:
    def __init__(self, binary: str, kubeconfig: Path, cache: Path) -> None:
        self.binary = binary
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(cache),
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(cache / "kube-cache"),
        }

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--request-timeout=20s", *args]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
        return result.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.ok("get", *args, "-o", "json"))


@pytest.fixture(scope="module")
def kubectl(
    kubectl_bin: str, tls_api: ApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    return Kubectl(kubectl_bin, tls_api.kubeconfig("kubectl"), tmp_path_factory.mktemp("kubectl"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def configmap(name: str, **data: str) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    )


def vtep_config(name: str, mac: str, *, extra: dict[str, Any] | None = None) -> str:
    spec: dict[str, Any] = {
        "endpoints": [
            {
                "name": "vpc-gateway",
                "tunnelEndpoint": "10.0.1.10",
                "cidr": "10.0.0.0/16",
                "mac": mac,
            }
        ],
        **(extra or {}),
    }
    return json.dumps(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumVTEPConfig",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_apply_creates_then_patches_with_server_side_validation(
    kubectl: Kubectl, tls_api: ApiServer
) -> None:
    """No --validate=false: kubectl finds fieldValidation in /openapi/v3 and lets the server
    validate (it would otherwise need the protobuf /openapi/v2 for client-side validation)."""
    name = unique("applied")
    assert "created" in kubectl.ok("apply", "-f", "-", stdin=configmap(name, a="1"))
    assert "configured" in kubectl.ok("apply", "-f", "-", stdin=configmap(name, a="2", b="3"))
    assert kubectl.get("configmap", name)["data"] == {"a": "2", "b": "3"}
    writes = [r for r in tls_api.audit() if r["identity"] == "kubectl" and r["name"] == name]
    assert [(r["verb"], r["status"]) for r in writes if r["verb"] != "get"] == [
        ("create", 201),
        ("patch", 200),
    ]
    assert all("fieldValidation=Strict" in r["query"] for r in writes if r["verb"] != "get")


def test_apply_of_an_unknown_field_is_refused_by_strict_validation(kubectl: Kubectl) -> None:
    name = unique("strict")
    kubectl.ok("apply", "-f", "-", stdin=vtep_config(name, "02:00:00:00:00:01"))
    result = kubectl.run(
        "apply", "-f", "-", stdin=vtep_config(name, "02:00:00:00:00:01", extra={"bogus": 1})
    )
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.bogus"' in result.stderr
    assert "bogus" not in json.dumps(kubectl.get("ciliumvtepconfigs", name)["spec"])


def test_patch_merge_and_json(kubectl: Kubectl) -> None:
    name = unique("patched")
    kubectl.ok("apply", "-f", "-", stdin=configmap(name, a="1"))
    kubectl.ok("patch", "configmap", name, "--type=merge", "-p", '{"data":{"b":"2"}}')
    kubectl.ok(
        "patch", "configmap", name, "--type=json", "-p", '[{"op":"remove","path":"/data/a"}]'
    )
    assert kubectl.get("configmap", name)["data"] == {"b": "2"}


def test_create_existing_is_409_and_stale_replace_is_409(kubectl: Kubectl) -> None:
    name = unique("conflict")
    kubectl.ok("apply", "-f", "-", stdin=configmap(name, a="1"))
    again = kubectl.run("create", "-f", "-", stdin=configmap(name, a="1"))
    assert again.returncode != 0 and "(AlreadyExists)" in again.stderr
    stale = kubectl.get("configmap", name)
    kubectl.ok("patch", "configmap", name, "--type=merge", "-p", '{"data":{"a":"2"}}')
    stale["data"] = {"a": "3"}
    replaced = kubectl.run("replace", "-f", "-", stdin=json.dumps(stale))
    assert replaced.returncode != 0 and "(Conflict)" in replaced.stderr
    assert "the object has been modified" in replaced.stderr


def test_invalid_custom_resource_is_422_naming_the_field(kubectl: Kubectl) -> None:
    result = kubectl.run("apply", "-f", "-", stdin=vtep_config(unique("bad"), "zz:00:00:00:00:01"))
    assert result.returncode != 0
    assert 'is invalid: spec.endpoints[0].mac: Invalid value: "zz:00:00:00:00:01"' in result.stderr


def test_protobuf_bodies_get_415_like_a_server_without_protobuf(kubectl: Kubectl) -> None:
    """`kubectl create configmap` uses the typed client, which sends protobuf bodies."""
    result = kubectl.run("create", "configmap", unique("proto"), "--from-literal=a=1")
    assert result.returncode != 0
    assert (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml" in result.stderr
    )


def test_watch_streams_changes(kubectl: Kubectl, tls_api: ApiServer) -> None:
    name = unique("watched")
    process = subprocess.Popen(
        kubectl.argv(
            "get",
            "configmaps",
            "--watch-only",
            "-o",
            "name",
            f"--field-selector=metadata.name={name}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env,
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(
            "kubectl's watch to open",
            lambda: any(
                r["identity"] == "kubectl" and r["verb"] == "watch" and name in r["query"]
                for r in tls_api.audit()
            ),
            timeout_s=30,
        )
        seen: list[str] = []
        for value in ("1", "2", "3"):
            kubectl.ok("apply", "-f", "-", stdin=configmap(name, a=value))
            seen.append(lines.get(timeout=20).strip())
        assert seen == [f"configmap/{name}"] * 3
    finally:
        process.terminate()
        process.wait(timeout=10)
