"""rtnetlink on the wire: message encoding and decoding, and a raw socket that sends in bulk.

Tunnel entries are written in bulk: many small rtnetlink messages, packed here with `struct`
(one request costs ~75 us through pyroute2's generic encoder, too slow for 15,000), sent a window
at a time in one `send` each, and acknowledged by sequence number; no round trip per entry. The
same socket dumps tables with kernel-side filtering (strict checking) and a small parser for the
few attributes we read. Tests compare both against pyroute2's own encoder and dumps.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
import struct
from collections.abc import Iterator, Sequence

from pyroute2.netns import create_socket

from hybrid_gateway.core.dataplane import FdbEntry, ipv4_key, ipv4_network_key

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
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106
AF_INET = socket.AF_INET
AF_BRIDGE = 7
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RTA_NH_ID = 30
# linux/nexthop.h: struct nhmsg and its attributes
NHA_ID, NHA_GROUP, NHA_BLACKHOLE, NHA_OIF, NHA_GATEWAY, NHA_FDB = 1, 2, 4, 5, 6, 11
NHMSG = struct.Struct("=BBBBI")  # family, scope, protocol, resvd, flags
RT_TABLE_MAIN = 254
RTPROT_UNSPEC = 0
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
RTNH_F_ONLINK = 4

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_GETADDR = 16, 17, 18, 22
#: The multicast group of link notifications (linux/rtnetlink.h `RTNLGRP_LINK`), as a bind mask.
RTNLGRP_LINK_MASK = 1 << (1 - 1)
IFLA_IFNAME, IFLA_STATS64 = 3, 23
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 0x1
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_RTA = struct.Struct("=HH")
_ERR = struct.Struct("=i")
U32 = struct.Struct("=I")
_FLAGS = struct.Struct("=H")
_FLAGS_SEQ = struct.Struct("=HI")  # nlmsghdr flags and seq, at offset 6

#: A kernel answer slower than this means something is badly wrong; fail the pass, resync later.
IO_TIMEOUT_S = 30.0
DUMP_ATTEMPTS = 3
#: Messages per `send`: every acknowledgement of a window fits the receive buffer.
WINDOW = 1024
NO_GATEWAY = ipaddress.IPv4Address(0)
ZERO_MAC = b"\x00" * 6


class NetlinkError(Exception):
    """A netlink operation failed; `errno` is the kernel's error number."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


# --- message encoding ----------------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    length = _RTA.size + len(payload)
    return _RTA.pack(length, kind) + payload + b"\x00" * (-length % 4)


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(_HDR.size + len(body), msg_type, flags, seq, 0) + body


def encode_fdb(ifindex: int, entry: FdbEntry, *, delete: bool, seq: int) -> bytes:
    """`bridge fdb replace|del <mac> dev <ifindex> dst <ip> self permanent`.

    Replace, not append: the VXLAN driver keeps one remote per unicast MAC and appends a second
    only to the all-zero or a multicast MAC; an append to an existing unicast MAC succeeds and
    changes nothing (drivers/net/vxlan/vxlan_core.c `vxlan_fdb_update_existing`). So an entry
    pointed elsewhere behind our back is re-pointed in place, and the plan's delete of the
    wrong pair then finds nothing (ENOENT, a success for a delete)."""
    body = (
        NDMSG.pack(AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF, 0)
        + attr(NDA_LLADDR, _mac_bytes(entry.mac))
        + attr(NDA_DST, entry.dst.packed)
    )
    if delete:
        return _message(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, seq, body)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _message(RTM_NEWNEIGH, flags, seq, body)


def encode_neighbour(
    ifindex: int, ip: ipaddress.IPv4Address, mac: str, *, delete: bool, seq: int
) -> bytes:
    """`ip neigh replace|del <ip> lladdr <mac> dev <ifindex> nud permanent`."""
    if delete:
        body = NDMSG.pack(AF_INET, ifindex, 0, 0, 0) + attr(NDA_DST, ip.packed)
        return _message(RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, seq, body)
    body = (
        NDMSG.pack(AF_INET, ifindex, NUD_PERMANENT, 0, 0)
        + attr(NDA_DST, ip.packed)
        + attr(NDA_LLADDR, _mac_bytes(mac))
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
    nhid: int = 0,
) -> bytes:
    """`ip route replace|add <dst> via <gateway> dev <ifindex> onlink proto static` (main
    table), or with `nhid` `ip route replace|add <dst> nhid <nhid> proto static`; `replace=False`
    adds exclusively, failing with EEXIST if the prefix is routed.

    A delete names no protocol, so it also removes a route on our device that we adopted from
    another writer (the reference gateway's routes are `proto boot`); device and gateway (or
    the nexthop id), table, TOS and metric still have to match. A nexthop id excludes device
    and gateway in the same message (net/ipv4/fib_frontend.c `rtm_to_fib_config`: "Nexthop
    specification and nexthop id are mutually exclusive"), and a delete by device and gateway
    does not match a route that uses a nexthop object (fib_semantics.c `fib_nh_match`)."""
    body = (
        RTMSG.pack(
            AF_INET,
            dst.prefixlen,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_UNSPEC if delete else RTPROT_STATIC,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
            0 if delete or nhid else RTNH_F_ONLINK,
        )
        + attr(RTA_TABLE, U32.pack(RT_TABLE_MAIN))
        + attr(RTA_DST, dst.network_address.packed)
    )
    if nhid:
        body += attr(RTA_NH_ID, U32.pack(nhid))
    else:
        body += attr(RTA_OIF, U32.pack(ifindex))
        if gateway != NO_GATEWAY:
            body += attr(RTA_GATEWAY, gateway.packed)
    if delete:
        return _message(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, body)
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
    return _message(RTM_NEWROUTE, flags, seq, body)


