"""The leader Lease (coordination.k8s.io/v1) through the official client.

Every write carries the resourceVersion we last read, so two replicas racing for the same
expired lease cannot both win: the API server answers the loser with 409 Conflict.
Every call has a client-side timeout: a hung connection must not keep the elector from noticing
that its leadership ran out. Reads and writes make one HTTP attempt each (kube_attempts.py): a
hidden urllib3 retry of a timed-out PUT would stretch a renewal past its timeout.

Writes update the object that was read, so fields we do not manage (labels, annotations,
`spec.preferredHolder`, `spec.strategy`) survive, and write renewTime/acquireTime as
metav1.MicroTime strings with exactly six fraction digits: the API server parses them with
Go's RFC3339Micro layout, which requires all six, while the client would serialize a datetime
with `isoformat()`, which drops the fraction when the microseconds are 0.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_watch import ListWatch, WatchFailure
from hybrid_gateway.core.lease import LeaseRecord

log = logging.getLogger(__name__)


class LeaseConflictError(Exception):
    """Someone else wrote the Lease since we read it (409), or created it first."""


class LeaseApiError(Exception):
    """The API server could not be reached or refused the call for another reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status; None for timeouts and connection errors


class LeaseGoneError(LeaseApiError):
    """An update found no Lease (404): it was deleted, or its namespace was. (kube-apiserver
    answers a renewal of a deleted Lease with 409 instead, as the uid in the body is a
    precondition; the test server does the same.)"""


