"""Tunnel state of the data plane: what the kernel should hold, what it holds, and the plan between.

Pure on purpose (no netlink, no Kubernetes): the rules that decide which CiliumNodes get tunnel
entries and which kernel entries to add or delete are unit- and property-tested without a kernel.

Ownership (what an observed `TunnelState` may contain, and so what a plan may ever change or
delete): the device `hybrid_vxlan0` belongs to this daemon alone. On it, and nowhere else, we own
- FDB: permanent unicast entries with a remote (`bridge fdb ... dst N self permanent`); the
  all-zero MAC (default flooding destinations) is not ours;
- neighbours: permanent IPv4 entries; entries the kernel creates while resolving are not ours;
- routes: IPv4 unicast routes in the main table with TOS 0 and metric 0 whose output device is
  `hybrid_vxlan0`. Ours are `proto static`; one of any other protocol but `kernel` on our
  device (the reference gateway leaves `proto boot`) is adopted: listed in `adopted_routes`,
  replaced as ours when wanted, deleted when not. Routes of other tables, other metrics and
  other devices are never read into the observed state, so no plan deletes or replaces them;
  a new pod-CIDR route is added exclusively, so a foreign route for the same prefix on another
  device makes the kernel refuse ours instead of being overwritten;
- nexthop objects: single IPv4 nexthops whose device is `hybrid_vxlan0` (`ip nexthop add id K
  via N dev hybrid_vxlan0 onlink`). Ours have the id `nexthop_id(N)`, so every replica and
  every restart names a node's nexthop the same way without asking the kernel; one on our
  device with another id is deleted once no route of ours uses it.

Per-node routes go through nexthop objects where the kernel has them (Linux 5.3+): one nexthop
per hybrid node IP, shared by all of its pod CIDRs (`ip route add P nhid K`). Why: the kernel
hashes a route's nexthop information by output device alone when the route carries its own
gateway (net/ipv4/fib_semantics.c `fib_info_hashfn`), so every route through `hybrid_vxlan0`
shares one hash chain and each insert walks all earlier ones; a route with a nexthop id is
looked up by that id instead (`fib_find_info_nh`). Where the kernel lacks them the routes carry
their own gateway as before; a plan moves routes between both forms in place (route replace).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hybrid_gateway_contract import HYBRID_NODE_LABEL_KEY, HYBRID_NODE_LABEL_VALUE

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network


class DataPlaneError(Exception):
    """The data plane cannot do its job (start-up check failed, kernel refused entries)."""


class PartialApplyError(DataPlaneError):
    """A pass completed but the kernel refused some entries; every other entry is in place.

    Like a bad CiliumNode, one refused entry must not take the whole replica out of service:
    the pass counts as completed for readiness, and the next full resync comes soon.
    """


@dataclass(frozen=True, order=True, slots=True)
class NodeTunnel:
    """One valid hybrid node: where its VTEP is and which pod CIDRs live behind it."""

    name: str
    node_ip: IPv4Address
    pod_cidrs: tuple[IPv4Network, ...]

    @property
    def peer_mac(self) -> str:
        return _peer_mac(self.node_ip)


@dataclass(frozen=True, order=True, slots=True)
class RejectedNode:
    """A hybrid CiliumNode that gets no tunnel entries, and why (for the log, Event and metric)."""

    name: str
    reason: str
    uid: str | None = None


@dataclass(frozen=True)
class DesiredNodes:
    """Result of reading CiliumNodes: valid tunnels (sorted by name) and rejected nodes.

    `parsed` is each record's verdict on its own; hand it to the next `desired_nodes` call so
    that unchanged nodes are not parsed again (it holds only the nodes of this call)."""

    tunnels: tuple[NodeTunnel, ...]
    rejected: tuple[RejectedNode, ...]
    parsed: Mapping[NodeRecord, NodeTunnel | RejectedNode] = field(
        default_factory=dict, compare=False, repr=False
    )


class FdbEntry(NamedTuple):
    """`bridge fdb replace <mac> dev hybrid_vxlan0 dst <dst> self permanent`.

    A tuple: hashed and compared in C, which a pass over 20,000 nodes does 40,000 times."""

    mac: str
    dst: IPv4Address


class _Address(IPv4Address):
    """An IPv4 address whose hash is computed once (ipaddress computes it in Python on every
    call, `hash(hex(int))`): the desired state, the dump and the diff hash every node IP
    several times per pass. Equal to, and hashing like, the plain `IPv4Address`."""

    __slots__ = ("_hash",)

    def __init__(self, address: int) -> None:
        super().__init__(address)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


class _Network(IPv4Network):
    """An IPv4 network whose hash is computed once (see `_Address`)."""

    def __init__(self, address: int, prefixlen: int) -> None:
        super().__init__((address, prefixlen))
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


@functools.lru_cache(maxsize=1 << 16)
def ipv4_key(address: int) -> IPv4Address:
    """The one shared object for an IPv4 address: desired state and kernel dumps use the same
    objects, so set and dict lookups match them by identity without calling `__eq__`."""
    return _Address(address)


@functools.lru_cache(maxsize=1 << 16)
def ipv4_network_key(address: int, prefixlen: int) -> IPv4Network:
    """The one shared object for an IPv4 network (see `ipv4_key`)."""
    return _Network(address, prefixlen)


#: The limited broadcast address: its nexthop id would be 2**32 - 1, which some kernels cannot
#: dump past (net/ipv4/nexthop.c `rtm_dump_walk_nexthops` resumes at id + 1), and it is no
#: host's address anyway.
_BROADCAST = 0xFFFF_FFFF


def nexthop_id(node_ip: IPv4Address) -> int:
    """The id of a node's nexthop object: its IPv4 address as a 32-bit number (never 0: a node IP
    is never 0.0.0.0). Derived, not allocated, so a restarted replica finds its own nexthops and
    a watch event needs no lookup; kernel ids are u32 (linux/nexthop.h NHA_ID)."""
    return int(node_ip)


@dataclass(frozen=True)
class TunnelState:
    """Entries on `hybrid_vxlan0`: FDB pairs, neighbours (IP -> MAC), routes (CIDR -> via), which
    of those routes another writer made (adopted: rewritten as ours when still wanted), nexthop
    objects (id -> via), and the nexthop id of each route that uses one (a route absent from
    `route_nexthops` carries its own gateway)."""

    fdb: frozenset[FdbEntry] = frozenset()
    neighbours: Mapping[IPv4Address, str] = field(default_factory=dict)
    routes: Mapping[IPv4Network, IPv4Address] = field(default_factory=dict)
    adopted_routes: frozenset[IPv4Network] = frozenset()
    nexthops: Mapping[int, IPv4Address] = field(default_factory=dict)
    route_nexthops: Mapping[IPv4Network, int] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TunnelState):
            return NotImplemented
        return (
            self.fdb == other.fdb
            and dict(self.neighbours) == dict(other.neighbours)
            and dict(self.routes) == dict(other.routes)
            and self.adopted_routes == other.adopted_routes
            and dict(self.nexthops) == dict(other.nexthops)
            and dict(self.route_nexthops) == dict(other.route_nexthops)
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.fdb,
                frozenset(self.neighbours.items()),
                frozenset(self.routes.items()),
                self.adopted_routes,
                frozenset(self.nexthops.items()),
                frozenset(self.route_nexthops.items()),
            )
        )


class RouteEntry(NamedTuple):
    """One route as a kernel message needs it: prefix, gateway, and the nexthop object it uses
    (`nhid`; 0: the route carries its own gateway, `via N dev hybrid_vxlan0 onlink`)."""

    dst: IPv4Network
    via: IPv4Address
    nhid: int = 0


@dataclass(frozen=True)
class Plan:
    """Kernel operations, applied in this order: adds FDB -> neighbour -> nexthop -> route (a route
    must never exist before its nexthop, neighbour and FDB entry), then removals route ->
    nexthop -> neighbour -> FDB.

    Neighbours and our own routes are set with replace semantics, so a changed gateway or MAC is
    fixed in place without a gap. A prefix we do not route yet is added exclusively
    (`add_routes`): if a route for it that is not ours exists (another device, protocol), the
    kernel refuses and that route stays as it is. FDB pairs are set with replace semantics too
    (one remote per unicast MAC), stale pairs deleted afterwards. A nexthop of ours is added
    exclusively too (its id may be taken by another writer's nexthop on another device, which
    must not be re-pointed) and replaced in place
    when its gateway drifted; routes follow a replaced nexthop at once (net/ipv4/nexthop.c
    `replace_nexthop_single` swaps the nexthop's info under RCU).
    """

    add_fdb: tuple[FdbEntry, ...] = ()
    set_neighbours: tuple[tuple[IPv4Address, str], ...] = ()
    add_nexthops: tuple[tuple[int, IPv4Address], ...] = ()
    set_nexthops: tuple[tuple[int, IPv4Address], ...] = ()
    add_routes: tuple[RouteEntry, ...] = ()
    set_routes: tuple[RouteEntry, ...] = ()
    del_routes: tuple[RouteEntry, ...] = ()
    del_nexthops: tuple[tuple[int, IPv4Address], ...] = ()
    del_neighbours: tuple[tuple[IPv4Address, str], ...] = ()
    del_fdb: tuple[FdbEntry, ...] = ()

    @property
    def additions(self) -> int:
        return (
            len(self.add_fdb)
            + len(self.set_neighbours)
            + len(self.add_nexthops)
            + len(self.set_nexthops)
            + len(self.add_routes)
            + len(self.set_routes)
        )

    @property
    def removals(self) -> int:
        return (
            len(self.del_routes)
            + len(self.del_nexthops)
            + len(self.del_neighbours)
            + len(self.del_fdb)
        )

    @property
    def empty(self) -> bool:
        return self.additions == 0 and self.removals == 0


@functools.lru_cache(maxsize=1 << 16)
def _peer_mac(node_ip: IPv4Address) -> str:
    """Cached: every pass needs the MAC of every node, and it never changes for an IP.
    `hybrid_node_peer_mac` from the address's bytes, without parsing its text again."""
    return "02:00:" + node_ip.packed.hex(":")


def _ipv4_int(text: str) -> int | None:
    """The address of a canonical dotted quad ("10.0.0.1": what Cilium writes), else None.

    In C (`inet_pton`, then `inet_ntop` must give the same text back, so exactly the texts
    `ipaddress` reads as the same address): `ipaddress` parses in Python, ~10 us an address,
    which a first list of 20,000 nodes pays for every node IP and pod CIDR. Anything else
    (leading zeros, IPv6, garbage) is left to `ipaddress` and its error messages."""
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError, TypeError):
        return None
    if socket.inet_ntop(socket.AF_INET, packed) != text:
        return None
    return int.from_bytes(packed, "big")


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    fast = _ipv4_int(text)
    if fast is not None:
        return ipv4_key(fast)
    address = ipaddress.ip_address(text)
    return ipv4_key(int(address)) if type(address) is IPv4Address else address


