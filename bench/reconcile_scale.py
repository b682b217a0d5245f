"""Data-plane scale: program N hybrid nodes (FDB, neighbour, route each) and compare with iproute2.

Runs everything inside network namespaces it creates (and always deletes):
- cold_s: the daemon's own reconcile pass (CiliumNode objects -> desired state -> dump -> diff ->
  bulk netlink apply) on a fresh `hybrid_vxlan0` (routes through nexthop objects where the
  kernel has them: 4 entries per node);
- batch_tools_s: `bridge -batch` + `ip -batch` doing the same 3*N operations on a fresh device;
- noop_resync_s: a second full pass when nothing changed (one dump per table, diff in Python);
- remove_all_s: a pass after every node is gone (3*N deletions).
Each figure is the median of `--repeat` runs, each run on fresh namespaces. The LAST line printed
is one JSON object.

    sudo .venv/bin/python bench/reconcile_scale.py --nodes 5000
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import resource
import statistics
import time
from typing import Any

from hybrid_gateway.adapters.netlink import DeviceSpec, Netlink
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.dataplane.reconciler import TunnelReconciler
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.netns import Netns, netns_world
from hybrid_gateway_testkit.scale import DEV, batch_tools, nodes

GATEWAY_IP = "10.0.1.1"
VPC = ipaddress.IPv4Network("10.0.0.0/16")


def cilium_nodes(entries: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "metadata": {"name": name, "labels": {"eks.amazonaws.com/compute-type": "hybrid"}},
            "spec": {
                "addresses": [{"type": "InternalIP", "ip": ip}],
                "ipam": {"podCIDRs": [cidr]},
            },
        }
        for name, ip, cidr in entries
    ]


def daemon(ns: Netns, objects: list[dict[str, Any]], count: int) -> tuple[float, float, float]:
    with Netlink(ns.name) as nl:
        rec = TunnelReconciler(
            netlink=nl,
            device=DeviceSpec(
                DEV, 2, 8472, ipaddress.IPv4Address(GATEWAY_IP), vxlan_device_mac(GATEWAY_IP), 1450
            ),
            vpc_cidrs=[VPC],
            metrics=GatewayMetrics(),
            events=None,
        )
        rec.ensure_device()
        started = time.perf_counter()
        cold = rec.reconcile(objects)
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        noop = rec.reconcile(objects)
        noop_s = time.perf_counter() - started
        routes = ns.ip("-4", "route", "show", "dev", DEV).count("\n")
        started = time.perf_counter()
        removal = rec.reconcile([])
        remove_s = time.perf_counter() - started
    entries = 4 * count if rec.nexthop_objects else 3 * count  # nexthops, where the kernel has them
    if cold.result.added != entries or not noop.plan.empty:
        raise RuntimeError(f"unexpected reconcile result: {cold.result}, no-op plan {noop.plan}")
    if routes != count:
        raise RuntimeError(f"daemon programmed {routes} routes, expected {count}")
    left = ns.ip("-4", "route", "show", "dev", DEV).count("\n")
    if removal.result.removed != entries or left:
        raise RuntimeError(f"removal left {left} routes: {removal.result}")
    return cold_s, noop_s, remove_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    entries = nodes(args.nodes)
    objects = cilium_nodes(entries)
    cold, noop, remove, batch = [], [], [], []
    for run in range(args.repeat):
        with netns_world() as world:
            ours, theirs = world.add("ours"), world.add("tools")
            # an address, as every gateway node has: the kernel checks a nexthop's on-link
            # gateway against the main table, which an empty namespace does not have yet
            world.link(ours, f"{GATEWAY_IP}/24", theirs, "10.0.1.2/24")
            cold_s, noop_s, remove_s = daemon(ours, objects, args.nodes)
            batch_s = batch_tools(theirs, entries, GATEWAY_IP)
        cold.append(cold_s)
        noop.append(noop_s)
        remove.append(remove_s)
        batch.append(batch_s)
        print(
            f"run {run + 1}/{args.repeat}: {args.nodes} nodes, daemon cold {cold_s:.3f} s, "
            f"no-op resync {noop_s:.3f} s, remove all {remove_s:.3f} s, "
            f"ip/bridge -batch {batch_s:.3f} s",
            flush=True,
        )
    cold_s, batch_s = statistics.median(cold), statistics.median(batch)
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "operations": 3 * args.nodes,
                "cold_s": round(cold_s, 4),
                "batch_tools_s": round(batch_s, 4),
                "ratio": round(cold_s / batch_s, 3),
                "noop_resync_s": round(statistics.median(noop), 4),
                "remove_all_s": round(statistics.median(remove), 4),
                "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "repeat": args.repeat,
            }
        )
    )


if __name__ == "__main__":
    main()