def micro_time(when: dt.datetime) -> str:
    """metav1.MicroTime on the wire: UTC, six fraction digits, "Z"."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: client.V1Lease) -> LeaseRecord:
    spec = lease.spec or client.V1LeaseSpec()
    renew = spec.renew_time
    return LeaseRecord(
        holder=spec.holder_identity or None,
        lease_duration_s=float(spec.lease_duration_seconds or 0),
        renew_time=renew.isoformat()
        if isinstance(renew, dt.datetime)
        else (str(renew) if renew else None),
        transitions=int(spec.lease_transitions or 0),
        resource_version=str(lease.metadata.resource_version or ""),
    )


class LeaseStore:
    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        *,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        labels: Mapping[str, str] | None = None,
        owner: client.V1OwnerReference | None = None,
    ) -> None:
        self._labels = dict(labels or {})  # kept on every write: a group watch selects them
        self._owner = owner  # set when the Lease is created: garbage-collected with its owner
        self._once = client.CoordinationV1Api(single_attempt(api_client))
        self.namespace = namespace
        self.name = name
        self._wall_clock = wall_clock
        self._last: client.V1Lease | None = None  # the object as last read or written

    def _remember(self, lease: client.V1Lease) -> LeaseRecord:
        self._last = lease
        return _record(lease)

    def get(self, timeout_s: float) -> LeaseRecord | None:
        try:
            lease = self._once.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                self._last = None
                return None
            raise LeaseApiError(
                f"read Lease {self.namespace}/{self.name}: {exc.status} {exc.reason}", exc.status
            ) from exc
        except Exception as exc:  # urllib3 timeouts, connection errors
            raise LeaseApiError(f"read Lease {self.namespace}/{self.name}: {exc}") from exc
        return self._remember(lease)

    def _body(self, previous: LeaseRecord | None) -> client.V1Lease:
        """The object to write: a copy of the one `previous` was read from, else a new one."""
        last = self._last
        if (
            previous is not None
            and last is not None
            and str(last.metadata.resource_version or "") == previous.resource_version
        ):
            body = copy.deepcopy(last)
            body.spec = body.spec or client.V1LeaseSpec()
            if self._labels:
                body.metadata.labels = {**(body.metadata.labels or {}), **self._labels}
            return body
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                resource_version=previous.resource_version if previous else None,
                labels=dict(self._labels) or None,
                owner_references=[self._owner] if self._owner and previous is None else None,
            ),
            spec=client.V1LeaseSpec(),
        )

    def write(
        self,
        previous: LeaseRecord | None,
        holder: str | None,
        lease_duration_s: float,
        timeout_s: float,
    ) -> LeaseRecord:
        """Create the Lease (previous None) or update it at `previous.resource_version`.

        `holder` None releases it. The duration is written in whole seconds, rounded UP, so
        others never wait less than we assume.
        """
        now = micro_time(self._wall_clock())
        body = self._body(previous)
        spec = body.spec
        renewal = previous is not None and bool(holder) and previous.holder == holder
        transitions = 0
        if previous is not None:
            transitions = previous.transitions + (1 if holder and previous.holder != holder else 0)
        spec.holder_identity = holder
        spec.lease_duration_seconds = max(1, math.ceil(lease_duration_s))
        spec.renew_time = now
        spec.lease_transitions = transitions
        if holder:
            kept = spec.acquire_time if renewal else None  # a renewal keeps the acquisition time
            spec.acquire_time = micro_time(kept) if isinstance(kept, dt.datetime) else (kept or now)
        else:
            spec.acquire_time = None
        try:
            if previous is None:
                lease = self._once.create_namespaced_lease(
                    self.namespace, body, _request_timeout=timeout_s
                )
            else:
                lease = self._once.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=timeout_s
                )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflictError(f"Lease {self.namespace}/{self.name} changed") from exc
            error = LeaseGoneError if exc.status == 404 and previous is not None else LeaseApiError
            raise error(
                f"write Lease {self.namespace}/{self.name}: {exc.status} {exc.reason}", exc.status
            ) from exc
        except Exception as exc:
            raise LeaseApiError(f"write Lease {self.namespace}/{self.name}: {exc}") from exc
        return self._remember(lease)


def record_from_json(lease: dict[str, Any]) -> LeaseRecord:
    """The record of a Lease as the watch delivers it (JSON, camelCase). The renew time is
    normalised to the form `_record` gives it, so a record read and the same one watched
    compare equal."""
    spec = lease.get("spec") or {}
    renew = spec.get("renewTime")
    if renew:
        renew = dt.datetime.fromisoformat(str(renew).replace("Z", "+00:00")).isoformat()
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        lease_duration_s=float(spec.get("leaseDurationSeconds") or 0),
        renew_time=renew or None,
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
    )


def lease_watch(
    api_client: client.ApiClient,
    namespace: str,
    name: str,
    *,
    on_seen: Callable[[LeaseRecord | None], None],
    on_listed: Callable[[], None] = lambda: None,
    on_error: Callable[[WatchFailure], None] = lambda failure: None,
    settings: WatchingSettings,
) -> ListWatch:
    """A list-then-watch of our Lease: `on_seen(record)` for every state (None: deleted).

    Every (re)list passes the listed state to `on_seen` too, so a state missed while
    disconnected is seen on reconnect, then `on_listed()`. It only speeds the elector up;
    polling stays. Failures go to `on_error` (the caller reports them).
    """

    def on_list(items: Iterator[dict[str, Any]]) -> None:
        ours = [item for item in items if (item.get("metadata") or {}).get("name") == name]
        on_seen(record_from_json(ours[0]) if ours else None)
        on_listed()

    def on_event(kind: str, lease: dict[str, Any]) -> None:
        if (lease.get("metadata") or {}).get("name") == name:
            on_seen(None if kind == "DELETED" else record_from_json(lease))

    return ListWatch(
        f"Lease watch {namespace}/{name}",
        client.CoordinationV1Api(single_attempt(api_client)).list_namespaced_lease,
        args=(namespace,),
        field_selector=f"metadata.name={name}",
        on_list=on_list,
        on_event=on_event,
        on_error=on_error,
        settings=settings,
    )


def lease_record(lease: client.V1Lease) -> LeaseRecord:
    """The record of a Lease read through the client (a list item or a read)."""
    return _record(lease)
