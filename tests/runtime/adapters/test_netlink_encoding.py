"""The bulk path packs rtnetlink messages itself; they must be byte-identical to pyroute2's."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from hybrid_gateway.adapters.netlink import wire as nl
from hybrid_gateway.core.dataplane import FdbEntry

V4 = ipaddress.IPv4Address


def pyroute2_bytes(msg: Any, msg_type: int, flags: int, seq: int) -> bytes:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def test_fdb_replace_and_delete_match_pyroute2() -> None:
    entry = FdbEntry("02:00:c0:a8:64:0a", V4("192.168.100.10"))
    for delete, msg_type, flags in (
        (False, nl.RTM_NEWNEIGH, 0x1 | 0x4 | 0x400 | 0x100),  # bridge fdb replace
        (True, nl.RTM_DELNEIGH, 0x1 | 0x4),
    ):
        ref = ndmsg()
        ref["family"] = nl.AF_BRIDGE
        ref["ifindex"] = 7
        ref["state"] = nl.NUD_PERMANENT
        ref["flags"] = nl.NTF_SELF
        ref["attrs"] = [("NDA_LLADDR", entry.mac), ("NDA_DST", str(entry.dst))]
        assert nl.encode_fdb(7, entry, delete=delete, seq=42) == pyroute2_bytes(
            ref, msg_type, flags, 42
        )


def test_neighbour_replace_matches_pyroute2() -> None:
    ref = ndmsg()
    ref["family"] = socket.AF_INET
    ref["ifindex"] = 9
    ref["state"] = nl.NUD_PERMANENT
    ref["attrs"] = [("NDA_DST", "192.168.100.10"), ("NDA_LLADDR", "02:00:c0:a8:64:0a")]
    ours = nl.encode_neighbour(9, V4("192.168.100.10"), "02:00:c0:a8:64:0a", delete=False, seq=5)
    assert ours == pyroute2_bytes(ref, nl.RTM_NEWNEIGH, 0x1 | 0x4 | 0x400 | 0x100, 5)


def test_route_replace_matches_pyroute2() -> None:
    ref = rtmsg()
    ref["family"] = socket.AF_INET
    ref["dst_len"] = 24
    ref["table"] = 254
    ref["proto"] = 4
    ref["scope"] = 0
    ref["type"] = 1
    ref["flags"] = 4  # RTNH_F_ONLINK
    ref["attrs"] = [
        ("RTA_TABLE", 254),
        ("RTA_DST", "10.200.1.0"),
        ("RTA_OIF", 3),
        ("RTA_GATEWAY", "192.168.100.10"),
    ]
    ours = nl.encode_route(
        3, ipaddress.IPv4Network("10.200.1.0/24"), V4("192.168.100.10"), delete=False, seq=77
    )
    assert ours == pyroute2_bytes(ref, nl.RTM_NEWROUTE, 0x1 | 0x4 | 0x400 | 0x100, 77)


def test_acknowledgements_and_dumps_are_split_by_message() -> None:
    first = nl.encode_neighbour(1, V4("10.0.0.1"), "02:00:0a:00:00:01", delete=True, seq=1)
    second = nl.encode_route(
        1, ipaddress.IPv4Network("10.9.0.0/16"), V4("10.0.0.1"), delete=True, seq=2
    )
    parsed = list(nl.iter_messages(first + second))
    assert [(kind, seq) for kind, _f, seq, _s, _e in parsed] == [
        (nl.RTM_DELNEIGH, 1),
        (nl.RTM_DELROUTE, 2),
    ]
    _k, _f, _seq, start, end = parsed[1]
    attrs = nl.attrs_of(first + second, start + 12, end)
    assert attrs[nl.RTA_DST] == bytes([10, 9, 0, 0])
    assert attrs[nl.RTA_GATEWAY] == bytes([10, 0, 0, 1])


def dump_answer(seq: int, count: int) -> list[bytes]:
    """`count` route messages as a dump answers them: one length, our sequence number."""
    return [
        nl.encode_route(
            1, ipaddress.IPv4Network(f"10.{i}.0.0/16"), V4("10.0.0.1"), delete=False, seq=seq
        )
        for i in range(count)
    ]


def test_a_dump_datagram_keeps_only_its_own_messages_checked_at_once_or_one_by_one() -> None:
    sock = nl.RouteSocket.__new__(nl.RouteSocket)  # no socket: only the splitting is tested
    sock.interrupted = False
    done = nl.NLMSG_DONE.to_bytes(2, "little")
    done_message = (20).to_bytes(4, "little") + done + bytes(2) + (9).to_bytes(4, "little")
    done_message += bytes(8)
    ours = b"".join(dump_answer(9, 5))
    # a uniform run, then NLMSG_DONE in the same datagram (the kernel's last datagram)
    assert sock._own_messages(ours + done_message, 9, nl.RTM_GETROUTE) == (ours, True)
    assert sock._own_messages(ours, 9, nl.RTM_GETROUTE) == (ours, False)
    # a late acknowledgement of another request and a message of another length: one by one
    ack = nl.encode_neighbour(1, V4("10.0.0.1"), "02:00:0a:00:00:01", delete=True, seq=8)
    longer = nl.encode_route(
        1, ipaddress.IPv4Network("10.99.0.0/16"), V4("10.0.0.1"), delete=False, seq=9, nhid=7
    )
    mixed = ack + ours + longer + done_message
    assert sock._own_messages(mixed, 9, nl.RTM_GETROUTE) == (ours + longer, True)
    assert not sock.interrupted
    flagged = bytearray(ours)
    for offset in range(0, len(ours), len(ours) // 5):  # on every message: still uniform
        flagged[offset + 6 : offset + 8] = (0x2 | nl.NLM_F_DUMP_INTR).to_bytes(2, "little")
    assert sock._own_messages(bytes(flagged), 9, nl.RTM_GETROUTE) == (bytes(flagged), False)
    assert sock.interrupted
