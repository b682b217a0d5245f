"""What the gatherers found, as plain values the checks judge.

Each gatherer fills its part or records why it could not (`Facts.unavailable`), so a check whose
input is missing says "skipped" with that reason instead of guessing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hybrid_gateway.core.routes import ObservedRoute
from hybrid_gateway.core.stale_routes import stale_in
from hybrid_gateway_contract.route_cleanup import Route
from hybrid_gateway_contract.sharding import (
    DEFAULT_MAX_ROUTES_PER_TABLE,
    DEFAULT_SHARDS,
    GatewayMode,
    ShardPlan,
    ShardProblem,
    ShardSetting,
    plan_shards,
    shard_plan_problems,
)
from hybrid_gateway_contract.spread import spread_pod_prefixes, with_forward_prefixes

_REFERENCE_HOLDER = re.compile(
    r"^(.+)_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)


VPC_FROM_EC2 = "ec2:DescribeVpcs"
VPC_FROM_FLAG = "--vpc-cidrs"


def holder_pod(pods: Sequence[GatewayPod], holder: str) -> GatewayPod | None:
    """The gateway pod a Lease holder identity names: our daemon's POD_NAME, or the reference
    gateway's controller-runtime identity `<hostname>_<uuid>` (controller-runtime
    pkg/leaderelection: os.Hostname() + "_" + uuid.NewUUID()), whose hostname is its node's
    name (a hostNetwork pod), so an in-place migration from the reference is recognised."""
    named = next((p for p in pods if p.name == holder), None)
    if named is not None:
        return named
    match = _REFERENCE_HOLDER.match(holder)
    if match is None:
        return None
    host = match.group(1).split(".")[0]  # the node's name, or its short form
    return next((p for p in pods if p.node_name and p.node_name.split(".")[0] == host), None)


@dataclass(frozen=True)
class Networks:
    """The address plan: the cluster's remoteNetworkConfig and service CIDR, the VPC's CIDRs."""

    vpc_cidrs: tuple[str, ...]
    remote_node_cidrs: tuple[str, ...]
    remote_pod_cidrs: tuple[str, ...]
    service_cidr: str | None
    source: str  # where they came from, e.g. "eks:DescribeCluster" or "--remote-pod-cidrs"
    # Where the VPC CIDRs came from: "ec2:DescribeVpcs", "--vpc-cidrs", or a stand-in (the
    # gateway's VPC_CIDR) when the VPC could not be read; see `vpc_cidrs_known`.
    vpc_source: str = ""

    @property
    def vpc_cidrs_known(self) -> bool:
        """Whether the VPC CIDRs are the VPC's own (read or given), not a stand-in."""
        return self.vpc_source in (VPC_FROM_EC2, VPC_FROM_FLAG)


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
    # MODE, SHARDS and MAX_ROUTES_PER_TABLE as the daemon reads them (config.py's defaults);
    # a value the daemon would refuse is named in `setting_problems`, and the default kept.
    mode: GatewayMode = GatewayMode.ACTIVE_STANDBY
    shards: int = DEFAULT_SHARDS
    max_routes_per_table: int = DEFAULT_MAX_ROUTES_PER_TABLE
    setting_problems: tuple[str, ...] = ()

    @property
    def active_active(self) -> bool:
        return self.mode is GatewayMode.ACTIVE_ACTIVE


@dataclass(frozen=True)
class RouteTable:
    table_id: str
    vpc_id: str
    subnet_ids: tuple[str, ...]  # explicitly associated, plus the implicit ones for the main table
    main: bool
    routes: tuple[ObservedRoute, ...]
    # Routes to IPv4 prefix lists (`routes` holds CIDR routes only), as (prefix list ID, its
    # max entries): each counts against the routes-per-table quota at its max entries.
    prefix_list_routes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class SgRule:
    """One security-group permission reduced to what UDP 8472 needs."""

    protocol: str  # "udp", "tcp", "-1" (all) ...
    from_port: int | None
    to_port: int | None
    cidrs: tuple[str, ...]  # its IPv4 ranges, and the entries of the prefix lists it names
    prefix_lists: tuple[str, ...] = ()  # the prefix lists it names (their entries in `cidrs`)
    groups: tuple[str, ...] = ()  # security groups it names (they hold ENIs, never on-prem nodes)


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
    ready_reason: str  # why not ready: scheduler, container and Ready reasons; or the phase


@dataclass(frozen=True)
class LeaseFacts:
    holder: str | None
    renew_time: float | None  # epoch seconds
    acquire_time: float | None
    duration_s: float | None
    transitions: int
    read_at: float | None = None  # when it was read (epoch seconds): its age is judged then