def encode_nexthop(
    ifindex: int,
    nhid: int,
    gateway: ipaddress.IPv4Address,
    *,
    delete: bool,
    seq: int,
    replace: bool = False,
) -> bytes:
    """`ip nexthop add|replace id <nhid> via <gateway> dev <ifindex> onlink proto static`, or
    `ip nexthop del id <nhid>`. `replace=False` adds exclusively (EEXIST if the id is taken).

    A plain IPv4 nexthop with a device, not an FDB nexthop (`NHA_FDB`): FDB nexthops serve
    VXLAN FDB entries, and a route cannot use one (net/ipv4/nexthop.c `fib_check_nexthop`:
    "Route cannot point to a fdb nexthop"). `onlink` as for the routes: the node IP is not on
    any subnet of the device (`rtm_to_nh_config` requires the device up; `fib_check_nh` with
    RTNH_F_ONLINK takes the gateway as on-link)."""
    if delete:
        body = NHMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(NHA_ID, U32.pack(nhid))
        return _message(RTM_DELNEXTHOP, NLM_F_REQUEST | NLM_F_ACK, seq, body)
    body = (
        NHMSG.pack(AF_INET, 0, RTPROT_STATIC, 0, RTNH_F_ONLINK)
        + attr(NHA_ID, U32.pack(nhid))
        + attr(NHA_OIF, U32.pack(ifindex))
        + attr(NHA_GATEWAY, gateway.packed)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
    return _message(RTM_NEWNEXTHOP, flags, seq, body)


# --- message decoding ----------------------------------------------------------------------------


def iter_messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, offset of the body, end) for every message in one datagram."""
    offset = 0
    while offset + _HDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            break
        yield msg_type, flags, seq, offset + _HDR.size, offset + length
        offset += (length + 3) & ~3


def attrs_of(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + _RTA.size <= end:
        length, kind = _RTA.unpack_from(data, offset)
        if length < _RTA.size:
            break
        found[kind & 0x3FFF] = data[offset + _RTA.size : offset + length]
        offset += (length + 3) & ~3
    return found


def ipv4_of(raw: bytes | None) -> ipaddress.IPv4Address | None:
    """The shared address object (`core.dataplane.ipv4_key`): a dump sees each node IP three
    times and every pass sees the same IPs again."""
    return ipv4_key(int.from_bytes(raw, "big")) if raw is not None and len(raw) == 4 else None


@functools.lru_cache(maxsize=1 << 16)
def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ipv4_net(raw: bytes, prefixlen: int) -> ipaddress.IPv4Network:
    return ipv4_network_key(int.from_bytes(raw, "big"), prefixlen)


# --- the socket ----------------------------------------------------------------------------------


class RouteSocket:
    """A raw NETLINK_ROUTE socket in one network namespace. Not thread-safe: the caller locks.

    The raw socket rather than pyroute2 for reads too: pyroute2 0.9 opens a socket and an event
    loop per calling thread, and readiness probes and metric scrapes arrive on ever new threads.
    """

    def __init__(self, netns: str | None = None, *, groups: int = 0) -> None:
        """`groups`: the multicast groups (a bind mask) whose notifications this socket takes
        (`receive_pending`); such a socket never waits, and is for notifications only."""
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
        self._sock.settimeout(0.0 if groups else IO_TIMEOUT_S)
        self._sock.bind((0, groups))
        self._seq = 0
        #: Set by `dump` when the kernel flagged a dump as interrupted by concurrent changes.
        self.interrupted = False

    def close(self) -> None:
        self._sock.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def dump(self, msg_type: int, body: bytes) -> Iterator[tuple[bytes, int, int]]:
        """(datagram, body offset, end) of every answer to one dump request."""
        for chunk in self.dump_chunks(msg_type, body):
            for _kind, _flags, _seq, start, end in iter_messages(chunk):
                yield chunk, start, end

    def dump_chunks(self, msg_type: int, body: bytes) -> list[bytes]:
        """Every answer to one dump request, as the kernel sent it: one byte string per
        datagram holding only the dump's own messages, back to back (NLMSG_DONE and late
        acknowledgements of earlier requests left out). Kept whole so that `proof` can read a
        datagram's messages field by field, in C, instead of one message at a time."""
        seq = self._next_seq()
        self._sock.send(_message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        chunks: list[bytes] = []
        done = False
        while not done:
            data = self._sock.recv(1 << 20)
            own, done = self._own_messages(data, seq, msg_type)
            if own:
                chunks.append(own)
        return chunks

    def _own_messages(self, data: bytes, seq: int, msg_type: int) -> tuple[bytes, bool]:
        """(this dump's messages in `data`, whether the dump ended). A dump datagram is
        usually a run of messages of one length, type, flags and sequence number, perhaps
        followed by NLMSG_DONE: checked here column-wise (every message's header word at once);
        anything else is walked message by message."""
        if len(data) >= _HDR.size:
            length, kind, flags, msg_seq, _pid = _HDR.unpack_from(data, 0)
            if (
                msg_seq == seq
                and kind not in (NLMSG_DONE, NLMSG_ERROR)
                and length >= _HDR.size
                and length % 4 == 0
            ):
                count, rest = divmod(len(data), length)
                words = memoryview(data)[: count * length].cast("I")
                step = length // 4
                if all(
                    words[column::step].tobytes() == data[4 * column : 4 * column + 4] * count
                    for column in (0, 1, 2)  # length, type and flags, sequence number
                ):
                    if flags & NLM_F_DUMP_INTR:
                        self.interrupted = True
                    if not rest:
                        return data, False
                    tail, done = self._walk(data[count * length :], seq, msg_type)
                    return data[: count * length] + tail, done
        return self._walk(data, seq, msg_type)

    def _walk(self, data: bytes, seq: int, msg_type: int) -> tuple[bytes, bool]:
        """`_own_messages` one message at a time."""
        own: list[bytes] = []
        for kind, flags, msg_seq, start, end in iter_messages(data):
            if msg_seq != seq:
                continue  # a late acknowledgement of an earlier request
            if flags & NLM_F_DUMP_INTR:
                self.interrupted = True
            if kind == NLMSG_DONE:
                return b"".join(own), True
            if kind == NLMSG_ERROR:
                err = -_ERR.unpack_from(data, start)[0]
                raise NetlinkError(f"dump {msg_type} failed: {errno.errorcode.get(err)}", err)
            begin = start - _HDR.size
            own.append(data[begin:end] + b"\0" * (-(end - begin) % 4))  # kept aligned
        return b"".join(own), False

    def receive_pending(self) -> list[bytes]:
        """Every datagram already queued on the socket (notifications of its groups), without
        waiting. Raises OSError(ENOBUFS) if the kernel dropped some because the queue was full."""
        pending: list[bytes] = []
        while True:
            try:
                pending.append(self._sock.recv(1 << 16))
            except BlockingIOError:
                return pending

    def get_link(
        self, name: str | None, index: int = 0
    ) -> tuple[int, int, dict[int, bytes]] | None:
        """(index, flags, attributes) of one device by name or index, None if it is absent."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if name is not None:
            body += attr(IFLA_IFNAME, name.encode() + b"\0")
        seq = self._next_seq()
        self._sock.send(_message(RTM_GETLINK, NLM_F_REQUEST, seq, body))
        while True:
            data = self._sock.recv(1 << 16)
            for kind, _flags, msg_seq, start, end in iter_messages(data):
                if msg_seq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    err = -_ERR.unpack_from(data, start)[0]
                    if err in (errno.ENODEV, errno.ENOENT):
                        return None
                    raise NetlinkError(f"link get failed: {errno.errorcode.get(err, err)}", err)
                _family, _type, ifindex, flags, _change = IFINFOMSG.unpack_from(data, start)
                return ifindex, flags, attrs_of(data, start + IFINFOMSG.size, end)

    def send_batch(self, messages: Sequence[bytes]) -> list[int]:
        """Send `messages` a window at a time, one `send` per window; the kernel's errno for each
        (0: done), in order.

        Only the last message of a window asks for an acknowledgement: the kernel handles the
        messages of one send in order and reports every failure anyway, so the last ack means
        the whole window is done and every error of it has been received. One read per window
        instead of one per entry.
        """
        results: list[int] = []
        for start in range(0, len(messages), WINDOW):
            window = messages[start : start + WINDOW]
            first_seq = self._seq + 1
            chunks: list[bytes] = []
            last = len(window) - 1
            for position, message in enumerate(window):
                seq = self._next_seq()
                flags = _FLAGS.unpack_from(message, 6)[0]
                flags = flags | NLM_F_ACK if position == last else flags & ~NLM_F_ACK
                chunks.append(message[:6] + _FLAGS_SEQ.pack(flags, seq) + message[12:])
            self._sock.send(b"".join(chunks))
            seqs = [(first_seq + i) & 0xFFFFFFFF or 1 for i in range(len(window))]
            wanted = set(seqs)
            final_seq = self._seq
            errors: dict[int, int] = {}
            while final_seq not in errors:
                data = self._sock.recv(1 << 20)
                for kind, _flags, seq, body, _end in iter_messages(data):
                    if kind == NLMSG_ERROR and seq in wanted:
                        errors[seq] = -_ERR.unpack_from(data, body)[0]
            results.extend(errors.get(seq, 0) for seq in seqs)
        return results
