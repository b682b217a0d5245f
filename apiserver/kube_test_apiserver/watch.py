"""Watch streams: initial state, then the store's events as this watcher may see them.

The stream ends cleanly at its timeout or when the harness closes every watch; it is cut
without a clean end (as a dead TCP stream would be) when the server stops, the client goes
away or the identity is partitioned ('hang' goes silent and resumes if healed in time).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from . import errors
from .control import Control
from .errors import ApiError
from .objects import Selector
from .resources import ResourceType
from .routing import Route, truthy
from .store import Event, ExpiredError, Store

JsonObj = dict[str, Any]


class WatchSink(Protocol):
    """The connection a watch writes to."""

    def open_stream(self) -> None: ...
    def chunk(self, payload: JsonObj) -> None: ...
    def end_stream(self) -> None: ...
    def drop(self) -> None: ...
    def client_gone(self) -> bool: ...


def serve_watch(
    sink: WatchSink,
    *,
    store: Store,
    control: Control,
    route: Route,
    query: dict[str, str],
    selector: Selector | None,
    identity: str,
    on_open: Any,
) -> None:
    """Validate the watch request (raising ApiError before anything is sent), then stream.

    `on_open()` is called once the request is accepted, before the first byte."""
    rt = route.rt
    raw_rv = query.get("resourceVersion", "")
    try:
        rv = None if raw_rv in ("", "0") else int(raw_rv)
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{raw_rv}"') from None
    try:
        timeout = float(query.get("timeoutSeconds") or 0)
    except ValueError:
        raise errors.bad_request(f"invalid timeoutSeconds {query['timeoutSeconds']!r}") from None
    if timeout <= 0:
        timeout = control.max_watch_s
    deadline = time.monotonic() + min(timeout, control.max_watch_s)
    bookmarks = truthy(query.get("allowWatchBookmarks"))
    epoch = control.watch_epoch
    expired: ExpiredError | None = None
    try:
        initial, position = store.watch_start(rt, route.namespace, selector, rv)
    except ExpiredError as exc:
        initial, position, expired = [], 0, exc

    on_open()
    sink.open_stream()
    if expired is not None:
        sink.chunk(_expired_event(expired))
        sink.end_stream()
        return
    for obj in initial:
        sink.chunk({"type": "ADDED", "object": obj})
    last_bookmark = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if control.stopping.is_set():
            sink.drop()
            return
        if control.watch_epoch != epoch:
            break  # ended cleanly, as the server's own watch timeout does
        mode = control.partition_mode(identity)
        if mode == "drop" or sink.client_gone():
            sink.drop()
            return
        wait = min(deadline - now, 0.5)
        if mode == "hang":  # silent, like a stalled TCP stream; resumes if healed in time
            with control.lock:
                control.lock.wait(wait)
            if time.monotonic() >= deadline:
                sink.drop()
                return
            continue
        waited_from = position
        try:
            events, position = store.events_after(position, wait)
        except ExpiredError as exc:
            sink.chunk(_expired_event(exc))
            break
        if events and control.partition_mode(identity) is not None:
            # Partitioned while waiting: a stalled stream carries nothing, so these events go
            # out after a heal (the next turn hangs or drops first), never across the partition.
            position = waited_from
            continue
        for event in events:
            out = visible(event, rt, route.namespace, selector)
            if out is not None:
                sink.chunk(out)
        if bookmarks and time.monotonic() - last_bookmark >= control.bookmark_interval_s:
            sink.chunk(
                {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(position)},
                    },
                }
            )
            last_bookmark = time.monotonic()
    sink.end_stream()


def _expired_event(exc: ExpiredError) -> JsonObj:
    """The ERROR event kube-apiserver streams for a watch from a version its history no
    longer holds: the Status of apimachinery pkg/api/errors `NewResourceExpired` (410, reason
    "Expired", metav1 `StatusReasonExpired`), with the watch cache's message (k8s.io/apiserver
    pkg/storage/cacher/watch_cache.go `getAllEventsSinceLocked`: "too old resource version:
    %d (%d)"; `ExpiredError` words it the same)."""
    err = ApiError(410, "Expired", str(exc))
    return {"type": "ERROR", "object": err.status()}


def visible(
    event: Event, rt: ResourceType, namespace: str | None, selector: Selector | None
) -> JsonObj | None:
    """The event as this watcher sees it; selector transitions become ADDED / DELETED."""
    if event.rtype is not rt:
        return None
    if namespace is not None and event.obj["metadata"].get("namespace") != namespace:
        return None
    if selector is None:
        return {"type": event.type, "object": event.obj}
    now = selector(event.obj)
    if event.type != "MODIFIED" or event.old is None:
        return {"type": event.type, "object": event.obj} if now else None
    before = selector(event.old)
    if now and before:
        return {"type": "MODIFIED", "object": event.obj}
    if now:
        return {"type": "ADDED", "object": event.obj}
    if before:
        gone = {**event.old, "metadata": {**event.old["metadata"]}}
        gone["metadata"]["resourceVersion"] = event.obj["metadata"]["resourceVersion"]
        return {"type": "DELETED", "object": gone}
    return None
