"""The lab's world: the network namespaces, links, addresses and routes of the plan's topology
(`topology.build_world`), the per-shard packet counters on the gateway hosts, and the lookups
between gateway hosts and their addresses. It starts no process and reads no API."""

from __future__ import annotations

from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab.options import LabError
from hybrid_gateway_testkit.lab.topology import (
    UDP_PORT,
    GatewayHostPlan,
    HybridNodePlan,
    LabPlan,
    LabWorld,
    add_hybrid_node,
    build_world,
)
from hybrid_gateway_testkit.netns import PREFIX, NetnsWorld


class World:
    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self._netns = NetnsWorld()
        self._built: LabWorld | None = None

    def build(self) -> LabWorld:
        counters.require_nft()  # the gateway hosts' kube-proxy rule and the ENI filters
        self._built = build_world(self._netns, self.plan)
        if self.plan.active_active:
            shard_plan = self.plan.shard_plan()
            for ns in self._built.gateways.values():
                counters.install(ns, shard_plan, self.plan.pod_cidrs, UDP_PORT)
        return self._built

    @property
    def namespaces(self) -> str:
        """The pattern every namespace of this world matches (`hgw-<tag>-*`)."""
        return f"{PREFIX}-{self._netns.tag}-*"

    def close(self) -> None:
        """Delete every namespace this world created."""
        self._netns.close()

    @property
    def w(self) -> LabWorld:
        if self._built is None:
            raise LabError("the lab world is not built (use Lab as a context manager)")
        return self._built

    def add_node(self, node: HybridNodePlan) -> None:
        add_hybrid_node(self.w, node)

    def gateway(self, host: str) -> GatewayHostPlan:
        return next(g for g in self.plan.gateways if g.name == host)

    def gateway_ip(self, host: str) -> str:
        return self.gateway(host).ip

    def host_of_ip(self, ip: str | None) -> str | None:
        return next((g.name for g in self.plan.gateways if g.ip == ip), None)

    def read_counters(self) -> dict[str, dict[counters.CounterKey, int]]:
        """Every gateway host's per-shard probe counters (a killed host's too)."""
        return {host: counters.read(ns) for host, ns in self.w.gateways.items()}
