"""EKS Auto Mode capacity for the gateway: a NodeClass and a NodePool, applied as manifests."""

from __future__ import annotations

from collections.abc import Sequence

import cdk8s
import constructs

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.chart import NAME_LABEL, _api_object

NODE_CLASS_API_VERSION = "eks.amazonaws.com/v1"
NODE_POOL_API_VERSION = "karpenter.sh/v1"


class AutoModeCapacityChart(cdk8s.Chart):
    """Dedicated Auto Mode nodes for the gateway: labelled, tainted, source/dest check off.

    Args:
        node_role_name: the NodeClass's node role (it needs an EC2 access entry).
        subnet_ids: where nodes go.
        security_group_ids: the cluster security group and the gateway's.
        instance_types: allowed instance types.
        max_nodes: the NodePool's node limit (replicas plus one surge node); best-effort in
            Karpenter, the gateway pods' count is the real bound.
        name: NodeClass and NodePool name. @default `eks-hybrid-nodes-gateway`
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        node_role_name: str,
        subnet_ids: Sequence[str],
        security_group_ids: Sequence[str],
        instance_types: Sequence[str],
        max_nodes: int,
        name: str = contract.APP_NAME,
    ) -> None:
        super().__init__(scope, id, disable_resource_name_hashes=True)
        labels = {NAME_LABEL: contract.APP_NAME}
        _api_object(
            self,
            "NodeClass",
            api_version=NODE_CLASS_API_VERSION,
            kind="NodeClass",
            name=name,
            namespace=None,
            labels=labels,
            body={
                "spec": {
                    "role": node_role_name,
                    "subnetSelectorTerms": [{"id": subnet} for subnet in subnet_ids],
                    "securityGroupSelectorTerms": [{"id": sg} for sg in security_group_ids],
                    # The gateway forwards packets for addresses other than its own.
                    "advancedNetworking": {"sourceDestCheck": "DisabledPrimaryENI"},
                }
            },
        )
        _api_object(
            self,
            "NodePool",
            api_version=NODE_POOL_API_VERSION,
            kind="NodePool",
            name=name,
            namespace=None,
            labels=labels,
            body={
                "spec": {
                    "template": {
                        "metadata": {
                            "labels": {
                                contract.GATEWAY_NODE_LABEL_KEY: contract.GATEWAY_NODE_LABEL_VALUE
                            }
                        },
                        "spec": {
                            "nodeClassRef": {
                                "group": "eks.amazonaws.com",
                                "kind": "NodeClass",
                                "name": name,
                            },
                            "taints": [
                                {
                                    "key": contract.GATEWAY_NODE_TAINT_KEY,
                                    "value": contract.GATEWAY_NODE_TAINT_VALUE,
                                    "effect": contract.GATEWAY_NODE_TAINT_EFFECT,
                                }
                            ],
                            "requirements": [
                                {
                                    "key": "node.kubernetes.io/instance-type",
                                    "operator": "In",
                                    "values": list(instance_types),
                                },
                                {
                                    "key": "karpenter.sh/capacity-type",
                                    "operator": "In",
                                    "values": ["on-demand"],
                                },
                            ],
                        },
                    },
                    # Replace gateway nodes one at a time, and only when empty.
                    "disruption": {
                        "consolidationPolicy": "WhenEmpty",
                        "consolidateAfter": "5m",
                        "budgets": [{"nodes": "1"}],
                    },
                    # Room for the one surge node a rolling update needs. A safety net only:
                    # Karpenter checks `nodes` against the cluster state between scheduling
                    # passes but does not count it down within one pass, so one pass can
                    # overshoot it (kubernetes-sigs/karpenter issues #2657, #2915). What bounds
                    # the node count is the demand: only the gateway's pods tolerate the taint,
                    # at most replicas + 1 (maxSurge 1) exist, one per node (required
                    # anti-affinity).
                    "limits": {"nodes": str(max_nodes)},
                }
            },
        )
