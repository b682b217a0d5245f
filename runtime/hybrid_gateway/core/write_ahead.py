"""Tunnel entries written while the very first CiliumNode list still arrives, pure.

A fresh replica at 20,000 nodes spends over a second listing CiliumNodes and about as long in
its first full pass (docs/dataplane.md, Scale); one after the other they are the time a
replacement gateway adds to an outage. The list arrives in pages, so the data plane writes each
page's entries while the next page is fetched, and its first full pass finds them in place. That
is safe only for entries the full pass over the whole list wants as they are, written so that
nothing already in the kernel changes:

- Which nodes (`ListedNodes`): a node's verdict depends on itself and on the nodes before it by
  name (`dataplane.claim`: a pod CIDR goes to the first node by name). The API server lists in
  key order, `<prefix>/<name>` for cluster-scoped objects (k8s.io/apiserver
  pkg/storage/etcd3/store.go `GetList` reads one etcd key range, which etcd returns sorted by
  key; the watch cache serves lists from a B-tree in the same order, KEP-4988), so when a node
  arrives every node that could take its pod CIDRs has arrived. The order is checked, not
  assumed: from the first node out of order on, nothing more is written ahead, and the full
  pass repairs an earlier verdict that order would have changed (it replaces a route whose
  gateway differs and removes what no node wants).
- Which entries (`WriteAhead.plan`): only entries the kernel lacks altogether; nothing is
  replaced or removed. A node with an entry present in another form (an FDB MAC or neighbour
  with another address, a nexthop with another gateway: drift or another writer) is left to the
  full pass; so is an existing route for one of its pod CIDRs (ours, adopted or stale).
- What stays the full pass's: removals (entries of nodes gone while the replica was down go
  only once the whole list is known), replacements, the report of rejected nodes, readiness.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from hybrid_gateway.core.dataplane import (
    DesiredNodes,
    FdbEntry,
    NodeRecord,
    NodeTunnel,
    Plan,
    RejectedNode,
    RouteEntry,
    TunnelState,
    claim,
    desired_state,
    merge_states,
    nexthop_id,
    tunnel_of,
)

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network


class ListedNodes:
    """`desired_nodes` over a list that arrives page by page: each node's verdict as soon as it
    is final, while the nodes arrive in name order (`ordered`)."""

    def __init__(self, vpc_cidrs: Sequence[IPv4Network]) -> None:
        self._vpc_cidrs = tuple(vpc_cidrs)
        self._claimed: dict[IPv4Network, str] = {}
        self._last: str | None = None
        self.ordered = True
        #: Each listed node's verdict on its own, for the full pass (`desired_nodes(previous=)`).
        self.parsed: dict[NodeRecord, NodeTunnel | RejectedNode] = {}
        self._records: list[NodeRecord] = []  # every record taken, in list order
        self._tunnels: list[NodeTunnel] = []
        self._rejected: list[RejectedNode] = []

    def add(self, records: Iterable[NodeRecord]) -> list[NodeTunnel]:
        """The tunnels among the next listed `records` that the full pass over the whole list
        will want as they are ([] from the first record out of name order on)."""
        tunnels: list[NodeTunnel] = []
        for record in records:
            if not self.ordered:
                break
            if self._last is not None and record.name <= self._last:
                self.ordered = False
                break
            self._last = record.name
            self._records.append(record)
            if not record.hybrid:
                continue
            found = tunnel_of(record, self._vpc_cidrs)
            self.parsed[record] = found
            verdict = claim(record, found, self._claimed)
            if type(verdict) is NodeTunnel:
                tunnels.append(verdict)
            else:
                assert type(verdict) is RejectedNode
                self._rejected.append(verdict)
        self._tunnels += tunnels
        return tunnels

    @property
    def tunnels(self) -> Sequence[NodeTunnel]:
        """Every tunnel `add` returned, in order."""
        return self._tunnels

    def desired(self, records: Sequence[NodeRecord]) -> DesiredNodes | None:
        """`desired_nodes(records)` without deciding again, when `records` are exactly the
        records taken, in the order taken (the cache's records in list order: no watch event
        came since), and they came in name order; else None."""
        if not self.ordered or records != self._records:
            return None
        return DesiredNodes(tuple(self._tunnels), tuple(self._rejected), self.parsed)


class WriteAhead:
    """Add-only plans for the pages of one list, against the device's entries when the list
    began (`present`, a dump) plus what earlier plans of this list added."""

    def __init__(
        self, present: TunnelState, vpc_cidrs: Sequence[IPv4Network], *, nexthop_objects: bool
    ) -> None:
        self.nodes = ListedNodes(vpc_cidrs)
        self._nexthop_objects = nexthop_objects
        self._fdb: dict[str, IPv4Address | None] = {}  # None: a MAC with several remotes
        for mac, dst in present.fdb:
            self._fdb[mac] = dst if self._fdb.get(mac, dst) == dst else None
        self._neighbours: dict[IPv4Address, str] = dict(present.neighbours)
        self._nexthops: dict[int, IPv4Address] = dict(present.nexthops)
        self._routes: set[IPv4Network] = set(present.routes)
        self.planned = 0  # entries planned by this list so far
        #: Per page, the desired state of the tunnels it added to `nodes` (`target`).
        self.parts: list[TunnelState] = []

    def plan(self, records: Iterable[NodeRecord]) -> Plan:
        """What to add for the next listed page (counted as present from now on, whether the
        kernel takes it or not: the full pass retries and reports what it refused)."""
        fdb: list[FdbEntry] = []
        neighbours: list[tuple[IPv4Address, str]] = []
        nexthops: list[tuple[int, IPv4Address]] = []
        routes: list[RouteEntry] = []
        tunnels = self.nodes.add(records)
        self.parts.append(desired_state(tunnels, nexthop_objects=self._nexthop_objects))
        for tunnel in tunnels:
            ip, mac = tunnel.node_ip, tunnel.peer_mac
            nhid = nexthop_id(ip) if self._nexthop_objects else 0
            if not self._fits(ip, mac, nhid):
                continue
            if mac not in self._fdb:
                self._fdb[mac] = ip
                fdb.append(FdbEntry(mac=mac, dst=ip))
            if ip not in self._neighbours:
                self._neighbours[ip] = mac
                neighbours.append((ip, mac))
            if nhid and nhid not in self._nexthops:
                self._nexthops[nhid] = ip
                nexthops.append((nhid, ip))
            for cidr in tunnel.pod_cidrs:
                if cidr not in self._routes:
                    self._routes.add(cidr)
                    routes.append(RouteEntry(cidr, ip, nhid))
        plan = Plan(
            add_fdb=tuple(fdb),
            set_neighbours=tuple(neighbours),
            add_nexthops=tuple(nexthops),
            add_routes=tuple(routes),
        )
        self.planned += plan.additions
        return plan

    def target(self, wanted: DesiredNodes, *, nexthop_objects: bool) -> TunnelState | None:
        """The first full pass's desired state, built page by page while the list ran:
        `desired_state(wanted.tunnels)` when `wanted` is `nodes.desired(...)` (the nodes as
        listed) and routes use nexthop objects as they did then; else None."""
        if nexthop_objects != self._nexthop_objects or wanted.tunnels != tuple(self.nodes.tunnels):
            return None
        return merge_states(self.parts)

    def _fits(self, ip: IPv4Address, mac: str, nhid: int) -> bool:
        """Whether none of the node's FDB entry, neighbour and nexthop exists in another form."""
        return (
            self._fdb.get(mac, ip) == ip
            and self._neighbours.get(ip, mac) == mac
            and (not nhid or self._nexthops.get(nhid, ip) == ip)
        )
