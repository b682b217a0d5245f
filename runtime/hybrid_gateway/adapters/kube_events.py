"""Kubernetes Events, so operators see skipped nodes, leadership changes and refusals in
`kubectl describe` and `kubectl get events`, not only in the daemon's log.

Events are best effort: a failure to record one is logged and never stops the caller. Every
caller records through `AsyncEvents`, so a slow or partitioned API server delays only the Event
thread, never a loop that has a deadline (the elector, leader work, the data plane). Events
raised while the API server does not answer (often the very failures an operator must see) are
kept, bounded, and sent once it answers, with their first and last time and count.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kubernetes import client

from hybrid_gateway.core.backoff import Backoff

log = logging.getLogger(__name__)

COMPONENT = "eks-hybrid-nodes-gateway"


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about. Cluster-scoped objects have namespace None."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None


#: The API server accepts an Event about a cluster-scoped object (a CiliumNode, the
#: CiliumVTEPConfig) only in this namespace; any other is rejected with 422.
CLUSTER_SCOPED_EVENTS_NAMESPACE = "default"


#: Client-side timeout of one Event write: a hung connection must not hold the Event thread.
EVENT_TIMEOUT_S = 5.0


class EventSink(Protocol):
    """Anything that records Events: `EventRecorder` (synchronous) or `AsyncEvents`."""

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None: ...


class EventRecorder:
    """Writes core/v1 Events next to the object they are about (blocking, with a timeout)."""

    def __init__(
        self, api: client.CoreV1Api, *, host: str | None, timeout_s: float = EVENT_TIMEOUT_S
    ) -> None:
        self._api = api
        self._host = host
        self._timeout_s = timeout_s

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        now = dt.datetime.now(dt.UTC)
        try:
            self.record(obj, reason, message, warning=warning, first=now, last=now, count=1)
        except Exception as exc:  # best effort by design: never fail the caller
            log.warning("could not record event %s on %s/%s: %s", reason, obj.kind, obj.name, exc)

    def record(
        self,
        obj: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool,
        first: dt.datetime,
        last: dt.datetime,
        count: int,
    ) -> None:
        """One Event that happened `count` times from `first` to `last` (raises on failure):
        the aggregated form kube's own recorder writes (client-go tools/record
        events_cache.go: count, firstTimestamp, lastTimestamp)."""
        namespace = obj.namespace or CLUSTER_SCOPED_EVENTS_NAMESPACE
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{obj.name}.{uuid.uuid4().hex[:16]}", namespace=namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=obj.api_version,
                kind=obj.kind,
                name=obj.name,
                namespace=obj.namespace,
                uid=obj.uid,
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=COMPONENT, host=self._host),
            first_timestamp=first,
            last_timestamp=last,
            count=count,
            reporting_component=COMPONENT,
            reporting_instance=self._host or "",
        )
        self._api.create_namespaced_event(namespace, event, _request_timeout=self._timeout_s)


class RetryableSink(Protocol):
    """An Event writer that raises when the API server did not take the Event."""

    def record(
        self,
        obj: ObjectRef,
        reason: str,
        message: str,
        *,
        warning: bool,
        first: dt.datetime,
        last: dt.datetime,
        count: int,
    ) -> None: ...


Key = tuple[ObjectRef, str, str, bool]


@dataclass
class _Pending:
    first: dt.datetime
    last: dt.datetime
    count: int = 1


def _retryable(exc: Exception) -> bool:
    """Worth keeping for later: no answer, a server error or throttling. A 4xx answer (denied,
    invalid) will not change by waiting: that Event is logged and dropped."""
    status = getattr(exc, "status", None)
    return not isinstance(status, int) or status >= 500 or status in {429, 0}


class AsyncEvents:
    """Records Events from a bounded buffer on its own thread (`run`).

    `emit` never blocks. An Event equal to one still waiting (same object, reason, message and
    type) is folded into it: its count goes up and its last time moves. When the API server
    does not answer, Events are kept (at most `capacity` distinct ones; beyond that they are
    dropped, counted and logged) and retried with a back-off, then sent with their first and
    last time and count. Stopping never blocks on a full buffer: after `stop`, `run` records
    what is waiting for at most `flush_s` more, then returns and drops the rest.
    """

    def __init__(
        self,
        recorder: EventSink | None,
        capacity: int = 100,
        *,
        flush_s: float = 2.0,
        idle_beat_s: float = 1.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._recorder = recorder
        self._capacity = capacity
        self._pending: OrderedDict[Key, _Pending] = OrderedDict()
        self._cond = threading.Condition()
        self._flush_s = flush_s
        self._idle_beat_s = idle_beat_s
        self._retry = Backoff(initial_s=retry_initial_s, maximum_s=retry_max_s)
        self._wall_clock = wall_clock
        self._failing_since: float | None = None
        self._failed_attempts = 0
        self.heartbeat = time.monotonic()
        self.dropped = 0

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        if self._recorder is None:
            return
        key = (obj, reason, message, warning)
        now = self._wall_clock()
        with self._cond:
            pending = self._pending.get(key)
            if pending is not None:
                pending.count += 1
                pending.last = now
                return
            if len(self._pending) >= self._capacity:
                self.dropped += 1
                full = True
            else:
                self._pending[key] = _Pending(now, now)
                full = False
                self._cond.notify()
        if full:
            log.warning("event buffer full, dropped %s: %s", reason, message)

    @property
    def waiting(self) -> int:
        """Distinct Events kept for sending."""
        with self._cond:
            return len(self._pending)

    def run(self, stop: threading.Event) -> None:
        """Record waiting Events until `stop`, then flush for at most `flush_s`."""
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            if self._record_next(self._idle_beat_s) is False:
                stop.wait(self._retry.next_delay())  # the API server did not answer: later
        deadline = time.monotonic() + self._flush_s
        while time.monotonic() < deadline and self._record_next(0.0):
            pass
        if self.waiting:
            log.warning("stopped with %d Events unrecorded", self.waiting)

    def _record_next(self, wait_s: float) -> bool | None:
        """Send the oldest waiting Event: True if sent (or dropped for good), False if kept
        for a retry, None if nothing was waiting."""
        with self._cond:
            if not self._pending and wait_s > 0:
                self._cond.wait(wait_s)
            if not self._pending:
                return None
            key, pending = self._pending.popitem(last=False)
        obj, reason, message, warning = key
        recorder = self._recorder
        if recorder is None:
            return True
        record = getattr(recorder, "record", None)
        if record is None:  # a plain sink: best effort, nothing to retry
            recorder.emit(obj, reason, message, warning=warning)
            return True
        try:
            record(
                obj,
                reason,
                message,
                warning=warning,
                first=pending.first,
                last=pending.last,
                count=pending.count,
            )
        except Exception as exc:
            if not _retryable(exc):
                log.warning(
                    "could not record event %s on %s/%s: %s", reason, obj.kind, obj.name, exc
                )
                return True
            self._keep(key, pending)
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _keep(self, key: Key, pending: _Pending) -> None:
        """Put an Event that could not be sent back at the head, folded into a newer copy."""
        with self._cond:
            newer = self._pending.pop(key, None)
            if newer is not None:
                pending.count += newer.count
                pending.last = newer.last
            self._pending[key] = pending
            self._pending.move_to_end(key, last=False)
            if len(self._pending) > self._capacity:
                self._pending.popitem(last=True)
                self.dropped += 1

    def _failed(self, exc: Exception) -> None:
        self._failed_attempts += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "could not record Events (%d kept, retried until the API server answers): %s",
                self.waiting,
                exc,
            )
        else:
            log.debug("could not record Events: %s", exc)

    def _recovered(self) -> None:
        self._retry.reset()
        if self._failing_since is not None:
            log.info(
                "recording Events again after %.1fs and %d failed attempt(s)",
                time.monotonic() - self._failing_since,
                self._failed_attempts,
            )
            self._failing_since = None
            self._failed_attempts = 0
