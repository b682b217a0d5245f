"""The operations commands against real components: EC2 and EKS in moto server over HTTP (boto3
finds it through AWS_ENDPOINT_URL, the SDK's own override), Kubernetes in the test API server
(the official client finds it through the kubeconfig)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from kubernetes import client, config

from hybrid_gateway.cli import main as cli_main
from hybrid_gateway_testkit.ec2emu import ec2_client, moto_ec2
from hybrid_gateway_testkit.ops_world import REGION, OpsWorld, build_world
from kube_test_apiserver import ApiServer

# Every preflight check, in report order; which source each one reads.
EKS_CHECKS = ("CIDR-PLAN",)
EC2_CHECKS = (
    "ROUTE-TARGETS",
    "ROUTE-COVERAGE",
    "SG-VXLAN",
    "SG-RETURN-PATH",
    "EC2-SOURCE-DEST-CHECK",
    "EC2-IMDSV2",
)
KUBE_CHECKS = (
    "NODE-LABEL-TAINT",
    "CILIUM-VTEP-CRD",
    "CILIUM-VTEP-ENABLED",
    "CILIUM-VTEP-MATCH",
    "CILIUM-L7-PROXY",
    "CILIUM-HYBRID-NODES",
    "GATEWAY-CIDRS",
    "VTEP-CONFIG",
    "VPC-CNI-SNAT",
    "GATEWAY-LEASE",
    "GATEWAY-REPLICAS",
)
ALL_CHECKS = [*EKS_CHECKS, *EC2_CHECKS, *KUBE_CHECKS]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_ec2() as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture(scope="module")
def ec2(moto_url: str) -> Any:
    return ec2_client(moto_url, REGION)


@pytest.fixture(scope="module")
def eks(moto_url: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("eks", endpoint_url=moto_url)


@pytest.fixture
def kube(kube_api: ApiServer) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin")))
    yield api
    api.close()


@pytest.fixture
def world(ec2: Any, eks: Any, kube: client.ApiClient) -> OpsWorld:
    return build_world(ec2, eks, kube)


Clients = tuple[Any, Any, client.ApiClient]


@pytest.fixture
def clients(ec2: Any, eks: Any, kube: client.ApiClient) -> Clients:
    """(EC2, EKS, Kubernetes) clients straight to the emulators, for seeding and inspecting."""
    return ec2, eks, kube


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class Ran:
    code: int
    out: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Ran]


@pytest.fixture
def run(
    aws_env: None, kube_api: ApiServer, world: OpsWorld, monkeypatch: pytest.MonkeyPatch
) -> Run:
    """`run("preflight", *flags)`: the CLI in this process, against this test's world (the
    operator's kubeconfig is the admin identity's)."""
    kubeconfig = str(kube_api.kubeconfig("operator"))

    def invoke(command: str, *flags: str, cluster: str | None = None) -> Ran:
        out = io.StringIO()
        monkeypatch.setattr("sys.stdout", out)
        argv = [command, "--cluster", cluster or world.cluster, "--kubeconfig", kubeconfig, *flags]
        code = cli_main(argv)
        return Ran(code, out.getvalue())

    return invoke
