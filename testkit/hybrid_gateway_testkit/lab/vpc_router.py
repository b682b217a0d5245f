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

It also enforces each gateway ENI's source/destination check as EC2 does: while the emulator
says the check is ON for a gateway instance's primary ENI (`--sdc-guard`), every frame that ENI
sends with a source address other than its own, and every frame delivered to it with a
destination other than its own, is dropped on the VPC side of its host (an nftables `bridge`
table on the router's bridge, keyed by the host's MAC). A gateway forwards only packets that
are neither from nor to itself, so with the check on it forwards nothing, in either direction,
while its own traffic (VXLAN to hybrid nodes, API and EC2 calls) still flows: EC2 user guide,
"Change the source or destination checking" ("the instance must be the source or destination
of any traffic it sends or receives").

Run: `ip netns exec <router ns> python -m hybrid_gateway_testkit.lab.vpc_router --endpoint URL
--route-table rtb-... --device br0 --events PATH [--sdc-guard host=i-...,IP,MAC ...]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from hybrid_gateway_testkit.lab.ec2 import ec2_client, route_targets
from hybrid_gateway_testkit.lab.events import EventLog
from hybrid_gateway_testkit.netns import run


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

    def again(self, now: float, changes: list[tuple[str, str | None]]) -> None:
        """Changes `due` returned that could not be written: due again at `now`, in their
        order and ahead of any later change (a VPC applies a route change late, never drops it)."""
        self._pending[:0] = [(now, cidr, hop) for cidr, hop in changes]


def longest_match(routes: Mapping[str, str | None], address: str) -> str | None:
    """Pure: the next hop of the most specific route containing `address` (None: no route)."""
    ip = ipaddress.IPv4Address(address)
    best: tuple[int, str | None] | None = None
    for cidr, hop in routes.items():
        net = ipaddress.IPv4Network(cidr)
        if hop is not None and ip in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, hop)
    return best[1] if best else None


SDC_TABLE = "hgw_lab_sdc"
#: How often the ENIs' source/destination check flags are read (one DescribeInstances).
SDC_POLL_S = 0.5


@dataclass(frozen=True)
class SdcGuard:
    """A gateway host whose ENI's source/destination check the router enforces."""

    host: str
    instance_id: str
    ip: str
    mac: str

    @classmethod
    def parse(cls, text: str) -> SdcGuard:
        host, _, rest = text.partition("=")
        instance_id, ip, mac = rest.split(",")
        return cls(host, instance_id, ip, mac.lower())


def sdc_ruleset(checked: list[SdcGuard]) -> str:
    """Pure: the nft script that drops what EC2 drops for ENIs with the check on (`checked`).

    `prerouting` sees every frame entering the bridge (what the ENI sends); `postrouting` every
    frame leaving it, forwarded or sent by the router itself (what the ENI receives)."""
    lines = [f"table bridge {SDC_TABLE} {{"]
    for hook in ("prerouting", "postrouting"):
        lines += [f"  chain {hook} {{", f"    type filter hook {hook} priority 0; policy accept;"]
        for guard in checked:
            if hook == "prerouting":
                lines.append(
                    f"    ether saddr {guard.mac} ether type ip ip saddr != {guard.ip} "
                    f'counter drop comment "{guard.host} sends"'
                )
            else:
                lines.append(
                    f"    ether daddr {guard.mac} ether type ip ip daddr != {guard.ip} "
                    f'counter drop comment "{guard.host} receives"'
                )
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply_sdc(checked: list[SdcGuard]) -> None:
    """Replace the router's source/destination check table (atomically: one nft transaction)."""
    script = f"table bridge {SDC_TABLE}\ndelete table bridge {SDC_TABLE}\n" + sdc_ruleset(checked)
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True, timeout=10)


def sdc_flags(ec2: object, guards: list[SdcGuard]) -> dict[str, bool]:
    """Instance id -> the primary ENI's source/destination check, as the emulator says."""
    reply = ec2.describe_instances(InstanceIds=[g.instance_id for g in guards])  # type: ignore[attr-defined]
    flags: dict[str, bool] = {}
    for reservation in reply["Reservations"]:
        for instance in reservation["Instances"]:
            for nic in instance.get("NetworkInterfaces", []):
                if nic.get("Attachment", {}).get("DeviceIndex") == 0:
                    flags[instance["InstanceId"]] = bool(nic.get("SourceDestCheck", True))
    return flags


def write_route(device: str, cidr: str, hop: str | None) -> None:
    """Point `cidr` at `hop` in the router's kernel (None: withdraw it). Its bound is the lab's
    bound for a hung iproute2 command, not a speed check: a route write waits for the host-wide
    RTNL mutex, which other namespaces' teardown can hold for seconds (`netns.run`)."""
    if hop is None:
        run(["ip", "route", "del", cidr], check=False)
    else:
        run(["ip", "route", "replace", cidr, "via", hop, "dev", device])


def apply_due(
    routes: DelayedRoutes,
    now: float,
    events: EventLog,
    write: Callable[[str, str | None], None],
) -> None:
    """Write the changes whose time has come, in order. One that fails (a timed-out or failed
    `ip`) is reported (`router-error`) and tried again next round, with the changes of its
    CIDR after it. The router keeps running, as the VPC keeps following its route table: a
    write that fails once must not cost every later route change of the run."""
    failed: list[tuple[str, str | None]] = []
    for cidr, hop in routes.due(now):
        if any(cidr == c for c, _ in failed):  # after its CIDR's failed change, not before
            failed.append((cidr, hop))
            continue
        try:
            write(cidr, hop)
        except Exception as exc:
            events.write("router-error", error=f"route {cidr}: {type(exc).__name__}: {exc}")
            failed.append((cidr, hop))
        else:
            events.write("router-switch", cidr=cidr, via=hop)
    routes.again(now, failed)


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
    parser.add_argument(
        "--sdc-guard",
        action="append",
        default=[],
        help="host=INSTANCE_ID,IP,MAC: enforce that instance's source/destination check",
    )
    args = parser.parse_args(argv)
    guards = [SdcGuard.parse(text) for text in args.sdc_guard]
    checked: list[str] | None = None  # hosts whose check is enforced now (None: not applied)
    next_sdc = 0.0
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
        if guards and time.monotonic() >= next_sdc:
            next_sdc = time.monotonic() + SDC_POLL_S
            try:
                flags = sdc_flags(ec2, guards)
                on = [g for g in guards if flags.get(g.instance_id, False)]
                if [g.host for g in on] != checked:
                    apply_sdc(on)
                    checked = [g.host for g in on]
                    events.write("sdc-check", hosts=checked)
            except Exception as exc:  # keep the last state: EC2 does not forget its flag
                events.write("router-error", error=f"sdc: {type(exc).__name__}: {exc}")
        apply_due(routes, time.monotonic(), events, partial(write_route, args.device))
        stop.wait(args.poll_s)
    events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
