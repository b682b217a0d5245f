"""One CDK app with every stack the tests look at, synthesized once per session.

jsii starts one Node kernel per process (~2 s); a synth after that costs ~0.1-1 s. The app runs
with the cdk-nag AwsSolutions validation plugin, so synthesis itself fails on any
unacknowledged finding.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# jsii runs on the project's Node 22 (no end-of-life banner, faster); never phone home.
os.environ["PATH"] = f"{REPO / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
if str(REPO) not in sys.path:  # the example apps are the `examples` package at the repo root
    sys.path.insert(0, str(REPO))

Template = dict[str, Any]

ACCOUNT = "123456789012"
REGION = "us-west-2"
REGISTRY_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/eks-hybrid-nodes-gateway:0.1.0"
REMOTE_NODE_NETWORKS = ["192.168.100.0/24"]
REMOTE_POD_NETWORKS = ["10.85.0.0/16"]


@dataclass
class Synthesized:
    """The cloud assembly: templates by stack name and where they were written."""

    outdir: Path
    templates: dict[str, Template]
    template_files: list[Path]
    assets: dict[str, Any]
    acknowledgements: list[dict[str, str]] = field(default_factory=list)


def _asset_image_stack(app: Any, build_context: Path) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from examples.existing_cluster import ExistingClusterGatewayStack

    from eks_hybrid_gateway import GatewayImage

    ExistingClusterGatewayStack(
        app,
        "AssetImage",
        env=cdk.Environment(account=ACCOUNT, region=REGION),
        cluster_name="arm-cluster",
        kubectl_role_arn=f"arn:aws:iam::{ACCOUNT}:role/kubectl",
        cluster_security_group_id="sg-0123456789abcdef0",
        vpc_id="vpc-0123456789abcdef0",
        vpc_cidr="10.3.0.0/16",
        availability_zones=["us-west-2a", "us-west-2b"],
        private_subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        private_route_table_ids=["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"],
        remote_node_networks=REMOTE_NODE_NETWORKS,
        remote_pod_networks=REMOTE_POD_NETWORKS,
        image=GatewayImage.from_asset(build_context),
        instance_type=ec2.InstanceType("c7gn.xlarge"),
    )


def synth_or_report(app: Any, outdir: Path) -> Any:
    """`app.synth()`; a validation failure (cdk-nag) fails the test with the plugin report."""
    try:
        return app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        detail = report.read_text() if report.exists() else ""
        raise AssertionError(f"synthesis failed: {exc}\n{detail[:20000]}") from exc


@pytest.fixture(scope="session")
def synth_checked() -> Callable[[Any, Path], Any]:
    """`synth_or_report`, for fixtures that build their own app."""
    return synth_or_report


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks
    from examples.app import IMAGE_KEY, build

    # A build context shaped like the repository (only what the Dockerfile copies).
    build_context = tmp_path_factory.mktemp("build-context")
    (build_context / "runtime").mkdir()
    (build_context / "contract").mkdir()
    (build_context / "runtime" / "Dockerfile").write_text("FROM scratch\nCOPY runtime /app\n")
    (build_context / "runtime" / "app.py").write_text("print('gateway')\n")
    (build_context / "contract" / "c.py").write_text("X = 1\n")
    (build_context / "unrelated.txt").write_text("not part of the image\n")

    outdir = tmp_path_factory.mktemp("cdk.out")
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    context[IMAGE_KEY] = REGISTRY_IMAGE
    app = cdk.App(outdir=str(outdir), context=context)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    build(app)
    _asset_image_stack(app, build_context)
    assembly = synth_or_report(app, outdir)

    templates: dict[str, Template] = {}
    for stack in assembly.stacks:
        templates[stack.stack_name] = json.loads(Path(stack.template_full_path).read_text())
    acknowledgements = [
        {"path": node.node.path, "id": rule_id, "reason": reason}
        for node in app.node.find_all()
        for entry in node.node.metadata
        if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        for rule_id, reason in entry.data.items()
    ]
    assets = {
        stack.stack_name: json.loads((outdir / f"{stack.stack_name}.assets.json").read_text())
        for stack in assembly.stacks
    }
    return Synthesized(
        outdir=outdir,
        templates=templates,
        template_files=sorted(outdir.glob("*.template.json")),
        assets=assets,
        acknowledgements=acknowledgements,
    )


class CfnHelpers:
    """Reading synthesized templates (importable test helpers do not exist in importlib mode)."""

    @staticmethod
    def resources_of_type(template: Template, cfn_type: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, v) for k, v in template["Resources"].items() if v["Type"] == cfn_type]

    @staticmethod
    def single(items: Any) -> tuple[str, dict[str, Any]]:
        found = list(items)
        assert len(found) == 1, f"expected exactly one, found {[k for k, _ in found]}"
        only: tuple[str, dict[str, Any]] = found[0]
        return only

    @staticmethod
    def render(value: Any) -> Any:
        """Intrinsics as readable placeholders: Ref -> <Ref:X>, GetAtt -> <GetAtt:X.Y>,
        ImportValue -> <ImportValue:name>."""
        if isinstance(value, dict) and len(value) == 1:
            [(key, arg)] = value.items()
            if key == "Ref":
                return f"<Ref:{arg}>"
            if key == "Fn::GetAtt":
                return f"<GetAtt:{'.'.join(arg)}>"
            if key == "Fn::ImportValue" and isinstance(arg, str):
                return f"<ImportValue:{arg}>"
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(CfnHelpers.render(p)) for p in parts)
            if key == "Fn::Base64":
                return CfnHelpers.render(arg)
            if key == "Fn::Sub" and isinstance(arg, str):
                return arg
        if isinstance(value, dict):
            return {k: CfnHelpers.render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [CfnHelpers.render(v) for v in value]
        return value

    @staticmethod
    def manifest_objects(template: Template, id_part: str) -> list[dict[str, Any]]:
        """The Kubernetes objects of the one KubernetesResource whose logical ID has `id_part`."""
        matches = [
            v
            for k, v in template["Resources"].items()
            if v["Type"] == "Custom::AWSCDK-EKS-KubernetesResource" and id_part in k
        ]
        assert len(matches) == 1, f"expected one manifest resource with {id_part!r}"
        rendered = CfnHelpers.render(matches[0]["Properties"]["Manifest"])
        objects: list[dict[str, Any]] = json.loads(rendered)
        return objects


@pytest.fixture(scope="session")
def cfn() -> type[CfnHelpers]:
    return CfnHelpers


def _imported_vpc_and_cluster(stack: Any) -> tuple[Any, Any]:
    """An imported VPC (10.0.0.0/16, 2 AZs, 2 route tables) and aws_eks cluster `c` in `stack`."""
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_eks as eks
    from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

    vpc = ec2.Vpc.from_vpc_attributes(
        stack,
        "Vpc",
        vpc_id="vpc-0123456789abcdef0",
        vpc_cidr_block="10.0.0.0/16",
        availability_zones=["us-west-2a", "us-west-2b"],
        private_subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        private_subnet_route_table_ids=["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"],
    )
    cluster = eks.Cluster.from_cluster_attributes(
        stack,
        "Cluster",
        cluster_name="c",
        vpc=vpc,
        cluster_security_group_id="sg-0123456789abcdef0",
        kubectl_role_arn="arn:aws:iam::123456789012:role/kubectl",
        kubectl_layer=KubectlV35Layer(stack, "KubectlLayer"),
    )
    return vpc, cluster


@pytest.fixture(scope="session")
def imported_vpc_and_cluster() -> Callable[[Any], tuple[Any, Any]]:
    """`_imported_vpc_and_cluster`, for fixtures that build their own app."""
    return _imported_vpc_and_cluster


@pytest.fixture
def make_gateway() -> Callable[..., Any]:
    """A fresh app with an imported VPC (10.0.0.0/16, 2 AZs) and cluster; props overridable."""
    import aws_cdk as cdk

    from eks_hybrid_gateway import GatewayImage, HybridNodesGateway

    def build(stacks: list[Any] | None = None, **overrides: Any) -> HybridNodesGateway:
        """`stacks`, if given, receives the stack (to inspect it after a rejected prop)."""
        app = cdk.App()
        stack = cdk.Stack(app, "S", env=cdk.Environment(account="123456789012", region="us-west-2"))
        if stacks is not None:
            stacks.append(stack)
        vpc, cluster = _imported_vpc_and_cluster(stack)
        props: dict[str, Any] = {
            "cluster": cluster,
            "vpc": vpc,
            "remote_node_networks": ["192.168.100.0/24"],
            "remote_pod_networks": ["10.85.0.0/16"],
            "image": GatewayImage.from_registry(REGISTRY_IMAGE),
            **overrides,
        }
        return HybridNodesGateway(stack, "Gateway", **props)

    return build


@pytest.fixture
def owned_cluster() -> Callable[..., tuple[Any, Any, Any]]:
    """A fresh stack with a VPC and a cluster the app creates: `(stack, vpc, cluster)`.

    `module` is "v2" (aws_eks_v2, with a kubectl provider unless `kubectl=False`) or "v1";
    `capacity_type` is an aws_eks_v2 `DefaultCapacityType` (default: aws-cdk-lib's, Auto Mode).
    """
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_eks as eks_v1
    from aws_cdk import aws_eks_v2 as eks
    from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

    def build(
        module: str = "v2", capacity_type: Any = None, kubectl: bool = True
    ) -> tuple[Any, Any, Any]:
        stack = cdk.Stack(
            cdk.App(), "S", env=cdk.Environment(account="123456789012", region="us-west-2")
        )
        vpc = ec2.Vpc(stack, "Vpc", max_azs=2, ip_addresses=ec2.IpAddresses.cidr("10.4.0.0/16"))
        if module == "v1":
            cluster = eks_v1.Cluster(
                stack,
                "Cluster",
                version=eks_v1.KubernetesVersion.V1_35,
                vpc=vpc,
                kubectl_layer=KubectlV35Layer(stack, "Kubectl"),
                default_capacity=0,
            )
            return stack, vpc, cluster
        options: dict[str, Any] = {}
        if capacity_type is not None:
            options = {"default_capacity_type": capacity_type, "default_capacity": 0}
        if kubectl:
            options["kubectl_provider_options"] = eks.KubectlProviderOptions(
                kubectl_layer=KubectlV35Layer(stack, "Kubectl")
            )
        owned = eks.Cluster(
            stack, "Cluster", version=eks.KubernetesVersion.V1_35, vpc=vpc, **options
        )
        return stack, vpc, owned

    return build


@pytest.fixture
def gateway_on() -> Callable[..., Any]:
    """`HybridNodesGateway` "Gateway" in `stack` for `cluster` with the test networks."""
    from eks_hybrid_gateway import GatewayImage, HybridNodesGateway

    def build(stack: Any, vpc: Any, cluster: Any, **props: Any) -> HybridNodesGateway:
        return HybridNodesGateway(
            stack,
            "Gateway",
            cluster=cluster,
            vpc=vpc,
            remote_node_networks=REMOTE_NODE_NETWORKS,
            remote_pod_networks=REMOTE_POD_NETWORKS,
            image=GatewayImage.from_registry("registry.example/gw:1"),
            **props,
        )

    return build
