"""Cilium on the hybrid nodes, installed by the construct (opt-in `hybrid_cilium=`).

The gateway is only useful once hybrid-side Cilium runs with VTEP on (it creates the
`CiliumVTEPConfig` CRD the gateway writes to, and sends VPC-bound traffic into the tunnel). The
chart is the EKS build of Cilium that AWS publishes in Amazon ECR Public; its location and the
minimum builds with VTEP support come from the EKS user guide page
"Configure CNI for the Hybrid Nodes gateway" (awsdocs/amazon-eks-user-guide,
latest/ug/nodes/hybrid-nodes-gateway-cni.adoc: `helm upgrade cilium
oci://public.ecr.aws/eks/cilium/cilium --namespace kube-system`).

aws-cdk-lib's kubectl handler (custom-resource-handlers aws-eks[-v2]/kubectl-handler/helm) pulls
an `oci://` repository with `helm pull <repository> --version <version>` after logging in to
ECR Public, so `repository` is the chart's full OCI reference and `chart` its last segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import aws_cdk as cdk
import constructs
from aws_cdk import aws_eks as eks
from aws_cdk import aws_eks_v2 as eks_v2

from eks_hybrid_gateway.cilium import MIN_EKS_CILIUM_VERSIONS, cilium_helm_values
from eks_hybrid_gateway.validation import HybridGatewayConfigError, is_token

#: The EKS Cilium chart in Amazon ECR Public (EKS user guide, hybrid-nodes-gateway-cni).
EKS_CILIUM_CHART_REPOSITORY = "oci://public.ecr.aws/eks/cilium/cilium"
EKS_CILIUM_CHART = "cilium"
#: Release name and namespace of the EKS user guide's install and upgrade commands.
CILIUM_RELEASE = "cilium"
CILIUM_NAMESPACE = "kube-system"
#: Default chart version: the oldest 1.18 EKS build with VTEP support (1.18 is supported for
#: hybrid nodes on every EKS Kubernetes version, EKS user guide hybrid-nodes-cni).
DEFAULT_EKS_CILIUM_VERSION = "1.18.8-1"

#: Values the gateway's data path depends on; `extra_values` may not change them.
VTEP_VALUE_KEYS = ("vtep", "l7Proxy", "routingMode", "tunnelProtocol", "tunnelPort", "ipam")

_EKS_BUILD = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)-(\d+)$")


def _build_key(version: str) -> tuple[int, int, int, int] | None:
    match = _EKS_BUILD.match(version)
    if match is None:
        return None
    major, minor, patch, build = (int(g) for g in match.groups())
    return major, minor, patch, build


def validate_cilium_version(prop: str, version: str) -> None:
    """Reject EKS Cilium builds without VTEP support (MIN_EKS_CILIUM_VERSIONS;
    docs/design.md#vtep-config)."""
    if is_token(version):
        return
    key = _build_key(version)
    if key is None:
        raise HybridGatewayConfigError(
            f"{prop}: {version!r} is not an EKS Cilium chart version (e.g. "
            f"{DEFAULT_EKS_CILIUM_VERSION!r}: upstream version, '-', EKS build number)"
        )
    minimums = {
        k[:2]: (text, k) for text in MIN_EKS_CILIUM_VERSIONS if (k := _build_key(text)) is not None
    }
    oldest_minor = min(minimums)
    newest_minor = max(minimums)
    minimum = minimums.get(key[:2])
    too_old = key[:2] < oldest_minor or (minimum is not None and key < minimum[1])
    if too_old:
        raise HybridGatewayConfigError(
            f"{prop}: {version!r} has no CiliumVTEPConfig support; the gateway needs an EKS "
            f"Cilium build of at least {', '.join(MIN_EKS_CILIUM_VERSIONS)}"
        )
    if minimum is None and key[:2] < newest_minor:  # a minor between the listed ones
        raise HybridGatewayConfigError(
            f"{prop}: {version!r} is not a minor version with a known VTEP-capable build "
            f"({', '.join(MIN_EKS_CILIUM_VERSIONS)})"
        )


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class HybridCiliumOptions:
    """The EKS Cilium chart on hybrid nodes, with the VTEP values the gateway needs.

    Attributes:
        version: chart version of the EKS Cilium build; default `1.18.8-1`. Must be at least
            1.17.13-1 / 1.18.8-1 / 1.19.2-1 for its minor version (CiliumVTEPConfig support).
        pod_cidr_mask_size: size of each hybrid node's pod CIDR, cut from the remote pod
            networks (cluster-pool IPAM); default 25.
        operator_replicas: Cilium operator replicas on hybrid nodes, 1 or 2; default 1.
        extra_values: Helm values merged over the computed ones (e.g. `bgpControlPlane`);
            may not change the VTEP, tunnel or IPAM values; default none.
        removal_policy: what stack deletion does to the release; default RETAIN (Cilium is
            every hybrid node's CNI: removing the gateway must not take it away).
    """

    version: str = DEFAULT_EKS_CILIUM_VERSION
    pod_cidr_mask_size: int = 25
    operator_replicas: int = 1
    extra_values: Mapping[str, Any] = field(default_factory=dict)
    removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN

    def helm_values(
        self, remote_pod_networks: list[str], *, vtep_mask_length: int | None = None
    ) -> dict[str, Any]:
        """Validated values: `cilium_helm_values()` plus `extra_values`."""
        validate_cilium_version("hybrid_cilium.version", self.version)
        computed = cilium_helm_values(
            remote_pod_networks,
            pod_cidr_mask_size=self.pod_cidr_mask_size,
            operator_replicas=self.operator_replicas,
            vtep_mask_length=vtep_mask_length,
        )
        for key in VTEP_VALUE_KEYS:
            if key in self.extra_values and self.extra_values[key] != computed[key]:
                raise HybridGatewayConfigError(
                    f"hybrid_cilium.extra_values: {key}={self.extra_values[key]!r} would change "
                    f"{computed[key]!r}, which the gateway's VTEP data path needs"
                )
        return _merge(computed, self.extra_values)


def is_eks_v2(cluster: object) -> bool:
    """Whether `cluster` comes from `aws_eks_v2` (created or imported) rather than `aws_eks`."""
    if isinstance(cluster, eks_v2.Cluster):
        return True
    if isinstance(cluster, eks.Cluster):
        return False
    ref = getattr(cluster, "__jsii_ref__", None)
    interfaces = getattr(ref, "interfaces", None) or []
    return any(str(name).startswith("aws-cdk-lib.aws_eks_v2.") for name in interfaces)


def install_hybrid_cilium(
    scope: constructs.Construct,
    id: str,
    *,
    cluster: object,
    remote_pod_networks: list[str],
    options: HybridCiliumOptions,
    vtep_mask_length: int | None = None,
) -> constructs.Construct:
    """The Helm release, in `scope` (the gateway's), through the cluster's kubectl provider;
    `vtep_mask_length` is the agents' VTEP mask the gateway's endpoints need
    (`cilium.vtep_mask_length`)."""
    values = options.helm_values(remote_pod_networks, vtep_mask_length=vtep_mask_length)
    settings: dict[str, Any] = {
        "chart": EKS_CILIUM_CHART,
        "repository": EKS_CILIUM_CHART_REPOSITORY,
        "version": options.version,
        "release": CILIUM_RELEASE,
        "namespace": CILIUM_NAMESPACE,
        "values": values,
        # Cilium's pods only schedule on hybrid nodes, which may join after the stack.
        "wait": False,
        "removal_policy": options.removal_policy,
    }
    if is_eks_v2(cluster):
        return eks_v2.HelmChart(scope, id, cluster=cast(eks_v2.ICluster, cluster), **settings)
    return eks.HelmChart(scope, id, cluster=cast(eks.ICluster, cluster), **settings)
