r"""The lab's network: a VPC segment, gateway hosts, a cloud pod and Cilium-like hybrid nodes.

```
   control (EC2 emulator, API server)   gw-a   gw-b   cloud pod           VPC 10.0.0.0/16
         10.0.0.10                  10.0.0.11 .12  10.0.0.20
              \_____________________|______|_______/
                                  br0  10.0.0.1          <- VPC router namespace "vpcr"
                                  br1  192.168.100.1     (also the VPN/Direct Connect edge)
                     _______________|______________
               hn1 192.168.100.11          hn2 192.168.100.12        on-prem node network
               pod 10.100.1.5/24           pod 10.100.2.5/24         hybrid pod CIDRs
```
Every gateway host reaches br0 through a namespace of its own, `eni-<host>`: its ENI, with the
ENI's own conntrack and the gateway security group's rules (`strict`), and every gateway host
drops what conntrack calls INVALID on its forward hook, as kube-proxy does on an EKS node.

The VPC router forwards the hybrid pod CIDRs to whichever gateway host owns the ENI named in the
EC2 emulator's route table (see `vpc_router`). Each hybrid node is a Cilium VTEP peer: a kernel
VXLAN device (VNI 2, port 8472) whose MAC is the one the gateway expects (`02:00:<node IP>`), and a
policy rule `from <pod CIDR> lookup <table>` so only pod traffic takes the tunnel route for the
VPC CIDR (the tunnel endpoints lie inside the VPC CIDR: a plain route would loop the encapsulated
packets back into the tunnel). Everything is inside namespaces of one `NetnsWorld`.

The active-active world (`active_active_plan`) has 2 or 3 gateway hosts, one hybrid node per
shard (its pod CIDR inside that shard's pod prefix) and one extra cloud address per shard, in a
VPC sub-prefix of that shard's VTEP endpoint and outside the sub-prefix's first /24, so a hybrid
node matching endpoints under a shorter mask than the endpoints' own would miss it. Hybrid pod i
and cloud address i form the probe pair of shard i: both directions of the pair are shard i's.
Hybrid pod i and cloud address i+1 form a mismatched pair (`mismatched_pairs`): the forward path
is shard i's, the return path shard i+1's, so its two directions cross different gateways.

The sequential world (`sequential_plan`) is the real path's layout: its hybrid nodes' pod CIDRs
are the first ones Cilium's cluster-pool IPAM hands out (`cidrset_sequential`), so under the
plan's equal cut every node sits in shard 0. The daemons spread the forward prefixes over the
allocated node CIDRs instead (contract/hybrid_gateway_contract/spread.py), and so does the lab's
bookkeeping: `LabPlan.shard_plan` is the plan with that spread's forward prefixes, and a node's
shard is the one whose forward prefixes hold its pod CIDR.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field

from hybrid_gateway_contract import DEFAULT_VXLAN_MTU, VXLAN_PORT, VXLAN_VNI
from hybrid_gateway_contract.sharding import (
    DEFAULT_MAX_ROUTES_PER_TABLE,
    GatewayMode,
    ShardPlan,
    plan_shards,
)
from hybrid_gateway_contract.spread import spread_pod_prefixes, with_forward_prefixes
from hybrid_gateway_testkit.lab.strict import (
    eni_ruleset,
    kube_proxy_ruleset,
    lab_eni_rules,
    load_nft,
)
from hybrid_gateway_testkit.netns import Netns, NetnsWorld
from hybrid_gateway_testkit.tunnel_world import peer_mac

UDP_PORT = 9000
"""The UDP probes' port (both ways)."""
TCP_PORT = 9443
"""One-shot TCP calls (a webhook-like request/response per connection)."""
CONN_PORT = 9444
"""Long-lived TCP connections (a request/response every interval on one connection)."""
POD_LOAD_PORTS = (5201, 5202)
"""The bulk load's iperf3 servers in the hybrid pods (and nodes): the long transfer's, the short
transfers' (`load`); the ENI filters admit them from the VPC side."""
ENI_TABLE_ID = "100"
"""The ENI namespace's routing table for traffic from the VPC: all of it to the host."""
ENI_ADDRESS_OFFSET = 100
"""The ENI namespace of gateway host 10.0.0.11 answers ARP from 10.0.0.111 (its own address)."""

VTEP_DEVICE = "vtep0"
"""Name of the hybrid node's VXLAN device (Cilium calls its own `cilium_vxlan`)."""

