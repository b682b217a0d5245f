"""A new EKS cluster (aws_eks_v2) with hybrid nodes enabled and the gateway in front of them."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import constructs
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk.lambda_layer_kubectl_v33 import KubectlV33Layer

from eks_hybrid_gateway import GatewayImage, HybridNodesGateway, MetricsExposure
from examples.nag import (
    KUBECTL_PROVIDER_FINDINGS,
    NEW_CLUSTER_FINDINGS,
    acknowledge_all,
    kubectl_provider_wiring_findings,
)


def new_hybrid_cluster(
    stack: cdk.Stack,
    *,
    vpc_cidr: str,
    remote_node_networks: Sequence[str],
    remote_pod_networks: Sequence[str],
    service_cidr: str | None = None,
) -> tuple[ec2.Vpc, eks.Cluster]:
    """A two-AZ VPC and an aws_eks_v2 cluster with `remoteNetworkConfig` for hybrid nodes.

    The gateway's manifests are applied through kubectl, hence the kubectl layer.
    """
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
        max_azs=2,
        nat_gateways=1,
        flow_logs={"all": ec2.FlowLogOptions()},
    )
    cluster = eks.Cluster(
        stack,
        "Cluster",
        version=eks.KubernetesVersion.V1_33,
        vpc=vpc,
        service_ipv4_cidr=service_cidr,
        kubectl_provider_options=eks.KubectlProviderOptions(
            kubectl_layer=KubectlV33Layer(stack, "KubectlLayer")
        ),
        remote_node_networks=[eks.RemoteNodeNetwork(cidrs=list(remote_node_networks))],
        remote_pod_networks=[eks.RemotePodNetwork(cidrs=list(remote_pod_networks))],
    )
    acknowledge_all(
        cluster,
        {
            **KUBECTL_PROVIDER_FINDINGS,
            **NEW_CLUSTER_FINDINGS,
            **kubectl_provider_wiring_findings(
                "ClusterKubectlProviderHandler2E05C68A",
                "ClusterKubectlProviderHandlerHasEcrPublic69E09706",
            ),
        },
    )
    return vpc, cluster


class NewClusterWithGatewayStack(cdk.Stack):
    """VPC, cluster with `remoteNetworkConfig`, and a `HybridNodesGateway`."""

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        vpc_cidr: str,
        remote_node_networks: Sequence[str],
        remote_pod_networks: Sequence[str],
        image: GatewayImage | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        vpc, cluster = new_hybrid_cluster(
            self,
            vpc_cidr=vpc_cidr,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
        )
        self.gateway = HybridNodesGateway(
            self,
            "HybridGateway",
            cluster=cluster,
            vpc=vpc,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            image=image,
            metrics=MetricsExposure.SERVICE,
        )
