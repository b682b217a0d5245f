"""The gateway chart: every object the runtime and docs/design.md (#topology, #configuration)
rely on, validated strictly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kubernetes_validate
import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

import hybrid_gateway_contract as contract
from eks_hybrid_gateway import KUBERNETES_VERSION
from hybrid_gateway_contract import Env

Manifest = dict[str, Any]
#: Custom resources: kubernetes-validate has no schema for them; checked field by field below.
CUSTOM_KINDS = {"PodMonitor", "NodeClass", "NodePool"}


@dataclass(frozen=True)
class Rendered:
    objects: list[Manifest]

    def one(self, kind: str, name: str | None = None) -> Manifest:
        found = [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def kinds(self) -> list[str]:
        return [o["kind"] for o in self.objects]


@pytest.fixture
def charts(chart_objects: dict[str, list[Manifest]]) -> dict[str, Rendered]:
    return {name: Rendered(objects) for name, objects in chart_objects.items()}


def _pod_spec(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


def _container(rendered: Rendered) -> dict[str, Any]:
    containers = _pod_spec(rendered)["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(rendered: Rendered) -> dict[str, Any]:
    env = _container(rendered)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


@pytest.mark.parametrize("variant", ["default", "full", "capacity"])
def test_every_builtin_object_validates_strictly_for_the_target_version(
    charts: dict[str, Rendered], variant: str
) -> None:
    validated = 0
    for obj in charts[variant].objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        validated += 1
    assert validated or variant == "capacity"


def test_strict_validation_would_catch_an_unknown_field(charts: dict[str, Rendered]) -> None:
    broken: Manifest = {**charts["default"].one("PodDisruptionBudget")}
    broken["spec"] = {**broken["spec"], "minAvailabel": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_default_chart_has_exactly_the_expected_objects(charts: dict[str, Rendered]) -> None:
    assert sorted(charts["default"].kinds()) == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Role",  # get on kube-system/cilium-config: the agents' vtep-mask
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
        ]
    )
    assert charts["default"].objects[0]["kind"] == "Namespace", "namespace must apply first"


def test_deployment_topology(charts: dict[str, Rendered]) -> None:
    deployment = charts["default"].one("Deployment", contract.APP_NAME)
    assert deployment["metadata"]["namespace"] == contract.DEFAULT_NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    pod = _pod_spec(charts["default"])
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"] == {contract.GATEWAY_NODE_LABEL_KEY: "true"}
    # Tolerates the taint with any value: ours ("true") and the AWS guide's Auto Mode
    # NodePool's, which has none (the reference chart's `operator: Exists`).
    assert pod["tolerations"] == [
        {"key": contract.GATEWAY_NODE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
    ]
    anti = pod["affinity"]["podAntiAffinity"]
    [required] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required == {
        "labelSelector": {"matchLabels": selector},
        "topologyKey": "kubernetes.io/hostname",
    }
    [preferred] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"] == {
        "labelSelector": {"matchLabels": selector},
        "topologyKey": "topology.kubernetes.io/zone",
    }
    assert pod["serviceAccountName"] == contract.DEFAULT_SERVICE_ACCOUNT
    assert pod["automountServiceAccountToken"] is True


def test_container_runs_with_net_admin_only(charts: dict[str, Rendered], chart_image: str) -> None:
    container = _container(charts["default"])
    assert container["name"] == contract.CONTAINER_NAME
    assert container["image"] == chart_image
    assert container["command"] == ["hybrid-gateway", "run"]
    sc = container["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert _pod_spec(charts["default"])["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    # A read-only root needs a writable /tmp, and it must be a volume the pod declares.
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    assert mount["name"] in {v["name"] for v in _pod_spec(charts["default"])["volumes"]}


def test_env_follows_spec_section_7(charts: dict[str, Rendered]) -> None:
    env = _env(charts["default"])
    assert env[Env.NODE_IP] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert env[Env.POD_NAME] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[Env.POD_NAMESPACE] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env[Env.NODE_NAME] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env[Env.VPC_CIDR] == "10.0.0.0/16"
    assert env[Env.POD_CIDRS] == "10.85.0.0/16,10.86.0.0/16"
    assert env[Env.ROUTE_TABLE_IDS] == "rtb-0123456789abcdef0,rtb-0123456789abcdef1"
    assert env[Env.LEADER_ELECTION_ID] == contract.DEFAULT_LEASE_NAME
    assert env[Env.AWS_REGION] == "us-west-2"
    # Unset options keep the runtime's defaults instead of restating them.
    for name in (
        Env.LEASE_DURATION,
        Env.RENEW_DEADLINE,
        Env.RETRY_PERIOD,
        Env.VXLAN_MTU,
        Env.DEBUG,
    ):
        assert name not in env


def test_optional_env_is_set_when_configured(charts: dict[str, Rendered]) -> None:
    env = _env(charts["full"])
    assert env[Env.VPC_CIDR] == "10.0.0.0/16,100.64.0.0/16"
    assert (env[Env.LEASE_DURATION], env[Env.RENEW_DEADLINE], env[Env.RETRY_PERIOD]) == (
        "6s",
        "4s",
        "0.5s",
    )
    assert env[Env.VXLAN_MTU] == "8950"
    assert env[Env.DEBUG] == "true"
    assert Env.AWS_REGION not in env


def test_probes_and_ports(charts: dict[str, Rendered]) -> None:
    container = _container(charts["default"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": contract.HEALTH_PORT, "metrics": contract.METRICS_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert (contract.HEALTH_PORT, contract.METRICS_PORT) == (8088, 10080)


def test_resources_have_requests_and_limits(charts: dict[str, Rendered]) -> None:
    assert _container(charts["default"])["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "448Mi"},
    }
    assert _container(charts["full"])["resources"]["requests"]["cpu"] == "200m"
    assert _container(charts["full"])["resources"]["limits"]["memory"] == "512Mi"


def test_rolling_update_never_drops_both_replicas(charts: dict[str, Rendered]) -> None:
    managed = charts["default"].one("Deployment")["spec"]["strategy"]
    auto = charts["full"].one("Deployment")["spec"]["strategy"]
    # Two dedicated nodes + required host anti-affinity: a surge pod could never schedule.
    assert managed == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    # Auto Mode provisions a node for the surge pod, so no replica has to go first.
    assert auto == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    for strategy in (managed, auto):
        assert strategy["rollingUpdate"]["maxUnavailable"] < 2


def test_pod_disruption_budget_keeps_one(charts: dict[str, Rendered]) -> None:
    pdb = charts["default"].one("PodDisruptionBudget")
    deployment = charts["default"].one("Deployment")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_namespace_admits_host_network_pods(charts: dict[str, Rendered]) -> None:
    labels = charts["default"].one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_service_account_mounts_its_token(charts: dict[str, Rendered]) -> None:
    sa = charts["default"].one("ServiceAccount", contract.DEFAULT_SERVICE_ACCOUNT)
    assert sa["automountServiceAccountToken"] is True


def test_cilium_config_is_read_by_name_only(charts: dict[str, Rendered]) -> None:
    """The daemon reads the agents' vtep-mask from kube-system/cilium-config and the served
    versions of the CiliumVTEPConfig CRD: get on those two objects by name, nothing more."""
    name = f"{contract.APP_NAME}-cilium-config"
    role = charts["default"].one("Role", name)
    assert role["metadata"]["namespace"] == contract.CILIUM_CONFIG_NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [contract.CILIUM_CONFIG_NAME],
            "verbs": ["get"],
        }
    ]
    binding = charts["default"].one("RoleBinding", name)
    assert binding["metadata"]["namespace"] == contract.CILIUM_CONFIG_NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": name,
    }
    assert binding["subjects"][0]["name"] == contract.DEFAULT_SERVICE_ACCOUNT
    crd_rules = [
        r
        for r in charts["default"].one("ClusterRole")["rules"]
        if r["apiGroups"] == ["apiextensions.k8s.io"]
    ]
    assert crd_rules == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["ciliumvtepconfigs.cilium.io"],
            "verbs": ["get"],
        }
    ]


def test_lease_role_is_name_scoped_where_the_verb_allows(charts: dict[str, Rendered]) -> None:
    role = charts["default"].one("Role", f"{contract.APP_NAME}-leader-election")
    rules = role["rules"]
    assert all(r["apiGroups"] == ["coordination.k8s.io"] for r in rules)
    assert all(r["resources"] == ["leases"] for r in rules)
    scoped = [r for r in rules if "resourceNames" in r]
    unscoped = [r for r in rules if "resourceNames" not in r]
    assert scoped == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [contract.DEFAULT_LEASE_NAME],
            "verbs": ["get", "list", "patch", "update", "watch"],
        }
    ]
    # create cannot be name-scoped, nor a list/watch by label (the leader watches the shard
    # Leases of an active-active gateway by their group label: one mode at a time); every write
    # is name-scoped, and delete is not needed.
    assert [r["verbs"] for r in unscoped] == [["list", "watch"], ["create"]]
    assert not any("delete" in r["verbs"] or "*" in r["verbs"] for r in rules)


def test_cluster_role_grants_exactly_the_runtime_needs(charts: dict[str, Rendered]) -> None:
    rules = charts["default"].one("ClusterRole")["rules"]
    granted = {
        (group, resource): sorted(rule["verbs"])
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        ("", "events"): ["create", "patch"],
        ("cilium.io", "ciliumnodes"): ["get", "list", "watch"],
        ("cilium.io", "ciliumvtepconfigs"): ["create", "get", "list", "patch", "update", "watch"],
        ("apiextensions.k8s.io", "customresourcedefinitions"): ["get"],
        # its own Namespace, the CiliumVTEPConfig's owner (runtime core/vtep.py namespace_owner)
        ("", "namespaces"): ["get"],
    }
    [namespaces] = [rule for rule in rules if rule["resources"] == ["namespaces"]]
    assert namespaces["resourceNames"] == [contract.DEFAULT_NAMESPACE]


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("RoleBinding", f"{contract.APP_NAME}-leader-election"),
        ("RoleBinding", f"{contract.APP_NAME}-cilium-config"),
        ("ClusterRoleBinding", None),
    ],
)
def test_bindings_point_at_the_gateway_service_account(
    charts: dict[str, Rendered], kind: str, name: str | None
) -> None:
    binding = charts["default"].one(kind, name)
    role_kind = kind.removesuffix("Binding")
    role = charts["default"].one(role_kind, name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": role_kind,
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": contract.DEFAULT_SERVICE_ACCOUNT,
            "namespace": contract.DEFAULT_NAMESPACE,
        }
    ]


def test_custom_namespace_reaches_every_namespaced_object(charts: dict[str, Rendered]) -> None:
    cilium_config = f"{contract.APP_NAME}-cilium-config"
    for obj in charts["full"].objects:
        if obj["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            continue
        if obj["metadata"]["name"] == cilium_config:  # reads kube-system/cilium-config
            assert obj["metadata"]["namespace"] == contract.CILIUM_CONFIG_NAMESPACE
            if obj["kind"] == "RoleBinding":
                assert obj["subjects"][0]["namespace"] == "hybrid-gw"
            continue
        assert obj["metadata"]["namespace"] == "hybrid-gw", obj["kind"]
    assert charts["full"].one("Namespace")["metadata"]["name"] == "hybrid-gw"
    assert charts["full"].one("ClusterRoleBinding")["subjects"][0]["namespace"] == "hybrid-gw"


def test_metrics_service_and_pod_monitor(charts: dict[str, Rendered]) -> None:
    selector = charts["full"].one("Deployment")["spec"]["selector"]["matchLabels"]
    service = charts["full"].one("Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {
            "name": "metrics",
            "port": contract.METRICS_PORT,
            "targetPort": "metrics",
            "protocol": "TCP",
        }
    ]
    # The PodMonitor's CRD may be missing: never in the gateway's chart, always its own.
    assert "PodMonitor" not in charts["full"].kinds()
    monitor = charts["pod-monitor"].one("PodMonitor")
    assert charts["pod-monitor"].kinds() == ["PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "hybrid-gw"
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics"}]
    assert "Service" not in charts["default"].kinds()


def test_auto_mode_capacity_objects(charts: dict[str, Rendered]) -> None:
    node_class = charts["capacity"].one("NodeClass")
    assert node_class["apiVersion"] == "eks.amazonaws.com/v1"
    assert node_class["spec"]["advancedNetworking"] == {"sourceDestCheck": "DisabledPrimaryENI"}
    assert node_class["spec"]["role"] == "gateway-node-role"
    assert node_class["spec"]["securityGroupSelectorTerms"] == [{"id": "sg-0123456789abcdef0"}]
    assert len(node_class["spec"]["subnetSelectorTerms"]) == 2
    pool = charts["capacity"].one("NodePool")
    assert pool["apiVersion"] == "karpenter.sh/v1"
    template = pool["spec"]["template"]
    assert template["metadata"]["labels"] == {contract.GATEWAY_NODE_LABEL_KEY: "true"}
    assert template["spec"]["taints"] == [
        {"key": contract.GATEWAY_NODE_TAINT_KEY, "value": "true", "effect": "NoSchedule"}
    ]
    assert template["spec"]["nodeClassRef"] == {
        "group": "eks.amazonaws.com",
        "kind": "NodeClass",
        "name": node_class["metadata"]["name"],
    }
    assert pool["spec"]["limits"] == {"nodes": "3"}


def test_chart_snapshot(charts: dict[str, Rendered], snapshot: SnapshotAssertion) -> None:
    rendered = {name: r.objects for name, r in sorted(charts.items())}
    assert rendered == snapshot.use_extension(JSONSnapshotExtension)
