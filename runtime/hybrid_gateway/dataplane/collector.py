"""Kernel counters of `hybrid_vxlan0` and the primary NIC, read at scrape time.

A collector rather than counters we increment: the kernel already counts, and reading at scrape
time means the figures are exact and cost nothing between scrapes. Names, types and labels are
the reference's (internal/metrics/collector.go): the counters carry no labels of their own, and
`hybrid_gateway_primary_nic_info{interface_name}` (always 1) says which device the primary NIC
is. Unlike the reference, which falls back to naming `eth0`, no NIC series are exported while
no device holds the node IP: a guessed name would be wrong.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hybrid_gateway.adapters.netlink import Netlink

log = logging.getLogger(__name__)

_COUNTERS = (
    ("rx", "bytes"),
    ("rx", "packets"),
    ("rx", "dropped"),
    ("rx", "errors"),
    ("tx", "bytes"),
    ("tx", "packets"),
    ("tx", "dropped"),
    ("tx", "errors"),
)


class InterfaceStatsCollector(Collector):
    """`hybrid_gateway_vxlan_*_total`, `hybrid_gateway_primary_nic_*_total` and
    `hybrid_gateway_primary_nic_info` (docs/design.md#metrics)."""

    def __init__(self, netlink: Netlink, *, vxlan_device: str, node_ip: ipaddress.IPv4Address):
        self._netlink = netlink
        self._vxlan_device = vxlan_device
        self._node_ip = node_ip
        self._primary: str | None = None

    def describe(self) -> list[CounterMetricFamily]:
        return []  # unchecked collector: names depend on nothing but are produced at scrape time

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        try:
            if self._primary is None:
                self._primary = self._netlink.device_with_address(self._node_ip)
            if self._primary is not None:
                info = GaugeMetricFamily(
                    "hybrid_gateway_primary_nic_info",
                    "Primary NIC name (the device holding the node IP). Always 1.",
                    labels=["interface_name"],
                )
                info.add_metric([self._primary], 1.0)
                yield info
            devices = (("vxlan", self._vxlan_device), ("primary_nic", self._primary))
            for prefix, name in devices:
                stats = self._netlink.link_stats(name) if name else None
                if name is None or stats is None:
                    continue
                _up, counters = stats
                for direction, what in _COUNTERS:
                    yield CounterMetricFamily(
                        f"hybrid_gateway_{prefix}_{direction}_{what}",
                        f"{direction.upper()} {what} of {name} (kernel counter).",
                        value=float(counters[f"{direction}_{what}"]),
                    )
        except Exception as exc:  # a scrape must never fail because of one device
            log.warning("could not read interface statistics: %s", exc)
