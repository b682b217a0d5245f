"""The node filter service: installs the daemon's own nftables table, keeps it as rendered,
removes it on shutdown, and exports its per-shard counters on /metrics.

Why the table exists is in `hybrid_gateway.core.nodefilter`. Every `check_period_s` the table
is listed and compared (`normalized`) with what the last apply produced; a deleted or edited
table is replaced in one transaction, logged, counted and recorded as an Event. The desired
counters are asked for on every check (`counters`), so they follow the current shard plan.
Until the first apply succeeded the replica is not ready: a node that would drop asymmetric
flows must not take traffic.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from hybrid_gateway.adapters.nftables import Nft, NftError
from hybrid_gateway.core.nodefilter import (
    FAMILY,
    TABLE,
    CounterPrefix,
    normalized,
    read_counters,
    ruleset,
)
from hybrid_gateway.reporting import FailureReporter, Reporting

log = logging.getLogger(__name__)

#: How often the table is compared with what it should be (one `nft -j list table`).
CHECK_PERIOD_S = 5.0
#: How quickly `run` notices `stop`.
STOP_POLL_S = 0.1
#: At shutdown the table goes once this node has forwarded nothing for DRAIN_QUIET_S (the
#: routes and VTEP endpoints have moved to another replica), at most DRAIN_MAX_S after the
#: Leases were released: removing it while flows still cross this node would make their next
#: packets INVALID here (an ACK after a SYN whose SYN/ACK took the other gateway).
DRAIN_QUIET_S = 1.0
DRAIN_MAX_S = 10.0
DRAIN_POLL_S = 0.2
COUNTER_LABELS = ("direction", "shard", "prefix")


class NodeFilterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.installed = Gauge(
            "hybrid_gateway_node_filter_installed",
            f"1 while the node's nftables table {FAMILY} {TABLE} is as the gateway rendered it.",
            registry=registry,
        )
        self.repairs = Counter(
            "hybrid_gateway_node_filter_repairs",
            "Times the table was found deleted or edited and was replaced.",
            registry=registry,
        )


class ForwardedCollector(Collector):
    """`hybrid_gateway_forwarded_{packets,bytes}_total{direction,shard,prefix}`: what this
    gateway forwarded per shard prefix and direction, read from the kernel at scrape time."""

    def __init__(self, nft: Nft) -> None:
        self._nft = nft

    def describe(self) -> list[CounterMetricFamily]:
        return []

    def collect(self) -> Iterator[CounterMetricFamily]:
        try:
            listing = self._nft.list_table()
        except NftError as exc:
            log.debug("forwarded counters unavailable: %s", exc)
            return
        if listing is None:
            return
        packets = CounterMetricFamily(
            "hybrid_gateway_forwarded_packets",
            "Packets this gateway forwarded, by direction (to_hybrid: VPC -> hybrid pods; "
            "to_vpc: hybrid pods -> VPC), shard and destination prefix.",
            labels=COUNTER_LABELS,
        )
        octets = CounterMetricFamily(
            "hybrid_gateway_forwarded_bytes",
            "Bytes this gateway forwarded, by direction, shard and destination prefix.",
            labels=COUNTER_LABELS,
        )
        for key, counted in sorted(read_counters(listing).items(), key=lambda kv: kv[0].comment):
            labels = [key.direction, key.shard, key.prefix]
            packets.add_metric(labels, float(counted.packets))
            octets.add_metric(labels, float(counted.bytes))
        yield packets
        yield octets


class NodeFilter:
    def __init__(
        self,
        *,
        nft: Nft,
        pod_cidrs: Sequence[ipaddress.IPv4Network],
        vpc_cidrs: Sequence[ipaddress.IPv4Network],
        counters: Callable[[], Sequence[CounterPrefix]],
        reporting: Reporting,
        check_period_s: float = CHECK_PERIOD_S,
    ) -> None:
        self._nft = nft
        self._pods = tuple(pod_cidrs)
        self._vpcs = tuple(vpc_cidrs)
        #: Asked on every check: the counters of the current shard plan.
        self.counters = counters
        self._reporting = reporting
        self._check_period_s = check_period_s
        self._applied: str | None = None  # the script last applied
        self._expected: str | None = None  # the table as listed right after that apply
        self._ok = False
        self._lock = threading.Lock()
        self.metrics = NodeFilterMetrics(reporting.metrics.registry)
        self.metrics.installed.set(0)
        reporting.metrics.registry.register(ForwardedCollector(nft))
        self.reporter: FailureReporter = reporting.reporter(
            f"nftables table {FAMILY} {TABLE}",
            "nftables",
            "NodeFilterFailed",
            "the gateway needs the `nft` tool and CAP_NET_ADMIN in the node's network namespace "
            "(without its notrack rules, kube-proxy's INVALID drop breaks flows whose two "
            "directions cross different gateways)",
        )
        self.heartbeat = time.monotonic()

    def ready(self) -> bool:
        return self._ok

    def ensure(self) -> str:
        """Make the table what it should be: 'unchanged', 'installed' (first time or a new
        plan) or 'repaired' (someone deleted or edited it). Raises NftError."""
        with self._lock:
            script = ruleset(self._pods, self._vpcs, self.counters())
            current = self._nft.list_table()
            same_script = script == self._applied
            if same_script and current is not None and normalized(current) == self._expected:
                self._ok = True
                self.metrics.installed.set(1)
                return "unchanged"
            self._nft.apply(script)
            after = self._nft.list_table()
            if after is None:
                raise NftError(f"table {FAMILY} {TABLE} missing right after it was loaded")
            self._applied, self._expected = script, normalized(after)
            self._ok = True
            self.metrics.installed.set(1)
            return "repaired" if same_script else "installed"

    def check(self) -> None:
        """One check, reported: a repair is a warning and an Event, a failure goes to the
        reporter (log, metric, Event) and makes the replica not ready."""
        try:
            outcome = self.ensure()
        except (NftError, ValueError) as exc:
            self._ok = False
            self.metrics.installed.set(0)
            self.reporter.failed("apply", exc)
            return
        self.reporter.succeeded()
        if outcome == "installed":
            log.info("nftables table %s %s installed (notrack, counters)", FAMILY, TABLE)
        elif outcome == "repaired":
            self.metrics.repairs.inc()
            message = (
                f"nftables table {FAMILY} {TABLE} was deleted or edited on the node; replaced "
                "(its notrack rules keep flows whose directions cross different gateways alive)"
            )
            log.warning("%s", message)
            self._reporting.events.emit(self._reporting.subject, "NodeFilterRepaired", message)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            self.check()
            deadline = time.monotonic() + self._check_period_s
            while not stop.is_set() and time.monotonic() < deadline:
                self.heartbeat = time.monotonic()
                stop.wait(STOP_POLL_S)

    def _forwarded(self) -> int | None:
        try:
            listing = self._nft.list_table()
        except NftError:
            return None
        if listing is None:
            return None
        return sum(c.packets for c in read_counters(listing).values())

    def remove_when_drained(
        self,
        *,
        quiet_s: float = DRAIN_QUIET_S,
        max_wait_s: float = DRAIN_MAX_S,
        poll_s: float = DRAIN_POLL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Shutdown: wait until this node has forwarded nothing for `quiet_s` (by its own
        counters), at most `max_wait_s`, then delete the table."""
        start = clock()
        last = self._forwarded()
        quiet_since = start
        while last is not None and clock() - start < max_wait_s:
            if clock() - quiet_since >= quiet_s:
                break
            sleep(poll_s)
            now = self._forwarded()
            if now != last:
                last, quiet_since = now, clock()
        log.info(
            "node filter: forwarded nothing for %.1fs or waited %.1fs; removing",
            quiet_s,
            clock() - start,
        )
        self.remove()

    def remove(self) -> None:
        """Delete the table (shutdown). Failures are logged: the node keeps a harmless table."""
        with self._lock:
            self._ok = False
            self.metrics.installed.set(0)
            try:
                removed = self._nft.delete_table()
            except NftError as exc:
                log.error("could not remove nftables table %s %s: %s", FAMILY, TABLE, exc)
                return
        if removed:
            log.info("nftables table %s %s removed", FAMILY, TABLE)
