"""The construct quick start (README and docs/construct.md) and the deploy commands, run as
written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONSTRUCT_GUIDE = ROOT / "docs" / "construct.md"
#: Where the quick start is written: the README's smallest example and the construct guide's.
QUICK_STARTS = [README, CONSTRUCT_GUIDE]


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("page", QUICK_STARTS, ids=lambda p: p.name)
def test_the_quick_start_builds_a_cluster_whose_managed_nodes_can_run_pods(
    page: Path, cfn: Any
) -> None:
    [code] = _code_blocks(page.read_text(), "python")[:1]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(page), "exec"), namespace)
    from eks_hybrid_gateway import GatewayImage

    app = cdk.App()
    stack = namespace["HybridPlatform"](
        app,
        "Readme",
        image=GatewayImage.from_registry("123456789012.dkr.ecr.us-west-2.amazonaws.com/gw:1"),
        env=cdk.Environment(account="123456789012", region="us-west-2"),
    )
    template = Template.from_stack(stack).to_json()
    [(_, cluster)] = cfn.resources_of_type(template, "AWS::EKS::Cluster")
    assert cluster["Properties"]["ComputeConfig"] == {"Enabled": False}
    assert cluster["Properties"]["BootstrapSelfManagedAddons"] is False
    addons = {
        v["Properties"]["AddonName"]: k
        for k, v in cfn.resources_of_type(template, "AWS::EKS::Addon")
    }
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent"}
    nodegroups = dict(cfn.resources_of_type(template, "AWS::EKS::Nodegroup"))
    assert len(nodegroups) == 2  # system pods + the gateway's dedicated nodes
    for nodegroup in nodegroups.values():
        assert {addons["vpc-cni"], addons["kube-proxy"]} <= set(nodegroup["DependsOn"])
        assert nodegroup["Properties"]["AmiType"].startswith("AL2023")
    ingress = [
        v["Properties"]
        for _, v in cfn.resources_of_type(template, "AWS::EC2::SecurityGroupIngress")
        if v["Properties"].get("FromPort") == 8443
    ]
    [rule] = ingress
    assert "GatewaySecurityGroup" in str(rule["GroupId"])
    assert "Alb" in str(rule["SourceSecurityGroupId"])


def test_the_documented_deploy_commands_name_stacks_of_the_app(synthesized: Any) -> None:
    commands = [
        line.split("#")[0].split()
        for page in QUICK_STARTS
        for block in _code_blocks(page.read_text(), "bash")
        for line in block.splitlines()
        if "cdk deploy" in line
    ]
    assert commands, "the construct guide documents `cdk deploy <stack>`"
    for words in commands:
        assert words[:3] == ["npx", "cdk", "deploy"], words
        [stack] = words[3:]
        assert stack in synthesized.templates, stack
