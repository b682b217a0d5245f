"""The first CiliumNode list writes its pages' entries into the kernel while later pages are
still on their way, and the first full pass leaves exactly what a pass over the whole list
leaves: stale entries removed only once the list is complete, a node a later page loses its
pod CIDR to (or is invalid) never in the kernel, a list that expires midway repaired.

Real kernel (the gateway namespace), the test API server through the official client. The API
server answers every list page of the data plane's identity late (`set_latency`, like a slow
or distant kube-apiserver), so the list takes several page round trips; the audit's answer
times (same monotonic clock) say whether the kernel had entries before the last page was
answered. Pages come in name order, as kube-apiserver lists them (core/write_ahead.py); the
last test hands pages out of order to the reconciler itself, without the API server.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_events import EventRecorder
from hybrid_gateway.adapters.netlink import Netlink
from hybrid_gateway.adapters.netlink.proof import Keys
from hybrid_gateway.core.dataplane import (
    NodeRecord,
    TunnelState,
    desired_nodes,
    desired_state,
    node_record,
)
from hybrid_gateway.dataplane import DataPlane
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.netns import Netns, leftover_namespaces, netns_world
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

from .conftest import create, delete
from .test_netns_tunnel import reconciler

pytestmark = pytest.mark.netns
DEV = "hybrid_vxlan0"
IDENTITY = "gw-a"
GATEWAY_IP = "10.0.1.1"
VPC = ipaddress.IPv4Network("10.0.0.0/16")
PAGE = 50
COUNT = 250  # five pages
#: Every list page (and the watch) of the data plane is answered this late.
PAGE_LATENCY_S = 0.5
STALE_CIDR = "10.250.0.0/24"  # a node deleted while no replica ran
LOSER, WINNER = "n-0220", "n-0010"  # the later page's node loses its pod CIDR to the first's


def node_ip(i: int) -> str:
    return str(ipaddress.IPv4Address("172.16.0.1") + i)


def pod_cidr(i: int) -> str:
    return str(ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.201.0.0")) + (i << 8), 24)))


def nodes() -> list[dict[str, Any]]:
    """COUNT nodes in five pages; in the last: one reusing WINNER's pod CIDR, one invalid."""
    out = []
    for i in range(COUNT):
        name = f"n-{i:04d}"
        if name == LOSER:
            out.append(cilium_node(name, node_ip(i), [pod_cidr(10)]))
        elif i == 230:
            out.append(cilium_node(name, None, [pod_cidr(i)]))  # no InternalIP
        else:
            out.append(cilium_node(name, node_ip(i), [pod_cidr(i)]))
    return out


@pytest.fixture
def gw() -> Iterator[Netns]:
    with netns_world() as world:
        tag = world.tag
        ns = world.add("gw")
        ns.sysctl("net.ipv4.ip_forward", "1")
        yield ns
    assert not [n for n in leftover_namespaces() if n.startswith(f"hgw-{tag}-")]


@contextmanager
def running(gw: Netns, kube_api: ApiServer) -> Iterator[DataPlane]:
    """A DataPlane in `gw` listing PAGE nodes a page, set up and running in a thread."""
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig(IDENTITY)))
    netlink = Netlink(gw.name)
    plane = DataPlane(
        node_ip=GATEWAY_IP,
        vpc_cidrs=[VPC],
        mtu=1450,
        resync_period_s=600,
        api_client=api_client,
        events=EventRecorder(client.CoreV1Api(api_client), host=IDENTITY),
        metrics=GatewayMetrics(),
        netlink=netlink,
        ip_forward=lambda: gw.exec("cat", "/proc/sys/net/ipv4/ip_forward").strip(),
        watch_timeout_s=5,
        list_page_size=PAGE,
    )
    stop = threading.Event()
    thread = threading.Thread(target=plane.run, args=(stop,), daemon=True)
    try:
        plane.setup()
        thread.start()
        yield plane
    finally:
        stop.set()
        thread.join(timeout=10)
        netlink.close()
        api_client.close()


def routes(gw: Netns) -> str:
    return gw.ip("-4", "route", "show", "dev", DEV, check=False)


def neighbours(gw: Netns) -> set[str]:
    return {line.split()[0] for line in gw.ip("neigh", "show", "dev", DEV).splitlines() if line}


def with_stale_entries(gw: Netns, kube_api: ApiServer, admin: client.CustomObjectsApi) -> None:
    """The kernel as a replica leaves it: one node's entries, then that node is deleted."""
    create(admin, cilium_node("gone", "172.31.0.1", [STALE_CIDR]))
    with running(gw, kube_api) as plane:
        wait_until("the first replica's pass", plane.ready)
    assert STALE_CIDR in routes(gw)
    delete(admin, "gone")


def seen_while_listing(gw: Netns, plane: DataPlane) -> tuple[float, str]:
    """(monotonic time, `ip route` output) when the first page's first node is routed."""

    def first_page_routed() -> tuple[float, str] | None:
        now, shown = time.monotonic(), routes(gw)
        return (now, shown) if pod_cidr(0) in shown else None

    seen = wait_until("the first page's routes", first_page_routed, 30, poll_s=0.01)
    assert seen is not None
    return seen


