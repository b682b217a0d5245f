"""Tunnel entries on `hybrid_vxlan0`: dump the ones that are ours, apply a plan in bulk.

Only entries that `hybrid_gateway.core.dataplane` declares ours are ever read or written. On our
device that includes routes another writer left with another protocol (the reference gateway
writes its routes through vishvananda/netlink, whose route messages default to `proto boot`;
aws/eks-hybrid-nodes-gateway internal/vxlan/vtep.go `AddRemoteNode`): they are adopted, i.e.
read as `TunnelState.adopted_routes`, replaced as `proto static` when still wanted and deleted
when not. Routes the kernel derives itself (`proto kernel`) are not ours.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid_gateway.adapters.netlink.wire import (
    AF_BRIDGE,
    AF_INET,
    NDA_DST,
    NDA_IFINDEX,
    NDA_LLADDR,
    NDMSG,
    NO_GATEWAY,
    NUD_PERMANENT,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTMSG,
    RTN_UNICAST,
    RTPROT_KERNEL,
    RTPROT_STATIC,
    RTPROT_UNSPEC,
    U32,
    ZERO_MAC,
    RouteSocket,
    attr,
    attrs_of,
    encode_fdb,
    encode_neighbour,
    encode_route,
    ipv4_net,
    ipv4_of,
    mac_text,
)
from hybrid_gateway.core.dataplane import FdbEntry, Plan, TunnelState


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


def dump_state(sock: RouteSocket, ifindex: int) -> TunnelState:
    """One dump of the FDB, neighbour and route entries of device `ifindex` that are ours."""
    fdb: set[FdbEntry] = set()
    neighbours: dict[ipaddress.IPv4Address, str] = {}
    routes: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
    adopted: set[ipaddress.IPv4Network] = set()
    fdb_req = NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0) + attr(NDA_IFINDEX, U32.pack(ifindex))
    for data, start, end in sock.dump(RTM_GETNEIGH, fdb_req):
        family, index, state, _flags, _type = NDMSG.unpack_from(data, start)
        if family != AF_BRIDGE or index != ifindex or not state & NUD_PERMANENT:
            continue
        attrs = attrs_of(data, start + NDMSG.size, end)
        mac, dst = attrs.get(NDA_LLADDR), ipv4_of(attrs.get(NDA_DST))
        if mac is None or len(mac) != 6 or mac == ZERO_MAC or dst is None:
            continue
        fdb.add(FdbEntry(mac=mac_text(mac), dst=dst))
    neigh_req = NDMSG.pack(AF_INET, 0, 0, 0, 0) + attr(NDA_IFINDEX, U32.pack(ifindex))
    for data, start, end in sock.dump(RTM_GETNEIGH, neigh_req):
        family, index, state, _flags, _type = NDMSG.unpack_from(data, start)
        if family != AF_INET or index != ifindex or not state & NUD_PERMANENT:
            continue
        attrs = attrs_of(data, start + NDMSG.size, end)
        ip, mac = ipv4_of(attrs.get(NDA_DST)), attrs.get(NDA_LLADDR)
        if ip is not None and mac is not None:
            neighbours[ip] = mac_text(mac)
    # every protocol (the kernel filters on table and device), ours and adoptable ones kept
    route_req = RTMSG.pack(AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_UNSPEC, 0, 0, 0) + attr(
        RTA_OIF, U32.pack(ifindex)
    )
    for data, start, end in sock.dump(RTM_GETROUTE, route_req):
        fam, dst_len, _s, tos, table, proto, _sc, rtype, _f = RTMSG.unpack_from(data, start)
        attrs = attrs_of(data, start + RTMSG.size, end)
        if RTA_TABLE in attrs:
            table = U32.unpack(attrs[RTA_TABLE])[0]
        oif = attrs.get(RTA_OIF)
        if (
            fam != AF_INET
            or table != RT_TABLE_MAIN
            or proto == RTPROT_KERNEL
            or rtype != RTN_UNICAST
            or tos != 0
            or oif is None
            or U32.unpack(oif)[0] != ifindex
            or U32.unpack(attrs.get(RTA_PRIORITY, b"\0\0\0\0"))[0] != 0
        ):
            continue
        net = ipv4_net(attrs.get(RTA_DST, b"\0\0\0\0"), dst_len)
        routes[net] = ipv4_of(attrs.get(RTA_GATEWAY)) or NO_GATEWAY
        if proto != RTPROT_STATIC:
            adopted.add(net)
    return TunnelState(
        fdb=frozenset(fdb),
        neighbours=neighbours,
        routes=routes,
        adopted_routes=frozenset(adopted),
    )


def apply_plan(sock: RouteSocket, ifindex: int, plan: Plan) -> ApplyResult:
    """Apply `plan` on device `ifindex`: adds FDB -> neighbour -> route, each phase only for
    entries whose prerequisites succeeded; then removals route -> neighbour -> FDB. Deleting
    an entry that is already gone counts as success."""
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
    routes = [
        (n, gw, replace)
        for replace, batch in ((False, plan.add_routes), (True, plan.set_routes))
        for n, gw in batch
        if gw not in bad_peers
    ]
    skipped += len(plan.add_routes) + len(plan.set_routes) - len(routes)
    _phase(
        sock,
        result,
        [
            ((n, gw), encode_route(ifindex, n, gw, delete=False, seq=0, replace=replace))
            for n, gw, replace in routes
        ],
        "set route",
        delete=False,
    )
    result.add_errors += skipped
    _phase(
        sock,
        result,
        [((n, gw), encode_route(ifindex, n, gw, delete=True, seq=0)) for n, gw in plan.del_routes],
        "delete route",
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


def _describe(what: str, key: Any, err: int) -> str:
    """`set route 10.200.1.0/24 via 192.168.1.1: EEXIST (...)`, for logs and errors."""
    if isinstance(key, FdbEntry):
        text = f"{key.mac} dst {key.dst}"
    elif what.endswith("route"):
        text = f"{key[0]} via {key[1]}"
    else:
        text = f"{key[0]} lladdr {key[1]}"
    message = f"{what} {text}: {errno.errorcode.get(err, str(err))}"
    if what == "set route" and err == errno.EEXIST:
        message += " (a route for this prefix that is not ours exists; it is left alone)"
    return message
