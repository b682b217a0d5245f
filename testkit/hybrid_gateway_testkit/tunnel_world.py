"""A tunnel world in network namespaces: VPC host, gateway, Cilium-like hybrid node.

    vpc (10.0.1.10/24) --veth-- gw (10.0.1.1/24 | 192.168.100.1/24) --veth-- hyb (192.168.100.10/24)

The gateway namespace gets the reconciler (`hybrid_vxlan0`, local 10.0.1.1). The hybrid node is
configured the way Cilium's VTEP mode behaves: a kernel VXLAN device (VNI 2, port 8472, MAC
02:00:<its IP>) and a pod address 10.200.1.5 inside its pod CIDR 10.200.1.0/24; traffic from the
pod CIDR to the VPC CIDR goes into the tunnel towards the gateway's device MAC, selected by a
policy rule so the encapsulated packets themselves (to 10.0.1.1, inside the VPC CIDR) take the
main table and do not loop back into the tunnel.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hybrid_gateway_testkit.netns import Netns, NetnsWorld, netns_world

GATEWAY_IP = "10.0.1.1"
VPC_HOST_IP = "10.0.1.10"
VPC_CIDR = "10.0.0.0/16"
HYBRID_IP = "192.168.100.10"
HYBRID_POD_CIDR = "10.200.1.0/24"
HYBRID_POD_IP = "10.200.1.5"


@dataclass
class World:
    netns: NetnsWorld
    vpc: Netns
    gw: Netns
    hyb: Netns


def peer_mac(node_ip: str) -> str:
    """MAC the gateway addresses a hybrid node's VTEP with: `02:00:<4 octets>`
    (docs/design.md#tunnel)."""
    octets = ipaddress.IPv4Address(node_ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


def setup_hybrid_node(hyb: Netns, *, gateway_mac: str) -> None:
    """Cilium VTEP side: VXLAN VNI 2 / 8472, pod address, VPC route via the gateway MAC."""
    hyb.ip("link", "add", "cilium_vxlan", "type", "vxlan", "id", "2", "dstport", "8472",
           "local", HYBRID_IP, "nolearning")  # fmt: skip
    hyb.ip("link", "set", "cilium_vxlan", "address", peer_mac(HYBRID_IP), "mtu", "1450")
    hyb.ip("link", "set", "cilium_vxlan", "up")
    hyb.ip("addr", "add", f"{HYBRID_POD_IP}/32", "dev", "lo")
    hyb.exec("bridge", "fdb", "append", gateway_mac, "dev", "cilium_vxlan", "dst", GATEWAY_IP,
             "self", "permanent")  # fmt: skip
    hyb.ip("neigh", "replace", GATEWAY_IP, "lladdr", gateway_mac, "dev", "cilium_vxlan",
           "nud", "permanent")  # fmt: skip
    hyb.ip("route", "add", VPC_CIDR, "via", GATEWAY_IP, "dev", "cilium_vxlan", "onlink",
           "table", "100")  # fmt: skip
    hyb.ip("rule", "add", "from", HYBRID_POD_CIDR, "lookup", "100", "priority", "100")


@contextmanager
def tunnel_world(*, gateway_mac: str) -> Iterator[World]:
    """Build the world (see the module docstring); every namespace is deleted on exit.

    `gateway_mac` is the MAC the gateway's VXLAN device will have (the hybrid side's VTEP
    configuration points at it, as CiliumVTEPConfig does)."""
    with netns_world() as w:
        vpc, gw, hyb = w.add("vpc"), w.add("gw"), w.add("hyb")
        w.link(vpc, f"{VPC_HOST_IP}/24", gw, f"{GATEWAY_IP}/24")
        w.link(gw, "192.168.100.1/24", hyb, f"{HYBRID_IP}/24")
        for ns in (vpc, gw, hyb):
            ns.sysctl("net.ipv4.conf.all.rp_filter", "0")
            ns.sysctl("net.ipv4.conf.default.rp_filter", "0")
        gw.sysctl("net.ipv4.ip_forward", "1")
        gw.sysctl("net.ipv4.conf.all.send_redirects", "0")
        vpc.ip("route", "add", "10.200.0.0/16", "via", GATEWAY_IP)  # the VPC route table entry
        hyb.ip("route", "add", "10.0.0.0/16", "via", "192.168.100.1")  # on-prem routing to the VPC
        setup_hybrid_node(hyb, gateway_mac=gateway_mac)
        yield World(w, vpc, gw, hyb)