def _parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    address, slash, bits = text.partition("/")
    if slash and bits.isascii() and bits.isdigit() and str(int(bits)) == bits:
        fast, prefixlen = _ipv4_int(address), int(bits)
        if fast is not None and prefixlen <= 32 and not fast & (0xFFFFFFFF >> prefixlen):
            return ipv4_network_key(fast, prefixlen)
    network = ipaddress.ip_network(text, strict=True)
    if type(network) is IPv4Network:
        return ipv4_network_key(int(network.network_address), network.prefixlen)
    return network


def _overlaps(a: IPv4Network, b: IPv4Network) -> bool:
    """`a.overlaps(b)` for two IPv4 prefixes (one contains the other), in integers."""
    shift = 32 - min(a.prefixlen, b.prefixlen)
    return (int(a.network_address) ^ int(b.network_address)) >> shift == 0


def is_hybrid(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(HYBRID_NODE_LABEL_KEY) == HYBRID_NODE_LABEL_VALUE)


class NodeRecord(NamedTuple):
    """What the data plane reads of one CiliumNode, and nothing else (~0.4 KB against ~1 KB of
    JSON and several KB of parsed dicts): the cache holds one per hybrid node for the life of
    the process, and a pass reads them all. Values are kept as the API sent them (strings) so
    that `desired_nodes` validates them and names the bad field in its reason."""

    name: str
    uid: str | None
    hybrid: bool
    internal_ips: tuple[str, ...]  # spec.addresses[type=InternalIP].ip, in order
    pod_cidrs: tuple[str, ...] | None  # spec.ipam.podCIDRs; None when it is not a list


