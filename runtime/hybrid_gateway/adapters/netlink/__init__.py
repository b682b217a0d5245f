"""Netlink access for the data plane, split by job:

- `wire`: rtnetlink message encoding/decoding and the raw socket that sends in bulk;
- `device`: the VXLAN device (adopt, fix, create, recreate; link state and counters);
- `entries`: the tunnel entries on it (dump what is ours, apply a plan).

`Netlink` ties them to one network namespace behind one lock.
"""

from __future__ import annotations

import ipaddress
import threading

from pyroute2 import IPRoute

from hybrid_gateway.adapters.netlink import device, entries
from hybrid_gateway.adapters.netlink.device import DeviceAction, DeviceOutcome, DeviceSpec
from hybrid_gateway.adapters.netlink.entries import ApplyResult
from hybrid_gateway.adapters.netlink.wire import DUMP_ATTEMPTS, NetlinkError, RouteSocket
from hybrid_gateway.core.dataplane import Plan, TunnelState

__all__ = [
    "ApplyResult",
    "DeviceAction",
    "DeviceOutcome",
    "DeviceSpec",
    "Netlink",
    "NetlinkError",
]


class Netlink:
    """rtnetlink access in one network namespace (the current one unless `netns` is given).

    Thread-safe: the data-plane loop and the metrics collector share one instance.
    """

    def __init__(self, netns: str | None = None) -> None:
        self._lock = threading.Lock()
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self._sock = RouteSocket(netns)

    def close(self) -> None:
        with self._lock:
            self._sock.close()
            self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def device_index(self, name: str) -> int | None:
        """Index of device `name`, None if it does not exist (safe from any thread)."""
        with self._lock:
            link = self._sock.get_link(name)
        return None if link is None else link[0]

    def ensure_device(self, spec: DeviceSpec) -> DeviceOutcome:
        """See `device.ensure_device`."""
        with self._lock:
            return device.ensure_device(self._ipr, spec)

    def link_stats(self, name: str) -> tuple[bool, dict[str, int]] | None:
        """(is up, 64-bit kernel counters) of a device, None if it does not exist."""
        with self._lock:
            return device.link_stats(self._sock, name)

    def device_with_address(self, ip: ipaddress.IPv4Address) -> str | None:
        """Name of the device holding `ip` (the primary NIC for the node IP)."""
        with self._lock:
            return device.device_with_address(self._sock, ip)

    def dump(self, ifindex: int) -> TunnelState:
        """The entries of device `ifindex` that are ours (see `entries`).

        Repeated if the kernel flags a dump as interrupted by concurrent changes (its content
        may then be inconsistent)."""
        with self._lock:
            for _attempt in range(DUMP_ATTEMPTS):
                self._sock.interrupted = False
                state = entries.dump_state(self._sock, ifindex)
                if not self._sock.interrupted:
                    return state
        raise NetlinkError(f"dumps interrupted {DUMP_ATTEMPTS} times by concurrent changes")

    def apply(self, ifindex: int, plan: Plan) -> ApplyResult:
        """See `entries.apply_plan`."""
        with self._lock:
            return entries.apply_plan(self._sock, ifindex, plan)
