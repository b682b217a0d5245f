"""What the gatherers found, as plain values the checks judge.

Each gatherer fills its part or records why it could not (`Facts.unavailable`), so a check whose
input is missing says "skipped" with that reason instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hybrid_gateway.core.routes import ObservedRoute
from hybrid_gateway_contract.route_cleanup import Route


@dataclass(frozen=True)
class Networks:
    """The address plan: the cluster's remoteNetworkConfig and service CIDR, the VPC's CIDRs."""

    vpc_cidrs: tuple[str, ...]
    remote_node_cidrs: tuple[str, ...]
    remote_pod_cidrs: tuple[str, ...]
    service_cidr: str | None
    source: str  # where they came from, e.g. "eks:DescribeCluster" or "--remote-pod-cidrs"


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway Deployment's settings (its container environment), or the overrides."""

    namespace: str
    deployment: str | None  # None: no gateway Deployment found (before install)
    replicas: int
    vpc_cidrs: tuple[str, ...]
    pod_cidrs: tuple[str, ...]
    route_table_ids: tuple[str, ...]
    lease_name: str
    pod_selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteTable:
    table_id: str
    vpc_id: str
    subnet_ids: tuple[str, ...]  # explicitly associated, plus the implicit ones for the main table
    main: bool
    routes: tuple[ObservedRoute, ...]


@dataclass(frozen=True)
class SgRule:
    """One security-group permission reduced to what UDP 8472 needs."""

    protocol: str  # "udp", "tcp", "-1" (all) ...
    from_port: int | None
    to_port: int | None
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class SecurityGroup:
    group_id: str
    ingress: tuple[SgRule, ...]
    egress: tuple[SgRule, ...]


@dataclass(frozen=True)
class GatewayInstance:
    instance_id: str
    state: str
    private_ip: str
    primary_eni: str
    source_dest_check: bool
    http_tokens: str  # "required" (IMDSv2 only) or "optional"
    security_groups: tuple[str, ...]  # of the primary ENI


@dataclass(frozen=True)
class KubeNode:
    name: str
    labels: Mapping[str, str]
    taints: tuple[tuple[str, str, str], ...]  # (key, value, effect)
    internal_ip: str | None
    instance_id: str | None  # from spec.providerID aws:///<az>/<instance id>


@dataclass(frozen=True)
class GatewayPod:
    name: str
    node_name: str | None
    host_ip: str | None
    phase: str
    ready: bool
    ready_reason: str  # the Ready condition's reason and message, or the phase


@dataclass(frozen=True)
class LeaseFacts:
    holder: str | None
    renew_time: float | None  # epoch seconds
    acquire_time: float | None
    duration_s: float | None
    transitions: int


@dataclass(frozen=True)
class HybridNode:
    name: str
    internal_ip: str | None
    pod_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class VtepEndpoint:
    name: str
    tunnel_endpoint: str
    cidr: str
    mac: str


@dataclass(frozen=True)
class KubeEvent:
    time: float | None
    kind: str  # Normal | Warning
    reason: str
    message: str
    involved: str


@dataclass(frozen=True)
class Facts:
    """Everything preflight and status judge. Empty collections mean "looked, found none";
    a missing source is named in `unavailable` (source -> why)."""

    now: float
    networks: Networks | None = None
    settings: GatewaySettings | None = None
    tables: tuple[RouteTable, ...] = ()  # every table of the VPC, and the owned ones
    missing_tables: tuple[str, ...] = ()  # owned table IDs EC2 does not know
    instances: tuple[GatewayInstance, ...] = ()
    security_groups: Mapping[str, SecurityGroup] = field(default_factory=dict)
    existing_enis: frozenset[str] = frozenset()  # ENI route targets that exist
    # Every route of the owned tables as the shared cleanup planner reads them, and every ENI
    # of the gateway instances (the planner's "gateway ENIs").
    owned_routes: tuple[Route, ...] = ()
    gateway_enis: frozenset[str] = frozenset()
    nodes: Mapping[str, KubeNode] = field(default_factory=dict)
    pods: tuple[GatewayPod, ...] = ()
    lease: LeaseFacts | None = None
    vtep_crd: bool | None = None
    cilium_config: Mapping[str, str] | None = None  # kube-system/cilium-config data
    hybrid_nodes: tuple[HybridNode, ...] = ()
    vtep_endpoints: tuple[VtepEndpoint, ...] | None = None  # None: no CiliumVTEPConfig
    aws_node_env: Mapping[str, str] | None = None  # None: no aws-node DaemonSet
    events: tuple[KubeEvent, ...] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def route_gone(self, route: ObservedRoute) -> bool:
        """A blackhole, or a route to an ENI that no longer exists (which EC2 reports as a
        blackhole; the emulator does not)."""
        eni = route.target_id if route.target_id.startswith("eni-") else None
        return route.blackhole or (eni is not None and eni not in self.existing_enis)

    def leader_pod(self) -> GatewayPod | None:
        if self.lease is None or not self.lease.holder:
            return None
        return next((p for p in self.pods if p.name == self.lease.holder), None)

    def leader_instance(self) -> GatewayInstance | None:
        pod = self.leader_pod()
        node = self.nodes.get(pod.node_name or "") if pod is not None else None
        if node is None or node.instance_id is None:
            return None
        return next((i for i in self.instances if i.instance_id == node.instance_id), None)

    def table(self, table_id: str) -> RouteTable | None:
        return next((t for t in self.tables if t.table_id == table_id), None)
