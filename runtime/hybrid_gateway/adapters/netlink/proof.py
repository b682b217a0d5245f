"""Proof that a dump holds exactly the desired entries, read column-wise instead of parsed.

A no-op resync at 50,000 nodes reads 200,000 messages (FDB, neighbour, nexthop, route); parsing
them one by one (`entries.parse_state`) costs about 5 us each in Python, over a second in all.
But the kernel answers a dump with datagrams of up to 32 KiB (net/netlink/af_netlink.c
`netlink_recvmsg` caps `max_recvmsg_len`), and all our entries of one table look alike: same
length, same attributes in the same order. So each datagram is checked as a table: every
message's header words and attribute headers compared at once, the fields the parser filters
on compared against the one value it accepts, and the fields it keeps (addresses, MACs, ids)
taken out as columns, all in C (`memoryview.cast` and extended slices). Each entry becomes
one integer key; the dump holds the desired state when its keys are exactly the desired
state's keys.

Only a proof of equality, never a parser of its own: a datagram that is not a uniform run of
entries the parser would keep as they are (another length or layout, a foreign or adopted
route, a duplicate attribute, a metric) leaves the proof undecided, and the caller parses the
same dump with `entries.parse_state` and diffs as before. So every pass still reads every
entry of the device: drift is found and repaired exactly as by the parser.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import repeat

from hybrid_gateway.adapters.netlink.wire import (
    AF_BRIDGE,
    AF_INET,
    NDA_DST,
    NDA_LLADDR,
    NDMSG,
    NHA_FDB,
    NHA_GATEWAY,
    NHA_GROUP,
    NHA_ID,
    NHA_OIF,
    NHMSG,
    NUD_PERMANENT,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_NH_ID,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTMSG,
    RTN_UNICAST,
    RTPROT_STATIC,
    U32,
)
from hybrid_gateway.core.dataplane import TunnelState

_HEADER = 16  # struct nlmsghdr
_BODY = _HEADER  # offset of the family header (ndmsg, nhmsg, rtmsg) in a message
_MAC = struct.Struct("=IH")  # a MAC as the two native words `_Columns` reads
_ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Keys:
    """One integer per entry of a `TunnelState`, as `holds` reads them from a dump."""

    fdb: AbstractSet[int]
    neighbours: AbstractSet[int]
    nexthops: AbstractSet[int]
    routes: AbstractSet[int]


def _ips(addresses: Iterable[ipaddress.IPv4Address]) -> Iterator[int]:
    """The addresses as the native words `_Columns` reads from their network-order bytes."""
    return map(socket.htonl, map(int, addresses))


@functools.lru_cache(maxsize=1 << 17)
def _mac(text: str) -> int:
    """Cached: every desired state names each node's MAC twice (FDB and neighbour)."""
    high, low = _MAC.unpack(bytes.fromhex(text.replace(":", "")))
    return int(high | low << 32)


def _join(low: Iterable[int], high: Iterable[int], shift: int) -> Iterator[int]:
    """`low | high << shift`, element by element (in C: 200,000 entries at 50,000 nodes)."""
    return map(operator.or_, low, map(operator.lshift, high, repeat(shift)))


def expected_keys(state: TunnelState) -> Keys | None:
    """The keys of `state` (a desired state), None if no dump can prove it: it names adopted
    routes, a route whose gateway is not its nexthop's, or an all-zero FDB MAC (the parser
    skips those, so no key may stand for one)."""
    fdb_macs, fdb_dsts = zip(*state.fdb, strict=True) if state.fdb else ((), ())
    nets, vias = list(state.routes), list(state.routes.values())
    nhids = list(map(state.route_nexthops.get, nets, repeat(0)))
    if state.adopted_routes or _ZERO_MAC in fdb_macs:
        return None
    if all(nhids):  # through nexthop objects: the gateway is the nexthop's
        if list(map(state.nexthops.get, nhids)) != vias:
            return None
        gateways: Iterable[int] = repeat(0)
    elif not any(nhids):  # routes with their own gateway
        gateways = _ips(vias)
    else:
        return None  # a desired state is one or the other
    prefixes = _join(_ips(map(operator.attrgetter("network_address"), nets)),
                     map(operator.attrgetter("prefixlen"), nets), 32)  # fmt: skip
    return Keys(
        fdb=frozenset(_join(_ips(fdb_dsts), map(_mac, fdb_macs), 32)),
        neighbours=frozenset(
            _join(_ips(state.neighbours), map(_mac, state.neighbours.values()), 32)
        ),
        nexthops=frozenset(_join(state.nexthops, _ips(state.nexthops.values()), 32)),
        routes=frozenset(_join(_join(prefixes, nhids, 40), gateways, 72)),
    )


