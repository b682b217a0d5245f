"""`hybrid-gateway account-check` against the emulators: the EC2, CloudWatch Logs and KMS of a
moto server on loopback, the project's test Kubernetes API server, and an OCI registry on
loopback that answers as ECR Public does (anonymous HEAD -> 401 with a Bearer challenge, a pull
token from the challenge's realm, then the manifest: the OCI distribution spec's token flow,
distribution/distribution docs/spec/auth/token.md). moto has no ECR Public service, hence the
registry.

What the emulators cannot judge (IAM: moto answers every DryRun with DryRunOperation; whether
a managed node group tags the interfaces) is what the command is for in a real account; here
each check is shown to pass on a world that is right and to fail, naming what it saw, on one
that is not.
"""

from __future__ import annotations

import io
import ipaddress
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from kubernetes import client, config

from eks_hybrid_gateway.capacity import ENI_CLUSTER_TAG_KEY
from eks_hybrid_gateway.hybrid_cilium import EKS_CILIUM_CHART_REPOSITORY
from hybrid_gateway.cli import main as cli_main
from hybrid_gateway.ops.account_check import (
    CILIUM_CHART_REPOSITORY,
    CLUSTER_TAG_KEY,
    AccountCheck,
    Clients,
    Options,
    account_checks,
    run_account_checks,
)
from hybrid_gateway_contract import GATEWAY_NODE_LABEL_KEY, GATEWAY_NODE_LABEL_VALUE
from hybrid_gateway_testkit.ops_world import publish_cilium
from kube_test_apiserver import ApiServer

CLUSTER = "hybrid-acct"
CHART_TAG = "1.18.8-1"
LOG_GROUP = "/hybrid-gateway/route-cleanup"
TOKEN = "pull-token-1"


# --- an OCI registry on loopback, answering as ECR Public -----------------------------------------
class _Registry(BaseHTTPRequestHandler):
    tags: frozenset[str] = frozenset({CHART_TAG})

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/token/" and query.get("scope") == [
            f"repository:{CILIUM_CHART_REPOSITORY}:pull"
        ]:
            body = json.dumps({"token": TOKEN}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        prefix = f"/v2/{CILIUM_CHART_REPOSITORY}/manifests/"
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            address = cast(tuple[str, int], self.server.server_address)
            host = f"http://{address[0]}:{address[1]}"
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="{host}/token/",service="public.ecr.aws",scope="aws"',
            )
        elif self.path.startswith(prefix) and self.path[len(prefix) :] in self.tags:
            self.send_response(200)
            self.send_header("Docker-Content-Digest", "sha256:" + "0" * 64)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- an account: a gateway node, a KMS-encrypted log group, Cilium in the cluster -----------------
def _aws(moto_addr: tuple[str, int], service: str) -> Any:
    host, port = moto_addr
    session: Any = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client(service, endpoint_url=f"http://{host}:{port}")


@pytest.fixture
def account(moto_addr: tuple[str, int]) -> dict[str, Any]:
    """One test's account in the session's emulator: its own cluster name and log group."""
    cluster = f"{CLUSTER}-{uuid.uuid4().hex[:8]}"
    log_group = f"{LOG_GROUP}-{cluster}"
    ec2 = _aws(moto_addr, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    # A managed node group applies the launch template's instance tags, not its interface tags
    # (aws/containers-roadmap#1496): the interface is created untagged.
    instance = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="c6in.xlarge",
        SubnetId=subnet,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": GATEWAY_NODE_LABEL_KEY, "Value": GATEWAY_NODE_LABEL_VALUE},
                    {"Key": CLUSTER_TAG_KEY, "Value": cluster},
                ],
            }
        ],
    )["Instances"][0]
    eni = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    kms = _aws(moto_addr, "kms")
    key = kms.create_key(Description="route cleanup logs")["KeyMetadata"]["Arn"]
    logs = _aws(moto_addr, "logs")
    logs.create_log_group(logGroupName=log_group, kmsKeyId=key)
    return {
        "ec2": ec2,
        "logs": logs,
        "eni": eni,
        "key": key,
        "cluster": cluster,
        "logs_name": log_group,
    }


@pytest.fixture
def kube(kube_api: ApiServer) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin-user")))
    try:
        yield api
    finally:
        api.close()


def _cilium_config(kube: client.ApiClient, vtep_mask: str | None) -> None:
    publish_cilium(kube, **({} if vtep_mask is None else {"vtep-mask": vtep_mask}))


def _options(registry: str, **changes: Any) -> Options:
    base: dict[str, Any] = {
        "cluster": CLUSTER,
        "region": "us-east-1",
        "instance_type": "c6in.xlarge",
        "zones": ("us-east-1a",),
        "chart_version": CHART_TAG,
        "log_group": LOG_GROUP,
        "vpc_cidrs": (ipaddress.IPv4Network("10.0.0.0/16"),),
        "ecr_public": registry,
    }
    return Options(**(base | changes))


def _run(options: Options, clients: Clients) -> tuple[int, dict[str, tuple[str, str]]]:
    out = io.StringIO()
    checks: list[AccountCheck] = account_checks(options, lambda: clients)
    code = run_account_checks(checks, execute=True, out=out)
    results: dict[str, tuple[str, str]] = {}
    name = ""
    seen = ""
    for line in out.getvalue().splitlines():
        if not line.startswith(" "):
            name = line
        elif line.strip().startswith("seen:"):
            seen = line.split(":", 1)[1].strip()
        elif line.strip().startswith("result:"):
            results[name] = (line.split(":", 1)[1].strip(), seen)
    return code, results


