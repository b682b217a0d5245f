"""Kubernetes Events, so operators see skipped nodes, leadership changes and refusals in
`kubectl describe` and `kubectl get events`, not only in the daemon's log.

Events are best effort: a failure to record one is logged and never stops the caller. Every
caller records through `AsyncEvents`, so a slow or partitioned API server delays only the Event
thread, never a loop that has a deadline (the elector, leader work, the data plane).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from kubernetes import client

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
        namespace = obj.namespace or CLUSTER_SCOPED_EVENTS_NAMESPACE
        now = dt.datetime.now(dt.UTC)
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
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=COMPONENT,
            reporting_instance=self._host or "",
        )
        try:
            self._api.create_namespaced_event(namespace, event, _request_timeout=self._timeout_s)
        except Exception as exc:  # best effort by design: never fail the caller
            log.warning("could not record event %s on %s/%s: %s", reason, obj.kind, obj.name, exc)


class AsyncEvents:
    """Records Events from a bounded queue on its own thread (`run`).

    `emit` never blocks: when the queue is full (the API server is slow or unreachable) the Event
    is dropped, counted and logged. Stopping never blocks on a full queue either: after `stop`,
    `run` records what is queued for at most `flush_s` more, then returns and drops the rest.
    """

    def __init__(
        self,
        recorder: EventSink | None,
        capacity: int = 100,
        *,
        flush_s: float = 2.0,
        idle_beat_s: float = 1.0,
    ) -> None:
        self._recorder = recorder
        self._queue: queue.Queue[tuple[ObjectRef, str, str, bool]] = queue.Queue(capacity)
        self._flush_s = flush_s
        self._idle_beat_s = idle_beat_s
        self.heartbeat = time.monotonic()
        self.dropped = 0

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        if self._recorder is None:
            return
        try:
            self._queue.put_nowait((obj, reason, message, warning))
        except queue.Full:
            self.dropped += 1
            log.warning("event queue full, dropped %s: %s", reason, message)

    def run(self, stop: threading.Event) -> None:
        """Record queued Events until `stop`, then flush for at most `flush_s`."""
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            self._record_next(self._idle_beat_s)
        deadline = time.monotonic() + self._flush_s
        while time.monotonic() < deadline and self._record_next(0.0):
            pass
        if not self._queue.empty():
            log.warning("stopped with %d Events unrecorded", self._queue.qsize())

    def _record_next(self, wait_s: float) -> bool:
        try:
            if wait_s > 0:
                obj, reason, message, warning = self._queue.get(timeout=wait_s)
            else:
                obj, reason, message, warning = self._queue.get_nowait()
        except queue.Empty:
            return False
        if self._recorder is not None:
            self._recorder.emit(obj, reason, message, warning=warning)
        return True
