"""Where the kernel's time goes when N hybrid nodes are programmed, and whether order matters.

For each table (FDB, neighbours, routes) and each insertion order, the entries are written with
the daemon's own bulk netlink path on a fresh `hybrid_vxlan0` in a namespace the bench creates
(and always deletes), one table after the other as the daemon does (FDB -> neighbour -> route).
Orders: `sorted` (ascending node IP / prefix), `shuffled` (seeded), `reversed`. Printed per
table: seconds and microseconds per entry.

Then the same routes with `ip -batch`, once as today (`via N dev hybrid_vxlan0 onlink`: every
route carries its own gateway) and once through nexthop objects (`ip nexthop add id K via N dev
hybrid_vxlan0 onlink`, then `route add P nhid K`). The kernel hashes a route's nexthop info by
output device alone when it has no nexthop object (net/ipv4/fib_semantics.c `fib_info_hashfn`),
so with one device every insert walks a chain of all earlier routes; with nexthop objects it
hashes the object's id. The LAST line printed is one JSON object.

    sudo .venv/bin/python bench/kernel_order.py --nodes 20000
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from hybrid_gateway.adapters.netlink import DeviceSpec, Netlink
from hybrid_gateway.core.dataplane import Plan, RouteEntry, desired_nodes, desired_state
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.netns import Netns, netns_world
from hybrid_gateway_testkit.scale import DEV, fresh_device, nodes, realistic_cilium_node

GATEWAY_IP = "10.0.1.1"
VPC = ipaddress.IPv4Network("10.0.0.0/16")
ORDERS = ("sorted", "shuffled", "reversed")
T = TypeVar("T")


def ordered(items: Iterable[T], order: str, key: Callable[[T], int]) -> list[T]:
    result = sorted(items, key=key)
    if order == "shuffled":
        random.Random(42).shuffle(result)
    elif order == "reversed":
        result.reverse()
    return result


def run(count: int, order: str) -> dict[str, float]:
    tunnels = desired_nodes(
        [realistic_cilium_node(*entry) for entry in nodes(count)], [VPC]
    ).tunnels
    state = desired_state(tunnels)
    fdb = ordered(state.fdb, order, lambda entry: int(entry.dst))
    neigh = ordered(state.neighbours.items(), order, lambda item: int(item[0]))
    routes = ordered(
        (RouteEntry(n, gw) for n, gw in state.routes.items()),
        order,
        lambda route: int(route.dst.network_address),
    )
    spec = DeviceSpec(
        DEV, 2, 8472, ipaddress.IPv4Address(GATEWAY_IP), vxlan_device_mac(GATEWAY_IP), 1450
    )
    timings: dict[str, float] = {}
    with netns_world() as world:
        ns = world.add("k")
        with Netlink(ns.name) as nl:
            ifindex = nl.ensure_device(spec).ifindex
            for table, plan in (
                ("fdb", Plan(add_fdb=tuple(fdb))),
                ("neighbours", Plan(set_neighbours=tuple(neigh))),
                ("routes", Plan(add_routes=tuple(routes))),
            ):
                started = time.perf_counter()
                result = nl.apply(ifindex, plan)
                timings[table] = time.perf_counter() - started
                if not result.ok or result.added != count:
                    raise RuntimeError(f"{table} ({order}): {result}")
    return timings


def iproute2_routes(count: int) -> dict[str, float]:
    """Seconds for the routes as gateway routes and through nexthop objects (`ip -batch`)."""
    entries = nodes(count)
    timings: dict[str, float] = {}
    with netns_world() as world:
        legacy, objects = world.add("legacy"), world.add("nhobj")
        for ns in (legacy, objects):
            fresh_device(ns, GATEWAY_IP)
        gateway_routes = "".join(
            f"route add {cidr} via {ip} dev {DEV} onlink proto static\n" for _, ip, cidr in entries
        )
        timings["gateway_routes"] = _batch(legacy, gateway_routes)
        nexthops = "".join(
            f"nexthop add id {i + 1} via {ip} dev {DEV} onlink\n"
            for i, (_, ip, _) in enumerate(entries)
        )
        routes = "".join(
            f"route add {cidr} nhid {i + 1} proto static\n"
            for i, (_, _, cidr) in enumerate(entries)
        )
        timings["nexthop_objects"] = _batch(objects, nexthops)
        timings["nexthop_routes"] = _batch(objects, routes)
    return timings


def _batch(ns: Netns, commands: str) -> float:
    started = time.perf_counter()
    subprocess.run(["ip", "-n", ns.name, "-batch", "-"], input=commands.encode(), check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20000)
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    for order in ORDERS:
        timings = run(args.nodes, order)
        figures[order] = {k: round(v, 3) for k, v in timings.items()}
        print(
            f"{order:9s} "
            + ", ".join(
                f"{t} {s:.3f} s ({1e6 * s / args.nodes:.0f} us/entry)" for t, s in timings.items()
            ),
            flush=True,
        )
    routes = iproute2_routes(args.nodes)
    print(
        f"ip -batch: {args.nodes} gateway routes {routes['gateway_routes']:.3f} s; "
        f"{args.nodes} nexthop objects {routes['nexthop_objects']:.3f} s + routes "
        f"{routes['nexthop_routes']:.3f} s",
        flush=True,
    )
    figures["iproute2"] = {k: round(v, 3) for k, v in routes.items()}
    print(json.dumps({"nodes": args.nodes, **figures}))


if __name__ == "__main__":
    main()
