"""The gateway composed into larger platforms: another stack than its cluster, inside a Stage.

aws-cdk-lib turns a reference between stacks into an export/import and a stack dependency; a
reference in each direction is a cycle and fails synthesis. The gateway owns its manifests
(aws-eks-v2/lib/k8s-manifest.ts: the manifest's scope only takes the cluster's kubectl
provider and barrier), so its stack refers to the cluster's and never the reverse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_eks_v2 as eks

CLUSTER = "HybridGatewayPlatformCluster"
GATEWAY = "HybridGatewayPlatformGateway"
ENV = cdk.Environment(account="123456789012", region="us-west-2")
NETWORKS = {"remote_node_networks": ["192.168.100.0/24"], "remote_pod_networks": ["10.85.0.0/16"]}


def _stack_dependencies(outdir: Path) -> dict[str, list[str]]:
    """Stack (by display name, e.g. `Prod/PlatformGateway`) -> the stacks deployed before it."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    stacks = {
        artifact_id: artifact
        for artifact_id, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    return {
        artifact.get("displayName", artifact_id): sorted(
            stacks[d].get("displayName", d) for d in artifact.get("dependencies", []) if d in stacks
        )
        for artifact_id, artifact in stacks.items()
    }


def test_gateway_stack_depends_on_the_cluster_stack_only(synthesized: Any) -> None:
    dependencies = _stack_dependencies(synthesized.outdir)
    assert dependencies[GATEWAY] == [CLUSTER]
    assert dependencies[CLUSTER] == []


def test_references_go_from_the_gateway_stack_to_the_cluster_stack(synthesized: Any) -> None:
    cluster_text = json.dumps(synthesized.templates[CLUSTER])
    gateway_text = json.dumps(synthesized.templates[GATEWAY])
    assert "Fn::ImportValue" not in cluster_text
    imports = {
        value["Fn::ImportValue"]
        for value in _walk(synthesized.templates[GATEWAY])
        if isinstance(value, dict) and "Fn::ImportValue" in value
    }
    assert imports, "the gateway stack uses the cluster stack's cluster, VPC and provider"
    assert all(name.startswith(f"{CLUSTER}:") for name in imports)
    exports = {
        o["Export"]["Name"] for o in synthesized.templates[CLUSTER].get("Outputs", {}).values()
    }
    assert imports == exports
    assert "Outputs" not in synthesized.templates[GATEWAY] or not any(
        "Export" in o for o in synthesized.templates[GATEWAY]["Outputs"].values()
    )
    assert "HybridGatewayManifests" in gateway_text


def test_the_gateway_stack_owns_its_manifest_and_nodes(synthesized: Any, cfn: Any) -> None:
    gateway = synthesized.templates[GATEWAY]
    cluster = synthesized.templates[CLUSTER]
    [(manifest_id, manifest)] = [
        (k, v)
        for k, v in cfn.resources_of_type(gateway, "Custom::AWSCDK-EKS-KubernetesResource")
        if k.startswith("HybridGatewayManifests")
    ]
    assert "Fn::ImportValue" in manifest["Properties"]["ServiceToken"]
    assert cfn.resources_of_type(gateway, "AWS::EKS::Nodegroup")
    assert cfn.resources_of_type(gateway, "AWS::EKS::PodIdentityAssociation")
    assert not any(k.startswith("HybridGateway") for k in cluster["Resources"]), (
        "nothing of the gateway lands in the cluster stack"
    )
    # The agent add-on is the cluster's (aws-cdk-lib creates it once, in the cluster's scope).
    assert any(
        v["Properties"]["AddonName"] == "eks-pod-identity-agent"
        for _, v in cfn.resources_of_type(cluster, "AWS::EKS::Addon")
    )
    assert manifest_id


def _walk(value: Any) -> Any:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both example shapes inside one Stage, synthesized like a pipeline stage would be."""
    from examples.new_cluster import NewClusterWithGatewayStack
    from examples.two_stacks import add_platform

    from eks_hybrid_gateway import GatewayImage

    image = GatewayImage.from_registry("123456789012.dkr.ecr.us-west-2.amazonaws.com/gw:1")
    outdir = tmp_path_factory.mktemp("staged")
    app = cdk.App(outdir=str(outdir))
    stage = cdk.Stage(app, "Prod", env=ENV)
    NewClusterWithGatewayStack(stage, "OneStack", vpc_cidr="10.0.0.0/16", image=image, **NETWORKS)
    add_platform(stage, "Platform", env=ENV, vpc_cidr="10.5.0.0/16", image=image, **NETWORKS)
    app.synth()
    return outdir / "assembly-Prod"


def test_the_construct_inside_a_stage_synthesizes_in_deploy_order(staged: Path) -> None:
    dependencies = _stack_dependencies(staged)
    assert dependencies == {
        "Prod/OneStack": [],
        "Prod/PlatformCluster": [],
        "Prod/PlatformGateway": ["Prod/PlatformCluster"],
    }
    [template] = staged.glob("ProdPlatformGateway*.template.json")
    gateway = json.loads(template.read_text())
    imports = {
        v["Fn::ImportValue"]
        for v in _walk(gateway)
        if isinstance(v, dict) and "Fn::ImportValue" in v
    }
    assert imports and all(name.startswith("Prod-PlatformCluster:") for name in imports)


def test_a_manifest_in_the_cluster_scope_tied_to_the_gateway_would_be_a_cycle() -> None:
    """The shape this replaces fails: the check above can tell the difference."""
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_iam as iam
    from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

    app = cdk.App()
    cluster_stack = cdk.Stack(app, "C", env=ENV)
    vpc = ec2.Vpc(cluster_stack, "Vpc", max_azs=2)
    cluster = eks.Cluster(
        cluster_stack,
        "Cluster",
        version=eks.KubernetesVersion.V1_35,
        vpc=vpc,
        kubectl_provider_options=eks.KubectlProviderOptions(
            kubectl_layer=KubectlV35Layer(cluster_stack, "Kubectl")
        ),
    )
    gateway_stack = cdk.Stack(app, "G", env=ENV)
    role = iam.Role(gateway_stack, "Role", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    manifest = cluster.add_manifest("M", {"apiVersion": "v1", "kind": "Namespace"})
    manifest.node.add_dependency(role)
    iam.Policy(
        gateway_stack,
        "UsesCluster",
        roles=[role],
        statements=[iam.PolicyStatement(actions=["eks:*"], resources=[cluster.cluster_arn])],
    )
    with pytest.raises(RuntimeError, match=r"(?i)cycl"):
        app.synth()
