"""Netlink access for the data plane: the VXLAN device, dumps of its tunnel entries, bulk apply.

pyroute2 provides the sockets (also inside another network namespace) and the device
management. Tunnel entries are written in bulk: many small rtnetlink messages, packed here with
`struct` (one request costs ~75 us through pyroute2's generic encoder, too slow for 15,000),
sent a window at a time in one `send` each, and acknowledged by sequence number; no round trip
per entry. The same socket dumps the three tables with kernel-side filtering (strict checking)
and a small parser for the few attributes we read. Tests compare both against pyroute2's own
encoder and dumps.

Only entries that `hybrid_gateway.core.dataplane` declares ours are ever read or written.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netns import create_socket

from hybrid_gateway.core.dataplane import FdbEntry, Plan, TunnelState

log = logging.getLogger(__name__)

# Netlink / rtnetlink constants (linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h).
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_GET_STRICT_CHK = 12
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
AF_INET = socket.AF_INET
AF_BRIDGE = 7
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
RTNH_F_ONLINK = 4

RTM_GETLINK, RTM_GETADDR = 18, 22
IFLA_IFNAME, IFLA_STATS64 = 3, 23
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 0x1
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_RTA = struct.Struct("=HH")
_ERR = struct.Struct("=i")
_U32 = struct.Struct("=I")
_FLAGS = struct.Struct("=H")
_FLAGS_SEQ = struct.Struct("=HI")  # nlmsghdr flags and seq, at offset 6

#: A kernel answer slower than this means something is badly wrong; fail the pass, resync later.
IO_TIMEOUT_S = 30.0
DUMP_ATTEMPTS = 3
#: Messages per `send`: every acknowledgement of a window fits the receive buffer.
WINDOW = 1024
_NO_GATEWAY = ipaddress.IPv4Address(0)
_ZERO_MAC = b"\x00" * 6


class NetlinkError(Exception):
    """A netlink operation failed; `errno` is the kernel's error number."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


@dataclass(frozen=True)
class DeviceSpec:
    """What `hybrid_vxlan0` must look like (SPEC §3)."""

    name: str
    vni: int
    port: int
    local: ipaddress.IPv4Address
    mac: str
    mtu: int


@dataclass(frozen=True)
class DeviceOutcome:
    """What `ensure_device` did: adopted | created | fixed | recreated, and why."""

    action: str
    ifindex: int
    details: tuple[str, ...] = ()


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


# --- message encoding ----------------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTA.size + len(payload)
    return _RTA.pack(length, kind) + payload + b"\x00" * (-length % 4)


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(_HDR.size + len(body), msg_type, flags, seq, 0) + body


def encode_fdb(ifindex: int, entry: FdbEntry, *, delete: bool, seq: int) -> bytes:
    """`bridge fdb append|del <mac> dev <ifindex> dst <ip> self permanent`."""
    body = (
        _NDMSG.pack(AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF, 0)
        + _attr(NDA_LLADDR, _mac_bytes(entry.mac))
        + _attr(NDA_DST, entry.dst.packed)
    )
    if delete:
        return _message(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, seq, body)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
    return _message(RTM_NEWNEIGH, flags, seq, body)


