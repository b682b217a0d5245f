"""Inputs and the iproute2 yardstick of the scale benchmarks (bench/reconcile_scale.py,
bench/scale_end_to_end.py): N hybrid nodes, their CiliumNode objects, and the time `bridge -batch`
plus `ip -batch` take to program the same entries on a fresh device."""

from __future__ import annotations

import ipaddress
import subprocess
import time
import zlib
from typing import Any

from hybrid_gateway.core.mac import hybrid_node_peer_mac, vxlan_device_mac
from hybrid_gateway_testkit.netns import Netns

DEV = "hybrid_vxlan0"
HYBRID_LABEL = {"eks.amazonaws.com/compute-type": "hybrid"}


def nodes(count: int) -> list[tuple[str, str, str]]:
    """(name, node IP, pod CIDR) for `count` hybrid nodes (172.16/12 IPs, 10.128/9 /24s)."""
    base_ip = int(ipaddress.IPv4Address("172.16.0.1"))
    base_net = int(ipaddress.IPv4Address("10.128.0.0"))
    return [
        (
            f"hybrid-{i:05d}",
            str(ipaddress.IPv4Address(base_ip + i)),
            str(ipaddress.IPv4Network((base_net + (i << 8), 24))),
        )
        for i in range(count)
    ]


def realistic_cilium_node(name: str, ip: str, cidr: str) -> dict[str, Any]:
    """A hybrid CiliumNode as Cilium's agent writes it in cluster-pool IPAM mode (~0.9 KB of
    JSON once the server adds uid, resourceVersion and timestamps): labels copied from the
    Node, the owner reference, both addresses, health and ingress addresses, encryption and
    the IPAM pools the data plane never reads."""
    network = ipaddress.IPv4Network(cidr)
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNode",
        "metadata": {
            "name": name,
            "labels": {
                **HYBRID_LABEL,
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": "on-prem-1",
                "eks.amazonaws.com/nodegroup": "edge-rack-07",
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": name,
                    "uid": "0b6c2f4e-5d1a-4c3b-9e8f-7a6b5c4d3e2f",
                }
            ],
        },
        "spec": {
            "addresses": [
                {"type": "InternalIP", "ip": ip},
                {"type": "CiliumInternalIP", "ip": str(network.network_address + 1)},
            ],
            "alibaba-cloud": {},
            "azure": {},
            "encryption": {},
            "eni": {},
            "health": {"ipv4": str(network.network_address + 2)},
            "ingress": {"ipv4": str(network.network_address + 3)},
            "ipam": {"podCIDRs": [cidr], "pools": {}},
            "instance-id": f"mi-0{zlib.crc32(name.encode()):016x}",
        },
    }


def fresh_device(ns: Netns, local: str) -> None:
    """`hybrid_vxlan0` as the daemon creates it, with no entries."""
    ns.ip("link", "add", DEV, "type", "vxlan", "id", "2", "dstport", "8472", "local", local,
          "nolearning")  # fmt: skip
    ns.ip("link", "set", DEV, "address", vxlan_device_mac(local), "mtu", "1450", "up")


def batch_tools(ns: Netns, entries: list[tuple[str, str, str]], local: str) -> float:
    """Seconds `bridge -batch` (FDB) plus `ip -batch` (neighbours, then routes) take to program
    the entries of `entries` on a fresh device in `ns`; checked, not assumed."""
    fresh_device(ns, local)
    fdb = "".join(
        f"fdb append {hybrid_node_peer_mac(ip)} dev {DEV} dst {ip} self permanent\n"
        for _, ip, _ in entries
    )
    ip_cmds = "".join(
        f"neigh replace {ip} lladdr {hybrid_node_peer_mac(ip)} dev {DEV} nud permanent\n"
        for _, ip, _ in entries
    ) + "".join(
        f"route replace {cidr} via {ip} dev {DEV} onlink proto static\n" for _, ip, cidr in entries
    )
    started = time.perf_counter()
    subprocess.run(ns.exec_argv(["bridge", "-batch", "-"]), input=fdb.encode(), check=True)
    subprocess.run(["ip", "-n", ns.name, "-batch", "-"], input=ip_cmds.encode(), check=True)
    elapsed = time.perf_counter() - started
    routes = ns.ip("-4", "route", "show", "dev", DEV).count("\n")
    if routes != len(entries):
        raise RuntimeError(f"batch tools programmed {routes} routes, expected {len(entries)}")
    return elapsed
