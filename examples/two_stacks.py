"""A platform split in two stacks: the cluster stack (VPC, cluster, add-ons) and a gateway
stack that only references it.

The gateway owns everything it creates, its Kubernetes manifests included, so references go
from the gateway stack to the cluster stack only: `cdk deploy HybridGatewayPlatformGateway`
deploys the cluster stack first, and the cluster stack never needs the gateway's.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import constructs

from eks_hybrid_gateway import GatewayImage
from examples.new_cluster import HybridCluster, add_gateway, new_hybrid_cluster


class PlatformClusterStack(cdk.Stack):
    """The VPC and the hybrid-enabled cluster with its node group and add-ons."""

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        vpc_cidr: str,
        remote_node_networks: Sequence[str],
        remote_pod_networks: Sequence[str],
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        self.hybrid_cluster = new_hybrid_cluster(
            self,
            vpc_cidr=vpc_cidr,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
        )


class PlatformGatewayStack(cdk.Stack):
    """The gateway for a cluster of another stack."""

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        platform: HybridCluster,
        remote_node_networks: Sequence[str],
        remote_pod_networks: Sequence[str],
        image: GatewayImage | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        self.gateway = add_gateway(
            self,
            platform,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            image=image,
        )


def add_platform(
    scope: constructs.Construct,
    id_prefix: str,
    *,
    env: cdk.Environment,
    vpc_cidr: str,
    remote_node_networks: Sequence[str],
    remote_pod_networks: Sequence[str],
    image: GatewayImage | None = None,
) -> tuple[PlatformClusterStack, PlatformGatewayStack]:
    """The two stacks, in `scope` (an app or a `Stage`)."""
    cluster_stack = PlatformClusterStack(
        scope,
        f"{id_prefix}Cluster",
        env=env,
        vpc_cidr=vpc_cidr,
        remote_node_networks=remote_node_networks,
        remote_pod_networks=remote_pod_networks,
    )
    gateway_stack = PlatformGatewayStack(
        scope,
        f"{id_prefix}Gateway",
        env=env,
        platform=cluster_stack.hybrid_cluster,
        remote_node_networks=remote_node_networks,
        remote_pod_networks=remote_pod_networks,
        image=image,
    )
    return cluster_stack, gateway_stack
