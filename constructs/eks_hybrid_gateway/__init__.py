"""AWS CDK constructs for the Amazon EKS Hybrid Nodes gateway."""

from eks_hybrid_gateway.auto_mode import AutoModeCapacityChart
from eks_hybrid_gateway.chart import (
    CapacityType,
    GatewayResources,
    HybridGatewayChart,
    LeaderElectionTimings,
    MetricsExposure,
)
from eks_hybrid_gateway.cilium import (
    VPC_CNI_EXCLUDE_SNAT_ENV,
    cilium_helm_values,
    vpc_cni_addon_configuration,
    vpc_cni_snat_exclusion,
)
from eks_hybrid_gateway.gateway import DEFAULT_INSTANCE_TYPE, HybridNodesGateway
from eks_hybrid_gateway.hybrid_cilium import (
    DEFAULT_EKS_CILIUM_VERSION,
    EKS_CILIUM_CHART_REPOSITORY,
    HybridCiliumOptions,
)
from eks_hybrid_gateway.image import GatewayImage
from eks_hybrid_gateway.kubernetes import KUBERNETES_VERSION
from eks_hybrid_gateway.mode import GatewayMode
from eks_hybrid_gateway.monitoring import GatewayPodMonitor, GatewayPodMonitorChart
from eks_hybrid_gateway.route_cleanup import GatewayRouteCleanup
from eks_hybrid_gateway.security_group import RemotePodAccess
from eks_hybrid_gateway.validation import HybridGatewayConfigError

__all__ = [
    "DEFAULT_EKS_CILIUM_VERSION",
    "DEFAULT_INSTANCE_TYPE",
    "EKS_CILIUM_CHART_REPOSITORY",
    "KUBERNETES_VERSION",
    "VPC_CNI_EXCLUDE_SNAT_ENV",
    "AutoModeCapacityChart",
    "CapacityType",
    "GatewayImage",
    "GatewayMode",
    "GatewayPodMonitor",
    "GatewayPodMonitorChart",
    "GatewayResources",
    "GatewayRouteCleanup",
    "HybridCiliumOptions",
    "HybridGatewayChart",
    "HybridGatewayConfigError",
    "HybridNodesGateway",
    "LeaderElectionTimings",
    "MetricsExposure",
    "RemotePodAccess",
    "cilium_helm_values",
    "vpc_cni_addon_configuration",
    "vpc_cni_snat_exclusion",
]