def kernel_is_the_full_pass(gw: Netns, plane: DataPlane) -> None:
    """The kernel holds exactly what one pass over the whole cache wants."""
    wanted = desired_nodes(plane.nodes.snapshot(), [VPC])
    with Netlink(gw.name) as netlink:
        ifindex = netlink.device_index(DEV)
        assert ifindex is not None
        assert netlink.dump(ifindex) == desired_state(wanted.tunnels, nexthop_objects=True)
    assert {r.name for r in wanted.rejected} >= {LOSER, "n-0230"}


def list_answers(kube_api: ApiServer) -> list[dict[str, Any]]:
    return [
        r
        for r in kube_api.audit()
        if r["identity"] == IDENTITY and r["resource"] == "ciliumnodes" and r["verb"] == "list"
    ]


def test_pages_reach_the_kernel_before_the_list_ends_and_the_pass_leaves_the_full_state(
    gw: Netns, kube_api: ApiServer, admin: client.CustomObjectsApi
) -> None:
    with_stale_entries(gw, kube_api, admin)
    for obj in nodes():
        create(admin, obj)
    kube_api.set_latency(PAGE_LATENCY_S, IDENTITY, resource="ciliumnodes")
    with running(gw, kube_api) as plane:
        seen_at, shown = seen_while_listing(gw, plane)
        wait_until("readiness", plane.ready, 60)
        answers = list_answers(kube_api)
        assert len(answers) >= COUNT // PAGE  # one list, page by page
        assert seen_at < answers[-1]["mono_done"], "routed only after the last page came"
        assert STALE_CIDR in shown  # stale entries wait for the whole list
        report = plane.last_report
        assert report is not None
        assert STALE_CIDR in {str(r.dst) for r in report.plan.del_routes}  # by the full pass
        assert STALE_CIDR not in routes(gw)
        winner_route = next(line for line in routes(gw).splitlines() if pod_cidr(10) in line)
        assert node_ip(10) in winner_route
        assert node_ip(220) not in neighbours(gw)
        kernel_is_the_full_pass(gw, plane)


def test_a_list_that_expires_midway_leaves_no_entry_of_a_node_deleted_meanwhile(
    gw: Netns, kube_api: ApiServer, admin: client.CustomObjectsApi
) -> None:
    for obj in nodes():
        create(admin, obj)
    kube_api.set_latency(PAGE_LATENCY_S, IDENTITY, resource="ciliumnodes")
    with running(gw, kube_api) as plane:
        _, shown = seen_while_listing(gw, plane)
        assert pod_cidr(5) in shown  # written ahead from the first page
        delete(admin, "n-0005")
        kube_api.compact()  # the next page's continue token is now expired: 410
        wait_until("readiness", plane.ready, 60)
        assert plane.nodes.watch.expired_lists == 1  # listed again, unpaged
        assert pod_cidr(5) not in routes(gw)
        assert node_ip(5) not in neighbours(gw)
        kernel_is_the_full_pass(gw, plane)


@pytest.mark.parametrize(
    ("order", "pages_in_order"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7, 8], 3),
        ([0, 1, 2, 3, 7, 4, 5, 6, 8], 1),  # n-0004 after n-0007, in the second page
        ([0, 1, 2, 3, 4, 8, 5, 6, 7], 2),  # the third page starts out of order
        ([1, 0, 2, 3, 4, 5, 6, 7, 8], 0),
    ],
)
def test_proof_keys_are_computed_only_for_pages_of_a_list_still_in_name_order(
    gw: Netns, monkeypatch: pytest.MonkeyPatch, order: list[int], pages_in_order: int
) -> None:
    """The keys proving the first pass's state are joined from the pages' keys only when the
    whole list came in name order (`ListedNodes.desired`); from the page where the order breaks
    on, none are computed, and the pass leaves the kernel as a pass over the whole list does.
    n-0007 claims n-0004's pod CIDR: where it is listed first (and still in order), it is
    written ahead with it, and the pass gives the CIDR back to n-0004 (first by name)."""

    def cidr_of(i: int) -> str:
        return pod_cidr(4) if i == 7 else pod_cidr(i)

    records: list[NodeRecord] = [
        node_record(cilium_node(f"n-{i:04d}", node_ip(i), [cidr_of(i)])) for i in order
    ]
    computed: list[TunnelState] = []

    def counted(state: TunnelState) -> Keys | None:
        computed.append(state)
        return Netlink.proof_keys(state)

    with Netlink(gw.name) as netlink:
        monkeypatch.setattr(netlink, "proof_keys", counted)
        rec = reconciler(netlink)
        rec.ensure_device()
        for start in range(0, len(records), 3):
            rec.write_ahead(1, records[start : start + 3])
        assert len(computed) == pages_in_order
        assert rec.written_ahead > 0  # the nodes before the break still went ahead
        if order.index(7) < order.index(4):
            ahead = next(line for line in routes(gw).splitlines() if pod_cidr(4) in line)
            assert node_ip(7) in ahead
        report = rec.reconcile(records)
        wanted = desired_nodes(records, [VPC])
        assert report.tunnels == wanted.tunnels
        assert rec.nexthop_objects is not None
        ifindex = netlink.device_index(DEV)
        assert ifindex is not None
        assert netlink.dump(ifindex) == desired_state(
            wanted.tunnels, nexthop_objects=rec.nexthop_objects
        )
    winner = next(line for line in routes(gw).splitlines() if pod_cidr(4) in line)
    assert node_ip(4) in winner
