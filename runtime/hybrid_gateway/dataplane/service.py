"""The data-plane service every replica runs: device set-up, the reconcile loop, readiness.

Loop shape (kube-router style): while the very first CiliumNode list runs, each page's entries
are written as the page arrives, add-only (`TunnelReconciler.write_ahead`, `core.write_ahead`),
so the first full pass finds them in place; a full reconcile runs every `resync_period_s` and
after every relist; between them a CiliumNode watch event applies only the changed nodes'
entries (against the last full pass's state: no dump, no pass over every node), or brings the
full pass forward when the change touches other nodes. After a failed pass the next full pass
follows after a short, growing delay. State is kept on exit: the device and its entries stay
so the kernel keeps forwarding while routes move to the other replica
(docs/design.md#failover-measurement).

With `node_watch` given (the daemon), the CiliumNode watch is not a thread of `run` but a
supervised loop of its own (`watch_task`): a watch stuck in a call fails `/healthz` by name, a
failing one is logged, counted and sent as an Event, and readiness names it once it has failed
for longer than a replica may go without it, instead of the tunnels freezing behind green probes.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubernetes import client

from hybrid_gateway.adapters.kube_events import EventSink
from hybrid_gateway.adapters.kube_nodes import CiliumNodeCache
from hybrid_gateway.adapters.kube_watch import DEFAULT_PAGE_SIZE
from hybrid_gateway.adapters.netlink import DeviceSpec, Netlink
from hybrid_gateway.core.backoff import Backoff
from hybrid_gateway.core.dataplane import DataPlaneError, PartialApplyError
from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.dataplane.collector import InterfaceStatsCollector
from hybrid_gateway.dataplane.reconciler import ReconcileReport, TunnelReconciler
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.supervisor import Task
from hybrid_gateway.timings import Timings
from hybrid_gateway.watch_health import WatchHealth
from hybrid_gateway_contract import VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI

log = logging.getLogger(__name__)

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
#: Coalesce a burst of watch events into one pass.
EVENT_DEBOUNCE_S = 0.02
#: How quickly `run` notices `stop` while it waits for the next pass.
STOP_POLL_S = 0.1


def read_ip_forward() -> str:
    return IP_FORWARD.read_text().strip()


class DataPlane:
    """VXLAN tunnels to every valid hybrid CiliumNode, in the current network namespace.

    `netlink` and `ip_forward` exist for tests that drive the service inside a namespace they
    created; the daemon leaves them unset.
    """

    def __init__(
        self,
        *,
        node_ip: str,
        vpc_cidrs: Sequence[ipaddress.IPv4Network],
        mtu: int,
        resync_period_s: float,
        api_client: client.ApiClient,
        events: EventSink,
        metrics: GatewayMetrics,
        netlink: Netlink | None = None,
        ip_forward: Callable[[], str] = read_ip_forward,
        watch_timeout_s: int = 30,
        node_watch: WatchHealth | None = None,
        list_page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self._node_ip = ipaddress.IPv4Address(node_ip)
        self._resync_period_s = resync_period_s
        self._metrics = metrics
        self._ip_forward = ip_forward
        self._netlink = netlink
        self._device = DeviceSpec(
            name=VXLAN_DEVICE,
            vni=VXLAN_VNI,
            port=VXLAN_PORT,
            local=self._node_ip,
            mac=vxlan_device_mac(node_ip),
            mtu=mtu,
        )
        self._vpc_cidrs = tuple(vpc_cidrs)
        self._events = events
        self._wake = threading.Event()
        self.node_watch = node_watch
        expired = metrics.list_expired.labels(list="ciliumnodes")
        self.nodes = (
            CiliumNodeCache(
                api_client,
                on_change=self._wake.set,
                on_list_expired=expired.inc,
                watch_timeout_s=watch_timeout_s,
                page_size=list_page_size,
            )
            if node_watch is None
            else CiliumNodeCache(
                api_client,
                on_change=self._wake.set,
                on_error=node_watch.on_error,
                on_listed=node_watch.reporter.succeeded,
                on_list_expired=expired.inc,
                watch_timeout_s=watch_timeout_s,
                page_size=list_page_size,
            )
        )
        self._reconciler: TunnelReconciler | None = None
        self._reconciled_once = False
        self._collector_registered = False
        self.last_report: ReconcileReport | None = None
        self.passes = 0  # full passes
        self.changes_applied = 0  # node changes applied on their own, between full passes
        #: time.monotonic() of the loop's last tick, for liveness: it ticks at least every
        #: STOP_POLL_S while waiting and before every pass. A pass itself does not tick: the
        #: first pass at 20,000 nodes spends ~20 s in the kernel (docs/dataplane.md), so a liveness
        #: limit must be longer than the longest pass.
        self.heartbeat = time.monotonic()

    @property
    def device_mac(self) -> str:
        return self._device.mac

    def setup(self) -> None:
        """Check `net.ipv4.ip_forward` (read only) and adopt or create the device."""
        try:
            forward = self._ip_forward()
        except OSError as exc:
            raise DataPlaneError(f"cannot read net.ipv4.ip_forward: {exc}") from exc
        if forward != "1":
            raise DataPlaneError(
                f"net.ipv4.ip_forward is {forward!r}, must be '1': the gateway forwards between "
                "the VPC and the VXLAN tunnels (set it on the node, e.g. sysctl "
                "net.ipv4.ip_forward=1; the gateway does not change host settings)"
            )
        try:
            if self._netlink is None:
                self._netlink = Netlink()
            if self._reconciler is None:
                self._reconciler = TunnelReconciler(
                    netlink=self._netlink,
                    device=self._device,
                    vpc_cidrs=self._vpc_cidrs,
                    metrics=self._metrics,
                    events=self._events,
                )
            self._reconciler.ensure_device()
        except Exception as exc:  # NetlinkError, pyroute2's own errors, permission errors
            raise DataPlaneError(f"cannot set up {self._device.name}: {exc}") from exc
        if not self._collector_registered:
            self._metrics.registry.register(
                InterfaceStatsCollector(
                    self._netlink, vxlan_device=self._device.name, node_ip=self._node_ip
                )
            )
            self._collector_registered = True

    def ready(self) -> bool:
        """True once the first full reconcile completed, and only while the device exists and is
        up (a later pass fixes a downed device and recreates a deleted one).

        A pass in which the kernel refused some entries (see PartialApplyError) counts as
        completed: the other nodes are served, the refusals are logged, counted and retried.
        """
        if not self._reconciled_once or self._netlink is None:
            return False
        try:
            stats = self._netlink.link_stats(self._device.name)
        except Exception:
            stats = None
        up = stats is not None and stats[0]
        self._metrics.vxlan_interface_up.set(1 if up else 0)
        return up

    def watch_task(self, timings: Timings) -> Task:
        """The CiliumNode watch as a supervised loop (only with `node_watch`)."""
        if self.node_watch is None:
            raise DataPlaneError("DataPlane.watch_task needs node_watch")
        return self.node_watch.task("ciliumnode-watch", self.nodes.watch, timings)

    def run(self, stop: threading.Event) -> None:
        """Reconcile until `stop` is set (and watch CiliumNodes on a thread of its own unless
        the watch is supervised: `watch_task`). Call `setup` first."""
        if self._reconciler is None:
            raise DataPlaneError("DataPlane.run called before setup")
        watcher = threading.Thread(
            target=self.nodes.run, args=(stop,), name="ciliumnode-watch", daemon=True
        )
        if self.node_watch is None:
            watcher.start()
        retry = Backoff(initial_s=0.5, maximum_s=min(30.0, self._resync_period_s))
        next_full = 0.0  # time.monotonic() when the next full pass is due
        while not stop.is_set():
            self.heartbeat = now = time.monotonic()
            if not self.nodes.synced:
                if not self._write_ahead(STOP_POLL_S):
                    self.nodes.wait_synced(STOP_POLL_S)  # listed: the full pass follows at once
                continue
            self._write_ahead(0.0)  # the first list's last page, unless taken already
            self._wake.clear()
            changed = self.nodes.take_changes()
            try:
                started = time.monotonic()
                if now < next_full and changed is not None:
                    if changed and not self._reconciler.reconcile_changed(
                        {name: self.nodes.get(name) for name in changed}
                    ):
                        next_full = now  # a change only a full pass handles
                        continue
                    self.changes_applied += len(changed)
                    log.debug("incremental pass took %.3f s", time.monotonic() - started)
                else:
                    self.last_report = self._reconciler.reconcile(self.nodes.snapshot())
                    self._reconciled_once = True
                    self.passes += 1
                    log.debug("reconcile pass took %.3f s", time.monotonic() - started)
                    next_full = time.monotonic() + self._resync_period_s
                retry.reset()
            except PartialApplyError as exc:  # completed, some entries refused: retry soon
                self._reconciled_once = True
                self.passes += 1
                self._metrics.reconcile_errors.inc()
                next_full = time.monotonic() + retry.next_delay()
                log.warning("%s; full resync in %.1f s", exc, next_full - time.monotonic())
            except Exception as exc:  # any failure: full resync again soon
                self._metrics.reconcile_errors.inc()
                next_full = time.monotonic() + retry.next_delay()
                log.warning(
                    "reconcile failed (%s); full resync in %.1f s",
                    exc,
                    next_full - time.monotonic(),
                )
            if self._sleep(next_full - time.monotonic(), stop):
                stop.wait(EVENT_DEBOUNCE_S)
        if watcher.is_alive():
            watcher.join(timeout=1.0)

    def _write_ahead(self, timeout_s: float) -> bool:
        """Write the entries of the first list's pages folded since the last call (waits up
        to `timeout_s` for one); False once that list completed and every page was taken."""
        assert self._reconciler is not None
        pages = self.nodes.take_listed(timeout_s)
        if pages is None:
            return False
        for listing, records in pages:
            self.heartbeat = time.monotonic()
            try:
                self._reconciler.write_ahead(listing, records)
            except Exception as exc:  # the full pass does it all again, and reports
                log.warning("writing ahead of the first pass failed (%s); left to the pass", exc)
        return True

    def _sleep(self, delay: float, stop: threading.Event) -> bool:
        """Wait up to `delay` for a watch event; True if one came. Returns early on `stop`."""
        deadline = time.monotonic() + delay
        while not stop.is_set():
            self.heartbeat = now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return False
            if self._wake.wait(min(remaining, STOP_POLL_S)):
                return True
        return False
