"""Prometheus metrics, with the reference implementation's names, types and buckets
(docs/design.md#metrics).

The reference's series (aws/eks-hybrid-nodes-gateway internal/metrics/metrics.go) keep its
name, type, labels and buckets exactly, so its dashboards and alerts work unchanged; metrics of
ours that it lacks keep their own names. One registry per process, passed explicitly, so tests
can build a fresh `GatewayMetrics` and read values back without global state. Kernel counters
of the VXLAN device and the primary NIC are exported by a collector registered by the data
plane (`hybrid_gateway.dataplane.collector`), not stored here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

# The Go client exposes no `<counter>_created` / `<histogram>_created` series; without this the
# Python client adds one per counter and histogram, series the reference never had.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: internal/metrics/metrics.go RouteTableUpdateDuration.
ROUTE_TABLE_UPDATE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
#: internal/metrics/metrics.go LeaderSetupDuration.
LEADER_SETUP_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)
#: internal/metrics/metrics.go GatewayInfo: a GaugeVec with these labels, always 1.
INFO_LABELS = ("node_ip", "node_name", "vxlan_interface", "vpc_cidr", "pod_cidr")


@dataclass
class GatewayMetrics:
    """Every metric the daemon updates itself; kernel stats come from a collector."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # A gauge, not prometheus_client's Info: that one is typed `info` in OpenMetrics.
        self.info = Gauge(
            "hybrid_gateway_info",
            "Static information about the gateway instance. Always 1.",
            labelnames=INFO_LABELS,
            registry=r,
        )
        self.hybrid_nodes_configured = Gauge(
            "hybrid_gateway_hybrid_nodes_configured",
            "Hybrid nodes with tunnel entries programmed on this replica.",
            registry=r,
        )
        self.hybrid_nodes_skipped = Gauge(
            "hybrid_gateway_hybrid_nodes_skipped",
            "CiliumNodes labelled hybrid that were skipped because they are invalid.",
            registry=r,
        )
        self.vtep_add = Counter(
            "hybrid_gateway_vtep_add", "Tunnel entries (FDB, neighbour, route) added.", registry=r
        )
        self.vtep_add_errors = Counter(
            "hybrid_gateway_vtep_add_errors", "Tunnel entry additions that failed.", registry=r
        )
        self.vtep_remove = Counter(
            "hybrid_gateway_vtep_remove", "Tunnel entries removed.", registry=r
        )
        self.vtep_remove_errors = Counter(
            "hybrid_gateway_vtep_remove_errors", "Tunnel entry removals that failed.", registry=r
        )
        self.vxlan_interface_up = Gauge(
            "hybrid_gateway_vxlan_interface_up",
            "1 if the VXLAN device exists and is up.",
            registry=r,
        )
        self.vxlan_fdb_entries = Gauge(
            "hybrid_gateway_vxlan_fdb_entries",
            "Permanent FDB entries on the VXLAN device.",
            registry=r,
        )
        self.vxlan_route_count = Gauge(
            "hybrid_gateway_vxlan_route_count", "Routes via the VXLAN device.", registry=r
        )
        self.nexthop_objects = Gauge(
            "hybrid_gateway_nexthop_objects",
            "1 if the per-node routes use kernel nexthop objects, 0 if they carry their own "
            "gateway (the kernel lacks nexthop objects: the first pass is slower at scale).",
            registry=r,
        )
        self.reconcile_errors = Counter(
            "hybrid_gateway_reconcile_errors",
            "Data-plane reconcile passes that failed (a full resync follows).",
            registry=r,
        )
        self.aws_route_table_update = Counter(
            "hybrid_gateway_aws_route_table_update",
            "VPC route create/replace calls made by the leader.",
            registry=r,
        )
        self.aws_route_table_update_errors = Counter(
            "hybrid_gateway_aws_route_table_update_errors",
            "VPC route create/replace calls that failed.",
            registry=r,
        )
        self.aws_route_table_update_duration = Histogram(
            "hybrid_gateway_aws_route_table_update_duration_seconds",
            "Time to bring every configured route table to the desired state.",
            buckets=ROUTE_TABLE_UPDATE_BUCKETS,
            registry=r,
        )
        self.route_takeover_refused = Gauge(
            "hybrid_gateway_route_takeover_refused",
            "Pod-CIDR routes left alone because they target a gateway the operator did not allow "
            "us to take over (transit/virtual private/internet/NAT gateway, peering).",
            registry=r,
        )
        self.route_owner_prepared = Gauge(
            "hybrid_gateway_route_owner_prepared",
            "1 once the primary ENI is resolved and every configured route table described.",
            registry=r,
        )
        self.route_prepare_errors = Counter(
            "hybrid_gateway_route_prepare_errors",
            "Start-up route preparations that failed (ENI lookup, missing table, access, "
            "source/destination check on); retried in the background.",
            registry=r,
        )
        self.route_prefetch_failures = Counter(
            "hybrid_gateway_route_prefetch_failures",
            "Failed describes of every route table for a takeover (every replica, every few "
            "seconds), by reason: throttled, denied, timeout, unreachable, server_error, other.",
            ["reason"],
            registry=r,
        )
        self.route_prefetch_age = Gauge(
            "hybrid_gateway_route_prefetch_age_seconds",
            "Seconds since the route tables were last described for a takeover (since route "
            "ownership was prepared, if never); a takeover plans from that description only "
            "while it is at most 10 s old, else it describes first. 0 before preparation.",
            registry=r,
        )
        self.primary_eni_source_dest_check = Gauge(
            "hybrid_gateway_primary_eni_source_dest_check",
            "1 if the primary ENI's source/destination check is on (forwarding is dropped).",
            registry=r,
        )
        self.replica_eligible = Gauge(
            "hybrid_gateway_replica_eligible",
            "1 while this replica can do a leader's whole job: its data plane is ready and it "
            "can own the VPC routes (identity, primary ENI and tables resolved, the ENI's "
            "source/destination check off).",
            registry=r,
        )
        self.leader_without_route_ownership = Gauge(
            "hybrid_gateway_leader_without_route_ownership",
            "1 while this replica leads although it cannot do the whole job (it was the last "
            "replica left, or its ENI turned bad and no standby took over yet).",
            registry=r,
        )
        self.leader_sync_failures = Counter(
            "hybrid_gateway_leader_sync_failures",
            "Leader-work syncs that failed, by lane (routes, vtep); retried with back-off.",
            ["lane"],
            registry=r,
        )
        self.leader_sync_retry_delay = Gauge(
            "hybrid_gateway_leader_sync_retry_delay_seconds",
            "Current back-off before a failing lane's next sync (0: not failing), by lane.",
            ["lane"],
            registry=r,
        )
        self.leader_is_active = Gauge(
            "hybrid_gateway_leader_is_active", "1 while this replica holds the Lease.", registry=r
        )
        self.leader_setup_duration = Histogram(
            "hybrid_gateway_leader_setup_duration_seconds",
            "Time from acquiring leadership to routes and VTEP config converged.",
            buckets=LEADER_SETUP_BUCKETS,
            registry=r,
        )
        self.list_expired = Counter(
            "hybrid_gateway_list_expired",
            "Paged lists that expired midway (410: the API server compacted its storage between "
            "two pages) and were done again in one unpaged request, by list.",
            ["list"],
            registry=r,
        )
        self.api_errors = Counter(
            "hybrid_gateway_api_errors",
            "Failed calls to the Kubernetes API (Lease, CiliumVTEPConfig watch), the instance "
            "metadata service and EC2 at start-up, by API and operation.",
            ["api", "operation"],
            registry=r,
        )

    def set_info(self, labels: Mapping[str, str]) -> None:
        """Publish `hybrid_gateway_info` (exactly the INFO_LABELS, value 1)."""
        self.info.labels(**{name: labels[name] for name in INFO_LABELS}).set(1)


