"""Property on the real kernel: whatever sequence of CiliumNode sets arrives, after each pass the
device holds exactly the desired entries (our dump and iproute2 agree)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid_gateway.adapters.netlink import DeviceSpec, Netlink
from hybrid_gateway.core.dataplane import desired_nodes, desired_state
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.dataplane.reconciler import TunnelReconciler
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.netns import Netns, leftover_namespaces, netns_world

pytestmark = pytest.mark.netns
DEV = "hybrid_vxlan0"
VPC = [ipaddress.IPv4Network("10.0.0.0/16")]

# small pools so nodes collide: shared IPs, pod CIDRs moving between nodes, IP changes
node_sets = st.lists(
    st.dictionaries(
        st.sampled_from([f"node-{i}" for i in range(8)]),
        st.tuples(
            st.integers(min_value=1, max_value=6),
            st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=3),
        ),
        max_size=8,
    ),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[Netns, TunnelReconciler]]:
    with netns_world() as world:
        ns = world.add("prop")
        tag = world.tag
        with Netlink(ns.name) as netlink:
            rec = TunnelReconciler(
                netlink=netlink,
                device=DeviceSpec(
                    DEV,
                    2,
                    8472,
                    ipaddress.IPv4Address("10.0.1.1"),
                    vxlan_device_mac("10.0.1.1"),
                    1450,
                ),
                vpc_cidrs=VPC,
                metrics=GatewayMetrics(),
                events=None,
            )
            rec.ensure_device()
            yield ns, rec
    assert not [n for n in leftover_namespaces() if n.startswith(f"hgw-{tag}-")]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=node_sets)
def test_every_pass_leaves_exactly_the_desired_entries(
    gateway: tuple[Netns, TunnelReconciler], sequence: list[dict[str, tuple[int, list[int]]]]
) -> None:
    ns, rec = gateway
    for nodes in sequence:
        objects = [
            cilium_node(name, f"192.168.7.{ip}", [f"10.200.{c}.0/24" for c in cidrs])
            for name, (ip, cidrs) in nodes.items()
        ]
        rec.reconcile(objects)
        want = desired_state(desired_nodes(objects, VPC).tunnels, nexthop_objects=True)
        index = rec.netlink.device_index(DEV)
        assert index is not None
        assert rec.netlink.dump(index) == want
        routes = json.loads(ns.ip("-4", "-j", "route", "show", "dev", DEV) or "[]")
        assert {(r["dst"], r["gateway"]) for r in routes} == {
            (str(n), str(gw)) for n, gw in want.routes.items()
        }
        fdb = json.loads(ns.exec("bridge", "-j", "fdb", "show", "dev", DEV) or "[]")
        assert {(f["mac"], f["dst"]) for f in fdb} == {(f.mac, str(f.dst)) for f in want.fdb}
