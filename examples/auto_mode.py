"""A new EKS Auto Mode cluster whose gateway runs on a dedicated Auto Mode NodePool."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import constructs

from eks_hybrid_gateway import CapacityType, GatewayImage, HybridNodesGateway, MetricsExposure
from examples.new_cluster import new_hybrid_cluster


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
        vpc, cluster = new_hybrid_cluster(
            self,
            vpc_cidr=vpc_cidr,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            service_cidr=service_cidr,
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
