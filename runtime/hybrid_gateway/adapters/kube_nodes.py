"""CiliumNode list + watch through the official client: a cache of every hybrid CiliumNode,
kept as `NodeRecord`s (only the fields the data plane reads).

The data plane reads the whole cache on every reconcile (set difference needs the full desired
state), so a missed event costs nothing more than a late fix. Paging, resuming, relisting on 410
and the back-off are `kube_watch.ListWatch`'s. While the very first list runs, its pages are
also handed over one by one as they arrive (`take_listed`), so the data plane can write their
entries while the next page is fetched (`core.write_ahead`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_settings import CLIENT_DEFAULTS, WatchingSettings
from hybrid_gateway.adapters.kube_watch import DEFAULT_PAGE_SIZE, ListWatch, WatchFailure
from hybrid_gateway.core.dataplane import NodeRecord, node_record
from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    HYBRID_NODE_LABEL_KEY,
    HYBRID_NODE_LABEL_VALUE,
)

#: Only hybrid nodes are listed and watched; a node losing the label arrives as DELETED.
HYBRID_SELECTOR = f"{HYBRID_NODE_LABEL_KEY}={HYBRID_NODE_LABEL_VALUE}"


class CiliumNodeCache:
    """Every hybrid CiliumNode by name, kept current by `kube_watch.ListWatch` in `run`.

    `on_change` is called after every relist and every watch event (from the watch thread);
    the data plane uses it only to make its next full reconcile come sooner. `on_error` gets
    every failed list/watch attempt, `on_list_expired` every paged list that expired midway and
    was done again unpaged (see `ListWatch`).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        on_change: Callable[[], None] = lambda: None,
        on_error: Callable[[WatchFailure], None] = lambda _failure: None,
        on_listed: Callable[[], None] = lambda: None,
        on_list_expired: Callable[[], None] = lambda: None,
        settings: WatchingSettings = CLIENT_DEFAULTS,
        watch_timeout_s: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        """`watch_timeout_s`, when given, replaces the settings' window (the data plane's
        own knob; `WatchingSettings.with_window`)."""
        if watch_timeout_s is not None:
            settings = settings.with_window(watch_timeout_s)
        self._on_change = on_change
        self._on_listed = on_listed
        self._lock = threading.Lock()
        self._records: dict[str, NodeRecord] = {}
        self._changed: set[str] | None = None  # names changed by events; None: relisted
        # The first list's pages, handed over as they arrive (until a list completes):
        self._listing = 0  # lists begun
        self._page: list[NodeRecord] = []  # the page being folded
        self._pages: list[tuple[int, list[NodeRecord]]] = []  # folded, not taken yet
        self._first_listed = False
        self._page_ready = threading.Condition(self._lock)
        self.watch = ListWatch(
            "CiliumNodes",
            client.CustomObjectsApi(single_attempt(api_client)).list_cluster_custom_object,
            args=(CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL),
            label_selector=HYBRID_SELECTOR,
            on_list=self._replace,
            on_event=self._apply,
            on_error=on_error,
            on_list_expired=on_list_expired,
            on_page=self._page_done,
            page_size=page_size,
            settings=settings,
        )

    @property
    def synced(self) -> bool:
        """True once a list has succeeded (the cache reflects the cluster, possibly late)."""
        return self.watch.synced

    @property
    def resource_version(self) -> str | None:
        return self.watch.resource_version

    @property
    def relists(self) -> int:
        return self.watch.relists

    @property
    def expired(self) -> int:
        """Watches answered with 410 Expired."""
        return self.watch.expired

    def wait_synced(self, timeout_s: float) -> bool:
        return self.watch.wait_synced(timeout_s)

    def snapshot(self) -> list[NodeRecord]:
        with self._lock:
            return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def get(self, name: str) -> NodeRecord | None:
        with self._lock:
            return self._records.get(name)

    def take_changes(self) -> set[str] | None:
        """Names of the nodes that watch events changed since the last call, or None if the
        cache was (re)listed meanwhile (then only a full pass is right)."""
        with self._lock:
            changed, self._changed = self._changed, set()
            return changed

    def take_listed(self, timeout_s: float) -> list[tuple[int, list[NodeRecord]]] | None:
        """While the first list runs: its pages folded since the last call (waits up to
        `timeout_s` for one), each with the number of the list it belongs to (a list that
        failed or expired midway starts over under the next number), the last page once the
        list completed (its entries then make the first pass a no-op the dump proves). None once
        the first list completed and its pages were taken: from then on only `snapshot` is the
        cluster's state."""
        with self._page_ready:
            if not self._pages and not self._first_listed:
                self._page_ready.wait(timeout_s)
            if self._first_listed and not self._pages:
                return None
            pages, self._pages = self._pages, []
            return pages

    def relist(self) -> None:
        """Replace the cache with a fresh (paged) list."""
        self.watch.list()

    def watch_once(self, stop: threading.Event) -> None:
        self.watch.watch_once(stop)

    def run(self, stop: threading.Event) -> None:
        """List, then follow, until `stop`."""
        self.watch.run(stop)

    def follow(self, stop: threading.Event, *, listed: bool = True) -> None:
        self.watch.follow(stop, listed=listed)

    def _replace(self, items: Iterator[dict[str, Any]]) -> None:
        """Fold a (paged) list into records as the pages arrive: at no time does the process
        hold more than one page of parsed JSON besides the records."""
        first = not self._first_listed  # hand the pages over as they arrive
        with self._lock:
            self._listing += 1
            self._page = []
        fresh: dict[str, NodeRecord] = {}
        for obj in items:
            record = node_record(obj)
            fresh[record.name] = record
            if first:
                self._page.append(record)
        with self._page_ready:
            self._records = fresh
            self._changed = None
            if first and self._page:
                self._pages.append((self._listing, self._page))
            self._first_listed = True
            self._page = []
            self._page_ready.notify_all()
        self._on_listed()
        self._on_change()

    def _page_done(self) -> None:
        """A page of the list was folded (`ListWatch` on_page): hand it over if the first."""
        with self._page_ready:
            if self._first_listed or not self._page:
                return
            self._pages.append((self._listing, self._page))
            self._page = []
            self._page_ready.notify_all()

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        record = node_record(obj)
        with self._lock:
            if kind in ("ADDED", "MODIFIED"):
                self._records[record.name] = record
            elif kind == "DELETED":
                self._records.pop(record.name, None)
            if self._changed is not None:
                self._changed.add(record.name)
        self._on_change()