def node_record(obj: Mapping[str, Any]) -> NodeRecord:
    """The `NodeRecord` of a CiliumNode object (a dict as the API returns it)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    addresses = spec.get("addresses") or []
    raw_cidrs = (spec.get("ipam") or {}).get("podCIDRs") or []
    uid = meta.get("uid")
    return NodeRecord(
        name=str(meta.get("name")),
        uid=None if uid is None else str(uid),
        hybrid=is_hybrid(obj),
        internal_ips=tuple(
            str(a["ip"])
            for a in addresses
            if type(a) is dict and a.get("type") == "InternalIP" and a.get("ip")
        ),
        pod_cidrs=tuple(str(c) for c in raw_cidrs) if type(raw_cidrs) is list else None,
    )


class _BadNode(ValueError):  # noqa: N818 (a reason, not a failure)
    """A CiliumNode field that makes the node unusable; the message names field and value."""


def _node_ipv4(internal: tuple[str, ...]) -> IPv4Address:
    if not internal:
        raise _BadNode("spec.addresses has no InternalIP entry")
    v6: list[str] = []
    for raw in internal:
        try:
            addr = _parse_ip(raw)
        except ValueError:
            raise _BadNode(f"spec.addresses InternalIP {raw!r} is not an IP address") from None
        if isinstance(addr, IPv4Address):
            value = int(addr)  # 0.0.0.0, 127/8 (loopback), 224/4 (multicast), broadcast
            if value == 0 or value >> 24 == 127 or value >> 28 == 0xE or value == _BROADCAST:
                raise _BadNode(f"spec.addresses InternalIP {raw!r} is not a unicast host address")
            return addr
        v6.append(raw)
    raise _BadNode(f"spec.addresses has only IPv6 InternalIP(s) {', '.join(v6)}: IPv4 required")


def _pod_cidrs(
    raw_cidrs: tuple[str, ...] | None, vpc_cidrs: Sequence[IPv4Network]
) -> tuple[IPv4Network, ...]:
    if not raw_cidrs:
        raise _BadNode("spec.ipam.podCIDRs is empty")
    cidrs: list[IPv4Network] = []
    for raw in raw_cidrs:
        try:
            net = _parse_network(raw)
        except ValueError as exc:
            raise _BadNode(f"spec.ipam.podCIDRs entry {raw!r} is not a valid CIDR: {exc}") from None
        if not isinstance(net, IPv4Network):
            continue  # dual-stack: the IPv6 pod CIDRs are not tunnelled, the IPv4 ones are
        for vpc in vpc_cidrs:
            if _overlaps(net, vpc):
                raise _BadNode(f"spec.ipam.podCIDRs entry {raw!r} overlaps the VPC CIDR {vpc}")
        if net not in cidrs:
            cidrs.append(net)
    if not cidrs:
        raise _BadNode(f"spec.ipam.podCIDRs {list(raw_cidrs)!r} has no IPv4 CIDR")
    return tuple(sorted(cidrs))


def tunnel_of(record: NodeRecord, vpc_cidrs: Sequence[IPv4Network]) -> NodeTunnel | RejectedNode:
    """One node on its own (the pod CIDRs it shares with others are checked by the caller)."""
    try:
        return NodeTunnel(
            name=record.name,
            node_ip=_node_ipv4(record.internal_ips),
            pod_cidrs=_pod_cidrs(record.pod_cidrs, vpc_cidrs),
        )
    except _BadNode as exc:
        return RejectedNode(name=record.name, reason=str(exc), uid=record.uid)


def desired_nodes(
    objects: Iterable[NodeRecord | Mapping[str, Any]],
    vpc_cidrs: Sequence[IPv4Network],
    previous: Mapping[NodeRecord, NodeTunnel | RejectedNode] | None = None,
) -> DesiredNodes:
    """Valid tunnels and rejected nodes from CiliumNodes (`NodeRecord`s, or dicts as the API
    returns them); `previous` is the last result's `parsed` (same `vpc_cidrs`).

    Non-hybrid objects are ignored. A pod CIDR claimed by two nodes goes to the first by name;
    the other node is rejected (two routes for one prefix cannot both be honoured).
    """
    previous = previous or {}
    parsed: dict[NodeRecord, NodeTunnel | RejectedNode] = {}
    tunnels: list[NodeTunnel] = []
    rejected: list[RejectedNode] = []
    records = (o if type(o) is NodeRecord else node_record(o) for o in objects)  # type: ignore[arg-type]
    hybrid = sorted((r for r in records if r.hybrid), key=lambda r: r.name)
    claimed: dict[IPv4Network, str] = {}
    for record in hybrid:
        found = previous.get(record) or tunnel_of(record, vpc_cidrs)
        parsed[record] = found
        verdict = claim(record, found, claimed)
        if type(verdict) is NodeTunnel:
            tunnels.append(verdict)
        else:
            assert type(verdict) is RejectedNode
            rejected.append(verdict)
    return DesiredNodes(tunnels=tuple(tunnels), rejected=tuple(rejected), parsed=parsed)


def claim(
    record: NodeRecord, found: NodeTunnel | RejectedNode, claimed: dict[IPv4Network, str]
) -> NodeTunnel | RejectedNode:
    """The final verdict on a node that is `found` on its own (`tunnel_of`), given the pod CIDRs
    the nodes before it by name claimed (`claimed`, updated with its own when it is valid): a
    pod CIDR goes to the first node by name. The one rule `desired_nodes` and
    `write_ahead.ListedNodes` share, so a list read page by page decides as the full pass."""
    if type(found) is RejectedNode:
        return found
    assert type(found) is NodeTunnel
    taken = next((c for c in found.pod_cidrs if c in claimed), None)
    if taken is not None:
        reason = (
            f"spec.ipam.podCIDRs entry {str(taken)!r} is already used by CiliumNode "
            f"{claimed[taken]!r}"
        )
        return RejectedNode(name=record.name, reason=reason, uid=record.uid)
    for cidr in found.pod_cidrs:
        claimed[cidr] = record.name
    return found


def desired_state(tunnels: Iterable[NodeTunnel], *, nexthop_objects: bool = False) -> TunnelState:
    """Kernel entries for the given tunnels: one FDB pair and neighbour per node IP, one route
    per pod CIDR; with `nexthop_objects`, one nexthop per node IP that its routes use."""
    fdb: set[FdbEntry] = set()
    neighbours: dict[IPv4Address, str] = {}
    routes: dict[IPv4Network, IPv4Address] = {}
    nexthops: dict[int, IPv4Address] = {}
    route_nexthops: dict[IPv4Network, int] = {}
    for tunnel in tunnels:
        mac = tunnel.peer_mac
        fdb.add(FdbEntry(mac=mac, dst=tunnel.node_ip))
        neighbours[tunnel.node_ip] = mac
        for cidr in tunnel.pod_cidrs:
            routes[cidr] = tunnel.node_ip
        if nexthop_objects:
            nhid = nexthop_id(tunnel.node_ip)
            nexthops[nhid] = tunnel.node_ip
            for cidr in tunnel.pod_cidrs:
                route_nexthops[cidr] = nhid
    return TunnelState(
        fdb=frozenset(fdb),
        neighbours=neighbours,
        routes=routes,
        nexthops=nexthops,
        route_nexthops=route_nexthops,
    )


def merge_states(parts: Sequence[TunnelState]) -> TunnelState:
    """`desired_state` over the tunnels of `parts` in order, from the parts' own desired states
    (each built by `desired_state` from consecutive runs of those tunnels): later entries win,
    as they do in one `desired_state` call. Lets the first pass's state be built page by page
    while the list still arrives."""
    neighbours: dict[IPv4Address, str] = {}
    routes: dict[IPv4Network, IPv4Address] = {}
    nexthops: dict[int, IPv4Address] = {}
    route_nexthops: dict[IPv4Network, int] = {}
    for part in parts:
        neighbours.update(part.neighbours)
        routes.update(part.routes)
        nexthops.update(part.nexthops)
        route_nexthops.update(part.route_nexthops)
    return TunnelState(
        fdb=frozenset().union(*(part.fdb for part in parts)),
        neighbours=neighbours,
        routes=routes,
        nexthops=nexthops,
        route_nexthops=route_nexthops,
    )


def diff(desired: TunnelState, observed: TunnelState) -> Plan:
    """The operations that turn `observed` into `desired` (set difference per table).

    A route is replaced when its gateway, its form (own gateway or nexthop id) or its writer
    (adopted) differs: so the move from routes with their own gateway to nexthop routes (an
    upgrade) is one in-place replace per route, with no moment without a route."""
    want_n, have_n = desired.neighbours, observed.neighbours
    want_r, have_r = desired.routes, observed.routes
    want_id, have_id = desired.route_nexthops, observed.route_nexthops
    want_h, have_h = desired.nexthops, observed.nexthops
    adopted = observed.adopted_routes
    # In the states' own order: sorting 15,000 ipaddress objects costs more than it helps.
    return Plan(
        add_fdb=tuple(desired.fdb - observed.fdb),
        set_neighbours=tuple((ip, m) for ip, m in want_n.items() if have_n.get(ip) != m),
        add_nexthops=tuple((k, gw) for k, gw in want_h.items() if k not in have_h),
        set_nexthops=tuple((k, gw) for k, gw in want_h.items() if k in have_h and have_h[k] != gw),
        add_routes=tuple(
            RouteEntry(n, gw, want_id.get(n, 0)) for n, gw in want_r.items() if n not in have_r
        ),
        set_routes=tuple(
            RouteEntry(n, gw, want_id.get(n, 0))
            for n, gw in want_r.items()
            if n in have_r
            and (have_r[n] != gw or have_id.get(n, 0) != want_id.get(n, 0) or n in adopted)
        ),
        del_routes=tuple(
            RouteEntry(n, gw, have_id.get(n, 0)) for n, gw in have_r.items() if n not in want_r
        ),
        del_nexthops=tuple((k, gw) for k, gw in have_h.items() if k not in want_h),
        del_neighbours=tuple((ip, m) for ip, m in have_n.items() if ip not in want_n),
        del_fdb=tuple(observed.fdb - desired.fdb),
    )


def apply_plan(observed: TunnelState, plan: Plan) -> TunnelState:
    """What the kernel holds after `plan` succeeds on `observed` (the model the tests check)."""
    fdb = (set(observed.fdb) | set(plan.add_fdb)) - set(plan.del_fdb)
    neighbours = dict(observed.neighbours)
    neighbours.update(plan.set_neighbours)
    for ip, _ in plan.del_neighbours:
        neighbours.pop(ip, None)
    nexthops = dict(observed.nexthops)
    nexthops.update(plan.add_nexthops)
    nexthops.update(plan.set_nexthops)
    routes = dict(observed.routes)
    route_nexthops = dict(observed.route_nexthops)
    for route in (*plan.add_routes, *plan.set_routes):
        routes[route.dst] = route.via
        if route.nhid:
            route_nexthops[route.dst] = route.nhid
        else:
            route_nexthops.pop(route.dst, None)
    for route in plan.del_routes:
        routes.pop(route.dst, None)
        route_nexthops.pop(route.dst, None)
    for nhid, _ in plan.del_nexthops:
        # the kernel deletes the routes that still use a deleted nexthop (`remove_nexthop`)
        nexthops.pop(nhid, None)
        for dst in [d for d, k in route_nexthops.items() if k == nhid]:
            routes.pop(dst, None)
            route_nexthops.pop(dst, None)
    rewritten = {r.dst for r in plan.set_routes} | {r.dst for r in plan.del_routes}
    return TunnelState(
        fdb=frozenset(fdb),
        neighbours=neighbours,
        routes=routes,
        adopted_routes=observed.adopted_routes - rewritten,
        nexthops=nexthops,
        route_nexthops=route_nexthops,
    )
