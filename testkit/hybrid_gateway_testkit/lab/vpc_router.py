"""The lab's VPC router: forwards hybrid pod CIDRs the way the EC2 route table says.

In AWS the VPC's implicit router follows the route table; here a small process in the router
namespace polls the EC2 emulator (DescribeRouteTables through boto3) and points each pod CIDR at
the gateway host that owns the ENI named there. A route change takes effect `--delay-s` after the
router first sees it, standing in for the propagation delay of the real VPC. Lab-only component.

Every route of the table becomes a kernel route of its own, so the router picks the longest
matching prefix, as a VPC route table does ("most specific route that matches the traffic",
Amazon VPC user guide, "How route priority works"): the shard routes of active-active mode
(a /18 per shard of a /16) each go to their own gateway. `longest_match` is the same rule over
the router's applied state, for the lab's own checks.

Run: `ip netns exec <router ns> python -m hybrid_gateway_testkit.lab.vpc_router --endpoint URL
--route-table rtb-... --device br0 --events PATH`.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hybrid_gateway_testkit.lab.ec2 import ec2_client, route_targets
from hybrid_gateway_testkit.lab.events import EventLog


@dataclass
class DelayedRoutes:
    """Pure: route changes seen at time t take effect at t + delay_s, in the order seen."""

    delay_s: float
    applied: dict[str, str] = field(default_factory=dict)
    _pending: list[tuple[float, str, str | None]] = field(default_factory=list)

    def _latest(self, cidr: str) -> str | None:
        for _, c, hop in reversed(self._pending):
            if c == cidr:
                return hop
        return self.applied.get(cidr)

    def observe(self, now: float, desired: dict[str, str]) -> None:
        for cidr in sorted(set(desired) | set(self.applied) | {c for _, c, _ in self._pending}):
            want = desired.get(cidr)
            if want != self._latest(cidr):
                self._pending.append((now + self.delay_s, cidr, want))

    def due(self, now: float) -> list[tuple[str, str | None]]:
        """Changes whose time has come, oldest first; `None` as next hop means withdraw."""
        ready = [p for p in self._pending if p[0] <= now]
        self._pending = [p for p in self._pending if p[0] > now]
        for _, cidr, hop in ready:
            if hop is None:
                self.applied.pop(cidr, None)
            else:
                self.applied[cidr] = hop
        return [(cidr, hop) for _, cidr, hop in ready]


def longest_match(routes: Mapping[str, str | None], address: str) -> str | None:
    """Pure: the next hop of the most specific route containing `address` (None: no route)."""
    ip = ipaddress.IPv4Address(address)
    best: tuple[int, str | None] | None = None
    for cidr, hop in routes.items():
        net = ipaddress.IPv4Network(cidr)
        if hop is not None and ip in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, hop)
    return best[1] if best else None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--route-table", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--pod-cidrs", required=True, help="aggregate: only routes inside it")
    parser.add_argument("--poll-s", type=float, default=0.1)
    parser.add_argument("--delay-s", type=float, default=0.5)
    parser.add_argument("--max-runtime-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    scope = ipaddress.IPv4Network(args.pod_cidrs)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ec2 = ec2_client(args.endpoint, attempts=1)
    events = EventLog(args.events)
    eni_ips: dict[str, str] = {}
    routes = DelayedRoutes(args.delay_s)
    deadline = time.monotonic() + args.max_runtime_s
    events.write("router-start", delay_s=args.delay_s, poll_s=args.poll_s)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            table = ec2.describe_route_tables(RouteTableIds=[args.route_table])["RouteTables"][0]
            desired: dict[str, str] = {}
            for cidr, target in route_targets(table).items():
                if not ipaddress.IPv4Network(cidr).subnet_of(scope):
                    continue
                if target not in eni_ips:
                    if target.startswith("eni-"):
                        nic = ec2.describe_network_interfaces(NetworkInterfaceIds=[target])
                        eni_ips[target] = nic["NetworkInterfaces"][0]["PrivateIpAddress"]
                    else:
                        res = ec2.describe_instances(InstanceIds=[target])
                        eni_ips[target] = res["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
                desired[cidr] = eni_ips[target]
            routes.observe(time.monotonic(), desired)
        except Exception as exc:  # the emulator being slow must not stop forwarding
            events.write("router-error", error=f"{type(exc).__name__}: {exc}")
        for cidr, hop in routes.due(time.monotonic()):
            if hop is None:
                subprocess.run(["ip", "route", "del", cidr], capture_output=True, check=False)
            else:
                _ip("route", "replace", cidr, "via", hop, "dev", args.device)
            events.write("router-switch", cidr=cidr, via=hop)
        stop.wait(args.poll_s)
    events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