@dataclass(frozen=True)
class GroupLease:
    """One Lease of an active-active group (a shard's or a member's), read as its holder wrote
    it. Live means held and renewed within its duration, as the leader Lease is judged."""

    name: str
    lease: LeaseFacts

    def live(self, now: float) -> bool:
        lease = self.lease
        at = lease.read_at if lease.read_at is not None else now
        return bool(
            lease.holder
            and lease.renew_time is not None
            and at <= lease.renew_time + (lease.duration_s or 0.0)
        )

    def state(self, now: float) -> str:
        """live | expired (the holder stopped renewing) | released (no holder)."""
        if not self.lease.holder:
            return "released"
        return "live" if self.live(now) else "expired"


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
    # Active-active only: the shard Leases by shard index, and the membership Leases.
    shard_leases: Mapping[int, GroupLease] = field(default_factory=dict)
    member_leases: tuple[GroupLease, ...] = ()
    vtep_crd: bool | None = None
    vtep_crd_versions: tuple[str, ...] = ()  # the CRD's served versions
    cilium_config: Mapping[str, str] | None = None  # kube-system/cilium-config data
    hybrid_nodes: tuple[HybridNode, ...] = ()
    vtep_endpoints: tuple[VtepEndpoint, ...] | None = None  # None: no CiliumVTEPConfig
    aws_node_env: Mapping[str, str] | None = None  # None: no aws-node DaemonSet
    events: tuple[KubeEvent, ...] = ()
    # The VPC's associated IPv4 CIDRs as EC2 reports them (None: not read), and whether the
    # Lease holder exists as a pod in the gateway's namespace (None: not looked up).
    vpc_cidrs_read: tuple[str, ...] | None = None
    holder_pod_exists: bool | None = None
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def route_gone(self, route: ObservedRoute) -> bool:
        """A blackhole, or a route to an ENI that no longer exists (which EC2 reports as a
        blackhole; the emulator does not)."""
        eni = route.target_id if route.target_id.startswith("eni-") else None
        return route.blackhole or (eni is not None and eni not in self.existing_enis)

    def leader_pod(self) -> GatewayPod | None:
        if self.lease is None or not self.lease.holder:
            return None
        return self.holder_pod(self.lease.holder)

    def holder_pod(self, holder: str) -> GatewayPod | None:
        return holder_pod(self.pods, holder)

    def time_of(self, lease: LeaseFacts) -> float:
        """When `lease` was read (its age is judged then, not after the slower reads)."""
        return lease.read_at if lease.read_at is not None else self.now

    def leader_instance(self) -> GatewayInstance | None:
        return self.instance_of(self.leader_pod())

    def table(self, table_id: str) -> RouteTable | None:
        return next((t for t in self.tables if t.table_id == table_id), None)

    @property
    def active_active(self) -> bool:
        return self.settings is not None and self.settings.active_active

    def _plan_inputs(self) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network]]:
        settings = self.settings
        assert settings is not None
        return (
            [ipaddress.IPv4Network(c, strict=False) for c in settings.pod_cidrs],
            [ipaddress.IPv4Network(c, strict=False) for c in settings.vpc_cidrs],
        )

    def shard_plan_problems(self) -> list[ShardProblem]:
        """The contract's shard rules on these settings ([] when they pass)."""
        settings = self.settings
        assert settings is not None
        try:
            pods, vpcs = self._plan_inputs()
        except ValueError as exc:  # POD_CIDRS / VPC_CIDR as written, unchecked until here
            return [
                ShardProblem(
                    ShardSetting.SHARDS, settings.shards, f"no plan from these CIDRs: {exc}"
                )
            ]
        return shard_plan_problems(
            pods, vpcs, settings.shards, max_routes_per_table=settings.max_routes_per_table
        )

    def shard_plan(self) -> ShardPlan | None:
        """The shards the daemon works with (the contract's `plan_shards`, never re-derived
        here), or None when not in active-active mode or the settings cannot make a plan."""
        settings = self.settings
        if settings is None or not settings.active_active:
            return None
        if not settings.pod_cidrs or not settings.vpc_cidrs:
            return None
        try:  # the route quota does not stop a plan: preflight judges it on its own
            plan = plan_shards(*self._plan_inputs(), settings.shards)
        except ValueError:
            return None
        return self._spread(plan)

    def _spread(self, plan: ShardPlan) -> ShardPlan:
        """`plan` with the forward prefixes the daemons route: the spread of the hybrid nodes'
        pod CIDRs (`spread.spread_pod_prefixes`, as every replica computes it from the same
        CiliumNodes), the equal cut when no node is allocated."""
        settings = self.settings
        assert settings is not None
        pods, _vpcs = self._plan_inputs()
        spread = spread_pod_prefixes(
            pods,
            [c for node in self.hybrid_nodes for c in node.pod_cidrs],
            plan.count,
            route_budget=settings.max_routes_per_table - len(settings.vpc_cidrs),
        )
        return with_forward_prefixes(plan, spread)

    def pod(self, name: str | None) -> GatewayPod | None:
        return next((p for p in self.pods if p.name == name), None) if name else None

    def instance_of(self, pod: GatewayPod | None) -> GatewayInstance | None:
        """The EC2 instance a gateway pod runs on (pod -> node -> providerID), or None."""
        node = self.nodes.get(pod.node_name or "") if pod is not None else None
        if node is None or node.instance_id is None:
            return None
        return next((i for i in self.instances if i.instance_id == node.instance_id), None)


def leftover_shard_routes(facts: Facts, table_id: str) -> list[ObservedRoute]:
    """In active-standby mode, the routes of an owned table that an active-active plan left:
    more specific than a whole pod network and pointing at an interface (the rule the leader
    deletes them by, core/stale_routes.py). They win over the leader's routes until deleted."""
    table = facts.table(table_id)
    if table is None or facts.settings is None or facts.active_active:
        return []
    found = stale_in({table_id: table.routes}, [table_id], list(facts.settings.pod_cidrs))
    return [route for _key, route in found]
