"""`python -m eks_hybrid_gateway.manifests`: plain YAML for GitOps, from flags or cdk.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import hybrid_gateway_contract as contract
from eks_hybrid_gateway import KUBERNETES_VERSION
from eks_hybrid_gateway.manifests import CONTEXT_KEY, OUTPUT_FILE, main

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path) -> list[dict[str, object]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _env(docs: list[dict[str, object]]) -> dict[str, object]:
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    return {e["name"]: e.get("value") for e in container["env"]}


def _required_flags(
    tmp_path: Path,
    *,
    pod_cidrs: str = "10.85.0.0/16",
    route_table_ids: str = "rtb-0123456789abcdef0",
) -> list[str]:
    """Every required value as a flag, no cdk.json."""
    return [
        "--out",
        str(tmp_path),
        "--cdk-json",
        str(tmp_path / "absent.json"),
        "--image",
        "registry.example/gw:1",
        "--vpc-cidrs",
        "10.0.0.0/16",
        "--pod-cidrs",
        pod_cidrs,
        "--route-table-ids",
        route_table_ids,
    ]


def test_flags_render_valid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [*_required_flags(tmp_path, pod_cidrs="10.85.0.0/16, 10.86.0.0/16"), "--metrics", "service"]
    )
    assert code == 0
    path = tmp_path / OUTPUT_FILE
    assert str(path) in capsys.readouterr().out
    docs = _load(path)
    assert [d["kind"] for d in docs].count("Service") == 1
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    env = _env(docs)
    assert env["POD_CIDRS"] == "10.85.0.0/16,10.86.0.0/16"
    assert env["ROUTE_TABLE_IDS"] == "rtb-0123456789abcdef0"


def test_defaults_come_from_cdk_json_context(tmp_path: Path) -> None:
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(
        json.dumps(
            {
                "context": {
                    CONTEXT_KEY: {
                        "image": "registry.example/gw:2",
                        "vpcCidrs": ["10.1.0.0/16"],
                        "podCidrs": ["10.85.0.0/16"],
                        "routeTableIds": ["rtb-0123456789abcdef1"],
                        "namespace": "gw",
                    }
                }
            }
        )
    )
    assert main(["--out", str(tmp_path / "out"), "--cdk-json", str(cdk_json)]) == 0
    docs = _load(tmp_path / "out" / OUTPUT_FILE)
    # Every namespaced object in the chosen namespace, but the Role (and binding) that reads
    # kube-system/cilium-config, the Cilium agents' vtep-mask.
    assert {d["metadata"]["namespace"] for d in docs if "namespace" in d["metadata"]} == {  # type: ignore[index,operator]
        "gw",
        "kube-system",
    }
    assert _env(docs)["VPC_CIDR"] == "10.1.0.0/16"


def test_active_active_flags_render_valid_yaml(tmp_path: Path) -> None:
    args = [
        *_required_flags(tmp_path),
        "--mode",
        "active-active",
        "--replicas",
        "3",
        "--shards",
        "8",
        "--max-routes-per-table",
        "100",
    ]
    assert main(args) == 0
    docs = _load(tmp_path / OUTPUT_FILE)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    env = _env(docs)
    assert (env["MODE"], env["SHARDS"], env["MAX_ROUTES_PER_TABLE"]) == (
        "active-active",
        "8",
        "100",
    )
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3  # type: ignore[index]
    # Shard settings without the mode are refused, not ignored.
    (tmp_path / OUTPUT_FILE).unlink()
    assert main([a for a in args if a not in ("--mode", "active-active")]) == 2
    assert not (tmp_path / OUTPUT_FILE).exists()


def test_missing_values_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--out", str(tmp_path), "--cdk-json", str(tmp_path / "absent.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "image, vpcCidrs, podCidrs, routeTableIds: required" in err
    assert not (tmp_path / OUTPUT_FILE).exists()


def test_invalid_value_is_reported_without_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_required_flags(tmp_path, route_table_ids="table-1"))
    assert code == 2
    assert "route_table_ids[0]: 'table-1' is not a route table ID" in capsys.readouterr().err


def test_repository_cdk_json_renders_the_reference_manifests(tmp_path: Path) -> None:
    """What `make synth` runs, as a separate process from the repository root."""
    result = subprocess.run(
        [sys.executable, "-m", "eks_hybrid_gateway.manifests", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    docs = _load(tmp_path / OUTPUT_FILE)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}  # type: ignore[index]
    assert ("Deployment", contract.APP_NAME) in names
    assert ("Namespace", contract.DEFAULT_NAMESPACE) in names


def test_pod_monitor_goes_to_its_own_file(tmp_path: Path) -> None:
    """A missing Prometheus Operator CRD must not fail the gateway's own manifest."""
    from eks_hybrid_gateway.manifests import POD_MONITOR_FILE

    args = ["--out", str(tmp_path), "--cdk-json", str(tmp_path / "absent.json")]
    args += ["--image", "registry.example/gw:1", "--vpc-cidrs", "10.0.0.0/16"]
    args += ["--pod-cidrs", "10.85.0.0/16", "--route-table-ids", "rtb-0123456789abcdef0"]
    assert main([*args, "--metrics", "service-and-pod-monitor", "--namespace", "gw"]) == 0
    gateway_kinds = [d["kind"] for d in _load(tmp_path / OUTPUT_FILE)]
    assert "PodMonitor" not in gateway_kinds
    assert "Service" in gateway_kinds
    [monitor] = _load(tmp_path / POD_MONITOR_FILE)
    assert monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["namespace"] == "gw"  # type: ignore[index]
    other = tmp_path / "plain"
    assert main([*args[:1], str(other), *args[2:], "--metrics", "service"]) == 0
    assert not (other / POD_MONITOR_FILE).exists()