def test_the_names_it_looks_for_are_the_constructs() -> None:
    assert CLUSTER_TAG_KEY == ENI_CLUSTER_TAG_KEY
    assert f"oci://public.ecr.aws/{CILIUM_CHART_REPOSITORY}" == EKS_CILIUM_CHART_REPOSITORY


def test_dry_run_prints_commands_and_answers_and_calls_nothing(registry: str) -> None:
    def no_clients() -> Clients:
        raise AssertionError("a dry run must not build a client")

    out = io.StringIO()
    code = run_account_checks(
        account_checks(_options(registry), no_clients), execute=False, out=out
    )
    text = out.getvalue()
    assert code == 0
    for name in (
        "ENI-TAGS",
        "SOURCE-DEST-DRYRUN",
        "CILIUM-CHART-TAG",
        "CILIUM-VTEP",
        "INSTANCE-TYPE-ZONES",
        "LOG-STREAM-KMS",
    ):
        assert f"{name}\n  command:  " in text
    assert "--no-source-dest-check --dry-run" in text
    assert f"helm show chart oci://public.ecr.aws/eks/cilium/cilium --version {CHART_TAG}" in text
    assert text.count("  expected: ") == 6
    assert "seen:" not in text
    assert text.endswith("dry run: nothing was called; run again with --execute\n")


def test_a_right_account_passes_every_check(
    registry: str, account: dict[str, Any], kube: client.ApiClient
) -> None:
    # What the boot script does on a gateway node.
    account["ec2"].modify_network_interface_attribute(
        NetworkInterfaceId=account["eni"], SourceDestCheck={"Value": False}
    )
    _cilium_config(kube, "255.255.0.0")
    clients = Clients(ec2=account["ec2"], logs=account["logs"], kube_api=kube)
    options = _options(registry, cluster=account["cluster"], log_group=account["logs_name"])
    code, results = _run(options, clients)
    assert {name: result for name, (result, _seen) in results.items()} == dict.fromkeys(
        results, "PASS"
    )
    assert len(results) == 6 and code == 0
    assert "launch-template tags absent" in results["ENI-TAGS"][1]
    assert results["SOURCE-DEST-DRYRUN"][1] == f"{account['eni']}: DryRunOperation"
    assert "served v2; vtep-mask=255.255.0.0" in results["CILIUM-VTEP"][1]
    assert account["key"] in results["LOG-STREAM-KMS"][1]
    # The stream it wrote to find out is gone again.
    streams = account["logs"].describe_log_streams(logGroupName=account["logs_name"])["logStreams"]
    assert streams == []


def test_a_wrong_account_fails_each_check_naming_what_it_saw(
    registry: str, account: dict[str, Any], kube: client.ApiClient
) -> None:
    _cilium_config(kube, None)  # agent default /24 under a /16 VPC CIDR
    clients = Clients(ec2=account["ec2"], logs=account["logs"], kube_api=kube)
    options = _options(
        registry,
        cluster=account["cluster"],
        zones=("us-east-1a", "us-east-1z"),
        chart_version="1.15.0-1",
        log_group="/missing",
    )
    code, results = _run(options, clients)
    assert code == 1
    failed = {name: seen for name, (result, seen) in results.items() if result == "FAIL"}
    assert set(failed) == {
        "ENI-TAGS",
        "CILIUM-CHART-TAG",
        "CILIUM-VTEP",
        "INSTANCE-TYPE-ZONES",
        "LOG-STREAM-KMS",
    }
    assert "SourceDestCheck=True" in failed["ENI-TAGS"]
    assert failed["CILIUM-CHART-TAG"] == "eks/cilium/cilium:1.15.0-1: HTTP 404 Not Found"
    assert "vtep-mask=<unset: agent default 255.255.255.0>" in failed["CILIUM-VTEP"]
    assert "vtep.mask=255.255.0.0" in failed["CILIUM-VTEP"]  # what to set, from the daemon
    assert failed["INSTANCE-TYPE-ZONES"].endswith("; not in us-east-1z")
    assert failed["LOG-STREAM-KMS"] == "log group /missing not found"


def test_no_gateway_node_and_no_registry_are_failures_not_crashes(
    account: dict[str, Any], kube: client.ApiClient
) -> None:
    clients = Clients(ec2=account["ec2"], logs=account["logs"], kube_api=kube)
    code, results = _run(
        _options("http://127.0.0.1:9", cluster=f"no-gateway-{account['cluster']}"), clients
    )  # port 9 (discard) on loopback: nothing listens
    assert code == 1
    assert results["ENI-TAGS"] == (
        "FAIL",
        "no running gateway node carries the gateway and cluster tags",
    )
    assert results["SOURCE-DEST-DRYRUN"] == ("FAIL", "no running gateway node to ask about")
    assert results["CILIUM-CHART-TAG"][0] == "FAIL"
    assert "not readable" in results["CILIUM-CHART-TAG"][1]
    assert results["CILIUM-VTEP"] == (
        "FAIL",
        "no ciliumvtepconfigs.cilium.io CRD: Cilium without CiliumVTEPConfig support",
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--vpc-cidrs", "10.0.0.0/33"], "--vpc-cidrs: '10.0.0.0/33' is not an IPv4 CIDR"),
        (["--zones", " , "], "--zones: ' , ' names no zone"),
    ],
)
def test_bad_flags_are_named_with_their_value(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"--cluster": CLUSTER, "--region": "us-east-1", "--zones": "us-east-1a"}
    base |= {"--vpc-cidrs": "10.0.0.0/16"}
    base |= dict(zip(flags[::2], flags[1::2], strict=True))
    argv = ["account-check", *[x for kv in base.items() for x in kv]]
    assert cli_main(argv) == 2
    assert capsys.readouterr().err == f"hybrid-gateway account-check: {message}\n"
