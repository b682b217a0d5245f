"""Failure paths: an API that cannot be read is named, its checks are skipped with the reason,
and the run is incomplete (exit 3, never a pass); bad flags are refused naming the flag and
value (exit 64); throttling is retried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from hybrid_gateway_contract import APP_NAME
from hybrid_gateway_testkit.ec2emu import THROTTLE_BODY, Ec2Proxy
from hybrid_gateway_testkit.ops_world import POD_CIDRS, REMOTE_NODE_CIDR, OpsWorld
from kube_test_apiserver import ApiServer

from .conftest import EC2_CHECKS, KUBE_CHECKS, Run

DENIED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this "
    b"operation.</Message></Error></Errors><RequestID>1</RequestID></Response>"
)


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


@pytest.fixture
def ec2_proxy(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ec2Proxy]:
    host, port = moto_url.removeprefix("http://").split(":")
    proxy = Ec2Proxy((host, int(port)), label="preflight").start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
    yield proxy
    proxy.stop()


def test_unreadable_kubernetes_api_skips_its_checks_and_fails_the_run(
    run: Run, world: OpsWorld, kube_api: ApiServer
) -> None:
    kube_api.inject_errors("operator", code=503, count=1000)
    instances = ",".join(world.instances.values())
    ran = run("preflight", "--output", "json", "--gateway-instance-ids", instances)
    report = ran.json()
    assert ran.code == 3  # incomplete: nothing failed, a source unread
    assert report["unavailable"]["kubernetes"].startswith("503")
    checks = checks_of(report)
    for check_id in KUBE_CHECKS:
        assert checks[check_id]["verdict"] == "skipped", checks[check_id]
    for check_id in ("VPC-CNI-SNAT", "GATEWAY-LEASE", "CILIUM-VTEP-CRD"):
        assert checks[check_id]["evidence"][0].startswith("kubernetes: 503"), checks[check_id]
    assert checks["SG-VXLAN"]["verdict"] == "ok"  # EC2 still judged, instances from the override
    table = run("preflight")
    assert "UNAVAILABLE kubernetes: 503" in table.out


def test_denied_ec2_is_named_and_its_checks_skipped(
    run: Run, world: OpsWorld, ec2_proxy: Ec2Proxy
) -> None:
    ec2_proxy.fault = lambda action, seq: (403, DENIED_BODY)
    ran = run("preflight", "--output", "json")
    report = ran.json()
    assert ran.code == 3  # incomplete: nothing failed, a source unread
    assert report["unavailable"]["ec2"].startswith("UnauthorizedOperation")
    checks = checks_of(report)
    for check_id in EC2_CHECKS:
        assert checks[check_id]["verdict"] == "skipped"
        assert "UnauthorizedOperation" in checks[check_id]["evidence"][0]
    assert checks["CILIUM-VTEP-ENABLED"]["verdict"] == "ok"


def test_throttled_ec2_calls_are_retried(run: Run, world: OpsWorld, ec2_proxy: Ec2Proxy) -> None:
    ec2_proxy.fault = lambda action, seq: (503, THROTTLE_BODY) if seq < 2 else None
    ran = run("preflight", "--output", "json")
    assert ran.code == 0, ran.out
    assert ec2_proxy.count("DescribeInstances") >= 3  # two throttled, then answered


def test_unknown_cluster_is_named_and_overrides_take_its_place(run: Run, world: OpsWorld) -> None:
    ran = run("preflight", "--output", "json", cluster="no-such-cluster")
    assert ran.code == 3  # incomplete: nothing failed, a source unread
    assert "ResourceNotFoundException" in ran.json()["unavailable"]["eks"]
    assert checks_of(ran.json())["CIDR-PLAN"]["verdict"] == "skipped"
    overridden = run(
        "preflight",
        "--output",
        "json",
        "--remote-node-cidrs",
        REMOTE_NODE_CIDR,
        "--remote-pod-cidrs",
        ",".join(POD_CIDRS),
        cluster="no-such-cluster",
    )
    plan = checks_of(overridden.json())["CIDR-PLAN"]
    assert overridden.code == 0 and plan["verdict"] == "ok"
    assert "--remote-pod-cidrs" in plan["evidence"][0]
    assert "ResourceNotFoundException" in plan["evidence"][0]


def test_before_install_the_gateway_checks_say_so(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    client.AppsV1Api(kube).delete_namespaced_deployment(APP_NAME, world.namespace)
    for pod in world.pods.values():
        client.CoreV1Api(kube).delete_namespaced_pod(pod, world.namespace)
    ran = run("preflight", "--output", "json")
    checks = checks_of(ran.json())
    for check_id in ("VTEP-CONFIG", "GATEWAY-LEASE", "GATEWAY-REPLICAS", "ROUTE-TARGETS"):
        assert checks[check_id]["verdict"] == "skipped"
    assert "before install" in checks["GATEWAY-LEASE"]["evidence"][0]
    assert "--route-table-ids" in checks["ROUTE-TARGETS"]["evidence"][0]
    assert checks["SG-VXLAN"]["verdict"] == "ok"  # the labelled nodes still name the instances
    assert ran.code == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--route-table-ids", "rtb-XYZ"], "--route-table-ids: 'rtb-XYZ'"),
        (["--remote-pod-cidrs", "10.100.0.1/16"], "has host bits set"),
        (["--region", "us-east-1a"], "--region: 'us-east-1a'"),
        (["--output", "yaml"], "--output"),
        (["--gateway-instance-ids", "i-0123abcd,web-1"], "--gateway-instance-ids: 'web-1'"),
        (["--vpc-id", "vpc-12"], "--vpc-id: 'vpc-12'"),
    ],
)
def test_bad_flags_exit_64_naming_flag_and_value(
    run: Run, flags: list[str], named: str, capsys: Any
) -> None:
    with pytest.raises(SystemExit) as exited:
        run("preflight", *flags)
    assert exited.value.code == 64  # usage: never mistaken for "failures found" (2)
    assert named in capsys.readouterr().err


def test_status_names_an_unreadable_api_and_exits_1(
    run: Run, world: OpsWorld, kube_api: ApiServer
) -> None:
    kube_api.inject_errors("operator", code=403, count=1000)
    ran = run("status", "--no-scrape")
    assert ran.code == 1
    assert "UNAVAILABLE kubernetes/lease: 403 Forbidden" in ran.out  # each refused read named
    assert "UNAVAILABLE kubernetes/deployment: 403 Forbidden" in ran.out
    assert "Leader:  none (no Lease)" in ran.out


def test_cleanup_reports_each_refused_deletion_and_exits_1(
    run: Run, world: OpsWorld, kube: client.ApiClient, ec2_proxy: Ec2Proxy
) -> None:
    client.AppsV1Api(kube).delete_namespaced_deployment(APP_NAME, world.namespace)
    ec2_proxy.fault = lambda action, seq: (403, DENIED_BODY) if action == "DeleteRoute" else None
    ran = run("cleanup", "--route-table-ids", ",".join(world.owned_tables), "--yes")
    assert ran.code == 1
    failed = [line for line in ran.out.splitlines() if line.startswith("FAILED to delete rtb-")]
    assert len(failed) == 2 * len(POD_CIDRS)
    assert all(
        line.endswith("UnauthorizedOperation: You are not authorized to perform this operation.")
        for line in failed
    )
    assert "deleted ciliumvtepconfigs.cilium.io/hybrid-gateway" in ran.out  # the rest went on
    assert ec2_proxy.count("DeleteRoute") == len(failed)  # one attempt each: no retry of a denial


def test_one_refused_read_skips_only_the_checks_that_need_it(
    run: Run, world: OpsWorld, kube_api: ApiServer
) -> None:
    """RBAC that refuses the Deployment (the first read) but allows the rest."""
    kube_api.inject_errors("operator", code=403, count=1)
    ran = run("preflight", "--output", "json")
    report = ran.json()
    assert ran.code == 3  # incomplete: nothing failed, a source unread
    assert list(report["unavailable"]) == ["kubernetes/deployment"]
    assert report["unavailable"]["kubernetes/deployment"].startswith("403")
    checks = checks_of(report)
    for check_id in ("GATEWAY-LEASE", "GATEWAY-REPLICAS", "VTEP-CONFIG"):
        assert checks[check_id]["verdict"] == "skipped"
        assert checks[check_id]["evidence"][0].startswith("kubernetes/deployment: 403")
    for check_id in ("NODE-LABEL-TAINT", "CILIUM-VTEP-ENABLED", "CILIUM-HYBRID-NODES", "SG-VXLAN"):
        assert checks[check_id]["verdict"] == "ok", checks[check_id]


def test_no_region_names_both_aws_sources(
    run: Run, world: OpsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")  # no region from a profile either
    ran = run("preflight", "--output", "json")
    assert ran.code == 3  # incomplete: nothing failed, a source unread
    unavailable = ran.json()["unavailable"]
    assert "no AWS region" in unavailable["ec2"] and "no AWS region" in unavailable["eks"]
    assert checks_of(ran.json())["CILIUM-VTEP-ENABLED"]["verdict"] == "ok"
