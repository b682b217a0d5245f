"""Active-active forward prefixes, recomputed as hybrid nodes come and go.

The prefixes follow the allocated node pod CIDRs (contract/spread.py): this module keeps a
list-watch of the hybrid CiliumNodes, recomputes the spread when they change (a burst of
changes costs one computation), and tells the shard lanes to look again. Until the first list
has been folded in there is no spread: shard route lanes write nothing rather than write the
equal cut and move it a second later. Every replica derives the same prefixes from the same
node set, so a shard's owner writes exactly its own; while two replicas' watches disagree for a
moment they may write each other's prefixes, but every address keeps a route to a live gateway.
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from hybrid_gateway.adapters.kube_nodes import CiliumNodeCache
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_watch import WatchFailure
from hybrid_gateway.core.routes import ObservedRoute, RouteKey, plan_retired_routes
from hybrid_gateway.metrics import ShardMetrics
from hybrid_gateway_contract.spread import Spread, spread_pod_prefixes

log = logging.getLogger(__name__)

#: Changes closer together than this are folded into one computation (a node pool scaling up
#: adds dozens of CiliumNodes within seconds).
SETTLE_S = 0.5


class ForwardPrefixes:
    """The current spread, and the routes a shard owner retires when it moved."""

    def __init__(
        self,
        api_client: object,
        *,
        pod_cidrs: Sequence[ipaddress.IPv4Network],
        shards: int,
        route_budget: int,
        table_ids: Sequence[str],
        metrics: ShardMetrics,
        on_error: Callable[[WatchFailure], None],
        on_listed: Callable[[], None],
        settings: WatchingSettings,
    ) -> None:
        self._pods = tuple(pod_cidrs)
        self._shards = shards
        self._budget = route_budget
        self._tables = tuple(table_ids)
        self._metrics = metrics
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._spread: Spread | None = None
        self._listeners: list[Callable[[], None]] = []
        self.heartbeat = time.monotonic()
        self.nodes = CiliumNodeCache(
            api_client,
            on_change=lambda: self._noticed(on_listed),
            on_error=on_error,
            settings=settings,
        )

    def _noticed(self, on_listed: Callable[[], None]) -> None:
        self._changed.set()
        if self.nodes.synced:
            on_listed()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every change of the spread."""
        self._listeners.append(listener)

    def current(self) -> Spread | None:
        """The spread, or None before the CiliumNodes were first listed."""
        with self._lock:
            return self._spread

    def recompute(self) -> bool:
        """Fold the node cache in; True if any shard's prefixes changed."""
        if not self.nodes.synced:
            return False
        cidrs = [c for node in self.nodes.snapshot() for c in (node.pod_cidrs or ())]
        spread = spread_pod_prefixes(self._pods, cidrs, self._shards, route_budget=self._budget)
        with self._lock:
            previous, self._spread = self._spread, spread
        if previous is not None and previous.prefixes == spread.prefixes:
            return False
        self._publish(spread)
        if previous is None:
            moved = "first"
        else:
            pairs = zip(previous.prefixes, spread.prefixes, strict=True)
            moved = f"{sum(len(set(a) ^ set(b)) for a, b in pairs)} prefix change(s)"
        log.info(
            "forward prefixes (%s): %d node CIDR(s) over %d shard(s) in %d route(s), tolerance %d",
            moved,
            spread.allocated,
            self._shards,
            spread.routes,
            spread.tolerance,
        )
        for listener in self._listeners:
            listener()
        return True

    def _publish(self, spread: Spread) -> None:
        """Per shard: its prefixes and the allocated node CIDRs behind them (the split an
        operator compares with the per-shard traffic)."""
        ranges = sorted(
            (int(net.network_address), int(net.broadcast_address), index)
            for index, prefixes in enumerate(spread.prefixes)
            for net in map(ipaddress.IPv4Network, prefixes)
        )
        starts = [start for start, _end, _index in ranges]
        counts = [0] * len(spread.prefixes)
        for node in self.nodes.snapshot():
            for raw in node.pod_cidrs or ():
                for net in _networks(raw):
                    at = bisect.bisect_right(starts, int(net.network_address)) - 1
                    if at >= 0 and int(net.broadcast_address) <= ranges[at][1]:
                        counts[ranges[at][2]] += 1
        for index, prefixes in enumerate(spread.prefixes):
            self._metrics.shard_prefixes.labels(str(index)).set(len(prefixes))
            self._metrics.shard_node_cidrs.labels(str(index)).set(counts[index])

    def wake(self) -> None:
        self._changed.set()

    def run(self, stop: threading.Event) -> None:
        """Recompute after every change of the node set, a burst folded into one."""
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            if self._changed.wait(1.0):
                stop.wait(SETTLE_S)
                self._changed.clear()
                try:
                    self.recompute()
                except Exception:  # a bug here must not stop the recomputation silently
                    log.exception("forward prefix computation failed")

    def retire(
        self, index: int
    ) -> Callable[
        [Mapping[str, list[ObservedRoute]]], tuple[tuple[RouteKey, ...], tuple[RouteKey, ...]]
    ]:
        """Shard `index`'s retirement planner for `RouteOwner.sync`."""

        def plan(
            observed: Mapping[str, list[ObservedRoute]],
        ) -> tuple[tuple[RouteKey, ...], tuple[RouteKey, ...]]:
            spread = self.current()
            if spread is None:
                return (), ()
            planned = [p for shard in spread.prefixes for p in shard]
            return plan_retired_routes(
                observed, self._tables, self._pods, planned, spread.prefixes[index]
            )

        return plan


def _networks(raw: str) -> list[ipaddress.IPv4Network]:
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        return []
    return [net] if isinstance(net, ipaddress.IPv4Network) else []
