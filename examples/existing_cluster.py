"""An existing EKS cluster, imported by attributes, gets a gateway (aws_eks v1 import path).

What the imported cluster needs (aws-cdk-lib aws-eks/lib/kubectl-provider.ts: the kubectl
handler Lambda assumes `kubectl_role_arn`; its own execution role is only granted
`sts:AssumeRole` on it):
- `kubectl_role_arn`: a role with cluster-admin rights in the cluster (an EKS access entry with
  `AmazonEKSClusterAdminPolicy`, or an `aws-auth` mapping to `system:masters`) whose trust
  policy lets the kubectl handler assume it. Pass `kubectl_lambda_role` (a role you create) and
  trust exactly that role's ARN; without it the handler's role is generated, and the kubectl
  role would have to trust the account (`arn:aws:iam::ACCOUNT:root`), leaving the decision to
  IAM policies.
- the kubectl layer matching the cluster's Kubernetes version (`KubectlV35Layer`).
- a private-only API endpoint: `kubectl_private_subnet_ids` (subnets that reach the endpoint
  and STS, EKS, Lambda, CloudWatch Logs and S3: the provider framework's function in the same
  subnets invokes the handler and answers CloudFormation through a pre-signed S3 URL;
  docs/construct.md, "Private VPCs without a NAT gateway") and `kubectl_security_group_id`
  (allowed by the cluster security group on 443) put the kubectl handler in the VPC. An
  imported `kubectl_lambda_role` does not get aws-cdk-lib's managed policies
  (`addManagedPolicy` is a no-op on imported roles): the gateway attaches the ENI and ECR
  Public grants inline (`eks_hybrid_gateway.kubectl_access`); give the role
  `AWSLambdaBasicExecutionRole` yourself.
The Pod Identity agent add-on is installed only when `install_pod_identity_agent` is set: an
existing cluster may have it already, and creating it twice fails the deployment.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import constructs
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam
from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

from eks_hybrid_gateway import GatewayImage, HybridNodesGateway
from eks_hybrid_gateway.nag import acknowledge_all
from examples.nag import KUBECTL_PROVIDER_FINDINGS, kubectl_provider_wiring_findings


class ExistingClusterGatewayStack(cdk.Stack):
    """A gateway for a cluster and VPC that live outside this app."""

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        cluster_name: str,
        kubectl_role_arn: str,
        cluster_security_group_id: str,
        vpc_id: str,
        vpc_cidr: str,
        availability_zones: Sequence[str],
        private_subnet_ids: Sequence[str],
        private_route_table_ids: Sequence[str],
        remote_node_networks: Sequence[str],
        remote_pod_networks: Sequence[str],
        public_subnet_ids: Sequence[str] = (),
        public_route_table_ids: Sequence[str] = (),
        kubectl_lambda_role_arn: str | None = None,
        kubectl_private_subnet_ids: Sequence[str] | None = None,
        kubectl_security_group_id: str | None = None,
        install_pod_identity_agent: bool = False,
        image: GatewayImage | None = None,
        instance_type: ec2.InstanceType | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=vpc_id,
            vpc_cidr_block=vpc_cidr,
            availability_zones=list(availability_zones),
            private_subnet_ids=list(private_subnet_ids),
            private_subnet_route_table_ids=list(private_route_table_ids),
            public_subnet_ids=list(public_subnet_ids) or None,
            public_subnet_route_table_ids=list(public_route_table_ids) or None,
        )
        cluster = eks.Cluster.from_cluster_attributes(
            self,
            "Cluster",
            cluster_name=cluster_name,
            vpc=vpc,
            kubectl_role_arn=kubectl_role_arn,
            kubectl_lambda_role=(
                iam.Role.from_role_arn(self, "KubectlLambdaRole", kubectl_lambda_role_arn)
                if kubectl_lambda_role_arn
                else None
            ),
            kubectl_layer=KubectlV35Layer(self, "KubectlLayer"),
            kubectl_private_subnet_ids=(
                list(kubectl_private_subnet_ids) if kubectl_private_subnet_ids else None
            ),
            kubectl_security_group_id=kubectl_security_group_id,
            cluster_security_group_id=cluster_security_group_id,
        )
        # The kubectl provider of an imported cluster is a nested stack at the stack's root.
        acknowledge_all(
            self,
            {
                **KUBECTL_PROVIDER_FINDINGS,
                **kubectl_provider_wiring_findings(
                    "Handler886CB40B", "HandlerHasEcrPublic195AF58A"
                ),
            },
        )
        # The route tables of every subnet the cluster's ENIs and load balancers use: the
        # imported VPC's public and private subnets (the construct's default).
        self.gateway = HybridNodesGateway(
            self,
            "HybridGateway",
            cluster=cluster,
            vpc=vpc,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            install_pod_identity_agent=install_pod_identity_agent,
            image=image,
            instance_type=instance_type,
        )
