"""The node filter against a real kernel: an asymmetric TCP flow through two routers that drop
what conntrack calls INVALID, as kube-proxy does on every EKS node.

kube-proxy (iptables mode) puts `-m conntrack --ctstate INVALID -j DROP` in KUBE-FORWARD
(kubernetes pkg/proxy/iptables/proxier.go; since kubernetes PR 120412 only while
nf_conntrack_tcp_be_liberal is 0, the default). Here each router has the nftables equivalent on
its forward hook. The VPC host reaches the pod through router A, the pod answers through
router B, the path of a flow whose forward shard and return endpoint have different owners:

```
   vpc 10.0.1.20 --(10.0.1.0/24)-- A --(10.100.2.0/24)-- pod 10.100.1.5
   vpc           --(10.0.2.0/24)-- B --(10.100.1.0/24)-- pod
```
Router B sees the SYN/ACK without the SYN: INVALID (linux nf_conntrack_proto_tcp.c, synack from
sNO), dropped; with the daemon's table (notrack for pod <-> VPC pairs) it is forwarded.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import generate_latest

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.adapters.nftables import Nft
from hybrid_gateway.core.nodefilter import (
    ALL_SHARDS,
    TO_HYBRID,
    TO_VPC,
    CounterPrefix,
    read_counters,
    standby_counters,
)
from hybrid_gateway.dataplane.nodefilter import NodeFilter
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.reporting import Reporting
from hybrid_gateway_testkit.netns import Netns, NetnsWorld, netns_world

pytestmark = pytest.mark.netns

VPC_CIDR = "10.0.0.0/16"
POD_CIDR = "10.100.0.0/16"
VPC_IP = "10.0.1.20"
POD_IP = "10.100.1.5"
PORT = 9443
#: The nftables form of kube-proxy's KUBE-FORWARD INVALID drop, counted.
KUBE_PROXY_DROP = """table ip kubeproxy {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state invalid counter drop
  }
}
"""


class RecordedEvents:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        self.reasons.append(reason)


@dataclass
class Asymmetric:
    vpc: Netns
    pod: Netns
    router_a: Netns
    router_b: Netns


def _forwarding(ns: Netns, forward: bool) -> None:
    for key in ("all", "default"):
        ns.sysctl(f"net.ipv4.conf.{key}.rp_filter", "0")
    ns.sysctl("net.ipv4.ip_forward", "1" if forward else "0")


@contextmanager
def asymmetric_world() -> Iterator[Asymmetric]:
    world: NetnsWorld
    with netns_world() as world:
        vpc, pod = world.add("vpc"), world.add("pod")
        a, b = world.add("ra"), world.add("rb")
        for ns, forward in ((vpc, False), (pod, False), (a, True), (b, True)):
            _forwarding(ns, forward)
        world.link(vpc, f"{VPC_IP}/24", a, "10.0.1.1/24")
        world.link(vpc, "10.0.2.20/24", b, "10.0.2.1/24")
        world.link(pod, f"{POD_IP}/24", b, "10.100.1.1/24")
        world.link(pod, "10.100.2.5/24", a, "10.100.2.1/24")
        vpc.ip("route", "add", POD_CIDR, "via", "10.0.1.1")  # forward path: A
        pod.ip("route", "add", VPC_CIDR, "via", "10.100.1.1")  # return path: B
        a.ip("route", "add", f"{POD_IP}/32", "via", "10.100.2.5")
        b.ip("route", "add", f"{VPC_IP}/32", "via", "10.0.2.20")
        for router in (a, b):
            Nft(router.exec_argv([])).apply(KUBE_PROXY_DROP)
        yield Asymmetric(vpc, pod, a, b)


def invalid_drops(ns: Netns) -> int:
    """Packets kube-proxy's rule dropped in `ns`."""
    listing = ns.exec("nft", "-j", "list", "table", "ip", "kubeproxy")
    return sum(
        int(expr["counter"]["packets"])
        for item in json.loads(listing)["nftables"]
        if "rule" in item
        for expr in item["rule"]["expr"]
        if "counter" in expr
    )


