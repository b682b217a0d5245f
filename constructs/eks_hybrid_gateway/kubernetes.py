"""Which kind of cluster the gateway is given, and applying Kubernetes objects to it.

The gateway works with `aws_eks_v2` and `aws_eks` (v1) clusters, created in the app or imported.
The two modules have parallel classes (`KubernetesManifest`, `Nodegroup`, ...) that take only
their own module's cluster, so every place that creates one asks `cluster_module` first.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import cdk8s
import constructs
from aws_cdk import aws_eks as eks
from aws_cdk import aws_eks_v2 as eks_v2

from eks_hybrid_gateway.validation import is_token

#: The Kubernetes minor version the examples create and the manifests are validated against
#: (strict schemas, kubernetes-validate). In EKS standard support until 2027-03-27 (EKS user
#: guide, "Understand the Kubernetes version lifecycle on EKS": 14 months from its EKS release
#: on 2026-01-28); the matching kubectl layer is `aws-cdk.lambda-layer-kubectl-v35`.
KUBERNETES_VERSION = "1.35"

#: Either kind of cluster: `aws_eks_v2` (recommended for new clusters) or `aws_eks` (v1).
AnyCluster = eks.ICluster | eks_v2.ICluster | eks.Cluster | eks_v2.Cluster

_V2_PREFIX = "aws-cdk-lib.aws_eks_v2."


def _jsii_types(value: object) -> list[str]:
    """The jsii type names behind `value`. An imported cluster is a private class of
    aws-cdk-lib, which the jsii runtime hands over as a proxy delegating to one object per
    interface it implements."""
    delegates = getattr(value, "_delegates", None) or [value]
    return [str(getattr(type(delegate), "__jsii_type__", "") or "") for delegate in delegates]


def is_v2_cluster(cluster: AnyCluster) -> bool:
    """True for `aws_eks_v2` clusters, created or imported (their jsii type says which module)."""
    return isinstance(cluster, eks_v2.Cluster) or any(
        name.startswith(_V2_PREFIX) for name in _jsii_types(cluster)
    )


def cluster_module(cluster: AnyCluster) -> ModuleType:
    """`aws_eks_v2` or `aws_eks`, whichever `cluster` belongs to."""
    return eks_v2 if is_v2_cluster(cluster) else eks


def is_created_in_app(cluster: AnyCluster) -> bool:
    """A cluster this app creates (as opposed to one imported by attributes)."""
    return isinstance(cluster, eks.Cluster | eks_v2.Cluster)


def auto_mode_enabled(cluster: AnyCluster) -> bool | None:
    """Whether EKS Auto Mode compute is on: known for clusters created in the app, else None.

    aws-cdk-lib's `aws_eks_v2.Cluster` writes `ComputeConfig.Enabled` on its `CfnCluster`
    (true unless `defaultCapacityType` is EC2 or NODEGROUP, see aws-eks-v2/lib/cluster.ts
    `isValidAutoModeConfig`); `aws_eks.Cluster` (v1) has no prop to enable it.
    """
    if isinstance(cluster, eks.Cluster):
        return False  # aws_eks.Cluster has no Auto Mode compute prop at all
    if not is_created_in_app(cluster):
        return None
    resource = cluster.node.default_child
    if not isinstance(resource, eks.CfnCluster | eks_v2.CfnCluster):
        return None
    config: Any = resource.compute_config
    if config is None:
        return False
    enabled = config.get("enabled") if isinstance(config, dict) else config.enabled
    if is_token(enabled):
        return None
    return bool(enabled)


def apply_manifest(
    scope: constructs.Construct,
    id: str,
    *,
    cluster: AnyCluster,
    chart: cdk8s.Chart,
) -> constructs.Construct:
    """The objects of `chart`, applied through the cluster's kubectl provider, owned by `scope`.

    Owning the manifest in the caller's scope (not the cluster's, as `add_cdk8s_chart` does)
    keeps the references one way: a gateway in another stack than its cluster depends on the
    cluster stack, never the reverse.
    """
    manifest = chart.to_json()
    module = cluster_module(cluster)
    created: constructs.Construct = module.KubernetesManifest(
        scope, id, cluster=cluster, manifest=manifest
    )
    return created