POD_MTU = DEFAULT_VXLAN_MTU
"""Pod interfaces use the tunnel MTU (1500 underlay - 50 VXLAN overhead), as Cilium's pods do,
so no probe or benchmark segment ever needs fragmenting on the way through the tunnel."""


@dataclass(frozen=True)
class GatewayHostPlan:
    name: str
    ip: str


@dataclass(frozen=True)
class HybridNodePlan:
    name: str
    node_ip: str
    pod_cidr: str
    table: int

    @property
    def pod_ip(self) -> str:
        return str(ipaddress.IPv4Network(self.pod_cidr).network_address + 5)

    @property
    def pod_gateway_ip(self) -> str:
        return str(ipaddress.IPv4Network(self.pod_cidr).network_address + 1)


GATEWAY_HOSTS = (
    GatewayHostPlan("gw-a", "10.0.0.11"),
    GatewayHostPlan("gw-b", "10.0.0.12"),
    GatewayHostPlan("gw-c", "10.0.0.13"),
)
MAX_LAB_SHARDS = 8
"""One hybrid node and one cloud address per shard, and Cilium's 8 VTEP endpoints: 8 at most."""
CLOUD_TARGET_OFFSET = 13 * 256 + 20
"""Where a shard's cloud address sits in its VTEP endpoint CIDR: outside the first /24."""


def _default_gateways() -> tuple[GatewayHostPlan, ...]:
    return GATEWAY_HOSTS[:2]


def _default_nodes() -> tuple[HybridNodePlan, ...]:
    return (
        HybridNodePlan("hn1", "192.168.100.11", "10.100.1.0/24", 101),
        HybridNodePlan("hn2", "192.168.100.12", "10.100.2.0/24", 102),
    )


@dataclass(frozen=True)
class LabPlan:
    """Every address of the lab. All of them exist only inside the lab's namespaces."""

    vpc_cidr: str = "10.0.0.0/16"
    subnet_prefix: int = 24
    router_vpc_ip: str = "10.0.0.1"
    control_ip: str = "10.0.0.10"
    cloud_pod_ip: str = "10.0.0.20"
    onprem_cidr: str = "192.168.100.0/24"
    router_onprem_ip: str = "192.168.100.1"
    pod_cidrs: str = "10.100.0.0/16"
    gateways: tuple[GatewayHostPlan, ...] = field(default_factory=_default_gateways)
    nodes: tuple[HybridNodePlan, ...] = field(default_factory=_default_nodes)
    mode: GatewayMode = GatewayMode.ACTIVE_STANDBY
    shards: int = 0  # active-active only
    cloud_targets: tuple[str, ...] = ()  # active-active: the cloud address of shard i
    return_path_rules: bool = True  # the ENI filters carry the construct's return-path rules

    @property
    def active_active(self) -> bool:
        return self.mode is GatewayMode.ACTIVE_ACTIVE

    def equal_cut_plan(self) -> ShardPlan:
        """The contract's shard plan for this lab's addresses: the equal cut of the pod CIDRs."""
        return plan_shards(
            [ipaddress.IPv4Network(self.pod_cidrs)],
            [ipaddress.IPv4Network(self.vpc_cidr)],
            self.shards,
        )

    def shard_plan(self) -> ShardPlan:
        """The shard plan as the daemons route it: the equal cut's return path, and forward
        prefixes spread over the hybrid nodes' allocated pod CIDRs, computed as every daemon
        computes it from the CiliumNodes (runtime leader/spread.py `ForwardPrefixes`, with
        the default MAX_ROUTES_PER_TABLE less the one local route of the VPC CIDR). The lab's
        nodes are the CiliumNodes the daemons see (each lab agent registers its own). With
        fewer nodes than shards, or one node at the start of each shard, it is the equal cut."""
        plan = self.equal_cut_plan()
        spread = spread_pod_prefixes(
            [ipaddress.IPv4Network(self.pod_cidrs)],
            [node.pod_cidr for node in self.nodes],
            self.shards,
            route_budget=DEFAULT_MAX_ROUTES_PER_TABLE - 1,
        )
        return with_forward_prefixes(plan, spread)

    def node_shard(self, node: HybridNodePlan, plan: ShardPlan | None = None) -> int:
        """The shard whose forward prefixes hold `node`'s pod CIDR (in `plan`, default the
        spread one): the shard whose owner the VPC routes traffic to that node's pods."""
        pod = ipaddress.IPv4Network(node.pod_cidr)
        for shard in (plan or self.shard_plan()).shards:
            if any(pod.subnet_of(ipaddress.IPv4Network(p)) for p in shard.pod_prefixes):
                return shard.index
        raise ValueError(f"{node.name}: pod CIDR {node.pod_cidr} is under no shard's prefixes")

    def shard_pairs(self) -> list[tuple[int, HybridNodePlan, str]]:
        """(shard, hybrid node, cloud address): every hybrid node with the cloud address of
        the shard that carries its pods (none in active-standby mode): both directions of a
        pair are that shard's."""
        if not self.cloud_targets:
            return []
        plan = self.shard_plan()
        return [
            (shard, node, self.cloud_targets[shard])
            for node in self.nodes
            for shard in [self.node_shard(node, plan)]
        ]

    def mismatched_pairs(self) -> list[tuple[int, HybridNodePlan, int, str]]:
        """(shard i, hybrid node of i, shard j, cloud address of j) with j = i + 1 mod S: the
        forward path of a flow between them follows shard i's owner, the return path shard
        j's (different gateways whenever i and j have different owners)."""
        count = len(self.cloud_targets)
        return [
            (i, node, (i + 1) % count, self.cloud_targets[(i + 1) % count])
            for i, node, _ in self.shard_pairs()
        ]

    def spare_node(self, index: int) -> HybridNodePlan:
        """A further hybrid node (for churn drills): hn3, hn4, ... in the same ranges."""
        n = len(self.nodes) + index + 1
        return HybridNodePlan(f"hn{n}", f"192.168.100.{10 + n}", f"10.100.{n}.0/24", 100 + n)


