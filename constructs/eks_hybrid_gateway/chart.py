"""The gateway's Kubernetes objects as a cdk8s chart, usable with or without the CDK construct.

Every name the runtime depends on (labels, taint, env names, ports, Lease name) comes from
`hybrid_gateway_contract`, so the Deployment and the daemon cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import cdk8s
import constructs

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.mode import GatewayMode, ModeKind, resolve_mode
from eks_hybrid_gateway.validation import (
    require_nonempty,
    validate_dns_label,
    validate_lease_name,
    validate_lease_timings,
    validate_region,
    validate_replicas,
    validate_route_table_ids,
    validate_vxlan_mtu,
)
from hybrid_gateway_contract import Env, settings
from hybrid_gateway_contract.settings import Setting

JsonDict = dict[str, Any]
T = TypeVar("T")

#: Label put on every object of the chart; also the pods' selector.
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

METRICS_PORT_NAME = "metrics"
HEALTH_PORT_NAME = "health"


class CapacityType(enum.Enum):
    """Where the gateway pods run; decides how a rolling update may replace them."""

    #: Dedicated managed node group with exactly as many nodes as replicas: a surge pod could
    #: never schedule (required host anti-affinity), so one old pod goes first.
    MANAGED_NODE_GROUP = "managed-node-group"
    #: EKS Auto Mode NodePool: a surge pod gets a fresh node, so no replica goes down first.
    AUTO_MODE = "auto-mode"


class MetricsExposure(enum.Enum):
    """How Prometheus finds the metrics endpoint (the port is always open on the host)."""

    NONE = "none"
    #: A headless `Service` selecting the gateway pods, port `metrics`.
    SERVICE = "service"
    #: A Prometheus Operator `PodMonitor` (needs the monitoring.coreos.com CRDs): always a
    #: separate chart/manifest (`GatewayPodMonitorChart`), never the gateway's own.
    POD_MONITOR = "pod-monitor"
    #: Both of the above.
    SERVICE_AND_POD_MONITOR = "service-and-pod-monitor"


@dataclass(frozen=True)
class GatewayResources:
    """Container requests and limits. The memory limit suits up to 50,000 hybrid nodes: the
    daemon peaked at 265 MiB there (bench/scale_end_to_end.py), so 448Mi leaves 1.7x headroom
    (a relist holds the old and the new records at once); docs/dataplane.md, "Sizing"."""

    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "1"
    memory_limit: str = "448Mi"

    def to_json(self) -> JsonDict:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class LeaderElectionTimings:
    """Lease timings in seconds; unset values keep the runtime's defaults (3 s / 2 s / 1 s)."""

    lease_duration_s: float | None = None
    renew_deadline_s: float | None = None
    retry_period_s: float | None = None

    def validate(self) -> None:
        validate_lease_timings(
            "leader_election",
            _or_default(self.lease_duration_s, contract.DEFAULT_LEASE_DURATION_S),
            _or_default(self.renew_deadline_s, contract.DEFAULT_RENEW_DEADLINE_S),
            _or_default(self.retry_period_s, contract.DEFAULT_RETRY_PERIOD_S),
        )


def _or_default(value: float | None, default: float) -> float:
    return default if value is None else value


def validate_chart_options(
    *,
    replicas: int,
    namespace: str,
    lease_name: str = contract.DEFAULT_LEASE_NAME,
    service_account_name: str = contract.DEFAULT_SERVICE_ACCOUNT,
    leader_election: LeaderElectionTimings | None = None,
    vxlan_mtu: int | None = None,
    aws_region: str | None = None,
) -> None:
    """The chart's own checks, callable before anything is created."""
    validate_replicas("replicas", replicas)
    validate_dns_label("namespace", namespace)
    validate_lease_name("lease_name", lease_name)
    validate_dns_label("service_account_name", service_account_name, subdomain=True)
    validate_vxlan_mtu("vxlan_mtu", vxlan_mtu)
    validate_region("aws_region", aws_region)
    (leader_election or LeaderElectionTimings()).validate()


