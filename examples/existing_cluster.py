"""An existing EKS cluster, imported by attributes, gets a gateway (aws_eks v1 import path).

An imported cluster is reached through a kubectl role the cluster trusts (an access entry or an
aws-auth mapping with cluster-admin) and the kubectl layer matching its Kubernetes version.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import constructs
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks
from aws_cdk.lambda_layer_kubectl_v33 import KubectlV33Layer

from eks_hybrid_gateway import GatewayImage, HybridNodesGateway
from examples.nag import (
    KUBECTL_PROVIDER_FINDINGS,
    acknowledge_all,
    kubectl_provider_wiring_findings,
)


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
        )
        cluster = eks.Cluster.from_cluster_attributes(
            self,
            "Cluster",
            cluster_name=cluster_name,
            vpc=vpc,
            kubectl_role_arn=kubectl_role_arn,
            kubectl_layer=KubectlV33Layer(self, "KubectlLayer"),
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
        self.gateway = HybridNodesGateway(
            self,
            "HybridGateway",
            cluster=cluster,
            vpc=vpc,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            image=image,
            instance_type=instance_type,
        )