def _check_sizes(shards: int, gateways: int) -> None:
    if not 2 <= gateways <= len(GATEWAY_HOSTS):
        raise ValueError(f"gateways: {gateways}, the lab has 2 to {len(GATEWAY_HOSTS)}")
    if not 2 <= shards <= MAX_LAB_SHARDS or shards & (shards - 1):
        raise ValueError(f"shards: {shards}, the lab takes a power of two from 2 to 8")
    if shards < gateways:
        raise ValueError(f"shards: {shards} < gateways {gateways}: a gateway would own nothing")


def _cloud_targets(plan: ShardPlan) -> tuple[str, ...]:
    """Cloud address i in shard i's first VTEP endpoint CIDR, outside its first /24."""
    return tuple(
        str(ipaddress.IPv4Network(s.vtep_endpoints[0][1]).network_address + CLOUD_TARGET_OFFSET)
        for s in plan.shards
    )


def _node(n: int, pod_cidr: str) -> HybridNodePlan:
    return HybridNodePlan(f"hn{n}", f"192.168.100.{10 + n}", pod_cidr, 100 + n)


def active_active_plan(*, shards: int = 4, gateways: int = 2) -> LabPlan:
    """The active-active lab: `gateways` hosts, one hybrid node and one cloud address per shard.

    Hybrid node i's pod CIDR is the first /24 of shard i's pod prefix (10.100.0.0/24,
    10.100.64.0/24, ... with 4 shards of 10.100.0.0/16); cloud address i lies in shard i's
    first VTEP endpoint CIDR (10.0.13.20, 10.0.77.20, ... with four /18s of 10.0.0.0/16)."""
    _check_sizes(shards, gateways)
    plan = LabPlan(mode=GatewayMode.ACTIVE_ACTIVE, shards=shards).equal_cut_plan()
    firsts = [
        next(ipaddress.IPv4Network(s.pod_prefixes[0]).subnets(new_prefix=24)) for s in plan.shards
    ]
    nodes = [_node(k + 1, str(first)) for k, first in enumerate(firsts)]
    return LabPlan(
        gateways=GATEWAY_HOSTS[:gateways],
        nodes=tuple(nodes),
        mode=GatewayMode.ACTIVE_ACTIVE,
        shards=shards,
        cloud_targets=_cloud_targets(plan),
    )


CLUSTER_POOL_MASK_SIZE = 24
"""Cilium's `cluster-pool-ipv4-mask-size` default: every node gets a /24 of the pool."""
MAX_SEQUENTIAL_NODES = 8
"""Namespaces, probes and node addresses stay within what the lab runs in seconds."""


