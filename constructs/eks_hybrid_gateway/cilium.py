"""Settings the gateway needs elsewhere: Cilium on hybrid nodes, the VPC CNI in the cloud."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.validation import (
    HybridGatewayConfigError,
    is_token,
    parse_cidrs,
    require_nonempty,
)
from hybrid_gateway_contract.sharding import plan_shards

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


def vtep_mask_length(
    vpc_cidrs: Sequence[str],
    *,
    remote_pod_networks: Sequence[str] = (),
    shards: int | None = None,
) -> int | None:
    """The prefix length the Cilium agents' `vtep-mask` must have for the gateway's endpoints.

    Upstream Cilium matches VTEP endpoints in a BPF hash keyed by `destination & vtep-mask`,
    one mask for all (cilium/cilium bpf/lib/vtep.h, pkg/maps/vtep/vtep.go; agent flag
    `--vtep-mask`, Helm `vtep.mask`, default 255.255.255.0), so an endpoint matches all of
    its CIDR only when it is exactly that long. Active-standby publishes the VPC CIDRs cut to
    the mask (runtime core.vtep.endpoints_for_agent_mask): the longest VPC prefix keeps them
    fewest. Active-active (`shards`) publishes `plan_shards`'s endpoints of one length.
    None when a VPC CIDR is a deploy-time token (the daemon and preflight then check the
    agents' mask against the plan at run time).
    """
    if any(is_token(c) for c in vpc_cidrs) or any(is_token(c) for c in remote_pod_networks):
        return None
    vpcs = [ipaddress.IPv4Network(c) for c in vpc_cidrs]
    if shards is not None:
        plan = plan_shards([ipaddress.IPv4Network(c) for c in remote_pod_networks], vpcs, shards)
        if plan.vtep_prefix_length is None:
            raise HybridGatewayConfigError(
                f"vpc_cidrs: {', '.join(vpc_cidrs)} differ too much in size for one VTEP mask "
                f"with {shards} shards and {contract.MAX_VTEP_ENDPOINTS} endpoints; Cilium "
                "matches every endpoint under one mask"
            )
        return plan.vtep_prefix_length
    longest = max(c.prefixlen for c in vpcs)
    count = sum(2 ** (longest - c.prefixlen) for c in vpcs)
    if count > contract.MAX_VTEP_ENDPOINTS:
        raise HybridGatewayConfigError(
            f"vpc_cidrs: {', '.join(vpc_cidrs)} would need {count} VTEP endpoints of "
            f"/{longest} under Cilium's one VTEP mask, more than "
            f"{contract.MAX_VTEP_ENDPOINTS}; give only the CIDRs hybrid pods must reach"
        )
    return longest


def cilium_helm_values(
    remote_pod_networks: Sequence[str],
    *,
    pod_cidr_mask_size: int = 25,
    operator_replicas: int = 1,
    vtep_mask_length: int | None = None,
) -> dict[str, Any]:
    """Helm values for the EKS Cilium chart on hybrid nodes, with VTEP on for the gateway.

    VTEP needs tunnel mode vxlan and `l7Proxy: false`; Cilium and its operator stay on hybrid
    nodes (cloud nodes keep the VPC CNI). Cluster-pool IPAM hands out node pod CIDRs of
    `/pod_cidr_mask_size` from the remote pod networks. Needs an EKS Cilium build of at least
    one of `MIN_EKS_CILIUM_VERSIONS`. `vtep_mask_length` sets Helm `vtep.mask` (the agents'
    one VTEP mask, see `vtep_mask_length()`); unset, the agents use their default /24.
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
        "vtep": {"enabled": True}
        if vtep_mask_length is None
        else {
            "enabled": True,
            "mask": str(ipaddress.IPv4Network(f"0.0.0.0/{vtep_mask_length}").netmask),
        },
    }


def vpc_cni_snat_exclusion(remote_pod_networks: Sequence[str]) -> dict[str, str]:
    """The `aws-node` env setting that lets cloud pods reach hybrid endpoints of ClusterIPs."""
    require_nonempty("remote_pod_networks", remote_pod_networks, "remote pod network")
    parse_cidrs("remote_pod_networks", remote_pod_networks)
    return {VPC_CNI_EXCLUDE_SNAT_ENV: ",".join(remote_pod_networks)}


def vpc_cni_addon_configuration(remote_pod_networks: Sequence[str]) -> str:
    """`configurationValues` JSON for the `vpc-cni` EKS add-on carrying the SNAT exclusion."""
    return json.dumps({"env": vpc_cni_snat_exclusion(remote_pod_networks)}, sort_keys=True)
