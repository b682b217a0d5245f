"""A new EKS Auto Mode cluster whose gateway runs on a dedicated Auto Mode NodePool."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import constructs

from eks_hybrid_gateway import CapacityType, GatewayImage
from examples.new_cluster import add_gateway, new_hybrid_cluster


class AutoModeGatewayStack(cdk.Stack):
    """Auto Mode cluster (the aws_eks_v2 default) + gateway nodes from a NodePool/NodeClass.

    Auto Mode runs its own networking on its nodes (no vpc-cni / kube-proxy / coredns add-ons).
    The cluster uses the public and private subnets, so the gateway programs the route tables
    of both (its default). Metrics get a Service only: a PodMonitor needs the Prometheus
    Operator's CRDs, so it is the separate `GatewayPodMonitor`, for a stack that has them.
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
        self.hybrid_cluster = new_hybrid_cluster(
            self,
            vpc_cidr=vpc_cidr,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            service_cidr=service_cidr,
            auto_mode=True,
        )
        self.gateway = add_gateway(
            self,
            self.hybrid_cluster,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            image=image,
            service_cidr=service_cidr,
            capacity_type=CapacityType.AUTO_MODE,
        )
