"""A new EKS Auto Mode cluster whose gateway runs on a dedicated Auto Mode NodePool."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import constructs
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk.lambda_layer_kubectl_v33 import KubectlV33Layer

from eks_hybrid_gateway import CapacityType, GatewayImage, HybridNodesGateway, MetricsExposure
from examples.nag import (
    KUBECTL_PROVIDER_FINDINGS,
    NEW_CLUSTER_FINDINGS,
    acknowledge_all,
    kubectl_provider_wiring_findings,
)


class AutoModeGatewayStack(cdk.Stack):
    """Auto Mode cluster (the aws_eks_v2 default) + gateway nodes from a NodePool/NodeClass.

    The gateway programs only the private subnets' route tables here, and exposes its metrics
    to the Prometheus Operator through a PodMonitor.
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        vpc_cidr: str,
        remote_node_networks: Sequence[str],
        remote_pod_networks: Sequence[str],
        service_cidr: str,
        image: GatewayImage | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
            max_azs=2,
            nat_gateways=1,
            flow_logs={"all": ec2.FlowLogOptions()},
        )
        cluster = eks.Cluster(
            self,
            "Cluster",
            version=eks.KubernetesVersion.V1_33,
            vpc=vpc,
            service_ipv4_cidr=service_cidr,
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=KubectlV33Layer(self, "KubectlLayer")
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
        self.gateway = HybridNodesGateway(
            self,
            "HybridGateway",
            cluster=cluster,
            vpc=vpc,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            route_table_ids=[subnet.route_table.route_table_id for subnet in vpc.private_subnets],
            service_cidr=service_cidr,
            capacity_type=CapacityType.AUTO_MODE,
            metrics=MetricsExposure.POD_MONITOR,
            image=image,
        )
