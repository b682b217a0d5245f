"""The VPC CNI SNAT exclusion on the app's `vpc-cni` add-on (opt-in `vpc_cni_addon=`).

Cloud pods reach hybrid endpoints of ClusterIP services only if `aws-node` does not SNAT traffic
to the remote pod networks (`AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS`; EKS user guide
hybrid-nodes-gateway-cni, "Configure VPC CNI for hybrid pod traffic"). The EKS add-on takes it
as `configurationValues` JSON (`{"env": {...}}`); aws-cdk-lib's `Addon` (aws_eks and aws_eks_v2)
writes its `configuration_values` mapping to the CfnAddon with `Stack.toJsonString`
(aws-eks-v2/lib/addon), so the value is merged on the L1 resource here, keeping every other
setting the app gave.

Only an add-on this app declares can be changed: CloudFormation cannot adopt an EKS add-on that
already exists on the cluster (CreateAddon fails), so for those, set the variable with
`aws eks update-addon --configuration-values` instead (docs/construct.md).
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_eks as eks
from aws_cdk import aws_eks_v2 as eks_v2

from eks_hybrid_gateway.cilium import VPC_CNI_EXCLUDE_SNAT_ENV, vpc_cni_snat_exclusion
from eks_hybrid_gateway.validation import HybridGatewayConfigError, is_token

VPC_CNI_ADDON_NAME = "vpc-cni"

#: The add-on forms accepted by `HybridNodesGateway(vpc_cni_addon=...)`.
VpcCniAddon = eks.CfnAddon | eks_v2.CfnAddon | eks.Addon | eks_v2.Addon


def _cfn_addon(addon: VpcCniAddon) -> eks.CfnAddon | eks_v2.CfnAddon:
    if isinstance(addon, eks.CfnAddon | eks_v2.CfnAddon):
        return addon
    child = addon.node.default_child
    if not isinstance(child, eks.CfnAddon | eks_v2.CfnAddon):
        raise HybridGatewayConfigError(
            f"vpc_cni_addon: {addon.node.path} has no AWS::EKS::Addon resource to configure"
        )
    return child


def check_vpc_cni_addon(addon: VpcCniAddon) -> None:
    """Reject an add-on that is not `vpc-cni` (before the gateway joins the tree)."""
    cfn = _cfn_addon(addon)
    name = cfn.addon_name
    if not is_token(name) and name != VPC_CNI_ADDON_NAME:
        raise HybridGatewayConfigError(
            f"vpc_cni_addon: {cfn.node.path} is the {name!r} add-on; the SNAT exclusion "
            f"belongs on {VPC_CNI_ADDON_NAME!r}"
        )


def _current_configuration(cfn: eks.CfnAddon | eks_v2.CfnAddon) -> dict[str, Any]:
    raw = cfn.configuration_values
    resolved = cdk.Stack.of(cfn).resolve(raw) if raw is not None else None
    if resolved in (None, ""):
        return {}
    if not isinstance(resolved, str):
        raise HybridGatewayConfigError(
            f"vpc_cni_addon: the configurationValues of {cfn.node.path} are only known at "
            "deploy time; give them as literal JSON so the SNAT exclusion can be merged"
        )
    try:
        parsed = json.loads(resolved)
    except json.JSONDecodeError as exc:
        raise HybridGatewayConfigError(
            f"vpc_cni_addon: configurationValues of {cfn.node.path} is not JSON ({exc}): "
            f"{resolved!r}"
        ) from None
    if not isinstance(parsed, dict):
        raise HybridGatewayConfigError(
            f"vpc_cni_addon: configurationValues of {cfn.node.path} is not a JSON object: "
            f"{resolved!r}"
        )
    return parsed


def merged_snat_configuration(current: dict[str, Any], remote_pod_networks: list[str]) -> str:
    """`current` with the remote pod networks added to the SNAT exclusion (kept if present)."""
    env = dict(current.get("env") or {})
    wanted = vpc_cni_snat_exclusion(remote_pod_networks)[VPC_CNI_EXCLUDE_SNAT_ENV].split(",")
    existing = [c for c in str(env.get(VPC_CNI_EXCLUDE_SNAT_ENV, "")).split(",") if c]
    env[VPC_CNI_EXCLUDE_SNAT_ENV] = ",".join(dict.fromkeys([*existing, *wanted]))
    return json.dumps({**current, "env": env}, sort_keys=True)


def apply_snat_exclusion(addon: VpcCniAddon, remote_pod_networks: list[str]) -> None:
    """Write the merged configuration onto the add-on's CfnAddon."""
    check_vpc_cni_addon(addon)
    cfn = _cfn_addon(addon)
    cfn.configuration_values = merged_snat_configuration(
        _current_configuration(cfn), remote_pod_networks
    )
