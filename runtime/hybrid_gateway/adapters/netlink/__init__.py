"""Netlink access for the data plane, split by job:

- `wire`: rtnetlink message encoding/decoding and the raw socket that sends in bulk;
- `device`: the VXLAN device (adopt, fix, create, recreate; link state and counters);
- `entries`: the tunnel entries on it (dump what is ours, apply a plan);
- `proof`: whether a dump holds exactly the desired entries, without parsing it entry by entry.

- `links`: link state and counters for readiness and metrics, kept current without a request
  on the reader's path.

`Netlink` ties them to one network namespace: the reconciler's work (device changes, dumps,
applying a plan) behind one lock on one socket; link state and counters from a `LinkTable`
(notifications and a refresher of its own), so a `/readyz` or a scrape waits neither for a
reconcile pass (at 50,000 nodes the first pass holds its lock for seconds) nor for the kernel's
RTNL mutex, which every request takes and which the host's other users hold too; the few other
reads (which device holds an address, a device's index) on a third socket behind their own lock.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Sequence

from pyroute2 import IPRoute

from hybrid_gateway.adapters.netlink import device, entries, proof
from hybrid_gateway.adapters.netlink.device import DeviceAction, DeviceOutcome, DeviceSpec
from hybrid_gateway.adapters.netlink.entries import ApplyResult
from hybrid_gateway.adapters.netlink.links import LinkStats, LinkTable
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

    Thread-safe: the data-plane loop, readiness and the metrics collector share one instance.
    """

    def __init__(self, netns: str | None = None) -> None:
        self._lock = threading.Lock()  # the reconciler's: held for a whole dump or apply
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        self._sock = RouteSocket(netns)
        self._probe_lock = threading.Lock()  # other reads: one short request each
        self._probe = RouteSocket(netns)
        self._netns = netns
        self._links_lock = threading.Lock()
        self._links: LinkTable | None = None  # started by the first device set-up or read
        self._nexthops_missing: str | None = None
        self._nexthops_checked = False
        self._keys_for: TunnelState | None = None
        self._keys: proof.Keys | None = None

    def close(self) -> None:
        with self._lock:
            self._sock.close()
            self._ipr.close()
        with self._probe_lock:
            self._probe.close()
        with self._links_lock:
            if self._links is not None:
                self._links.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def device_index(self, name: str) -> int | None:
        """Index of device `name`, None if it does not exist (safe from any thread)."""
        with self._probe_lock:
            link = self._probe.get_link(name)
        return None if link is None else link[0]

    def ensure_device(self, spec: DeviceSpec) -> DeviceOutcome:
        """See `device.ensure_device`. Also starts the link table, so that readiness and
        metrics find it filled."""
        self.link_table()
        with self._lock:
            return device.ensure_device(self._ipr, spec)

    def link_table(self) -> LinkTable:
        with self._links_lock:
            if self._links is None:
                self._links = LinkTable(self._netns)
            return self._links

    def link_stats(self, name: str) -> LinkStats | None:
        """(is up, 64-bit kernel counters) of a device, None if it does not exist. Asks the
        kernel nothing (`links`): up/down and existence as of the last notification, counters
        at most `links.REFRESH_S` old."""
        return self.link_table().get(name)

    def device_with_address(self, ip: ipaddress.IPv4Address) -> str | None:
        """Name of the device holding `ip` (the primary NIC for the node IP)."""
        with self._probe_lock:
            return device.device_with_address(self._probe, ip)

    def nexthop_support(self) -> str | None:
        """None if the kernel has nexthop objects, else why not; asked once per instance."""
        with self._lock:
            if not self._nexthops_checked:
                self._nexthops_missing = entries.nexthop_support(self._sock)
                self._nexthops_checked = True
            return self._nexthops_missing

    def dump(self, ifindex: int, expect: TunnelState | None = None) -> TunnelState:
        """The entries of device `ifindex` that are ours (see `entries`), nexthop objects
        included where the kernel has them (also when routes do not use them: a plan then
        removes the ones a previous run left).

        With `expect` (the desired state), `expect` itself when the dump proves that the
        kernel holds exactly it (`proof`: the usual no-op resync, without parsing each entry),
        else the parsed entries as without it. Repeated if the kernel flags a dump as
        interrupted by concurrent changes (its content may then be inconsistent)."""
        nexthops = self.nexthop_support() is None
        with self._lock:
            for _attempt in range(DUMP_ATTEMPTS):
                self._sock.interrupted = False
                raw = entries.fetch(self._sock, ifindex, nexthops=nexthops)
                if self._sock.interrupted:
                    continue
                if expect is not None and self._proved(raw, expect):
                    return expect
                return entries.parse_state(raw)
        raise NetlinkError(f"dumps interrupted {DUMP_ATTEMPTS} times by concurrent changes")

    def _proved(self, raw: entries.RawTables, expect: TunnelState) -> bool:
        tables = {
            "fdb": raw.fdb,
            "neighbours": raw.neighbours,
            "nexthops": raw.nexthops,
            "routes": raw.routes,
        }
        if not proof.sizes_match(expect, **tables):
            return False
        keys = self._expected_keys(expect)
        return keys is not None and proof.holds(ifindex=raw.ifindex, keys=keys, **tables)

    def prepare_proof(self, state: TunnelState) -> None:
        """Build the keys that prove `state` now, after a pass wrote it, rather than in the next
        resync (200,000 keys at 50,000 nodes: ~0.25 s of CPU on an idle machine)."""
        with self._lock:
            self._expected_keys(state)

    @staticmethod
    def proof_keys(state: TunnelState) -> proof.Keys | None:
        """`proof.expected_keys` of a part of a desired state (one list page's), for
        `prepare_proof_from` once the whole state is known."""
        return proof.expected_keys(state)

    def prepare_proof_from(self, state: TunnelState, parts: Sequence[proof.Keys | None]) -> bool:
        """Keep the keys that prove `state` joined from its parts' `proof_keys` (computed while
        the list ran) instead of computing them in the pass; False if they cannot be joined
        (the pass then computes them as usual)."""
        keys = proof.joined_keys(parts, state)
        if keys is None:
            return False
        with self._lock:
            self._keys_for, self._keys = state, keys
        return True

    def _expected_keys(self, state: TunnelState) -> proof.Keys | None:
        """`proof.expected_keys`, kept for the last desired state: a resync that finds the same
        CiliumNodes hands in the same object."""
        if self._keys_for is not state:
            self._keys_for, self._keys = state, proof.expected_keys(state)
        return self._keys

    def apply(self, ifindex: int, plan: Plan) -> ApplyResult:
        """See `entries.apply_plan`."""
        with self._lock:
            return entries.apply_plan(self._sock, ifindex, plan)
