"""The VXLAN device MAC, derived from the node IP so a restarted replica keeps it."""

from __future__ import annotations

import hashlib
import ipaddress


def vxlan_device_mac(node_ip: str) -> str:
    """MAC of `hybrid_vxlan0` on the node with IPv4 address `node_ip` (docs/design.md#tunnel).

    sha256 over the 16-byte IPv4-mapped form of the address, first 6 bytes, then the first octet
    made locally administered unicast: `(b & 0xFE) | 0x02`.
    """
    addr = ipaddress.IPv4Address(node_ip)
    mapped = ipaddress.IPv6Address(f"::ffff:{addr}").packed
    digest = bytearray(hashlib.sha256(mapped).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def hybrid_node_peer_mac(node_ip: str) -> str:
    """MAC the gateway uses for a hybrid node's VTEP: `02:00:` followed by the node's 4 octets."""
    octets = ipaddress.IPv4Address(node_ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)