def cidrset_sequential(pool: str, mask_size: int, count: int) -> list[str]:
    """The first `count` node pod CIDRs Cilium's cluster-pool IPAM allocates from a fresh
    `pool`, in order. cilium/cilium pkg/ipam/cidrset/cidr_set.go: `AllocateNext` takes the
    first free index from `nextCandidate` (0 in a new CidrSet) onwards and moves
    `nextCandidate` past it; `indexToCIDRBlock` puts index i at the pool's address
    OR i << (32 - mask size). With nothing released, node k gets index k: the pool's start."""
    network = ipaddress.IPv4Network(pool)
    if not network.prefixlen <= mask_size <= network.max_prefixlen:
        raise ValueError(f"mask size: /{mask_size} does not fit in pool {pool}")
    capacity = 1 << (mask_size - network.prefixlen)
    if not 0 <= count <= capacity:
        raise ValueError(f"count: {count}, pool {pool} holds {capacity} /{mask_size}s")
    base = int(network.network_address)
    step = 1 << (network.max_prefixlen - mask_size)
    return [f"{ipaddress.IPv4Address(base + i * step)}/{mask_size}" for i in range(count)]


def sequential_plan(*, nodes: int = 4, shards: int = 4, gateways: int = 2) -> LabPlan:
    """The active-active lab as the real path lays it out: `nodes` hybrid nodes whose pod
    CIDRs Cilium's cluster-pool IPAM allocated in order from the start of the pool
    (`cidrset_sequential`: 10.100.0.0/24, 10.100.1.0/24, ...), all in shard 0 of the equal
    cut. The daemons' spread gives every shard some of them (`LabPlan.shard_plan`); each node
    is paired with its spread shard's cloud address. Refused when the spread would leave a
    shard without a node (that shard's pairs would carry nothing)."""
    _check_sizes(shards, gateways)
    if not shards <= nodes <= MAX_SEQUENTIAL_NODES:
        raise ValueError(f"nodes: {nodes}, the sequential world takes {shards} to 8 (>= shards)")
    base = LabPlan(mode=GatewayMode.ACTIVE_ACTIVE, shards=shards)
    cidrs = cidrset_sequential(base.pod_cidrs, CLUSTER_POOL_MASK_SIZE, nodes)
    plan = dataclasses.replace(
        base,
        gateways=GATEWAY_HOSTS[:gateways],
        nodes=tuple(_node(k + 1, cidr) for k, cidr in enumerate(cidrs)),
        cloud_targets=_cloud_targets(base.equal_cut_plan()),
    )
    forward = plan.shard_plan()
    empty = sorted(set(range(shards)) - {plan.node_shard(n, forward) for n in plan.nodes})
    if empty:
        raise ValueError(
            f"nodes: {nodes} over {shards} shards leaves shard(s) {empty} without a node "
            "under the spread"
        )
    return plan


@dataclass
class LabWorld:
    """The namespaces and interface names of a built lab."""

    plan: LabPlan
    world: NetnsWorld
    router: Netns
    control: Netns
    cloud: Netns
    gateways: dict[str, Netns] = field(default_factory=dict)
    gateway_ifaces: dict[str, str] = field(default_factory=dict)
    enis: dict[str, Netns] = field(default_factory=dict)  # the per-ENI filter of each host
    nodes: dict[str, Netns] = field(default_factory=dict)
    node_ifaces: dict[str, str] = field(default_factory=dict)
    node_switch_ports: dict[str, str] = field(default_factory=dict)  # router side, on br1
    pods: dict[str, Netns] = field(default_factory=dict)
    node_plans: dict[str, HybridNodePlan] = field(default_factory=dict)


def _host_sysctls(ns: Netns, *, forward: bool) -> None:
    """Set before any link exists so `default` is inherited: paths in the lab are asymmetric."""
    for key in ("all", "default"):
        ns.sysctl(f"net.ipv4.conf.{key}.rp_filter", "0")
        ns.sysctl(f"net.ipv4.conf.{key}.accept_redirects", "0")
        ns.sysctl(f"net.ipv4.conf.{key}.send_redirects", "0")
    ns.sysctl("net.ipv4.ip_forward", "1" if forward else "0")


def _bridge_port(
    world: NetnsWorld, router: Netns, bridge: str, host: Netns, addr: str
) -> tuple[str, str]:
    """Plug `host` into `bridge` of the router namespace; returns (host, router) interfaces."""
    router_if, host_if = world.link(router, None, host, addr)
    router.ip("link", "set", router_if, "master", bridge)
    return host_if, router_if


