"""Tunnel entries on `hybrid_vxlan0`: dump the ones that are ours, apply a plan in bulk.

Only entries that `hybrid_gateway.core.dataplane` declares ours are ever read or written. On our
device that includes routes another writer left with another protocol (the reference gateway
writes its routes through vishvananda/netlink, whose route messages default to `proto boot`;
aws/eks-hybrid-nodes-gateway internal/vxlan/vtep.go `AddRemoteNode`): they are adopted, i.e.
read as `TunnelState.adopted_routes`, replaced as `proto static` when still wanted and deleted
when not. Routes the kernel derives itself (`proto kernel`) are not ours.

Nexthop objects (where the kernel has them) are dumped first, filtered by the kernel to our
device (net/ipv4/nexthop.c `nh_dump_filtered`: groups and other devices' nexthops are left
out), so a route's nexthop id can be resolved to its gateway: a dump shows a nexthop route's
gateway and device only while `net.ipv4.nexthop_compat_mode` is 1 (fib_semantics.c
`fib_dump_info`), and the route dump's device filter matches a route through its nexthop
(`fib_info_nh_uses_dev`). A route whose nexthop id is not one of our device's nexthops (a group,
say) is not ours.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid_gateway.adapters.netlink.wire import (
    AF_BRIDGE,
    AF_INET,
    NDA_DST,
    NDA_IFINDEX,
    NDA_LLADDR,
    NDMSG,
    NHA_FDB,
    NHA_GATEWAY,
    NHA_GROUP,
    NHA_ID,
    NHA_OIF,
    NHMSG,
    NO_GATEWAY,
    NUD_PERMANENT,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_NH_ID,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_GETNEIGH,
    RTM_GETNEXTHOP,
    RTM_GETROUTE,
    RTMSG,
    RTN_UNICAST,
    RTPROT_KERNEL,
    RTPROT_STATIC,
    RTPROT_UNSPEC,
    U32,
    ZERO_MAC,
    NetlinkError,
    RouteSocket,
    attr,
    attrs_of,
    encode_fdb,
    encode_neighbour,
    encode_nexthop,
    encode_route,
    ipv4_net,
    ipv4_of,
    iter_messages,
    mac_text,
)
from hybrid_gateway.core.dataplane import FdbEntry, Plan, RouteEntry, TunnelState


@dataclass
class ApplyResult:
    """Counts of entries applied and failed, with the first failures described."""

    added: int = 0
    add_errors: int = 0
    removed: int = 0
    remove_errors: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.add_errors == 0 and self.remove_errors == 0


def nexthop_support(sock: RouteSocket, msg_type: int = RTM_GETNEXTHOP) -> str | None:
    """None if the kernel has nexthop objects, else why not. Asks with a nexthop dump filtered
    to the loopback device: a kernel without them (before Linux 5.3) answers EOPNOTSUPP, as it
    does for any rtnetlink type beyond its RTM_MAX (net/core/rtnetlink.c `rtnetlink_rcv_msg`).
    `msg_type` exists for the test that makes the kernel answer so."""
    request = NHMSG.pack(AF_INET, 0, 0, 0, 0) + attr(NHA_OIF, U32.pack(1))
    try:
        for _ in sock.dump(msg_type, request):
            pass
    except NetlinkError as exc:
        return f"nexthop dump refused: {os.strerror(exc.errno)}"
    return None


@dataclass(frozen=True)
class RawTables:
    """The four dumps of device `ifindex` as the kernel sent them (`RouteSocket.dump_chunks`):
    read once per pass, then either proved to hold the desired state (`proof`) or parsed."""

    ifindex: int
    fdb: list[bytes]
    neighbours: list[bytes]
    nexthops: list[bytes]  # empty where the kernel has no nexthop objects
    routes: list[bytes]


def fetch(sock: RouteSocket, ifindex: int, *, nexthops: bool = True) -> RawTables:
    """Dump the FDB, neighbour, nexthop (`nexthops`: the kernel has them) and route entries of
    device `ifindex`, filtered by the kernel (strict checking, see `parse_state`)."""
    ndmsg = NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0) + attr(NDA_IFINDEX, U32.pack(ifindex))
    neigh = NDMSG.pack(AF_INET, 0, 0, 0, 0) + attr(NDA_IFINDEX, U32.pack(ifindex))
    nhmsg = NHMSG.pack(AF_INET, 0, 0, 0, 0) + attr(NHA_OIF, U32.pack(ifindex))
    # every protocol (the kernel filters on table and device), ours and adoptable ones kept
    rtmsg = RTMSG.pack(AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_UNSPEC, 0, 0, 0) + attr(
        RTA_OIF, U32.pack(ifindex)
    )
    return RawTables(
        ifindex=ifindex,
        fdb=sock.dump_chunks(RTM_GETNEIGH, ndmsg),
        neighbours=sock.dump_chunks(RTM_GETNEIGH, neigh),
        nexthops=sock.dump_chunks(RTM_GETNEXTHOP, nhmsg) if nexthops else [],
        routes=sock.dump_chunks(RTM_GETROUTE, rtmsg),
    )


def _messages(chunks: list[bytes]) -> Iterator[tuple[bytes, int, int]]:
    for chunk in chunks:
        for _kind, _flags, _seq, start, end in iter_messages(chunk):
            yield chunk, start, end


def _parse_nexthops(raw: RawTables) -> dict[int, ipaddress.IPv4Address]:
    """Single IPv4 nexthops with a gateway on the device: id -> gateway."""
    ifindex = raw.ifindex
    nexthops: dict[int, ipaddress.IPv4Address] = {}
    for data, start, end in _messages(raw.nexthops):
        family = data[start]
        attrs = attrs_of(data, start + NHMSG.size, end)
        oif, nhid = attrs.get(NHA_OIF), attrs.get(NHA_ID)
        gateway = ipv4_of(attrs.get(NHA_GATEWAY))
        if (
            family != AF_INET
            or nhid is None
            or oif is None
            or U32.unpack(oif)[0] != ifindex
            or gateway is None
            or NHA_GROUP in attrs
            or NHA_FDB in attrs
        ):
            continue
        nexthops[U32.unpack(nhid)[0]] = gateway
    return nexthops


def dump_state(sock: RouteSocket, ifindex: int, *, nexthops: bool = True) -> TunnelState:
    """One dump of the FDB, neighbour, nexthop (`nexthops`: the kernel has them) and route
    entries of device `ifindex` that are ours."""
    return parse_state(fetch(sock, ifindex, nexthops=nexthops))


def parse_state(raw: RawTables) -> TunnelState:
    """The entries of `raw` that are ours, message by message. `proof.holds` must accept only
    dumps this parses to the desired state: a change to what this reads is a change there."""
    ifindex = raw.ifindex
    fdb: set[FdbEntry] = set()
    neighbours: dict[ipaddress.IPv4Address, str] = {}
    routes: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
    adopted: set[ipaddress.IPv4Network] = set()
    route_nexthops: dict[ipaddress.IPv4Network, int] = {}
    for data, start, end in _messages(raw.fdb):
        family, index, state, _flags, _type = NDMSG.unpack_from(data, start)
        if family != AF_BRIDGE or index != ifindex or not state & NUD_PERMANENT:
            continue
        attrs = attrs_of(data, start + NDMSG.size, end)
        mac, dst = attrs.get(NDA_LLADDR), ipv4_of(attrs.get(NDA_DST))
        if mac is None or len(mac) != 6 or mac == ZERO_MAC or dst is None:
            continue
        fdb.add(FdbEntry(mac=mac_text(mac), dst=dst))
    for data, start, end in _messages(raw.neighbours):
        family, index, state, _flags, _type = NDMSG.unpack_from(data, start)
        if family != AF_INET or index != ifindex or not state & NUD_PERMANENT:
            continue
        attrs = attrs_of(data, start + NDMSG.size, end)
        ip, mac = ipv4_of(attrs.get(NDA_DST)), attrs.get(NDA_LLADDR)
        if ip is not None and mac is not None:
            neighbours[ip] = mac_text(mac)
    ours = _parse_nexthops(raw)
    for data, start, end in _messages(raw.routes):
        fam, dst_len, _s, tos, table, proto, _sc, rtype, _f = RTMSG.unpack_from(data, start)
        attrs = attrs_of(data, start + RTMSG.size, end)
        if RTA_TABLE in attrs:
            table = U32.unpack(attrs[RTA_TABLE])[0]
        oif = attrs.get(RTA_OIF)
        raw_nhid = attrs.get(RTA_NH_ID)
        nhid = U32.unpack(raw_nhid)[0] if raw_nhid is not None else 0
        if (
            fam != AF_INET
            or table != RT_TABLE_MAIN
            or proto == RTPROT_KERNEL
            or rtype != RTN_UNICAST
            or tos != 0
            or (nhid and nhid not in ours)
            or (not nhid and (oif is None or U32.unpack(oif)[0] != ifindex))
            or U32.unpack(attrs.get(RTA_PRIORITY, b"\0\0\0\0"))[0] != 0
        ):
            continue
        net = ipv4_net(attrs.get(RTA_DST, b"\0\0\0\0"), dst_len)
        if nhid:
            routes[net] = ours[nhid]
            route_nexthops[net] = nhid
        else:
            routes[net] = ipv4_of(attrs.get(RTA_GATEWAY)) or NO_GATEWAY
        if proto != RTPROT_STATIC:
            adopted.add(net)
    return TunnelState(
        fdb=frozenset(fdb),
        neighbours=neighbours,
        routes=routes,
        adopted_routes=frozenset(adopted),
        nexthops=ours,
        route_nexthops=route_nexthops,
    )


def apply_plan(sock: RouteSocket, ifindex: int, plan: Plan) -> ApplyResult:
    """Apply `plan` on device `ifindex`: adds FDB -> neighbour -> nexthop -> route, each phase
    only for entries whose prerequisites succeeded; then removals route -> nexthop -> neighbour
    -> FDB. Deleting an entry that is already gone counts as success."""
    result = ApplyResult()
    failed_fdb = _phase(
        sock,
        result,
        [(f, encode_fdb(ifindex, f, delete=False, seq=0)) for f in plan.add_fdb],
        "add fdb",
        delete=False,
    )
    bad_peers = {f.dst for f in failed_fdb}
    neighbours = [
        ((ip, mac), encode_neighbour(ifindex, ip, mac, delete=False, seq=0))
        for ip, mac in plan.set_neighbours
        if ip not in bad_peers
    ]
    failed_neigh = _phase(sock, result, neighbours, "set neighbour", delete=False)
    skipped = len(plan.set_neighbours) - len(neighbours)
    bad_peers |= {ip for ip, _ in failed_neigh}
    nexthops = [
        ((k, gw), encode_nexthop(ifindex, k, gw, delete=False, seq=0, replace=replace))
        for replace, batch in ((False, plan.add_nexthops), (True, plan.set_nexthops))
        for k, gw in batch
        if gw not in bad_peers
    ]
    skipped += len(plan.add_nexthops) + len(plan.set_nexthops) - len(nexthops)
    failed_nexthops = _phase(sock, result, nexthops, "add nexthop", delete=False)
    bad_ids = {k for k, _ in failed_nexthops}
    bad_ids |= {k for k, gw in (*plan.add_nexthops, *plan.set_nexthops) if gw in bad_peers}
    routes = [
        (route, replace)
        for replace, batch in ((False, plan.add_routes), (True, plan.set_routes))
        for route in batch
        if route.via not in bad_peers and route.nhid not in bad_ids
    ]
    skipped += len(plan.add_routes) + len(plan.set_routes) - len(routes)
    for route in (*plan.add_routes, *plan.set_routes):
        if (route.via in bad_peers or route.nhid in bad_ids) and len(result.errors) < 20:
            result.errors.append(
                f"set route {_describe_key(route)}: skipped (its FDB entry, neighbour or "
                "nexthop failed)"
            )
    _phase(
        sock,
        result,
        [
            (
                route,
                encode_route(
                    ifindex,
                    route.dst,
                    route.via,
                    delete=False,
                    seq=0,
                    replace=replace,
                    nhid=route.nhid,
                ),
            )
            for route, replace in routes
        ],
        "set route",
        delete=False,
    )
    result.add_errors += skipped
    _phase(
        sock,
        result,
        [
            (r, encode_route(ifindex, r.dst, r.via, delete=True, seq=0, nhid=r.nhid))
            for r in plan.del_routes
        ],
        "delete route",
        delete=True,
    )
    _phase(
        sock,
        result,
        [
            ((k, gw), encode_nexthop(ifindex, k, gw, delete=True, seq=0))
            for k, gw in plan.del_nexthops
        ],
        "delete nexthop",
        delete=True,
    )
    _phase(
        sock,
        result,
        [
            ((ip, m), encode_neighbour(ifindex, ip, m, delete=True, seq=0))
            for ip, m in plan.del_neighbours
        ],
        "delete neighbour",
        delete=True,
    )
    _phase(
        sock,
        result,
        [(f, encode_fdb(ifindex, f, delete=True, seq=0)) for f in plan.del_fdb],
        "delete fdb",
        delete=True,
    )
    return result


def _phase(
    sock: RouteSocket,
    result: ApplyResult,
    ops: Sequence[tuple[Any, bytes]],
    what: str,
    *,
    delete: bool,
) -> list[Any]:
    """Send one phase in bulk, count it in `result`; return the keys that failed."""
    failed: list[Any] = []
    codes = sock.send_batch([message for _key, message in ops])
    for (key, _message), err in zip(ops, codes, strict=True):
        if err == 0 or (delete and err in (errno.ENOENT, errno.ESRCH)):
            if delete:
                result.removed += 1
            else:
                result.added += 1
            continue
        failed.append(key)
        if delete:
            result.remove_errors += 1
        else:
            result.add_errors += 1
        if len(result.errors) < 20:
            result.errors.append(_describe(what, key, err))
    return failed


def _describe_key(key: Any, what: str = "") -> str:
    if isinstance(key, FdbEntry):
        return f"{key.mac} dst {key.dst}"
    if isinstance(key, RouteEntry):
        return f"{key.dst} via {key.via}" + (f" (nexthop id {key.nhid})" if key.nhid else "")
    if what.endswith("nexthop"):
        return f"id {key[0]} via {key[1]}"
    return f"{key[0]} lladdr {key[1]}"


def _describe(what: str, key: Any, err: int) -> str:
    """`set route 10.200.1.0/24 via 192.168.1.1: EEXIST (...)`, for logs and errors."""
    message = f"{what} {_describe_key(key, what)}: {errno.errorcode.get(err, str(err))}"
    if what == "set route" and err == errno.EEXIST:
        message += " (a route for this prefix that is not ours exists; it is left alone)"
    if what == "add nexthop" and err == errno.EEXIST:
        message += " (a nexthop with this id that is not ours exists; it is left alone)"
    return message
