"""What the kubectl handler of an imported `aws_eks` cluster needs when its role is imported.

aws-cdk-lib's kubectl provider (aws-eks/lib/kubectl-provider.ts) gives its handler function
`AWSLambdaVPCAccessExecutionRole` (when the handler runs in the VPC,
`kubectl_private_subnet_ids`), `AmazonEC2ContainerRegistryReadOnly` and, in the `aws` partition,
`AmazonElasticContainerRegistryPublicReadOnly`, all with `addManagedPolicy`. On a role imported
with `Role.from_role_arn` (the usual `kubectl_lambda_role`), `addManagedPolicy` of an AWS managed
policy does nothing but print a warning (aws-iam/lib/private/imported-role.ts,
`@aws-cdk/aws-iam:IRoleCantBeUsedWithIManagedPolicy`). Then:
- Lambda refuses to create the VPC-bound handler: its execution role needs
  `ec2:CreateNetworkInterface`, `ec2:DescribeNetworkInterfaces` and `ec2:DeleteNetworkInterface`
  (AWS Lambda developer guide, "Giving Lambda functions access to resources in an Amazon VPC");
- the Helm release of `hybrid_cilium` fails to log in to ECR Public: the handler runs
  `aws ecr-public get-login-password --region us-east-1` before `helm pull` of an
  `oci://public.ecr.aws/...` chart (custom-resource-handlers aws-eks/kubectl-handler/helm), which
  needs `ecr-public:GetAuthorizationToken` and `sts:GetServiceBearerToken`.

An inline policy (`AWS::IAM::Policy`) attaches to an imported role of the same account, so the
construct adds exactly these statements that way, and the kubectl provider (a nested stack)
waits for the policy.
"""

from __future__ import annotations

from typing import cast

import constructs
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam

from eks_hybrid_gateway.kubernetes import AnyCluster, is_created_in_app, is_v2_cluster
from eks_hybrid_gateway.nag import acknowledge

#: The ENI actions of AWSLambdaVPCAccessExecutionRole that Lambda checks on a VPC function.
VPC_ACCESS_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
#: `aws ecr-public get-login-password` (ECR Public user guide, registry authentication).
ECR_PUBLIC_LOGIN_ACTIONS = ("ecr-public:GetAuthorizationToken", "sts:GetServiceBearerToken")


def imported_kubectl_handler_role(cluster: AnyCluster) -> iam.IRole | None:
    """The `kubectl_lambda_role` of an imported `aws_eks` cluster, when it is an imported role
    (one the app creates gets aws-cdk-lib's managed policies itself)."""
    if is_v2_cluster(cluster) or is_created_in_app(cluster):
        return None
    role = cast(eks.ICluster, cluster).kubectl_lambda_role
    if role is None or isinstance(role, iam.Role):
        return None
    return role


def grant_imported_kubectl_handler_role(
    scope: constructs.Construct, cluster: AnyCluster, *, ecr_public: bool
) -> iam.Policy | None:
    """Give an imported `kubectl_lambda_role` what aws-cdk-lib's managed policies would have:
    ENI management when the handler runs in the VPC, the ECR Public login when `ecr_public`
    (the construct installs the EKS Cilium chart). None when nothing is missing."""
    role = imported_kubectl_handler_role(cluster)
    if role is None:
        return None
    v1_cluster = cast(eks.ICluster, cluster)
    statements: list[iam.PolicyStatement] = []
    reasons: list[str] = []
    if v1_cluster.kubectl_private_subnets:
        statements.append(
            iam.PolicyStatement(
                sid="KubectlHandlerInVpc", actions=list(VPC_ACCESS_ACTIONS), resources=["*"]
            )
        )
        reasons.append(
            "the ENI actions of AWSLambdaVPCAccessExecutionRole, which Lambda requires for a "
            "VPC-bound function and which support no resource-level scoping at creation"
        )
    if ecr_public:
        statements.append(
            iam.PolicyStatement(
                sid="KubectlHandlerEcrPublicLogin",
                actions=list(ECR_PUBLIC_LOGIN_ACTIONS),
                resources=["*"],
            )
        )
        reasons.append(
            "the ECR Public login of `helm pull` (GetAuthorizationToken and "
            "GetServiceBearerToken support no resource-level permissions)"
        )
    if not statements:
        return None
    policy = iam.Policy(scope, "KubectlHandlerPolicy", roles=[role], statements=statements)
    acknowledge(
        policy,
        "IAM5[Resource::*]",
        "aws-cdk-lib attaches AWS managed policies to the kubectl handler's role, which does "
        "nothing on an imported role; this inline policy grants the same actions: "
        + "; ".join(reasons),
    )
    provider = eks.KubectlProvider.get_or_create(scope, v1_cluster)
    provider.node.add_dependency(policy)
    return policy
