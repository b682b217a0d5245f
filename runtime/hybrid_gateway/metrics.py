"""Prometheus metrics, with the reference implementation's names (SPEC §8).

One registry per process, passed explicitly, so tests can build a fresh `GatewayMetrics` and
read values back without global state. Kernel counters of the VXLAN device and the primary NIC
are exported by a collector registered by the data plane, not stored here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


@dataclass
class GatewayMetrics:
    """Every metric the daemon updates itself; kernel stats come from a collector."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.info = Info("hybrid_gateway", "Static gateway configuration.", registry=r)
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
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
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
        self.primary_eni_source_dest_check = Gauge(
            "hybrid_gateway_primary_eni_source_dest_check",
            "1 if the primary ENI's source/destination check is on (forwarding is dropped).",
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
        self.leader_setup_duration = Gauge(
            "hybrid_gateway_leader_setup_duration_seconds",
            "Time from acquiring leadership to routes and VTEP config converged.",
            registry=r,
        )
