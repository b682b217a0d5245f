"""The Cilium Helm values and VPC CNI setting the gateway needs on the other side
(docs/design.md#vtep-config)."""

from __future__ import annotations

import json

import pytest

import hybrid_gateway_contract as contract
from eks_hybrid_gateway import (
    HybridGatewayConfigError,
    cilium_helm_values,
    vpc_cni_addon_configuration,
    vpc_cni_snat_exclusion,
)
from eks_hybrid_gateway.cilium import vtep_mask_length


def _hybrid_terms(affinity: dict[str, object]) -> object:
    return affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][  # type: ignore[index]
        "nodeSelectorTerms"
    ]


def test_values_enable_vtep_in_vxlan_tunnel_mode() -> None:
    values = cilium_helm_values(["10.85.0.0/16", "10.86.0.0/16"])
    assert values["vtep"] == {"enabled": True}
    assert values["l7Proxy"] is False
    assert values["routingMode"] == "tunnel"
    assert values["tunnelProtocol"] == "vxlan"
    assert values["tunnelPort"] == contract.VXLAN_PORT
    assert values["kubeProxyReplacement"] == "false"
    assert values["ipam"] == {
        "mode": "cluster-pool",
        "operator": {
            "clusterPoolIPv4PodCIDRList": ["10.85.0.0/16", "10.86.0.0/16"],
            "clusterPoolIPv4MaskSize": 25,
        },
    }


def test_cilium_and_its_operator_stay_on_hybrid_nodes() -> None:
    values = cilium_helm_values(["10.85.0.0/16"])
    expected = [
        {
            "matchExpressions": [
                {"key": "eks.amazonaws.com/compute-type", "operator": "In", "values": ["hybrid"]}
            ]
        }
    ]
    assert _hybrid_terms(values["affinity"]) == expected
    assert _hybrid_terms(values["operator"]["affinity"]) == expected


def test_node_pod_cidr_must_fit_in_the_pod_networks() -> None:
    with pytest.raises(HybridGatewayConfigError, match=r"pod_cidr_mask_size: 16 .*10\.85\.0\.0/24"):
        cilium_helm_values(["10.85.0.0/24"], pod_cidr_mask_size=16)


def test_values_reject_bad_pod_networks() -> None:
    with pytest.raises(HybridGatewayConfigError, match=r"remote_pod_networks\[0\]: 'nope'"):
        cilium_helm_values(["nope"])
    with pytest.raises(HybridGatewayConfigError, match="remote_pod_networks: at least one"):
        cilium_helm_values([])


def test_vpc_cni_snat_exclusion() -> None:
    assert vpc_cni_snat_exclusion(["10.85.0.0/16", "10.86.0.0/16"]) == {
        "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS": "10.85.0.0/16,10.86.0.0/16"
    }
    assert json.loads(vpc_cni_addon_configuration(["10.85.0.0/16"])) == {
        "env": {"AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS": "10.85.0.0/16"}
    }
    with pytest.raises(HybridGatewayConfigError, match=r"remote_pod_networks\[0\]: '10.85.0.1/16'"):
        vpc_cni_snat_exclusion(["10.85.0.1/16"])


def test_the_agents_vtep_mask_is_the_plans_endpoint_length() -> None:
    """Upstream Cilium keys its VTEP map by destination & ONE mask (Helm vtep.mask, agent
    default /24: cilium/cilium bpf/lib/vtep.h, pkg/maps/vtep/vtep.go): the construct sets it
    to the length of the endpoints the gateway publishes."""
    assert vtep_mask_length(["10.0.0.0/16"]) == 16  # active-standby: one /16 endpoint
    assert vtep_mask_length(["10.0.0.0/16", "10.1.0.0/17"]) == 17  # the /16 cut in two
    pods = ["10.85.0.0/16"]
    assert vtep_mask_length(["10.0.0.0/16"], remote_pod_networks=pods, shards=4) == 18
    assert vtep_mask_length(["${Token[TOKEN.1]}"]) is None  # known at deploy time only
    with pytest.raises(HybridGatewayConfigError, match=r"vpc_cidrs: .* 17 VTEP endpoints of /20"):
        vtep_mask_length(["10.0.0.0/16", "10.1.0.0/20"])
    values = cilium_helm_values(["10.85.0.0/16"], vtep_mask_length=18)
    assert values["vtep"] == {"enabled": True, "mask": "255.255.192.0"}
