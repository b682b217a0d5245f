"""Prometheus Operator objects for the gateway, kept out of the gateway's own manifest.

A `PodMonitor` needs the `monitoring.coreos.com/v1` CRDs, which a fresh EKS cluster does not
have. Applied in the same manifest as the Deployment, a missing CRD would fail the manifest and
roll the whole stack back; so these objects are opt-in and always separate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cdk8s
import constructs

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.chart import MANAGED_BY_LABEL, METRICS_PORT_NAME, NAME_LABEL, _api_object
from eks_hybrid_gateway.kubernetes import apply_manifest

if TYPE_CHECKING:
    from eks_hybrid_gateway.gateway import HybridNodesGateway

POD_MONITOR_API_VERSION = "monitoring.coreos.com/v1"


class GatewayPodMonitorChart(cdk8s.Chart):
    """A `PodMonitor` scraping the gateway pods' `metrics` port (Prometheus Operator CRDs).

    Args:
        namespace: the gateway's namespace. @default `eks-hybrid-nodes-gateway`
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        namespace: str = contract.DEFAULT_NAMESPACE,
    ) -> None:
        super().__init__(scope, id, disable_resource_name_hashes=True)
        self.namespace_name = namespace
        selector = {NAME_LABEL: contract.APP_NAME}
        _api_object(
            self,
            "PodMonitor",
            api_version=POD_MONITOR_API_VERSION,
            kind="PodMonitor",
            name=contract.APP_NAME,
            namespace=namespace,
            labels={**selector, MANAGED_BY_LABEL: "cdk8s"},
            body={
                "spec": {
                    "selector": {"matchLabels": selector},
                    "podMetricsEndpoints": [
                        {"port": METRICS_PORT_NAME, "path": contract.METRICS_PATH}
                    ],
                }
            },
        )


class GatewayPodMonitor(constructs.Construct):
    """The gateway's `PodMonitor`, in its own manifest, applied after the gateway's.

    Needs the Prometheus Operator CRDs (`podmonitors.monitoring.coreos.com`) in the cluster
    before it deploys. Put it in the stack that installs the operator, or in its own stack, so a
    missing CRD fails only that stack and never the gateway's.

    Args:
        gateway: the gateway to scrape; the manifest waits for the gateway's manifest.
    """

    def __init__(
        self, scope: constructs.Construct, id: str, *, gateway: HybridNodesGateway
    ) -> None:
        super().__init__(scope, id)
        self.chart = GatewayPodMonitorChart(
            cdk8s.App(), "pod-monitor", namespace=gateway.chart.namespace_name
        )
        self.manifest = apply_manifest(self, "Manifest", cluster=gateway.cluster, chart=self.chart)
        self.manifest.node.add_dependency(gateway.manifest)