@contextmanager
def tcp_server(ns: Netns, address: str) -> Iterator[None]:
    """A one-line echo server inside `ns` (a subprocess: sockets live in their namespace)."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(({address!r},{PORT})); s.listen(8); s.settimeout(60)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    try: c,_=s.accept()\n"
        "    except OSError: break\n"
        "    c.settimeout(5)\n"
        "    try: c.sendall(b'ok '+c.recv(64))\n"
        "    except OSError: pass\n"
        "    c.close()\n"
    )
    proc = subprocess.Popen(
        ns.exec_argv([sys.executable, "-c", code]), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait(10)


def tcp_call(ns: Netns, source: str, target: str, timeout_s: float = 2.0) -> bool:
    """One connect + request + answer from `source` in `ns` to `target`; True if answered."""
    code = (
        "import socket,sys\n"
        "try:\n"
        f"    c=socket.create_connection(({target!r},{PORT}), timeout={timeout_s},"
        f" source_address=({source!r},0))\n"
        "    c.sendall(b'hi'); print(c.recv(64).decode())\n"
        "except OSError as e: print('failed', e)\n"
    )
    out = ns.exec(sys.executable, "-c", code, timeout=30)
    return out.strip() == "ok hi"


def node_filter(ns: Netns, events: RecordedEvents | None = None) -> NodeFilter:
    metrics = GatewayMetrics()
    reporting = Reporting(events or RecordedEvents(), ObjectRef("v1", "Pod", "gw", "ns"), metrics)
    return NodeFilter(
        nft=Nft(ns.exec_argv([])),
        pod_cidrs=[ipaddress.IPv4Network(POD_CIDR)],
        vpc_cidrs=[ipaddress.IPv4Network(VPC_CIDR)],
        counters=lambda: standby_counters([POD_CIDR], [VPC_CIDR]),
        reporting=reporting,
    )


def test_asymmetric_tcp_fails_under_the_invalid_drop_and_works_with_the_node_filter() -> None:
    with asymmetric_world() as w, tcp_server(w.pod, POD_IP):
        # Without the table: the SYN/ACK reaches router B without its SYN and is dropped.
        assert not tcp_call(w.vpc, VPC_IP, POD_IP)
        assert invalid_drops(w.router_b) > 0

        filters = [node_filter(w.router_a), node_filter(w.router_b)]
        for f in filters:
            assert f.ensure() == "installed"
        assert tcp_call(w.vpc, VPC_IP, POD_IP)
        before = invalid_drops(w.router_b)
        assert tcp_call(w.vpc, VPC_IP, POD_IP)
        assert invalid_drops(w.router_b) == before

        # Each router counted only its own direction of the flow.
        a = read_counters(Nft(w.router_a.exec_argv([])).list_table() or {})
        b = read_counters(Nft(w.router_b.exec_argv([])).list_table() or {})
        to_pods = CounterPrefix(TO_HYBRID, ALL_SHARDS, POD_CIDR)
        to_vpc = CounterPrefix(TO_VPC, ALL_SHARDS, VPC_CIDR)
        assert a[to_pods].packets > 0 and a[to_vpc].packets == 0
        assert b[to_vpc].packets > 0 and b[to_pods].packets == 0

        # Shutdown removes the table: the drop is back.
        for f in filters:
            f.remove()
        assert Nft(w.router_b.exec_argv([])).list_table() is None
        assert not tcp_call(w.vpc, VPC_IP, POD_IP)


def test_connection_opened_from_the_pod_side_works_with_the_node_filter() -> None:
    with asymmetric_world() as w, tcp_server(w.vpc, VPC_IP):
        # pod -> VPC through B, the SYN/ACK back through A: A drops it without the table.
        assert not tcp_call(w.pod, POD_IP, VPC_IP)
        assert invalid_drops(w.router_a) > 0
        for router in (w.router_a, w.router_b):
            node_filter(router).ensure()
        assert tcp_call(w.pod, POD_IP, VPC_IP)


def test_a_deleted_or_edited_table_is_repaired_and_reported() -> None:
    with asymmetric_world() as w, tcp_server(w.pod, POD_IP):
        events = RecordedEvents()
        filters = {w.router_a: node_filter(w.router_a), w.router_b: node_filter(w.router_b, events)}
        for f in filters.values():
            f.check()
        nft_b = Nft(w.router_b.exec_argv([]))
        filters[w.router_b].check()
        assert events.reasons == []

        nft_b.delete_table()
        assert not tcp_call(w.vpc, VPC_IP, POD_IP)
        filters[w.router_b].check()
        assert events.reasons == ["NodeFilterRepaired"]
        assert tcp_call(w.vpc, VPC_IP, POD_IP)

        # An edit: someone flushes the notrack chain (the table itself stays).
        w.router_b.exec("nft", "flush", "chain", "ip", "hybrid_gateway", "skip_conntrack")
        assert not tcp_call(w.vpc, VPC_IP, POD_IP)
        filters[w.router_b].check()
        assert events.reasons == ["NodeFilterRepaired", "NodeFilterRepaired"]
        assert filters[w.router_b].metrics.repairs._value.get() == 2
        assert tcp_call(w.vpc, VPC_IP, POD_IP)


def test_counters_follow_a_new_plan_and_are_exported_on_metrics() -> None:
    with asymmetric_world() as w, tcp_server(w.pod, POD_IP):
        metrics = GatewayMetrics()
        reporting = Reporting(RecordedEvents(), ObjectRef("v1", "Pod", "gw", "ns"), metrics)
        halves = ["10.100.0.0/17", "10.100.128.0/17"]
        plan = [CounterPrefix(TO_HYBRID, ALL_SHARDS, POD_CIDR)]
        f = NodeFilter(
            nft=Nft(w.router_a.exec_argv([])),
            pod_cidrs=[ipaddress.IPv4Network(POD_CIDR)],
            vpc_cidrs=[ipaddress.IPv4Network(VPC_CIDR)],
            counters=lambda: plan,
            reporting=reporting,
        )
        assert f.ensure() == "installed"
        plan = [CounterPrefix(TO_HYBRID, str(i), p) for i, p in enumerate(halves)]
        assert f.ensure() == "installed"  # a new plan is applied, not counted as a repair
        assert f.ensure() == "unchanged"
        node_filter(w.router_b).ensure()
        assert tcp_call(w.vpc, VPC_IP, POD_IP)
        text = generate_latest(metrics.registry).decode()
        line = next(
            line
            for line in text.splitlines()
            if line.startswith("hybrid_gateway_forwarded_packets_total{") and 'shard="0"' in line
        )
        assert 'direction="to_hybrid"' in line and 'prefix="10.100.0.0/17"' in line
        assert float(line.rsplit(" ", 1)[1]) > 0
        assert 'prefix="10.100.128.0/17"' in text
        assert "hybrid_gateway_node_filter_installed 1.0" in text


def test_a_failing_nft_keeps_the_replica_not_ready_and_is_reported() -> None:
    events = RecordedEvents()
    metrics = GatewayMetrics()
    f = NodeFilter(
        nft=Nft(binary="nft-not-installed"),
        pod_cidrs=[ipaddress.IPv4Network(POD_CIDR)],
        vpc_cidrs=[ipaddress.IPv4Network(VPC_CIDR)],
        counters=lambda: [],
        reporting=Reporting(events, ObjectRef("v1", "Pod", "gw", "ns"), metrics),
    )
    f.check()
    assert not f.ready()
    assert events.reasons == ["NodeFilterFailed"]
    assert "is not installed" in (f.reporter.last_error or "")
    assert metrics.api_errors.labels(api="nftables", operation="apply")._value.get() == 1


def test_stop_ends_the_loop() -> None:
    with netns_world() as world:
        ns = world.add("gw")
        f = node_filter(ns)
        stop = threading.Event()
        thread = threading.Thread(target=f.run, args=(stop,))
        thread.start()
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        assert f.ready()


class GrowingCounters(Nft):
    """Our table as `nft -j` lists it, its one counter growing by `step` per listing."""

    def __init__(self, step: int) -> None:
        super().__init__(binary="unused")
        self.step, self.packets, self.deleted = step, 0, False

    def list_table(self) -> dict[str, Any] | None:
        if self.deleted:
            return None
        self.packets += self.step
        rule = {
            "table": "hybrid_gateway",
            "chain": "forwarded",
            "comment": f"to_hybrid|all|{POD_CIDR}",
            "expr": [{"counter": {"packets": self.packets, "bytes": 0}}],
        }
        return {"nftables": [{"rule": rule}]}

    def delete_table(self) -> bool:
        self.deleted = True
        return True


@pytest.mark.parametrize(("step", "waited"), [(0, 1.0), (5, 10.0)])
def test_shutdown_removes_the_table_once_the_node_stopped_forwarding(
    step: int, waited: float
) -> None:
    """Idle: removed after the quiet second. Still forwarding (the routes have not moved
    yet): kept until the bound, then removed anyway."""
    nft = GrowingCounters(step)
    f = NodeFilter(
        nft=nft,
        pod_cidrs=[ipaddress.IPv4Network(POD_CIDR)],
        vpc_cidrs=[ipaddress.IPv4Network(VPC_CIDR)],
        counters=lambda: [],
        reporting=Reporting(RecordedEvents(), ObjectRef("v1", "Pod", "gw", "ns"), GatewayMetrics()),
    )
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    f.remove_when_drained(
        quiet_s=1.0, max_wait_s=10.0, poll_s=0.2, clock=lambda: now[0], sleep=sleep
    )
    assert nft.deleted
    assert now[0] == pytest.approx(waited, abs=0.25)
