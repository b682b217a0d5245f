"""Migrating a cluster from the reference Helm release to the construct (docs/construct.md,
"Migrating from the Helm install"), step by step against what `kubectl create` would meet.

What the getting-started install leaves in a cluster (aws/eks-hybrid-nodes-gateway):
- the release `helm install eks-hybrid-nodes-gateway ... --namespace eks-hybrid-nodes-gateway
  --create-namespace` (README "Install with Helm"): ServiceAccount, Role, RoleBinding,
  ClusterRole, ClusterRoleBinding and Deployment, each named by the chart's `fullname`, which is
  the release name when that contains the chart name (charts/.../templates/_helpers.tpl);
- the Namespace, made by `--create-namespace`, not by the release (templates/namespace.yaml only
  renders with `createNamespace`, which values.yaml leaves unset), so `helm uninstall` keeps it;
- what its daemon writes: the Lease `hybrid-gateway-leader` in the namespace (default
  `--leader-election-id`, README "Configuration") and the CiliumVTEPConfig `hybrid-gateway`
  (internal/cilium/vtep.go `CiliumVTEPConfigName`).

aws-cdk-lib creates a `KubernetesManifest` with `kubectl create` unless `overwrite` is set
(custom-resource-handlers aws-eks/kubectl-handler/apply), so any object of the construct's chart
that already exists (same kind, namespace and name) fails the deployment with AlreadyExists.
"""

from __future__ import annotations

from collections.abc import Iterable

import cdk8s
import pytest

import hybrid_gateway_contract as contract
from eks_hybrid_gateway import HybridGatewayChart

RELEASE = "eks-hybrid-nodes-gateway"
NAMESPACE = "eks-hybrid-nodes-gateway"

Identity = tuple[str, str | None, str]  # kind, namespace (None: cluster-scoped), name

HELM_RELEASE: set[Identity] = {
    ("ServiceAccount", NAMESPACE, RELEASE),
    ("Role", NAMESPACE, RELEASE),
    ("RoleBinding", NAMESPACE, RELEASE),
    ("ClusterRole", None, RELEASE),
    ("ClusterRoleBinding", None, RELEASE),
    ("Deployment", NAMESPACE, RELEASE),
}
CREATED_BY_HELM_FLAG: set[Identity] = {("Namespace", None, NAMESPACE)}
WRITTEN_BY_THE_REFERENCE_DAEMON: set[Identity] = {
    ("Lease", NAMESPACE, "hybrid-gateway-leader"),
    ("CiliumVTEPConfig", None, "hybrid-gateway"),
}


def _chart_objects(namespace: str = contract.DEFAULT_NAMESPACE) -> set[Identity]:
    chart = HybridGatewayChart(
        cdk8s.App(),
        "gateway",
        image="registry.example/gw:1",
        vpc_cidrs=["10.0.0.0/16"],
        pod_cidrs=["10.85.0.0/16"],
        route_table_ids=["rtb-0123456789abcdef0"],
        namespace=namespace,
    )
    return {
        (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        for obj in chart.to_json()
    }


def _create_conflicts(cluster: Iterable[Identity], namespace: str) -> set[Identity]:
    """The chart's objects `kubectl create` would find already there."""
    return _chart_objects(namespace) & set(cluster)


def _cluster_after_the_getting_started_page() -> set[Identity]:
    return HELM_RELEASE | CREATED_BY_HELM_FLAG | WRITTEN_BY_THE_REFERENCE_DAEMON


@pytest.mark.parametrize("namespace", [NAMESPACE, "platform-gateway"])
def test_deploying_next_to_the_helm_release_fails_whatever_the_namespace(namespace: str) -> None:
    """Two gateways would both lead (one Lease per namespace): the shared cluster-scoped names
    make the deployment fail instead of starting a second one."""
    conflicts = _create_conflicts(_cluster_after_the_getting_started_page(), namespace)
    assert ("ClusterRole", None, RELEASE) in conflicts
    assert ("ClusterRoleBinding", None, RELEASE) in conflicts


def test_after_helm_uninstall_only_the_namespace_is_in_the_way() -> None:
    cluster = _cluster_after_the_getting_started_page() - HELM_RELEASE  # step 1
    assert _create_conflicts(cluster, NAMESPACE) == {("Namespace", None, NAMESPACE)}


def test_after_deleting_the_namespace_the_construct_creates_everything() -> None:
    cluster = _cluster_after_the_getting_started_page() - HELM_RELEASE  # step 1
    cluster = {obj for obj in cluster if obj[0] != "Namespace" and obj[1] != NAMESPACE}  # step 2
    assert _create_conflicts(cluster, NAMESPACE) == set()
    assert ("CiliumVTEPConfig", None, "hybrid-gateway") in cluster  # left for the new leader


def test_or_another_namespace_after_helm_uninstall() -> None:
    cluster = _cluster_after_the_getting_started_page() - HELM_RELEASE  # step 1 only
    assert _create_conflicts(cluster, "platform-gateway") == set()


def test_the_daemon_takes_over_the_references_lease_and_vtep_config_names() -> None:
    """Same names as the reference's daemon, so the new leader adopts what it left."""
    assert ("Lease", NAMESPACE, contract.DEFAULT_LEASE_NAME) in WRITTEN_BY_THE_REFERENCE_DAEMON
    assert ("CiliumVTEPConfig", None, contract.VTEP_CONFIG_NAME) in WRITTEN_BY_THE_REFERENCE_DAEMON