@dataclass
class ShardMetrics:
    """Active-active series, registered only in that mode (active-standby exports exactly the
    series it always did)."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.shard_held = Gauge(
            "hybrid_gateway_shard_held",
            "1 while this replica owns the shard's Lease and forwards its traffic.",
            ["shard"],
            registry=r,
        )
        self.shards_held = Gauge(
            "hybrid_gateway_shards_held", "Shards this replica owns.", registry=r
        )
        self.shard_owner = Gauge(
            "hybrid_gateway_shard_owner_info",
            "The owner of every shard as this replica sees it (1 per shard; owner '' if none).",
            ["shard", "owner"],
            registry=r,
        )
        self.members = Gauge(
            "hybrid_gateway_members",
            "Live replicas (membership Leases) this replica sees, itself included.",
            registry=r,
        )
        self.handovers = Counter(
            "hybrid_gateway_shard_handovers",
            "Shards this replica handed over to even out the load.",
            registry=r,
        )
        self.shard_prefixes = Gauge(
            "hybrid_gateway_shard_forward_prefixes",
            "Forward-path prefixes (routes per table) of each shard in the current spread.",
            ["shard"],
            registry=r,
        )
        self.shard_node_cidrs = Gauge(
            "hybrid_gateway_shard_node_cidrs",
            "Allocated hybrid node pod CIDRs behind each shard's forward prefixes.",
            ["shard"],
            registry=r,
        )
        self.stalled_members = Gauge(
            "hybrid_gateway_stalled_members",
            "Members passed over because they did not take a shard they were given in time.",
            registry=r,
        )
