"""Per-node routes through kernel nexthop objects, on the real kernel in network namespaces:
the upgrade from routes with their own gateway without a lost ping, drift repair and garbage
collection of nexthops, the compat-mode-off dump, and the fallback where the kernel has none."""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os

import pytest

from hybrid_gateway.adapters.netlink import Netlink, entries
from hybrid_gateway.adapters.netlink.wire import RouteSocket
from hybrid_gateway.core.dataplane import nexthop_id
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.tunnel_world import World

from .test_netns_tunnel import (
    DEV,
    FAKE_NODES,
    expected_entries,
    kernel_entries,
    objects,
    pinging,
    reconciler,
)

pytestmark = pytest.mark.netns


def nhid(ip: str) -> int:
    return nexthop_id(ipaddress.IPv4Address(ip))


def test_upgrade_replaces_routes_in_place_without_a_lost_ping_and_then_is_a_no_op(
    world: World,
) -> None:
    with Netlink(world.gw.name) as old:
        rec = reconciler(old, nexthop_objects=False)  # what a replica before them left
        rec.ensure_device()
        rec.reconcile(objects(FAKE_NODES))
    assert kernel_entries(world.gw) == expected_entries(FAKE_NODES, nexthops=False)

    metrics = GatewayMetrics()
    with pinging(world, 150) as pinger, Netlink(world.gw.name) as new:
        rec = reconciler(new, metrics)
        rec.ensure_device()
        upgrade = rec.reconcile(objects(FAKE_NODES))
    assert rec.nexthop_objects and metrics.nexthop_objects._value.get() == 1
    assert len(upgrade.plan.add_nexthops) == 4 and len(upgrade.plan.set_routes) == 6
    assert upgrade.plan.removals == 0 and not upgrade.plan.add_routes
    assert pinger.lost() == 0, pinger.output
    assert kernel_entries(world.gw) == expected_entries(FAKE_NODES)

    with Netlink(world.gw.name) as restarted:  # a restarted replica adopts what it wrote
        rec = reconciler(restarted)
        rec.ensure_device()
        assert rec.reconcile(objects(FAKE_NODES)).plan.empty


def test_nexthops_deleted_or_changed_behind_our_back_are_repaired_and_strays_removed(
    world: World,
) -> None:
    gw = world.gw
    with Netlink(gw.name) as netlink:
        rec = reconciler(netlink)
        rec.ensure_device()
        rec.reconcile(objects(FAKE_NODES))
        # deleting a nexthop takes the routes that use it along (kernel: remove_nexthop)
        gw.ip("nexthop", "del", "id", str(nhid("192.168.100.12")))
        assert "10.212.0.0/20" not in gw.ip("route", "show", "dev", DEV)
        gw.ip("nexthop", "replace", "id", str(nhid("192.168.100.13")), "via", "192.168.100.99",
              "dev", DEV, "onlink")  # fmt: skip
        gw.ip("nexthop", "add", "id", "7", "via", "192.168.100.77", "dev", DEV, "onlink")
        repair = rec.reconcile(objects(FAKE_NODES))
        assert repair.plan.add_nexthops == ((nhid("192.168.100.12"),
                                             ipaddress.IPv4Address("192.168.100.12")),)  # fmt: skip
        assert [k for k, _ in repair.plan.set_nexthops] == [nhid("192.168.100.13")]
        assert [k for k, _ in repair.plan.del_nexthops] == [7]
        assert kernel_entries(gw) == expected_entries(FAKE_NODES)

        # with compat mode off the kernel dumps a nexthop route without gateway and device;
        # the dump resolves it through the nexthop, so the pass stays a no-op
        gw.sysctl("net.ipv4.nexthop_compat_mode", "0")
        assert "via" not in gw.ip("route", "show", "10.200.11.0/24")
        assert rec.reconcile(objects(FAKE_NODES)).plan.empty


def test_a_nexthop_id_taken_on_another_device_is_left_alone_and_reported(world: World) -> None:
    gw = world.gw
    taken = nhid("192.168.100.11")
    uplink = json.loads(gw.ip("-j", "-4", "addr", "show", "to", "192.168.100.1/32"))[0]["ifname"]
    gw.ip("nexthop", "add", "id", str(taken), "via", "192.168.100.11", "dev", uplink)
    before = gw.ip("nexthop", "show", "id", str(taken))
    with Netlink(gw.name) as netlink:
        rec = reconciler(netlink)
        rec.ensure_device()
        with pytest.raises(Exception, match=r"add nexthop id \d+ via 192\.168\.100\.11: EEXIST"):
            rec.reconcile(objects(FAKE_NODES))
    assert gw.ip("nexthop", "show", "id", str(taken)) == before
    others = {k: v for k, v in FAKE_NODES.items() if k != "fake-11"}
    assert expected_entries(others) <= kernel_entries(gw)


def test_fallback_without_nexthop_objects_moves_routes_back_and_removes_ours(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with Netlink(world.gw.name) as netlink:
        rec = reconciler(netlink)
        rec.ensure_device()
        rec.reconcile(objects(FAKE_NODES))
    assert kernel_entries(world.gw) == expected_entries(FAKE_NODES)

    caplog.set_level(logging.INFO)
    metrics = GatewayMetrics()
    with pinging(world, 100) as pinger, Netlink(world.gw.name) as netlink:
        rec = reconciler(netlink, metrics, nexthop_objects=False)
        rec.ensure_device()
        moved = rec.reconcile(objects(FAKE_NODES))
        again = rec.reconcile(objects(FAKE_NODES))
    assert metrics.nexthop_objects._value.get() == 0
    assert len(moved.plan.set_routes) == 6 and len(moved.plan.del_nexthops) == 4
    assert not moved.plan.del_routes and again.plan.empty
    assert kernel_entries(world.gw) == expected_entries(FAKE_NODES, nexthops=False)
    assert pinger.lost() == 0, pinger.output
    said = [r.message for r in caplog.records if "per-node routes" in r.message]
    assert said == ["per-node routes carry their own gateway (nexthop objects turned off)"]


def test_support_is_detected_and_a_kernel_that_refuses_the_request_means_none(
    world: World,
) -> None:
    sock = RouteSocket(world.gw.name)
    try:
        assert entries.nexthop_support(sock) is None
        # a kernel before nexthop objects answers their message types as it answers any type
        # beyond its RTM_MAX: EOPNOTSUPP (net/core/rtnetlink.c rtnetlink_rcv_msg)
        missing = entries.nexthop_support(sock, msg_type=1000)
        assert missing == f"nexthop dump refused: {os.strerror(errno.EOPNOTSUPP)}"
    finally:
        sock.close()
