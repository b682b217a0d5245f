"""List-then-watch of one kind of Kubernetes object through the official client.

The one loop behind every watch of the runtime (CiliumNodes, the leader Lease, the
CiliumVTEPConfig), so they fail, retry and report alike:

- The list is paged, `limit` 500 plus `continue`, as client-go's reflector lists through its
  pager (client-go tools/pager/pager.go: `defaultPageSize = 500`; tools/cache/reflector.go
  `list`). Items reach `on_list` one page at a time, so the client never holds more than one
  page of raw objects while the caller folds them into its own, smaller state.
- A page answered 410 Expired (the API server compacted its storage past the list's version
  between two pages) makes the list start over as one unpaged request, as client-go's pager does
  (tools/pager/pager.go `List`: `FullListIfExpired`, only for page 2 or later): a paged relist
  could expire again the same way on a large, busy cluster. The 410's own token, which goes on
  at the latest version (k8s.io/apiserver pkg/storage/etcd3/errors.go), is not used: it gives
  an inconsistent list, and the watch must start from one consistent version. This is logged as
  a warning, counted in `expired_lists` and handed to `on_list_expired` (a metric).
- The watch starts from the list's resourceVersion (the first page's, as the pager records it),
  asks for bookmarks, runs in bounded windows and resumes from the last resourceVersion seen.
  410 Expired/Gone means the history is gone: relist at once (reflector.go `isExpiredError`).
- Any other failure backs off (`core.backoff.Backoff`) and ends in a fresh list: a relist is a
  full resync of the caller's state, so a missed event costs a late fix, never a wrong one.
- 401/403 are logged as warnings naming the resource, and every failure is handed to
  `on_error`, so the caller can count it in a metric, emit an Event or drop readiness. The log
  is rate-limited like every other repeated failure (reporting.py): the first failure of a
  streak is a warning, then at most one every `log_interval_s` saying how many came between.
- Every request has a client-side timeout, and every watch window a server-side one, from one
  `kube_settings.WatchingSettings`: a list page `request_timeout_s`; a watch window
  `timeoutSeconds=server_timeout_s`, `connect_timeout_s` to connect and `client_timeout_s` per
  read (the server ends the window first); failures back off as it says. Give it a client from
  `kube_attempts.single_attempt`: urllib3 otherwise retries a timed-out GET three times
  (kubernetes.client.Configuration leaves `retries` None), and one timeout becomes four.

Objects are the JSON dicts the API server sends (camelCase keys), for built-in and custom
resources alike: no client model objects are built, which keeps large lists cheap.

Usage (the caller owns the state and its lock)::

    def replace(items: Iterator[dict]) -> None:   # consume every item, then swap
        fresh = {item["metadata"]["name"]: item for item in items}
        with lock:
            state.clear(); state.update(fresh)

    def apply(kind: str, obj: dict) -> None:      # ADDED / MODIFIED / DELETED
        ...

    lw = ListWatch("CiliumNodes", api.list_cluster_custom_object,
                   args=("cilium.io", "v2", "ciliumnodes"),
                   on_list=replace, on_event=apply, on_error=count_failure,
                   label_selector="eks.amazonaws.com/compute-type=hybrid")
    threading.Thread(target=lw.run, args=(stop,), daemon=True).start()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import watch
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.kube_settings import CLIENT_DEFAULTS, WatchingSettings

log = logging.getLogger(__name__)

#: client-go's pager default (tools/pager/pager.go `defaultPageSize`).
DEFAULT_PAGE_SIZE = 500
HTTP_GONE = 410
HTTP_DENIED = frozenset({401, 403})

Item = dict[str, Any]


@dataclass(frozen=True)
class WatchFailure:
    """One failed list or watch attempt, as handed to `on_error`."""

    what: str
    status: int | None  # the HTTP status; None for transport errors and timeouts
    message: str

    @property
    def denied(self) -> bool:
        """401/403: credentials or RBAC, which no retry will fix on its own."""
        return self.status in HTTP_DENIED


class ListIncompleteError(Exception):
    """`on_list` returned before consuming every page: its state would miss objects."""


def _ignore(_failure: WatchFailure) -> None:
    return None


class ListWatch:
    """Keeps a caller's state in step with one kind of object: a paged list, then a watch.

    `list_fn` is the official client's list method (e.g. `CustomObjectsApi
    .list_cluster_custom_object`, `CoordinationV1Api.list_namespaced_lease`) and `args` its
    positional arguments; the same method serves the watch. Callbacks run on the thread that
    calls `run`:

    - `on_list(items)` after every (re)list: an iterator over every object, fetched page by page.
      Consume it fully, then replace your state; if a page fails, the iterator raises and your
      old state must stay as it was.
    - `on_event(type, obj)` for every ADDED, MODIFIED and DELETED event (bookmarks only move
      the resourceVersion).
    - `on_error(failure)` for every failed attempt, before the back-off wait.
    - `on_list_expired()` when a paged list expired midway (410) and starts over unpaged;
      `on_list` is then called again with the full list (the expired one raised in it).
    - `on_page()` once `on_list` has taken every item of a page that is not the last, before
      the next page is asked for (so the caller can use a page while the next one comes).
    """

    def __init__(
        self,
        what: str,
        list_fn: Callable[..., Any],
        *,
        on_list: Callable[[Iterator[Item]], None],
        on_event: Callable[[str, Item], None],
        on_error: Callable[[WatchFailure], None] = _ignore,
        on_list_expired: Callable[[], None] = lambda: None,
        on_page: Callable[[], None] = lambda: None,
        args: tuple[Any, ...] = (),
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        settings: WatchingSettings = CLIENT_DEFAULTS,
        log_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._log_interval_s = log_interval_s
        self._clock = clock
        self._last_warning = float("-inf")
        self._unlogged = 0
        self._list_fn = list_fn
        self._args = args
        self._on_list = on_list
        self._on_event = on_event
        self._on_error = on_error
        self._on_list_expired = on_list_expired
        self._on_page = on_page
        self._selectors: dict[str, str] = {}
        if label_selector:
            self._selectors["label_selector"] = label_selector
        if field_selector:
            self._selectors["field_selector"] = field_selector
        self._page_size = page_size
        self.settings = settings
        self._backoff = settings.reconnect_backoff()
        self._synced = threading.Event()
        self.resource_version: str | None = None
        #: Completed lists, 410 answers, pages fetched, failed attempts since the last success.
        self.relists = 0
        self.expired = 0
        #: Paged lists that expired midway and were done again as one unpaged request.
        self.expired_lists = 0
        self.pages = 0
        self.consecutive_failures = 0
        self.last_failure: WatchFailure | None = None
        #: time.monotonic() of the last successful list, event or watch window.
        self.last_progress: float | None = None

    @property
    def synced(self) -> bool:
        """True once a list has completed (the state reflects the cluster, possibly late)."""
        return self._synced.is_set()

    @property
    def healthy(self) -> bool:
        """Synced and the last attempt succeeded."""
        return self.synced and self.consecutive_failures == 0

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def run(self, stop: threading.Event) -> None:
        """List, then follow, until `stop`."""
        self.follow(stop, listed=False)

    def follow(self, stop: threading.Event, *, listed: bool = True) -> None:
        """Watch from `resource_version` until `stop`; relist at once after 410 (with a back-off
        if 410s come in a row), back off and relist after any other failure."""
        need_list = not listed
        gone_in_a_row = 0
        while not stop.is_set():
            try:
                if need_list:
                    self.list()
                    need_list = False
                self.watch_once(stop)
                gone_in_a_row = 0
                self._succeeded()
            except ApiException as exc:
                need_list = True
                if exc.status == HTTP_GONE:
                    self.expired += 1
                    gone_in_a_row += 1
                    log.info("%s watch expired (410): relisting", self.what)
                    if gone_in_a_row > 1:
                        stop.wait(self._backoff.next_delay())
                    continue
                self._failed(stop, exc.status, f"{exc.status} {exc.reason}")
            except Exception as exc:  # transport errors, timeouts, malformed answers
                need_list = True
                self._failed(stop, None, repr(exc))

    def list(self) -> None:
        """One complete paged list handed to `on_list`; then watch from its resourceVersion.

        A page after the first answered 410 Expired restarts the list as one unpaged request
        (client-go's pager fallback); any other failure raises."""
        listing = _Listing()
        try:
            self._on_list(self._items(listing, self._page_size))
        except ApiException as exc:
            if exc.status != HTTP_GONE or not listing.continuing:
                raise
            self.expired_lists += 1
            log.warning(
                "%s: the paged list expired after %d page(s) (410: the API server compacted its "
                "storage past the list's version between two pages); listing again in one "
                "unpaged request",
                self.what,
                listing.pages,
            )
            try:
                self._on_list_expired()
            except Exception:  # a reporting bug must not stop the list
                log.exception("%s: on_list_expired callback failed", self.what)
            listing = _Listing()
            self._on_list(self._items(listing, 0))
        if not listing.complete:
            raise ListIncompleteError(f"{self.what}: on_list stopped before the last page")
        self.resource_version = listing.resource_version
        self.relists += 1
        self._synced.set()
        self._succeeded()
        log.debug(
            "listed %d %s in %d page(s) at resourceVersion %s",
            listing.items,
            self.what,
            listing.pages,
            self.resource_version,
        )

    def watch_once(self, stop: threading.Event) -> None:
        """One watch window from `resource_version` (raises ApiException 410 when expired)."""
        stream = watch.Watch()
        try:
            for event in stream.stream(
                self._list_fn,
                *self._args,
                **self._selectors,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.settings.server_timeout_s,
                _request_timeout=self.settings.watch_request_timeout,
            ):
                kind = str(event.get("type"))
                obj = event.get("raw_object")  # the JSON dict, also for built-in kinds
                if not isinstance(obj, dict):
                    continue
                if kind != "BOOKMARK":
                    self._on_event(kind, obj)
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.resource_version = str(version)
                self._succeeded()
                if stop.is_set():
                    break
        finally:
            stream.stop()

    def _items(self, listing: _Listing, page_size: int) -> Iterator[Item]:
        token: str | None = None
        while True:
            listing.continuing = token is not None
            page = self._get_page(token, page_size)
            meta = page.get("metadata") or {}
            if listing.resource_version is None:
                listing.resource_version = str(meta.get("resourceVersion") or "") or None
            items = page.get("items") or []
            del page
            listing.pages += 1
            self.pages += 1
            listing.items += len(items)
            yield from items
            token = meta.get("continue") or None
            if token is None:
                listing.complete = True
                return
            self._on_page()

    def _get_page(self, token: str | None, page_size: int) -> Item:
        params: dict[str, Any] = dict(self._selectors)
        if page_size > 0:
            params["limit"] = page_size
        if token:
            params["_continue"] = token
        response = self._list_fn(
            *self._args,
            **params,
            _preload_content=False,
            _request_timeout=self.settings.request_timeout_s,
        )
        try:
            page = json.loads(response.data)
        finally:
            response.release_conn()
        if not isinstance(page, dict):
            raise ValueError(f"{self.what}: list answer is not an object")
        return page

    def _succeeded(self) -> None:
        self.last_progress = time.monotonic()
        if self.consecutive_failures:
            self._last_warning = float("-inf")  # the next streak's first failure is logged
            self._unlogged = 0
            log.info(
                "%s list/watch works again after %d failed attempt(s)",
                self.what,
                self.consecutive_failures,
            )
            self.consecutive_failures = 0
        self._backoff.reset()

    def _failed(self, stop: threading.Event, status: int | None, message: str) -> None:
        failure = WatchFailure(self.what, status, message)
        self.consecutive_failures += 1
        self.last_failure = failure
        delay = self._backoff.next_delay()
        now = self._clock()
        if now - self._last_warning < self._log_interval_s:
            self._unlogged += 1
            log.debug("%s list/watch failed: %s; retrying in %.1f s", self.what, message, delay)
        else:
            more = f" ({self._unlogged} more since the last report)" if self._unlogged else ""
            self._last_warning, self._unlogged = now, 0
            if failure.denied:
                log.warning(
                    "%s list/watch denied (%s): check the credentials and RBAC (list and watch); "
                    "retrying in %.1f s%s",
                    self.what,
                    message,
                    delay,
                    more,
                )
            else:
                log.warning(
                    "%s list/watch failed: %s; retrying in %.1f s%s",
                    self.what,
                    message,
                    delay,
                    more,
                )
        try:
            self._on_error(failure)
        except Exception:  # a reporting bug must not stop the watch
            log.exception("%s: on_error callback failed", self.what)
        stop.wait(delay)


@dataclass
class _Listing:
    resource_version: str | None = None
    pages: int = 0
    items: int = 0
    complete: bool = False
    continuing: bool = False  # the request in flight carries a continue token
