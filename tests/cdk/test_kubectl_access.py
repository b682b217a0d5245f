"""An imported `aws_eks` cluster whose kubectl handler role is imported too.

aws-cdk-lib's kubectl provider (aws-eks/lib/kubectl-provider.ts) attaches AWS managed policies to
the handler role with `addManagedPolicy`, which on an imported role only warns
(aws-iam/lib/private/imported-role.ts). The gateway adds the missing statements inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Annotations, Match, Template
from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

from eks_hybrid_gateway import GatewayImage, HybridCiliumOptions, HybridNodesGateway

ACCOUNT = "123456789012"
HANDLER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/kubectl-handler"
MANAGED_POLICY_DROPPED = "IRoleCantBeUsedWithIManagedPolicy"


def _gateway_stack(
    *, lambda_role: str | None, private: bool, hybrid_cilium: bool = False
) -> cdk.Stack:
    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account=ACCOUNT, region="us-west-2"))
    vpc = ec2.Vpc.from_vpc_attributes(
        stack,
        "Vpc",
        vpc_id="vpc-0123456789abcdef0",
        vpc_cidr_block="10.0.0.0/16",
        availability_zones=["us-west-2a", "us-west-2b"],
        private_subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        private_subnet_route_table_ids=["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"],
    )
    role: Any = None
    if lambda_role == "imported":
        role = iam.Role.from_role_arn(stack, "HandlerRole", HANDLER_ROLE_ARN)
    elif lambda_role == "created":
        role = iam.Role(
            stack, "HandlerRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
        )
    cluster = eks.Cluster.from_cluster_attributes(
        stack,
        "Cluster",
        cluster_name="c",
        vpc=vpc,
        cluster_security_group_id="sg-0123456789abcdef0",
        kubectl_role_arn=f"arn:aws:iam::{ACCOUNT}:role/kubectl",
        kubectl_lambda_role=role,
        kubectl_layer=KubectlV35Layer(stack, "KubectlLayer"),
        kubectl_private_subnet_ids=(
            ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"] if private else None
        ),
        kubectl_security_group_id="sg-0123456789abcdef9" if private else None,
    )
    HybridNodesGateway(
        stack,
        "Gateway",
        cluster=cluster,
        vpc=vpc,
        remote_node_networks=["192.168.100.0/24"],
        remote_pod_networks=["10.85.0.0/16"],
        image=GatewayImage.from_registry("registry.example/gw:1"),
        hybrid_cilium=HybridCiliumOptions() if hybrid_cilium else None,
    )
    return stack


def _policies_on_handler_role(template: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (logical_id, resource)
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Policy"
        and resource["Properties"].get("Roles") == ["kubectl-handler"]
    ]


def _actions(policy: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


def _provider_stack(template: Mapping[str, Any]) -> Mapping[str, Any]:
    [provider] = [
        resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudFormation::Stack" and "KubectlProvider" in logical_id
    ]
    found: Mapping[str, Any] = provider
    return found


def test_an_imported_handler_role_in_the_vpc_gets_the_eni_and_ecr_public_grants() -> None:
    stack = _gateway_stack(lambda_role="imported", private=True, hybrid_cilium=True)
    # The aws-cdk-lib behaviour this works around: its managed policies are dropped.
    warnings = Annotations.from_stack(stack).find_warning(
        "*", Match.string_like_regexp(MANAGED_POLICY_DROPPED)
    )
    assert warnings, "aws-cdk-lib no longer drops managed policies on imported roles?"
    template = Template.from_stack(stack).to_json()
    grants = [
        (logical_id, policy)
        for logical_id, policy in _policies_on_handler_role(template)
        if "ec2:CreateNetworkInterface" in _actions(policy)
    ]
    [(policy_id, policy)] = grants
    assert {
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ecr-public:GetAuthorizationToken",
        "sts:GetServiceBearerToken",
    } <= _actions(policy)
    # Lambda checks the ENI permissions when it creates the handler: the policy comes first.
    assert policy_id in _provider_stack(template)["DependsOn"]


def test_without_the_vpc_or_cilium_nothing_is_added() -> None:
    template = Template.from_stack(_gateway_stack(lambda_role="imported", private=False))
    actions = set().union(*(_actions(p) for _, p in _policies_on_handler_role(template.to_json())))
    assert not actions & {"ec2:CreateNetworkInterface", "ecr-public:GetAuthorizationToken"}


def test_only_the_ecr_public_login_when_the_handler_is_outside_the_vpc() -> None:
    stack = _gateway_stack(lambda_role="imported", private=False, hybrid_cilium=True)
    policies = _policies_on_handler_role(Template.from_stack(stack).to_json())
    granted = set().union(*(_actions(p) for _, p in policies))
    assert "ecr-public:GetAuthorizationToken" in granted
    assert "ec2:CreateNetworkInterface" not in granted


def test_a_handler_role_the_app_creates_gets_aws_cdk_libs_managed_policies() -> None:
    stack = _gateway_stack(lambda_role="created", private=True, hybrid_cilium=True)
    template = Template.from_stack(stack).to_json()
    [role] = [
        r
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and k.startswith("HandlerRole")
    ]
    assert "AWSLambdaVPCAccessExecutionRole" in str(role["Properties"]["ManagedPolicyArns"])
    assert not [k for k in template["Resources"] if k.startswith("GatewayKubectlHandlerPolicy")]