def _vxlan_whole_to(router: Netns, bridge: str, vtep_ip: str, port: str) -> None:
    """VXLAN packets the VPC router routes to `vtep_ip` leave by its bridge port `port` as
    they are, not segmented by the bridge.

    A real receiver gets the segments of a tunnelled TCP burst coalesced again by its NIC's GRO
    (the kernel's VXLAN socket registers `vxlan_gro_receive`, torvalds/linux
    drivers/net/vxlan/vxlan_core.c `vxlan_socket_create`), and the ENI and the VPC forward in
    hardware. In the lab a routed packet leaving by a bridge is checked against the bridge's
    `hw_enc_features`, which a bridge leaves empty (net/bridge/br_device.c `br_dev_setup`;
    net/core/dev.c `netif_skb_features`), so every VXLAN burst was cut into 1,500-byte packets
    here that nothing joined again (a veth has no NAPI/GRO by default): the receiving VTEP and,
    towards a gateway, its ENI namespace (forwarding, conntrack, filter) paid per packet, which
    halved hybrid to cloud goodput against cloud to hybrid (docs/dataplane.md#east-west-traffic).
    Unencapsulated packets already cross the bridges whole. The source/destination check's
    bridge table drops only frames to an address other than the host's (`vpc_router`), so
    skipping it for the host's own VXLAN traffic changes nothing. u32 `ip dport`: 20-byte IP
    header (the tunnel's outer header has no options)."""
    router.exec("tc", "filter", "add", "dev", bridge, "egress", "protocol", "ip", "u32",
                "match", "ip", "dst", f"{vtep_ip}/32", "match", "ip", "protocol", "17", "0xff",
                "match", "ip", "dport", str(VXLAN_PORT), "0xffff",
                "action", "mirred", "egress", "redirect", "dev", port)  # fmt: skip


def build_world(world: NetnsWorld, plan: LabPlan) -> LabWorld:
    """Create every namespace, link, address and static route of the lab inside `world`."""
    prefix = plan.subnet_prefix
    onprem_prefix = ipaddress.IPv4Network(plan.onprem_cidr).prefixlen
    router = world.add("vpcr")
    control = world.add("ctl")
    cloud = world.add("cloud")
    lab = LabWorld(plan=plan, world=world, router=router, control=control, cloud=cloud)
    _host_sysctls(router, forward=True)
    _host_sysctls(control, forward=False)
    _host_sysctls(cloud, forward=False)
    for bridge, addr in (
        ("br0", f"{plan.router_vpc_ip}/{prefix}"),
        ("br1", f"{plan.router_onprem_ip}/{onprem_prefix}"),
    ):
        router.ip("link", "add", bridge, "type", "bridge")
        router.ip("addr", "add", addr, "dev", bridge)
        router.ip("link", "set", bridge, "up")
        router.exec("tc", "qdisc", "add", "dev", bridge, "clsact")  # for `_vxlan_whole_to`
    # The enterprise network does not route hybrid pod CIDRs: pod-sourced packets arriving from
    # the on-prem side outside the tunnel are refused, so nothing bypasses the gateway.
    router.ip("rule", "add", "iif", "br1", "from", plan.pod_cidrs, "prohibit", "priority", "100")

    _bridge_port(world, router, "br0", control, f"{plan.control_ip}/{prefix}")
    control.ip("route", "add", "default", "via", plan.router_vpc_ip)
    cloud_if, _ = _bridge_port(world, router, "br0", cloud, f"{plan.cloud_pod_ip}/{prefix}")
    # Pod-side MTU on the route (not the link: the bridge would shrink to its smallest port).
    cloud.ip("route", "add", "default", "via", plan.router_vpc_ip, "mtu", str(POD_MTU))
    for target in plan.cloud_targets:  # each in a subnet of its own, routed by the VPC router
        subnet = ipaddress.IPv4Network(f"{target}/{prefix}", strict=False)
        router.ip("addr", "add", f"{subnet.network_address + 1}/{prefix}", "dev", "br0")
        cloud.ip("addr", "add", f"{target}/{prefix}", "dev", cloud_if)

    eni_rules = lab_eni_rules(
        vpc_cidr=plan.vpc_cidr,
        remote_node_networks=[plan.onprem_cidr],
        cluster_members=[plan.control_ip, *(g.ip for g in plan.gateways)],
        probe_ports=[
            ("udp", UDP_PORT),
            ("tcp", TCP_PORT),
            ("tcp", CONN_PORT),
            *(("tcp", port) for port in POD_LOAD_PORTS),  # iperf3 servers of `load`
        ],
        return_path=plan.return_path_rules,
    )
    for gw in plan.gateways:
        ns = world.add(gw.name)
        _host_sysctls(ns, forward=True)
        lab.gateways[gw.name] = ns
        # The ENI: a proxy-ARP router in a namespace of its own, so its conntrack is its own.
        eni = world.add(f"eni-{gw.name}")
        _host_sysctls(eni, forward=True)
        host_if, eni_host_if = world.link(ns, f"{gw.ip}/{prefix}", eni, None)
        eni_ip = ipaddress.IPv4Address(gw.ip) + ENI_ADDRESS_OFFSET
        eni_vpc_if, router_port = world.link(eni, f"{eni_ip}/{prefix}", router, None)
        router.ip("link", "set", router_port, "master", "br0")
        _vxlan_whole_to(router, "br0", gw.ip, router_port)
        # ARP: towards the host it answers for every VPC address, towards the VPC only for
        # the host's own address (a proxy entry, not proxy_arp: the rule below would make it
        # answer for every address reached through the host, other gateways' included).
        eni.sysctl(f"net.ipv4.conf.{eni_host_if}.proxy_arp", "1")
        for ifname in (eni_host_if, eni_vpc_if):
            eni.sysctl(f"net.ipv4.neigh.{ifname}.proxy_delay", "0")
        eni.ip("neigh", "add", "proxy", gw.ip, "dev", eni_vpc_if)
        eni.ip("route", "add", f"{gw.ip}/32", "dev", eni_host_if)
        eni.ip("route", "add", "default", "via", plan.router_vpc_ip)
        # An ENI hands the instance every frame sent to it, whatever the IP destination (the
        # VPC routes hybrid pod CIDRs to it): all that enters from the VPC goes to the host.
        eni.ip("route", "add", "default", "via", gw.ip, "dev", eni_host_if, "table", ENI_TABLE_ID)
        eni.ip("rule", "add", "iif", eni_vpc_if, "lookup", ENI_TABLE_ID, "priority", "100")
        load_nft(eni, eni_ruleset(eni_host_if, eni_vpc_if, eni_rules))
        lab.enis[gw.name] = eni
        lab.gateway_ifaces[gw.name] = host_if
        ns.ip("route", "add", "default", "via", plan.router_vpc_ip)
        load_nft(ns, kube_proxy_ruleset())  # kube-proxy runs on every EKS node

    for node in plan.nodes:
        add_hybrid_node(lab, node)
    return lab


