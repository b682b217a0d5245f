"""Link state for readiness and metrics (`adapters/netlink/links.py`) on the real kernel: read
without a request on the reader's path, yet a device set down, deleted, recreated or renamed is
seen by the very next read, and the counters follow within the refresh period."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from hybrid_gateway.adapters.netlink import Netlink
from hybrid_gateway.adapters.netlink.links import REFRESH_S
from hybrid_gateway.adapters.netlink.wire import RouteSocket
from hybrid_gateway_testkit.netns import Netns, netns_world
from hybrid_gateway_testkit.waiting import wait_until

pytestmark = pytest.mark.netns


@pytest.fixture
def world() -> Iterator[tuple[Netns, str]]:
    """A namespace with one veth `dev` (up, 10.9.9.1/24) to a peer namespace (10.9.9.2)."""
    with netns_world() as world:
        ns, peer = world.add("links"), world.add("peer")
        dev, _ = world.link(ns, "10.9.9.1/24", peer, "10.9.9.2/24")
        yield ns, dev


def up(netlink: Netlink, name: str) -> bool | None:
    stats = netlink.link_stats(name)
    return None if stats is None else stats[0]


def test_a_read_waits_for_no_lock_of_a_pass_and_sends_no_request(
    world: tuple[Netns, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile pass holds the reconciler's lock for seconds, and every rtnetlink request
    takes the host's RTNL mutex: a probe's read must need neither."""
    ns, dev = world
    with Netlink(ns.name) as netlink:
        assert up(netlink, dev) is True  # the table is running from here on

        def no_request(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("a link read sent an rtnetlink request")

        answers: list[bool | None] = []
        with netlink._lock, netlink._probe_lock:  # what a pass and the other reads hold
            monkeypatch.setattr(RouteSocket, "get_link", no_request)
            monkeypatch.setattr(RouteSocket, "dump_chunks", no_request)
            ns.ip("link", "set", dev, "down")
            reader = threading.Thread(target=lambda: answers.append(up(netlink, dev)), daemon=True)
            reader.start()
            reader.join(timeout=10)
            answered_meanwhile = not reader.is_alive()
            monkeypatch.undo()
        reader.join(timeout=10)
        assert answered_meanwhile, "the read waited for a lock a pass holds"
        assert answers == [False], "from the table: the device is down"


def test_down_deleted_recreated_and_renamed_devices_are_seen_by_the_next_read(
    world: tuple[Netns, str],
) -> None:
    """No waiting between the change and the read: the kernel queued the notification before
    `ip` returned, and a read takes what is queued first."""
    ns, dev = world
    with Netlink(ns.name) as netlink:
        assert up(netlink, dev) is True
        ns.ip("link", "set", dev, "down")
        assert up(netlink, dev) is False
        ns.ip("link", "set", dev, "up")
        assert up(netlink, dev) is True
        ns.ip("link", "del", dev)
        assert netlink.link_stats(dev) is None
        ns.ip("link", "add", dev, "type", "veth", "peer", "name", "other0")
        assert up(netlink, dev) is False  # created down
        ns.ip("link", "set", dev, "name", "renamed0")
        assert netlink.link_stats(dev) is None
        assert up(netlink, "renamed0") is False


def test_counters_follow_within_the_refresh_period(world: tuple[Netns, str]) -> None:
    ns, dev = world
    with Netlink(ns.name) as netlink:
        stats = netlink.link_stats(dev)
        assert stats is not None
        before = stats[1]["tx_packets"]
        ns.exec("ping", "-n", "-q", "-c", "3", "-i", "0.01", "-W", "0.2", "10.9.9.2", check=False)

        def sent() -> int:
            now = netlink.link_stats(dev)
            return 0 if now is None else now[1]["tx_packets"] - before

        assert wait_until("the three pings in the counters", lambda: sent() >= 3, 10 * REFRESH_S)


def test_after_an_overflow_of_notifications_the_table_is_read_again(
    world: tuple[Netns, str],
) -> None:
    ns, dev = world
    with Netlink(ns.name) as netlink:
        assert up(netlink, dev) is True
        table = netlink.link_table()
        # the smallest receive buffer: a few link notifications overflow it
        table._events._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        for _ in range(20):
            ns.ip("link", "set", dev, "down")
            ns.ip("link", "set", dev, "up")
        ns.ip("link", "set", dev, "down")
        wait_until("the table read again after the overflow", lambda: up(netlink, dev) is False, 10)
        ns.ip("link", "set", dev, "up")
        assert up(netlink, dev) is True, "notifications are followed again after the overflow"