def _literal(setting: Setting[T], value: T) -> JsonDict:
    """One variable as the daemon reads it: rendered by the contract's codec."""
    return {"name": setting.variable, "value": setting.render(value)}


def _api_object(
    scope: constructs.Construct,
    id: str,
    *,
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    body: JsonDict,
) -> cdk8s.ApiObject:
    """A Kubernetes object whose top-level fields besides metadata come from `body`."""
    obj = cdk8s.ApiObject(
        scope,
        id,
        api_version=api_version,
        kind=kind,
        metadata=cdk8s.ApiObjectMetadata(name=name, namespace=namespace, labels=dict(labels)),
    )
    for key, value in body.items():
        obj.add_json_patch(cdk8s.JsonPatch.add(f"/{key}", value))
    return obj


def _container_env(
    *,
    vpc_cidrs: Sequence[str],
    pod_cidrs: Sequence[str],
    route_table_ids: Sequence[str],
    lease_name: str,
    aws_region: str | None,
    timings: LeaderElectionTimings,
    vxlan_mtu: int | None,
    debug: bool,
    mode: GatewayMode,
) -> list[JsonDict]:
    """The environment (docs/design.md#configuration): downward API for the identity, the rest
    literal, each rendered by the contract's codec (`hybrid_gateway_contract.settings`), the
    one the daemon parses it with."""
    env: list[JsonDict] = [
        {"name": Env.NODE_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": Env.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": Env.POD_NAMESPACE,
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {"name": Env.NODE_NAME, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        _literal(settings.VPC_CIDR, tuple(vpc_cidrs)),
        _literal(settings.POD_CIDRS, tuple(pod_cidrs)),
        _literal(settings.ROUTE_TABLE_IDS, tuple(route_table_ids)),
        _literal(settings.LEADER_ELECTION_ID, lease_name),
    ]
    if aws_region is not None:
        env.append(_literal(settings.AWS_REGION, aws_region))
    for setting, seconds in (
        (settings.LEASE_DURATION, timings.lease_duration_s),
        (settings.RENEW_DEADLINE, timings.renew_deadline_s),
        (settings.RETRY_PERIOD, timings.retry_period_s),
    ):
        if seconds is not None:
            env.append(_literal(setting, seconds))
    if vxlan_mtu is not None:
        env.append(_literal(settings.VXLAN_MTU, vxlan_mtu))
    if debug:
        env.append(_literal(settings.DEBUG, True))
    if mode.shards is not None and mode.max_routes_per_table is not None:  # active-active
        env.append(_literal(settings.MODE, mode.kind))
        env.append(_literal(settings.SHARDS, mode.shards))
        if mode.max_routes_per_table != settings.MAX_ROUTES_PER_TABLE.default:
            env.append(_literal(settings.MAX_ROUTES_PER_TABLE, mode.max_routes_per_table))
        # The runtime makes its Pod the owner of its membership Lease, so Kubernetes' garbage
        # collector deletes the Lease with the Pod (an ownerReference needs the owner's UID).
        env.append({"name": Env.POD_UID, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}})
    return env


def _container(
    *, image: str, image_pull_policy: str, env: list[JsonDict], resources: GatewayResources
) -> JsonDict:
    """The gateway container: probes on the health port, only NET_ADMIN, read-only root."""
    return {
        "name": contract.CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": image_pull_policy,
        # The console script of the runtime distribution (see runtime/pyproject.toml).
        "command": ["hybrid-gateway", "run"],
        "env": env,
        "ports": [
            {"name": HEALTH_PORT_NAME, "containerPort": contract.HEALTH_PORT, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": contract.METRICS_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {
            "httpGet": {"path": contract.HEALTHZ_PATH, "port": HEALTH_PORT_NAME},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": contract.READYZ_PATH, "port": HEALTH_PORT_NAME},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "resources": resources.to_json(),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


class HybridGatewayChart(cdk8s.Chart):
    """Namespace, RBAC, Deployment, PodDisruptionBudget and the optional metrics Service.

    Only built-in kinds: objects whose CRDs a fresh cluster lacks (a PodMonitor) are
    `GatewayPodMonitorChart`, applied separately. Values may be CDK tokens when the chart is
    applied through the construct (they resolve at deploy time); standalone use
    (`python -m eks_hybrid_gateway.manifests`) needs literals.

    Args:
        image: the gateway image reference.
        vpc_cidrs: `VPC_CIDR`, at least one.
        pod_cidrs: `POD_CIDRS` (the remote pod networks), at least one.
        route_table_ids: `ROUTE_TABLE_IDS`, at least one.
        namespace: @default `eks-hybrid-nodes-gateway`
        create_namespace: emit the Namespace (Pod Security `privileged`). @default True
        service_account_name: @default `eks-hybrid-nodes-gateway`
        lease_name: `LEADER_ELECTION_ID`. @default `hybrid-gateway-leader`
        replicas: at least 2. @default 2
        capacity_type: decides the rolling update. @default CapacityType.MANAGED_NODE_GROUP
        resources: @default `GatewayResources()`
        metrics: SERVICE variants add the metrics Service; a PodMonitor is always
            `GatewayPodMonitorChart`. @default MetricsExposure.NONE
        leader_election: @default the runtime's 3 s / 2 s / 1 s
        vxlan_mtu: `VXLAN_MTU`. @default the runtime's 1450
        aws_region: `AWS_REGION`. @default none: the runtime asks IMDSv2
        priority_class_name: @default `system-cluster-critical`
        image_pull_policy: @default `IfNotPresent`
        debug: `DEBUG=true`. @default False
        mode: `MODE`, `SHARDS`, `MAX_ROUTES_PER_TABLE`: one leader
            (`GatewayMode.active_standby()`) or every replica owning shards
            (`GatewayMode.active_active(shards=..., max_routes_per_table=...)`).
            @default GatewayMode.active_standby()
        shards: deprecated: `GatewayMode.active_active(shards=...)`.
        max_routes_per_table: deprecated: `GatewayMode.active_active(max_routes_per_table=...)`.
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        image: str,
        vpc_cidrs: Sequence[str],
        pod_cidrs: Sequence[str],
        route_table_ids: Sequence[str],
        namespace: str = contract.DEFAULT_NAMESPACE,
        create_namespace: bool = True,
        service_account_name: str = contract.DEFAULT_SERVICE_ACCOUNT,
        lease_name: str = contract.DEFAULT_LEASE_NAME,
        replicas: int = 2,
        capacity_type: CapacityType = CapacityType.MANAGED_NODE_GROUP,
        resources: GatewayResources | None = None,
        metrics: MetricsExposure = MetricsExposure.NONE,
        leader_election: LeaderElectionTimings | None = None,
        vxlan_mtu: int | None = None,
        aws_region: str | None = None,
        priority_class_name: str | None = "system-cluster-critical",
        image_pull_policy: str = "IfNotPresent",
        debug: bool = False,
        mode: GatewayMode | ModeKind | str = GatewayMode.ACTIVE_STANDBY,
        shards: int | None = None,
        max_routes_per_table: int | None = None,
    ) -> None:
        super().__init__(scope, id, disable_resource_name_hashes=True)
        validate_chart_options(
            replicas=replicas,
            namespace=namespace,
            lease_name=lease_name,
            service_account_name=service_account_name,
            leader_election=leader_election,
            vxlan_mtu=vxlan_mtu,
            aws_region=aws_region,
        )
        require_nonempty("vpc_cidrs", vpc_cidrs, "VPC CIDR")
        require_nonempty("pod_cidrs", pod_cidrs, "remote pod network")
        require_nonempty("route_table_ids", route_table_ids, "route table ID")
        validate_route_table_ids("route_table_ids", route_table_ids)
        # The mode checked its own settings when it was made; here only what needs this
        # chart's address plan and Lease name.
        self.mode = resolve_mode(mode, shards, max_routes_per_table)
        self.mode.check_plan(
            pod_cidrs=("pod_cidrs", pod_cidrs),
            vpc_cidrs=("vpc_cidrs", vpc_cidrs),
            lease_name=lease_name,
        )

        self.namespace_name = namespace
        self.service_account_name = service_account_name
        self.lease_name = lease_name
        self.selector_labels: dict[str, str] = {NAME_LABEL: contract.APP_NAME}
        labels = {**self.selector_labels, MANAGED_BY_LABEL: "cdk8s"}

        if create_namespace:
            self._add_namespace(labels)
        self._add_service_account(labels)
        self._add_rbac(labels)
        env = _container_env(
            vpc_cidrs=vpc_cidrs,
            pod_cidrs=pod_cidrs,
            route_table_ids=route_table_ids,
            lease_name=lease_name,
            aws_region=aws_region,
            timings=leader_election or LeaderElectionTimings(),
            vxlan_mtu=vxlan_mtu,
            debug=debug,
            mode=self.mode,
        )
        container = _container(
            image=image,
            image_pull_policy=image_pull_policy,
            env=env,
            resources=resources or GatewayResources(),
        )
        self.deployment = self._add_deployment(
            labels,
            pod_spec=self._pod_spec(container, priority_class_name),
            replicas=replicas,
            capacity_type=capacity_type,
        )
        self._add_disruption_budget(labels)
        if metrics in (MetricsExposure.SERVICE, MetricsExposure.SERVICE_AND_POD_MONITOR):
            self._add_metrics_service(labels)

    def _add_namespace(self, labels: Mapping[str, str]) -> None:
        # hostNetwork and NET_ADMIN are outside the "baseline" Pod Security Standard: say so
        # explicitly so clusters enforcing a stricter default still admit the gateway.
        _api_object(
            self,
            "Namespace",
            api_version="v1",
            kind="Namespace",
            name=self.namespace_name,
            namespace=None,
            labels={**labels, "pod-security.kubernetes.io/enforce": "privileged"},
            body={},
        )

    def _add_service_account(self, labels: Mapping[str, str]) -> None:
        _api_object(
            self,
            "ServiceAccount",
            api_version="v1",
            kind="ServiceAccount",
            name=self.service_account_name,
            namespace=self.namespace_name,
            labels=labels,
            body={"automountServiceAccountToken": True},
        )

    def _pod_spec(self, container: JsonDict, priority_class_name: str | None) -> JsonDict:
        """hostNetwork on the dedicated nodes, one pod per host, spread over zones."""
        pod_spec: JsonDict = {
            "serviceAccountName": self.service_account_name,
            "automountServiceAccountToken": True,
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "terminationGracePeriodSeconds": contract.TERMINATION_GRACE_PERIOD_S,
            "nodeSelector": {contract.GATEWAY_NODE_LABEL_KEY: contract.GATEWAY_NODE_LABEL_VALUE},
            # Any value of the gateway taint: the AWS guide's Auto Mode NodePool sets it
            # without one, and the reference chart tolerates it with `operator: Exists`
            # (aws/eks-hybrid-nodes-gateway charts/.../templates/deployment.yaml,
            # deploy/auto.yaml); our own node groups set the value "true".
            "tolerations": [
                {
                    "key": contract.GATEWAY_NODE_TAINT_KEY,
                    "operator": "Exists",
                    "effect": contract.GATEWAY_NODE_TAINT_EFFECT,
                }
            ],
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": self.selector_labels},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ],
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "labelSelector": {"matchLabels": self.selector_labels},
                                "topologyKey": "topology.kubernetes.io/zone",
                            },
                        }
                    ],
                }
            },
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        }
        if priority_class_name:
            pod_spec["priorityClassName"] = priority_class_name
        return pod_spec

    def _add_deployment(
        self,
        labels: Mapping[str, str],
        *,
        pod_spec: JsonDict,
        replicas: int,
        capacity_type: CapacityType,
    ) -> cdk8s.ApiObject:
        if capacity_type is CapacityType.MANAGED_NODE_GROUP:
            rolling_update = {"maxSurge": 0, "maxUnavailable": 1}
        else:
            rolling_update = {"maxSurge": 1, "maxUnavailable": 0}
        return _api_object(
            self,
            "Deployment",
            api_version="apps/v1",
            kind="Deployment",
            name=contract.APP_NAME,
            namespace=self.namespace_name,
            labels=labels,
            body={
                "spec": {
                    "replicas": replicas,
                    "revisionHistoryLimit": 5,
                    "selector": {"matchLabels": self.selector_labels},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update},
                    "template": {
                        "metadata": {
                            "labels": {**self.selector_labels, COMPONENT_LABEL: "gateway"}
                        },
                        "spec": pod_spec,
                    },
                }
            },
        )

    def _add_disruption_budget(self, labels: Mapping[str, str]) -> None:
        _api_object(
            self,
            "PodDisruptionBudget",
            api_version="policy/v1",
            kind="PodDisruptionBudget",
            name=contract.APP_NAME,
            namespace=self.namespace_name,
            labels=labels,
            body={"spec": {"minAvailable": 1, "selector": {"matchLabels": self.selector_labels}}},
        )

    def _add_rbac(self, labels: Mapping[str, str]) -> None:
        lease_role = f"{contract.APP_NAME}-leader-election"
        _api_object(
            self,
            "LeaseRole",
            api_version="rbac.authorization.k8s.io/v1",
            kind="Role",
            name=lease_role,
            namespace=self.namespace_name,
            labels=labels,
            body={"rules": self._lease_rules()},
        )
        self._role_binding("LeaseRoleBinding", lease_role, self.namespace_name, labels)
        _api_object(
            self,
            "ClusterRole",
            api_version="rbac.authorization.k8s.io/v1",
            kind="ClusterRole",
            name=contract.APP_NAME,
            namespace=None,
            labels=labels,
            body={
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["events"],
                        "verbs": ["create", "patch"],
                    },
                    {
                        "apiGroups": [contract.CILIUM_GROUP],
                        "resources": [contract.CILIUM_NODES_PLURAL],
                        "verbs": ["get", "list", "watch"],
                    },
                    {
                        "apiGroups": [contract.CILIUM_GROUP],
                        "resources": [contract.VTEP_CONFIGS_PLURAL],
                        "verbs": ["create", "get", "list", "patch", "update", "watch"],
                    },
                    # The gateway's own Namespace, read for its UID: the daemon makes it the
                    # CiliumVTEPConfig's owner, so the object goes when the gateway is
                    # uninstalled (runtime core/vtep.py `namespace_owner`).
                    {
                        "apiGroups": [""],
                        "resources": ["namespaces"],
                        "resourceNames": [self.namespace_name],
                        "verbs": ["get"],
                    },
                    # Which versions the CiliumVTEPConfig CRD serves (the daemon's check that
                    # the cluster can match its endpoints): that one CRD, read by name.
                    {
                        "apiGroups": ["apiextensions.k8s.io"],
                        "resources": ["customresourcedefinitions"],
                        "resourceNames": [
                            f"{contract.VTEP_CONFIGS_PLURAL}.{contract.CILIUM_GROUP}"
                        ],
                        "verbs": ["get"],
                    },
                ]
            },
        )
        # The Cilium agents' `vtep-mask`, read by name from kube-system/cilium-config: a Role
        # there for that one ConfigMap, get only (the daemon polls it every resync period).
        cilium_role = f"{contract.APP_NAME}-cilium-config"
        _api_object(
            self,
            "CiliumConfigRole",
            api_version="rbac.authorization.k8s.io/v1",
            kind="Role",
            name=cilium_role,
            namespace=contract.CILIUM_CONFIG_NAMESPACE,
            labels=labels,
            body={
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": [contract.CILIUM_CONFIG_NAME],
                        "verbs": ["get"],
                    }
                ]
            },
        )
        self._role_binding(
            "CiliumConfigRoleBinding", cilium_role, contract.CILIUM_CONFIG_NAMESPACE, labels
        )
        _api_object(
            self,
            "ClusterRoleBinding",
            api_version="rbac.authorization.k8s.io/v1",
            kind="ClusterRoleBinding",
            name=contract.APP_NAME,
            namespace=None,
            labels=labels,
            body={
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": contract.APP_NAME,
                },
                "subjects": [self._subject()],
            },
        )

    def _subject(self) -> JsonDict:
        """The gateway's ServiceAccount, the one subject of every binding."""
        return {
            "kind": "ServiceAccount",
            "name": self.service_account_name,
            "namespace": self.namespace_name,
        }

    def _role_binding(self, id: str, role: str, namespace: str, labels: Mapping[str, str]) -> None:
        """A RoleBinding of the Role `role` in `namespace`, of the same name, to the gateway's
        ServiceAccount."""
        _api_object(
            self,
            id,
            api_version="rbac.authorization.k8s.io/v1",
            kind="RoleBinding",
            name=role,
            namespace=namespace,
            labels=labels,
            body={
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [self._subject()],
            },
        )

    def _lease_rules(self) -> list[JsonDict]:
        """The Lease verbs of the gateway's Role (Kubernetes documentation, "Using RBAC
        Authorization", "Referring to resources": resourceNames never limits a create, and
        limits a list or watch only through a `metadata.name` field selector)."""
        leases = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"]}
        if self.mode.is_active_active:
            # Active-active: the shard Leases, a membership Lease per replica whose name is a
            # digest of the pod name (unknown here), and a list and watch of the group by label
            # selector, which resourceNames cannot express. So no resourceNames; the Role is
            # namespaced, which keeps every verb to the Leases of the gateway's own namespace,
            # and there is no delete (the membership Lease goes with its Pod, its owner).
            return [
                {**leases, "verbs": ["get", "list", "patch", "update", "watch"]},
                {**leases, "verbs": ["create"]},
            ]
        # Active-standby: every write is limited to the one Lease. Releasing is an update; the
        # standby lists and watches it with a `metadata.name` field selector. Reading is not:
        # the leader also lists and watches the shard Leases by their group label (one mode
        # at a time: it never writes while an active-active shard owner is live, e.g. during a
        # rollback), which resourceNames cannot express; the Role keeps that to the Leases of
        # the gateway's own namespace, read-only.
        return [
            {
                **leases,
                "resourceNames": [self.lease_name],
                "verbs": ["get", "list", "patch", "update", "watch"],
            },
            {**leases, "verbs": ["list", "watch"]},
            {**leases, "verbs": ["create"]},
        ]

    def _add_metrics_service(self, labels: Mapping[str, str]) -> None:
        """A headless Service selecting the gateway pods, port `metrics`."""
        _api_object(
            self,
            "MetricsService",
            api_version="v1",
            kind="Service",
            name=f"{contract.APP_NAME}-metrics",
            namespace=self.namespace_name,
            labels=labels,
            body={
                "spec": {
                    "clusterIP": "None",
                    "selector": self.selector_labels,
                    "ports": [
                        {
                            "name": METRICS_PORT_NAME,
                            "port": contract.METRICS_PORT,
                            "targetPort": METRICS_PORT_NAME,
                            "protocol": "TCP",
                        }
                    ],
                }
            },
        )