def add_hybrid_node(lab: LabWorld, node: HybridNodePlan) -> None:
    """A hybrid node namespace with its pod namespace and a Cilium-VTEP-like VXLAN device."""
    plan, world = lab.plan, lab.world
    onprem_prefix = ipaddress.IPv4Network(plan.onprem_cidr).prefixlen
    pod_prefix = ipaddress.IPv4Network(node.pod_cidr).prefixlen
    ns = world.add(node.name)
    _host_sysctls(ns, forward=True)
    pod = world.add(f"{node.name}-pod")
    _host_sysctls(pod, forward=False)
    underlay, port = _bridge_port(world, lab.router, "br1", ns, f"{node.node_ip}/{onprem_prefix}")
    ns.ip("route", "add", "default", "via", plan.router_onprem_ip)
    _vxlan_whole_to(lab.router, "br1", node.node_ip, port)
    world.link(
        ns, f"{node.pod_gateway_ip}/{pod_prefix}", pod, f"{node.pod_ip}/{pod_prefix}", mtu=POD_MTU
    )
    pod.ip("route", "add", "default", "via", node.pod_gateway_ip)
    ns.ip(
        "link",
        "add",
        VTEP_DEVICE,
        "address",
        peer_mac(node.node_ip),
        "type",
        "vxlan",
        "id",
        str(VXLAN_VNI),
        "dstport",
        str(VXLAN_PORT),
        "local",
        node.node_ip,
        "nolearning",
        "dev",
        underlay,
    )
    ns.ip("link", "set", VTEP_DEVICE, "mtu", str(POD_MTU), "up")
    ns.ip("rule", "add", "from", node.pod_cidr, "lookup", str(node.table), "priority", "100")
    # Until a CiliumVTEPConfig names a gateway, VPC-bound pod traffic has nowhere to go.
    ns.ip("route", "add", "blackhole", plan.vpc_cidr, "table", str(node.table))
    lab.nodes[node.name] = ns
    lab.node_ifaces[node.name] = underlay
    lab.node_switch_ports[node.name] = port
    lab.pods[node.name] = pod
    lab.node_plans[node.name] = node
