"""Link state for readiness and metrics, answered without a kernel request on the caller's path.

A request for a link (RTM_GETLINK) takes the kernel's RTNL mutex, which one host shares across
all its network namespaces (Linux net/core/rtnetlink.c: `rtnetlink_rcv_msg` takes it around
every handler not registered with RTNL_FLAG_DOIT_UNLOCKED, and `rtnl_getlink` is not). So a
probe that asks the kernel waits behind every other holder: the data plane's own bulk writes
(one message at a time) and anything else on the node, such as a CNI creating pod interfaces or
a network namespace being torn down (measured here: one `/readyz` waited 2.0 s while other
namespaces on the host were deleted). Readiness and metrics read a table kept here instead:

- existence and up/down follow the kernel's link notifications (RTNLGRP_LINK). The kernel
  queues them on our socket while it makes the change (`rtmsg_ifinfo` in the change's own
  RTNL section), so they are queued before the request that set a device down or deleted it
  returns, and every read first takes what is queued, without waiting: such a change is seen
  by the next read;
- the counters come from one RTM_GETLINK per device read so far, every `refresh_s`, on a thread
  of its own: they are at most that old, plus the time the kernel takes to answer.

If the kernel dropped notifications because the queue was full (ENOBUFS), the table is read
again whole at once by that thread.
"""

from __future__ import annotations

import errno
import logging
import struct
import threading
from dataclasses import dataclass

from hybrid_gateway.adapters.netlink.wire import (
    IFF_UP,
    IFINFOMSG,
    IFLA_IFNAME,
    IFLA_STATS64,
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWLINK,
    RTNLGRP_LINK_MASK,
    RouteSocket,
    attrs_of,
    iter_messages,
)

log = logging.getLogger(__name__)

#: How often the counters of the devices read so far are asked from the kernel.
REFRESH_S = 1.0

#: The first eight fields of struct rtnl_link_stats64, in kernel order.
STAT_NAMES = (
    "rx_packets",
    "tx_packets",
    "rx_bytes",
    "tx_bytes",
    "rx_errors",
    "tx_errors",
    "rx_dropped",
    "tx_dropped",
)

LinkStats = tuple[bool, dict[str, int]]


@dataclass
class _Link:
    index: int
    up: bool
    counters: dict[str, int]


def _counters(attrs: dict[int, bytes]) -> dict[str, int]:
    raw = attrs.get(IFLA_STATS64, b"")
    values = struct.unpack_from("=8Q", raw) if len(raw) >= 64 else (0,) * 8
    return dict(zip(STAT_NAMES, values, strict=True))


def _name(attrs: dict[int, bytes]) -> str:
    return attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode()


class LinkTable:
    """Every link of one network namespace by name: up/down from notifications, counters
    refreshed every `refresh_s`. Thread-safe; `close` stops the refresher."""

    def __init__(self, netns: str | None = None, *, refresh_s: float = REFRESH_S) -> None:
        self._refresh_s = refresh_s
        self._lock = threading.Lock()  # the table and the notification socket; never a request
        self._links: dict[str, _Link] = {}
        self._names: dict[int, str] = {}  # index -> name, to follow renames
        self._watched: set[str] = set()
        self._overflowed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Subscribed before the first dump, so no change falls between the two.
        self._events = RouteSocket(netns, groups=RTNLGRP_LINK_MASK)
        self._requests = RouteSocket(netns)  # only the refresher (and this constructor) asks
        try:
            self._reload()
        except Exception:
            self._close_sockets()
            raise
        self._thread = threading.Thread(target=self._run, name="link-table", daemon=True)
        self._thread.start()

    def get(self, name: str) -> LinkStats | None:
        """(is up, 64-bit counters) of device `name`, None if it does not exist. Never asks the
        kernel: takes the queued notifications and answers from the table."""
        with self._lock:
            self._drain()
            self._watched.add(name)
            link = self._links.get(name)
            return None if link is None else (link.up, dict(link.counters))

    def refresh(self) -> None:
        """Ask the kernel for every device read so far (the whole table after an overflow)."""
        if self._overflowed:
            self._reload()
            return
        with self._lock:
            names = sorted(self._watched)
        answers = [(name, self._requests.get_link(name)) for name in names]  # outside the lock
        with self._lock:
            for name, answer in answers:
                if answer is None:
                    self._forget(name)
                else:
                    index, flags, attrs = answer
                    self._set(name, index, bool(flags & IFF_UP), _counters(attrs))
            self._drain()  # what changed after those answers wins

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        with self._lock:
            self._events.close()
            self._requests.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._refresh_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception as exc:  # the next round tries again; readiness keeps notifications
                log.warning("could not refresh link state: %s", exc)

    def _reload(self) -> None:
        """Read every link (a dump), then apply what was queued meanwhile. What was queued
        before is dropped first: after an overflow it is not the whole story."""
        with self._lock:
            try:
                self._events.receive_pending()
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._events.receive_pending()
        body = IFINFOMSG.pack(0, 0, 0, 0, 0)
        fresh: dict[str, _Link] = {}
        for data, start, end in self._requests.dump(RTM_GETLINK, body):
            _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, start)
            attrs = attrs_of(data, start + IFINFOMSG.size, end)
            fresh[_name(attrs)] = _Link(index, bool(flags & IFF_UP), _counters(attrs))
        with self._lock:
            self._overflowed = False
            self._links = fresh
            self._names = {link.index: name for name, link in fresh.items()}
            self._drain()

    def _drain(self) -> None:
        """Apply every queued link notification, in order (lock held)."""
        try:
            datagrams = self._events.receive_pending()
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            log.warning("link notifications overflowed; reading every link again")
            self._overflowed = True
            self._wake.set()
            return
        for data in datagrams:
            for kind, _flags, _seq, start, end in iter_messages(data):
                if kind not in (RTM_NEWLINK, RTM_DELLINK):
                    continue
                _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, start)
                attrs = attrs_of(data, start + IFINFOMSG.size, end)
                name = _name(attrs)
                if kind == RTM_DELLINK:
                    if self._names.get(index) == name:
                        self._forget(name)
                    continue
                link = self._links.get(name)
                if link is None or link.index != index:
                    self._set(name, index, bool(flags & IFF_UP), _counters(attrs))
                else:
                    link.up = bool(flags & IFF_UP)

    def _set(self, name: str, index: int, up: bool, counters: dict[str, int]) -> None:
        previous = self._names.get(index)
        if previous is not None and previous != name:
            self._links.pop(previous, None)  # renamed
        self._links[name] = _Link(index, up, counters)
        self._names[index] = name

    def _forget(self, name: str) -> None:
        link = self._links.pop(name, None)
        if link is not None and self._names.get(link.index) == name:
            del self._names[link.index]