def encode_neighbour(
    ifindex: int, ip: ipaddress.IPv4Address, mac: str, *, delete: bool, seq: int
) -> bytes:
    """`ip neigh replace|del <ip> lladdr <mac> dev <ifindex> nud permanent`."""
    if delete:
        body = _NDMSG.pack(AF_INET, ifindex, 0, 0, 0) + _attr(NDA_DST, ip.packed)
        return _message(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, seq, body)
    body = (
        _NDMSG.pack(AF_INET, ifindex, NUD_PERMANENT, 0, 0)
        + _attr(NDA_DST, ip.packed)
        + _attr(NDA_LLADDR, _mac_bytes(mac))
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _message(RTM_NEWNEIGH, flags, seq, body)


def encode_route(
    ifindex: int,
    dst: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address,
    *,
    delete: bool,
    seq: int,
    replace: bool = True,
) -> bytes:
    """`ip route replace|add|del <dst> via <gateway> dev <ifindex> onlink proto static` (main
    table); `replace=False` adds exclusively, failing with EEXIST if the prefix is routed."""
    body = (
        _RTMSG.pack(
            AF_INET,
            dst.prefixlen,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
            0 if delete else RTNH_F_ONLINK,
        )
        + _attr(RTA_TABLE, _U32.pack(RT_TABLE_MAIN))
        + _attr(RTA_DST, dst.network_address.packed)
        + _attr(RTA_OIF, _U32.pack(ifindex))
    )
    if gateway != _NO_GATEWAY:
        body += _attr(RTA_GATEWAY, gateway.packed)
    if delete:
        return _message(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, body)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
    return _message(RTM_NEWROUTE, flags, seq, body)


# --- message decoding ----------------------------------------------------------------------------


def _iter_messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, offset of the body, end) for every message in one datagram."""
    offset = 0
    while offset + _HDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            break
        yield msg_type, flags, seq, offset + _HDR.size, offset + length
        offset += (length + 3) & ~3


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + _RTA.size <= end:
        length, kind = _RTA.unpack_from(data, offset)
        if length < _RTA.size:
            break
        found[kind & 0x3FFF] = data[offset + _RTA.size : offset + length]
        offset += (length + 3) & ~3
    return found


@functools.lru_cache(maxsize=1 << 16)
def _ipv4_from(raw: bytes) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(raw)


def _ipv4(raw: bytes | None) -> ipaddress.IPv4Address | None:
    """Cached: a dump sees each node IP three times and every pass sees the same IPs again."""
    return _ipv4_from(raw) if raw is not None and len(raw) == 4 else None


@functools.lru_cache(maxsize=1 << 16)
def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@functools.lru_cache(maxsize=1 << 16)
def _ipv4_net(raw: bytes, prefixlen: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((int.from_bytes(raw, "big"), prefixlen))


# --- the adapter ---------------------------------------------------------------------------------


class Netlink:
    """rtnetlink access in one network namespace (the current one unless `netns` is given).

    Thread-safe: the data-plane loop and the metrics collector share one instance.
    """

    def __init__(self, netns: str | None = None) -> None:
        self._lock = threading.Lock()
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self._sock = create_socket(
            netns=netns, family=socket.AF_NETLINK, socket_type=socket.SOCK_RAW, proto=NETLINK_ROUTE
        )
        for option, fallback, size in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF, 32 << 20),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF, 4 << 20),
        ):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, option, size)
            except PermissionError:
                self._sock.setsockopt(socket.SOL_SOCKET, fallback, size)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self._sock.settimeout(IO_TIMEOUT_S)
        self._sock.bind((0, 0))
        self._seq = 0
        self._interrupted = False

    def close(self) -> None:
        with self._lock:
            self._sock.close()
            self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- links -------------------------------------------------------------------------------

    def _link(self, name: str) -> Any | None:
        found = self._ipr.link_lookup(ifname=name)
        if not found:
            return None
        return self._ipr.link("get", index=found[0])[0]

    def device_index(self, name: str) -> int | None:
        """Index of device `name`, None if it does not exist (safe from any thread)."""
        with self._lock:
            link = self._get_link(name)
            return None if link is None else link[0]

    def ensure_device(self, spec: DeviceSpec) -> DeviceOutcome:
        """Adopt a correct device as is; fix MAC/MTU/up/addresses in place; recreate a device whose
        kind or VXLAN parameters (VNI, port, local address, learning) are wrong."""
        with self._lock:
            link = self._link(spec.name)
            if link is None:
                return DeviceOutcome("created", self._create(spec))
            wrong_identity = self._identity_problems(link, spec)
            if wrong_identity:
                self._ipr.link("del", index=link["index"])
                return DeviceOutcome("recreated", self._create(spec), tuple(wrong_identity))
            fixes = self._fix_in_place(link, spec)
            return DeviceOutcome("fixed" if fixes else "adopted", int(link["index"]), tuple(fixes))

    @staticmethod
    def _identity_problems(link: Any, spec: DeviceSpec) -> list[str]:
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        if kind != "vxlan":
            return [f"kind is {kind!r}, want 'vxlan'"]
        data = info.get_attr("IFLA_INFO_DATA")
        have = {
            "VNI": data.get_attr("IFLA_VXLAN_ID"),
            "port": data.get_attr("IFLA_VXLAN_PORT"),
            "local": data.get_attr("IFLA_VXLAN_LOCAL"),
            "learning": data.get_attr("IFLA_VXLAN_LEARNING"),
        }
        want = {"VNI": spec.vni, "port": spec.port, "local": str(spec.local), "learning": 0}
        return [f"{k} is {have[k]!r}, want {want[k]!r}" for k in want if have[k] != want[k]]

    def _fix_in_place(self, link: Any, spec: DeviceSpec) -> list[str]:
        index = int(link["index"])
        fixes: list[str] = []
        mac = str(link.get_attr("IFLA_ADDRESS")).lower()
        if mac != spec.mac:
            self._ipr.link("set", index=index, address=spec.mac)
            fixes.append(f"MAC {mac} -> {spec.mac}")
        mtu = link.get_attr("IFLA_MTU")
        if mtu != spec.mtu:
            self._ipr.link("set", index=index, mtu=spec.mtu)
            fixes.append(f"MTU {mtu} -> {spec.mtu}")
        for addr in self._ipr.get_addr(index=index):
            if addr["family"] != AF_INET:
                continue  # the kernel's IPv6 link-local address, if any, is harmless
            text = f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"
            self._ipr.addr("del", index=index, address=addr.get_attr("IFA_ADDRESS"),
                           prefixlen=addr["prefixlen"])  # fmt: skip
            fixes.append(f"removed address {text}")
        if not link["flags"] & 1:  # IFF_UP
            self._ipr.link("set", index=index, state="up")
            fixes.append("set up")
        return fixes

    def _create(self, spec: DeviceSpec) -> int:
        self._ipr.link(
            "add",
            ifname=spec.name,
            kind="vxlan",
            vxlan_id=spec.vni,
            vxlan_port=spec.port,
            vxlan_local=str(spec.local),
            vxlan_learning=0,
            address=spec.mac,
            mtu=spec.mtu,
        )
        index = int(self._ipr.link_lookup(ifname=spec.name)[0])
        self._ipr.link("set", index=index, state="up")
        return index

    def link_stats(self, name: str) -> tuple[bool, dict[str, int]] | None:
        """(is up, 64-bit kernel counters) of a device, None if it does not exist."""
        with self._lock:
            link = self._get_link(name)
        if link is None:
            return None
        _index, flags, attrs = link
        raw = attrs.get(IFLA_STATS64, b"")
        values = struct.unpack_from("=8Q", raw) if len(raw) >= 64 else (0,) * 8
        return bool(flags & IFF_UP), dict(zip(_STAT_NAMES, values, strict=True))

    def device_with_address(self, ip: ipaddress.IPv4Address) -> str | None:
        """Name of the device holding `ip` (the primary NIC for the node IP)."""
        with self._lock:
            request = _IFADDRMSG.pack(AF_INET, 0, 0, 0, 0)
            index = None
            for data, start, end in self._dump(RTM_GETADDR, request):
                _family, _plen, _flags, _scope, ifindex = _IFADDRMSG.unpack_from(data, start)
                attrs = _attrs(data, start + _IFADDRMSG.size, end)
                if attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS)) == ip.packed:
                    index = ifindex
            if index is None:
                return None
            link = self._get_link(None, index)
        if link is None:
            return None
        return link[2].get(IFLA_IFNAME, b"").rstrip(b"\0").decode() or None

    def _get_link(
        self, name: str | None, index: int = 0
    ) -> tuple[int, int, dict[int, bytes]] | None:
        """(index, flags, attributes) of one device by name or index, over the raw socket.

        The raw socket rather than pyroute2: pyroute2 0.9 opens a socket and an event loop per
        calling thread, and readiness probes and metric scrapes arrive on ever new threads.
        """
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if name is not None:
            body += _attr(IFLA_IFNAME, name.encode() + b"\0")
        seq = self._next_seq()
        self._sock.send(_message(RTM_GETLINK, NLM_F_REQUEST, seq, body))
        while True:
            data = self._sock.recv(1 << 16)
            for kind, _flags, msg_seq, start, end in _iter_messages(data):
                if msg_seq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    err = -_ERR.unpack_from(data, start)[0]
                    if err in (errno.ENODEV, errno.ENOENT):
                        return None
                    raise NetlinkError(f"link get failed: {errno.errorcode.get(err, err)}", err)
                _family, _type, ifindex, flags, _change = _IFINFOMSG.unpack_from(data, start)
                return ifindex, flags, _attrs(data, start + _IFINFOMSG.size, end)

    # --- dumps -------------------------------------------------------------------------------

    def dump(self, ifindex: int) -> TunnelState:
        """The entries of device `ifindex` that are ours (see `hybrid_gateway.core.dataplane`).

        Repeated if the kernel flags a dump as interrupted by concurrent changes (its content
        may then be inconsistent)."""
        with self._lock:
            for _attempt in range(DUMP_ATTEMPTS):
                self._interrupted = False
                state = self._dump_state(ifindex)
                if not self._interrupted:
                    return state
        raise NetlinkError(f"dumps interrupted {DUMP_ATTEMPTS} times by concurrent changes")

    def _dump_state(self, ifindex: int) -> TunnelState:
        fdb: set[FdbEntry] = set()
        neighbours: dict[ipaddress.IPv4Address, str] = {}
        routes: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
        fdb_req = _NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0) + _attr(NDA_IFINDEX, _U32.pack(ifindex))
        for data, start, end in self._dump(RTM_GETNEIGH, fdb_req):
            family, index, state, _flags, _type = _NDMSG.unpack_from(data, start)
            if family != AF_BRIDGE or index != ifindex or not state & NUD_PERMANENT:
                continue
            attrs = _attrs(data, start + _NDMSG.size, end)
            mac, dst = attrs.get(NDA_LLADDR), _ipv4(attrs.get(NDA_DST))
            if mac is None or len(mac) != 6 or mac == _ZERO_MAC or dst is None:
                continue
            fdb.add(FdbEntry(mac=_mac_text(mac), dst=dst))
        neigh_req = _NDMSG.pack(AF_INET, 0, 0, 0, 0) + _attr(NDA_IFINDEX, _U32.pack(ifindex))
        for data, start, end in self._dump(RTM_GETNEIGH, neigh_req):
            family, index, state, _flags, _type = _NDMSG.unpack_from(data, start)
            if family != AF_INET or index != ifindex or not state & NUD_PERMANENT:
                continue
            attrs = _attrs(data, start + _NDMSG.size, end)
            ip, mac = _ipv4(attrs.get(NDA_DST)), attrs.get(NDA_LLADDR)
            if ip is not None and mac is not None:
                neighbours[ip] = _mac_text(mac)
        route_req = _RTMSG.pack(AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, 0, 0) + _attr(
            RTA_OIF, _U32.pack(ifindex)
        )
        for data, start, end in self._dump(RTM_GETROUTE, route_req):
            fam, dst_len, _s, tos, table, proto, _sc, rtype, _f = _RTMSG.unpack_from(data, start)
            attrs = _attrs(data, start + _RTMSG.size, end)
            if RTA_TABLE in attrs:
                table = _U32.unpack(attrs[RTA_TABLE])[0]
            oif = attrs.get(RTA_OIF)
            if (
                fam != AF_INET
                or table != RT_TABLE_MAIN
                or proto != RTPROT_STATIC
                or rtype != RTN_UNICAST
                or tos != 0
                or oif is None
                or _U32.unpack(oif)[0] != ifindex
                or _U32.unpack(attrs.get(RTA_PRIORITY, b"\0\0\0\0"))[0] != 0
            ):
                continue
            net = _ipv4_net(attrs.get(RTA_DST, b"\0\0\0\0"), dst_len)
            routes[net] = _ipv4(attrs.get(RTA_GATEWAY)) or _NO_GATEWAY
        return TunnelState(fdb=frozenset(fdb), neighbours=neighbours, routes=routes)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _dump(self, msg_type: int, body: bytes) -> Iterator[tuple[bytes, int, int]]:
        seq = self._next_seq()
        self._sock.send(_message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        while True:
            data = self._sock.recv(1 << 20)
            for kind, flags, msg_seq, start, end in _iter_messages(data):
                if msg_seq != seq:
                    continue  # a late acknowledgement of an earlier request
                if flags & NLM_F_DUMP_INTR:
                    self._interrupted = True
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    err = -_ERR.unpack_from(data, start)[0]
                    raise NetlinkError(f"dump {msg_type} failed: {errno.errorcode.get(err)}", err)
                yield data, start, end

    # --- bulk apply --------------------------------------------------------------------------

    def apply(self, ifindex: int, plan: Plan) -> ApplyResult:
        """Apply `plan` on device `ifindex`: adds FDB -> neighbour -> route, each phase only for
        entries whose prerequisites succeeded; then removals route -> neighbour -> FDB. Deleting
        an entry that is already gone counts as success."""
        result = ApplyResult()
        with self._lock:
            failed_fdb = self._phase(
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
            failed_neigh = self._phase(result, neighbours, "set neighbour", delete=False)
            skipped = len(plan.set_neighbours) - len(neighbours)
            bad_peers |= {ip for ip, _ in failed_neigh}
            routes = [
                (n, gw, replace)
                for replace, batch in ((False, plan.add_routes), (True, plan.set_routes))
                for n, gw in batch
                if gw not in bad_peers
            ]
            skipped += len(plan.add_routes) + len(plan.set_routes) - len(routes)
            self._phase(
                result,
                [
                    ((n, gw), encode_route(ifindex, n, gw, delete=False, seq=0, replace=replace))
                    for n, gw, replace in routes
                ],
                "set route",
                delete=False,
            )
            result.add_errors += skipped
            self._phase(
                result,
                [
                    ((n, gw), encode_route(ifindex, n, gw, delete=True, seq=0))
                    for n, gw in plan.del_routes
                ],
                "delete route",
                delete=True,
            )
            self._phase(
                result,
                [
                    ((ip, m), encode_neighbour(ifindex, ip, m, delete=True, seq=0))
                    for ip, m in plan.del_neighbours
                ],
                "delete neighbour",
                delete=True,
            )
            self._phase(
                result,
                [(f, encode_fdb(ifindex, f, delete=True, seq=0)) for f in plan.del_fdb],
                "delete fdb",
                delete=True,
            )
        return result

    def _phase(
        self,
        result: ApplyResult,
        ops: Sequence[tuple[Any, bytes]],
        what: str,
        *,
        delete: bool,
    ) -> list[Any]:
        """Send `ops` a window at a time, one `send` per window; return the keys that failed.

        Only the last message of a window asks for an acknowledgement: the kernel handles the
        messages of one send in order and reports every failure anyway, so the last ack means
        the whole window is done and every error of it has been received. One read per window
        instead of one per entry.
        """
        failed: list[Any] = []
        for start in range(0, len(ops), WINDOW):
            window = ops[start : start + WINDOW]
            keys: dict[int, Any] = {}
            chunks: list[bytes] = []
            last = len(window) - 1
            for position, (key, message) in enumerate(window):
                seq = self._next_seq()
                keys[seq] = key
                flags = _FLAGS.unpack_from(message, 6)[0]
                flags = flags | NLM_F_ACK if position == last else flags & ~NLM_F_ACK
                chunks.append(message[:6] + _FLAGS_SEQ.pack(flags, seq) + message[12:])
            self._sock.send(b"".join(chunks))
            final_seq = self._seq
            errors: dict[int, int] = {}
            while final_seq not in errors:
                data = self._sock.recv(1 << 20)
                for kind, _flags, seq, body, _end in _iter_messages(data):
                    if kind == NLMSG_ERROR and seq in keys:
                        errors[seq] = -_ERR.unpack_from(data, body)[0]
            for seq, key in keys.items():
                err = errors.get(seq, 0)
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


#: The first eight fields of struct rtnl_link_stats64, in kernel order.
_STAT_NAMES = (
    "rx_packets",
    "tx_packets",
    "rx_bytes",
    "tx_bytes",
    "rx_errors",
    "tx_errors",
    "rx_dropped",
    "tx_dropped",
)