def joined_keys(parts: Sequence[Keys | None], state: TunnelState) -> Keys | None:
    """The keys of `state` from the keys of the parts it merges (`dataplane.merge_states`,
    each part's keys from `expected_keys`), None if a part has none. Every entry of `state` is
    an entry of some part, so its keys are among the parts' keys; a part's entry that a later
    part replaced (the same neighbour IP with another MAC, say) adds a key `state` lacks, so
    the union proves `state` only when it has exactly as many keys as `state` has entries."""
    if any(part is None for part in parts):
        return None
    known = [part for part in parts if part is not None]
    keys = Keys(
        fdb=frozenset().union(*(part.fdb for part in known)),
        neighbours=frozenset().union(*(part.neighbours for part in known)),
        nexthops=frozenset().union(*(part.nexthops for part in known)),
        routes=frozenset().union(*(part.routes for part in known)),
    )
    sizes = (len(keys.fdb), len(keys.neighbours), len(keys.nexthops), len(keys.routes))
    wanted = (len(state.fdb), len(state.neighbours), len(state.nexthops), len(state.routes))
    return keys if sizes == wanted else None


class _Columns:
    """The messages of one datagram when they all have one length and the same attribute
    headers at the same offsets (else `uniform` returns None): fields read for all at once."""

    def __init__(self, chunk: bytes, length: int, attrs: dict[int, tuple[int, int]]) -> None:
        self.chunk = chunk
        self.length = length
        self.count = len(chunk) // length
        self.attrs = attrs  # attribute type -> (payload offset, payload length)
        self._words = memoryview(chunk).cast("I")
        self._halves = memoryview(chunk).cast("H")

    @classmethod
    def uniform(cls, chunk: bytes, family_header: int) -> _Columns | None:
        if len(chunk) < _HEADER + family_header:
            return None
        length = U32.unpack_from(chunk, 0)[0]
        if length < _HEADER + family_header or length % 4 or len(chunk) % length:
            return None
        columns = cls(chunk, length, {})
        if not columns.same_word(0):  # every message has this length: the chain is sound
            return None
        offset = _HEADER + family_header
        while offset < length:
            size, kind = struct.unpack_from("=HH", chunk, offset)
            kind &= 0x3FFF  # as `wire.attrs_of` reads it
            if size < 4 or offset + size > length or kind in columns.attrs:
                return None
            if not columns.same_word(offset):
                return None
            columns.attrs[kind] = (offset + 4, size - 4)
            offset += (size + 3) & ~3
        return columns if offset == length else None

    def same_word(self, offset: int, value: int | None = None) -> bool:
        """Whether the 32-bit word at `offset` is `value` (default: the first message's) in
        every message."""
        word = self.chunk[offset : offset + 4] if value is None else U32.pack(value)
        return self._words[offset // 4 :: self.length // 4].tobytes() == word * self.count

    def same_byte(self, offset: int, value: int) -> bool:
        return self.chunk[offset :: self.length] == bytes([value]) * self.count

    def words(self, offset: int) -> list[int]:
        return self._words[offset // 4 :: self.length // 4].tolist()

    def halves(self, offset: int) -> list[int]:
        return self._halves[offset // 2 :: self.length // 2].tolist()

    def bytes_at(self, offset: int) -> bytes:
        return self.chunk[offset :: self.length]

    def attr(self, kind: int, size: int) -> int | None:
        """Payload offset of attribute `kind` if it is present with `size` bytes, else None."""
        found = self.attrs.get(kind)
        return found[0] if found is not None and found[1] == size else None

    def address_and_mac(self, address: int, mac: int) -> Iterable[int]:
        """`_ip(address) | _mac(mac) << 32` for every message."""
        high = map(operator.lshift, self.words(mac), repeat(32))
        low = map(operator.lshift, self.halves(mac + 4), repeat(64))
        return map(operator.or_, map(operator.or_, self.words(address), high), low)


def _neigh_keys(chunk: bytes, ifindex: int, family: int) -> Iterable[int] | None:
    """FDB (`family` AF_BRIDGE) or neighbour entries: permanent, on our device, with a 6-byte
    MAC and an IPv4 address (`entries.parse_state`)."""
    columns = _Columns.uniform(chunk, NDMSG.size)
    if columns is None:
        return None
    dst, mac = columns.attr(NDA_DST, 4), columns.attr(NDA_LLADDR, 6)
    state = NDMSG.unpack_from(chunk, _BODY)[2]
    if (
        dst is None
        or mac is None
        or not state & NUD_PERMANENT
        or not columns.same_byte(_BODY, family)
        or not columns.same_word(_BODY + 4, ifindex)
        or not columns.same_word(_BODY + 8)  # state, flags, type: the first message's
    ):
        return None
    return columns.address_and_mac(dst, mac)


def _nexthop_keys(chunk: bytes, ifindex: int) -> Iterable[int] | None:
    """Single IPv4 nexthops with a gateway on our device (`entries._parse_nexthops`): no other
    attribute than these is read there, and a group or FDB nexthop has one more."""
    columns = _Columns.uniform(chunk, NHMSG.size)
    if columns is None:
        return None
    nhid, oif = columns.attr(NHA_ID, 4), columns.attr(NHA_OIF, 4)
    gateway = columns.attr(NHA_GATEWAY, 4)
    if (
        nhid is None
        or oif is None
        or gateway is None
        or NHA_GROUP in columns.attrs
        or NHA_FDB in columns.attrs
        or not columns.same_byte(_BODY, AF_INET)
        or not columns.same_word(oif, ifindex)
    ):
        return None
    return map(
        operator.or_, columns.words(nhid), map(operator.lshift, columns.words(gateway), repeat(32))
    )


def _route_keys(chunk: bytes, ifindex: int) -> Iterable[int] | None:
    """Our routes as `entries.parse_state` keeps them: IPv4 unicast, main table, TOS 0, metric
    0, `proto static` (an adopted route leaves the proof undecided), through a nexthop id or
    with our device as output device."""
    columns = _Columns.uniform(chunk, RTMSG.size)
    if columns is None:
        return None
    table, priority = columns.attr(RTA_TABLE, 4), columns.attr(RTA_PRIORITY, 4)
    dst, nhid = columns.attr(RTA_DST, 4), columns.attr(RTA_NH_ID, 4)
    oif, gateway = columns.attr(RTA_OIF, 4), columns.attr(RTA_GATEWAY, 4)
    if (
        not columns.same_byte(_BODY, AF_INET)
        or not columns.same_byte(_BODY + 3, 0)  # TOS
        or not columns.same_byte(_BODY + 5, RTPROT_STATIC)
        or not columns.same_byte(_BODY + 7, RTN_UNICAST)
        or not (  # RTA_TABLE, where present, stands for the header's table
            columns.same_word(table, RT_TABLE_MAIN)
            if table is not None
            else RTA_TABLE not in columns.attrs and columns.same_byte(_BODY + 4, RT_TABLE_MAIN)
        )
        or not (
            columns.same_word(priority, 0)
            if priority is not None
            else RTA_PRIORITY not in columns.attrs
        )
        or (RTA_DST in columns.attrs and dst is None)
    ):
        return None
    count = columns.count
    dsts = columns.words(dst) if dst is not None else [0] * count
    keys = map(operator.or_, dsts, map(operator.lshift, columns.bytes_at(_BODY + 1), repeat(32)))
    if nhid is not None:  # the parser resolves the gateway through the nexthop
        return map(operator.or_, keys, map(operator.lshift, columns.words(nhid), repeat(40)))
    if RTA_NH_ID in columns.attrs or oif is None or not columns.same_word(oif, ifindex):
        return None
    if gateway is None:
        return None if RTA_GATEWAY in columns.attrs else keys
    return map(operator.or_, keys, map(operator.lshift, columns.words(gateway), repeat(72)))


def _collect(
    chunks: list[bytes], read: Callable[..., Iterable[int] | None], *args: int
) -> set[int] | None:
    keys: set[int] = set()
    for chunk in chunks:
        found = read(chunk, *args)
        if found is None:
            return None
        keys.update(found)
    return keys


def _count(chunks: list[bytes]) -> int:
    """Messages in `chunks` if each is a run of one length (else -1: no proof)."""
    total = 0
    for chunk in chunks:
        length = U32.unpack_from(chunk, 0)[0] if len(chunk) >= 4 else 0
        if length < _HEADER or len(chunk) % length:
            return -1
        total += len(chunk) // length
    return total


def sizes_match(
    state: TunnelState,
    *,
    fdb: list[bytes],
    neighbours: list[bytes],
    nexthops: list[bytes],
    routes: list[bytes],
) -> bool:
    """Whether the dumps hold as many entries per table as `state`: checked before the keys
    are built, so a pass that will not be a no-op (the first one on an empty device, say) does
    not build them for nothing. Only a shortcut to parsing: the kernel lists an entry once."""
    return (
        _count(fdb) == len(state.fdb)
        and _count(neighbours) == len(state.neighbours)
        and _count(nexthops) == len(state.nexthops)
        and _count(routes) == len(state.routes)
    )


def holds(
    *,
    ifindex: int,
    fdb: list[bytes],
    neighbours: list[bytes],
    nexthops: list[bytes],
    routes: list[bytes],
    keys: Keys,
) -> bool:
    """True only if these dumps of device `ifindex` parse to exactly the state of `keys`;
    False also when the proof is undecided (then parse)."""
    return (
        _collect(nexthops, _nexthop_keys, ifindex) == keys.nexthops
        and _collect(routes, _route_keys, ifindex) == keys.routes
        and _collect(neighbours, _neigh_keys, ifindex, AF_INET) == keys.neighbours
        and _collect(fdb, _neigh_keys, ifindex, AF_BRIDGE) == keys.fdb
    )
