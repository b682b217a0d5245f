"""Settings the gateway needs elsewhere: Cilium on hybrid nodes, the VPC CNI in the cloud."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.validation import HybridGatewayConfigError, parse_cidrs, require_nonempty

#: Environment variable of the AWS VPC CNI (`aws-node`) that keeps traffic to these CIDRs un-SNATed.
VPC_CNI_EXCLUDE_SNAT_ENV = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"

#: Oldest EKS Cilium builds with VTEP support for the gateway, per minor version.
MIN_EKS_CILIUM_VERSIONS = ("1.17.13-1", "1.18.8-1", "1.19.2-1")


def _hybrid_only_affinity() -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": contract.HYBRID_NODE_LABEL_KEY,
                                "operator": "In",
                                "values": [contract.HYBRID_NODE_LABEL_VALUE],
                            }
                        ]
                    }
                ]
            }
        }
    }


def cilium_helm_values(
    remote_pod_networks: Sequence[str],
    *,
    pod_cidr_mask_size: int = 25,
    operator_replicas: int = 1,
) -> dict[str, Any]:
    """Helm values for the EKS Cilium chart on hybrid nodes, with VTEP on for the gateway.

    VTEP needs tunnel mode vxlan and `l7Proxy: false`; Cilium and its operator stay on hybrid
    nodes (cloud nodes keep the VPC CNI). Cluster-pool IPAM hands out node pod CIDRs of
    `/pod_cidr_mask_size` from the remote pod networks. Needs an EKS Cilium build of at least
    one of `MIN_EKS_CILIUM_VERSIONS`.
    """
    require_nonempty("remote_pod_networks", remote_pod_networks, "remote pod network")
    parsed = parse_cidrs("remote_pod_networks", remote_pod_networks)
    for cidr in parsed:
        if cidr.network.prefixlen > pod_cidr_mask_size:
            raise HybridGatewayConfigError(
                f"pod_cidr_mask_size: {pod_cidr_mask_size} is wider than {cidr.prop}: "
                f"{cidr.text!r}; node pod CIDRs must fit inside the remote pod networks"
            )
    if not 1 <= operator_replicas <= 2:
        raise HybridGatewayConfigError(f"operator_replicas: {operator_replicas} is not 1 or 2")
    return {
        "affinity": _hybrid_only_affinity(),
        "operator": {
            "replicas": operator_replicas,
            "affinity": _hybrid_only_affinity(),
            "unmanagedPodWatcher": {"restart": False},
        },
        "ipam": {
            "mode": "cluster-pool",
            "operator": {
                "clusterPoolIPv4PodCIDRList": list(remote_pod_networks),
                "clusterPoolIPv4MaskSize": pod_cidr_mask_size,
            },
        },
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "tunnelPort": contract.VXLAN_PORT,
        "kubeProxyReplacement": "false",
        "l7Proxy": False,
        "envoy": {"enabled": False},
        "vtep": {"enabled": True},
    }


def vpc_cni_snat_exclusion(remote_pod_networks: Sequence[str]) -> dict[str, str]:
    """The `aws-node` env setting that lets cloud pods reach hybrid endpoints of ClusterIPs."""
    require_nonempty("remote_pod_networks", remote_pod_networks, "remote pod network")
    parse_cidrs("remote_pod_networks", remote_pod_networks)
    return {VPC_CNI_EXCLUDE_SNAT_ENV: ",".join(remote_pod_networks)}


def vpc_cni_addon_configuration(remote_pod_networks: Sequence[str]) -> str:
    """`configurationValues` JSON for the `vpc-cni` EKS add-on carrying the SNAT exclusion."""
    return json.dumps({"env": vpc_cni_snat_exclusion(remote_pod_networks)}, sort_keys=True)
