"""A gateway host's tunnel set up by hand, for the lab's own world tests.

Exactly what docs/design.md#tunnel describes (VXLAN device, then per hybrid node FDB entry,
permanent neighbour and pod CIDR route), without the daemon: a world test that passes with it proves
the lab carries tunnelled traffic, so a drill's failure can only be the daemon's.
"""

from __future__ import annotations

from hybrid_gateway_contract import VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI
from hybrid_gateway_testkit.lab.lab import Lab
from hybrid_gateway_testkit.tunnel_world import peer_mac


def program_gateway_by_hand(lab: Lab, host: str, mac: str) -> str:
    """A tunnel from `host` (device MAC `mac`) to every hybrid node; returns the host's IP."""
    ns, ip = lab.w.gateways[host], lab.world.gateway_ip(host)
    ns.ip("link", "add", VXLAN_DEVICE, "address", mac, "type", "vxlan", "id", str(VXLAN_VNI),
          "dstport", str(VXLAN_PORT), "local", ip, "nolearning")  # fmt: skip
    ns.ip("link", "set", VXLAN_DEVICE, "mtu", "1450", "up")
    for node in lab.plan.nodes:
        node_mac = peer_mac(node.node_ip)
        ns.exec("bridge", "fdb", "append", node_mac, "dev", VXLAN_DEVICE, "dst", node.node_ip,
                "self", "permanent")  # fmt: skip
        ns.ip("neigh", "replace", node.node_ip, "lladdr", node_mac, "dev", VXLAN_DEVICE,
              "nud", "permanent")  # fmt: skip
        ns.ip("route", "replace", node.pod_cidr, "via", node.node_ip, "dev", VXLAN_DEVICE,
              "onlink")  # fmt: skip
    return ip
