"""CiliumNode list + watch through the official client: a cache of every CiliumNode object.

The data plane reads the whole cache on every reconcile (set difference needs the full desired
state), so a missed event costs nothing more than a late fix. The watch resumes from the last
resourceVersion, relists when the server answers 410 Gone, and backs off after errors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    HYBRID_NODE_LABEL_KEY,
    HYBRID_NODE_LABEL_VALUE,
)

log = logging.getLogger(__name__)

HTTP_GONE = 410
#: Only hybrid nodes are listed and watched; a node losing the label arrives as DELETED.
HYBRID_SELECTOR = f"{HYBRID_NODE_LABEL_KEY}={HYBRID_NODE_LABEL_VALUE}"


def trim(obj: dict[str, Any]) -> dict[str, Any]:
    """Keep only what the data plane reads: real CiliumNodes carry large IPAM/ENI status, and
    the cache holds one per hybrid node for the life of the process."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ipam = spec.get("ipam") or {}
    return {
        "metadata": {k: meta[k] for k in ("name", "uid", "labels", "resourceVersion") if k in meta},
        "spec": {
            "addresses": spec.get("addresses") or [],
            "ipam": {"podCIDRs": ipam.get("podCIDRs") or []},
        },
    }


class Backoff:
    """Delay between failed attempts: doubled each time up to a maximum, reset on success."""

    def __init__(self, initial_s: float = 0.5, maximum_s: float = 30.0) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self._next = initial_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


class CiliumNodeCache:
    """Every CiliumNode by name, kept current by list + watch in `run`.

    `on_change` is called after every relist and every watch event (from the watch thread);
    the data plane uses it only to make its next full reconcile come sooner.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        on_change: Callable[[], None] = lambda: None,
        watch_timeout_s: int = 30,
        backoff: Backoff | None = None,
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._on_change = on_change
        self._watch_timeout_s = watch_timeout_s
        self._backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}
        self._synced = threading.Event()
        self.resource_version: str | None = None
        self.relists = 0
        self.expired = 0  # watches answered with 410 Gone

    @property
    def synced(self) -> bool:
        """True once a list has succeeded (the cache reflects the cluster, possibly late)."""
        return self._synced.is_set()

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def relist(self) -> None:
        """Replace the cache with a fresh list; remember its resourceVersion for the watch."""
        listing = self._api.list_cluster_custom_object(
            CILIUM_GROUP,
            CILIUM_VERSION,
            CILIUM_NODES_PLURAL,
            label_selector=HYBRID_SELECTOR,
            _request_timeout=30,
        )
        objects = {str(o["metadata"]["name"]): trim(o) for o in listing.get("items") or []}
        with self._lock:
            self._objects = objects
            self.resource_version = str(listing["metadata"]["resourceVersion"])
        self.relists += 1
        self._synced.set()
        log.debug(
            "listed %d CiliumNodes at resourceVersion %s", len(objects), self.resource_version
        )
        self._on_change()

    def watch_once(self, stop: threading.Event) -> None:
        """One watch request from the current resourceVersion until it ends (or `stop`)."""
        stream = watch.Watch()
        for event in stream.stream(
            self._api.list_cluster_custom_object,
            CILIUM_GROUP,
            CILIUM_VERSION,
            CILIUM_NODES_PLURAL,
            label_selector=HYBRID_SELECTOR,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout_s,
            _request_timeout=self._watch_timeout_s + 10,
        ):
            kind, obj = event["type"], event["object"]
            meta = obj.get("metadata") or {}
            with self._lock:
                if kind in ("ADDED", "MODIFIED"):
                    self._objects[str(meta["name"])] = trim(obj)
                elif kind == "DELETED":
                    self._objects.pop(str(meta["name"]), None)
                if meta.get("resourceVersion"):
                    self.resource_version = str(meta["resourceVersion"])
            if kind != "BOOKMARK":
                self._on_change()
            self._backoff.reset()
            if stop.is_set():
                stream.stop()

    def run(self, stop: threading.Event) -> None:
        """List, then follow, until `stop`."""
        self.follow(stop, listed=False)

    def follow(self, stop: threading.Event, *, listed: bool = True) -> None:
        """Watch from the cached resourceVersion until `stop`: relist at once on 410 Gone, back
        off and relist after any other error (a relist is a full resync of the cache)."""
        need_list = not listed
        while not stop.is_set():
            try:
                if need_list:
                    self.relist()
                    need_list = False
                self.watch_once(stop)
                self._backoff.reset()
            except ApiException as exc:
                if exc.status == HTTP_GONE:
                    self.expired += 1
                    log.info("CiliumNode watch expired (410 Gone): relisting")
                    need_list = True
                    continue
                self._pause(stop, f"CiliumNode API error {exc.status}: {exc.reason}")
                need_list = True
            except Exception as exc:  # network errors, timeouts, malformed answers
                self._pause(stop, f"CiliumNode list/watch failed: {exc!r}")
                need_list = True

    def _pause(self, stop: threading.Event, why: str) -> None:
        delay = self._backoff.next_delay()
        log.warning("%s; retrying in %.1f s", why, delay)
        stop.wait(delay)
