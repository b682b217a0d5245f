"""The leader Lease (coordination.k8s.io/v1) through the official client.

Every write carries the resourceVersion we last read, so two replicas racing for the same
expired lease cannot both win: the API server answers the loser with 409 Conflict.
Every call has a client-side timeout: a hung connection must not keep the elector from noticing
that its leadership ran out.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Callable

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from hybrid_gateway.core.backoff import Backoff
from hybrid_gateway.core.lease import LeaseRecord

log = logging.getLogger(__name__)


class LeaseConflictError(Exception):
    """Someone else wrote the Lease since we read it (409), or created it first."""


class LeaseApiError(Exception):
    """The API server could not be reached or refused the call for another reason."""


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
    def __init__(self, api_client: client.ApiClient, namespace: str, name: str) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self._acquire_time: dt.datetime | None = None

    def _remember(self, lease: client.V1Lease) -> LeaseRecord:
        acquired = lease.spec.acquire_time if lease.spec else None
        self._acquire_time = acquired if isinstance(acquired, dt.datetime) else None
        return _record(lease)

    def get(self, timeout_s: float) -> LeaseRecord | None:
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise LeaseApiError(
                f"read Lease {self.namespace}/{self.name}: {exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:  # urllib3 timeouts, connection errors
            raise LeaseApiError(f"read Lease {self.namespace}/{self.name}: {exc}") from exc
        return self._remember(lease)

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
        now = dt.datetime.now(dt.UTC)
        transitions = 0
        acquire_time: dt.datetime | None = now
        if previous is not None:
            transitions = previous.transitions + (1 if holder and previous.holder != holder else 0)
            if holder and previous.holder == holder:
                acquire_time = self._acquire_time or now  # a renewal keeps the acquisition time
        spec = client.V1LeaseSpec(
            holder_identity=holder,
            lease_duration_seconds=max(1, math.ceil(lease_duration_s)),
            renew_time=now,
            lease_transitions=transitions,
        )
        if holder:
            spec.acquire_time = acquire_time
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                resource_version=previous.resource_version if previous else None,
            ),
            spec=spec,
        )
        try:
            if previous is None:
                lease = self._api.create_namespaced_lease(
                    self.namespace, body, _request_timeout=timeout_s
                )
            else:
                lease = self._api.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=timeout_s
                )
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflictError(f"Lease {self.namespace}/{self.name} changed") from exc
            raise LeaseApiError(
                f"write Lease {self.namespace}/{self.name}: {exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:
            raise LeaseApiError(f"write Lease {self.namespace}/{self.name}: {exc}") from exc
        return self._remember(lease)

    def watch(
        self,
        stop: threading.Event,
        on_seen: Callable[[LeaseRecord | None], None],
        *,
        timeout_s: float,
        window_s: float = 30.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        """Call `on_seen(record)` for every state of our Lease (None: deleted) until `stop`.

        List (field selector on the name) then watch from the listed resourceVersion, in bounded
        windows. Errors, timeouts and 410 Gone back off (doubling up to `max_backoff_s`) and
        start over from a fresh list, which is passed to `on_seen` too, so a state missed while
        disconnected is seen on reconnect. It only speeds the elector up; polling stays.
        """
        selector = f"metadata.name={self.name}"
        backoff = Backoff(initial_s=min(0.2, max_backoff_s), maximum_s=max_backoff_s)
        warned = False
        while not stop.is_set():
            watcher = watch.Watch()
            try:
                listed = self._api.list_namespaced_lease(
                    self.namespace, field_selector=selector, _request_timeout=timeout_s
                )
                items = [lease for lease in listed.items or [] if lease.metadata.name == self.name]
                on_seen(_record(items[0]) if items else None)
                backoff.reset()
                for event in watcher.stream(
                    self._api.list_namespaced_lease,
                    self.namespace,
                    field_selector=selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=max(1, int(window_s)),
                    _request_timeout=window_s + timeout_s,
                ):
                    if stop.is_set():
                        break
                    lease = event.get("object")
                    if not isinstance(lease, client.V1Lease) or lease.metadata.name != self.name:
                        continue
                    on_seen(None if event.get("type") == "DELETED" else _record(lease))
            except Exception as exc:  # reconnect after a pause; polling covers the gap
                if isinstance(exc, ApiException) and exc.status == 403 and not warned:
                    warned = True
                    log.warning(
                        "cannot watch Lease %s/%s (%s): the standby notices a release only "
                        "when it polls; grant list and watch on this Lease",
                        self.namespace,
                        self.name,
                        exc.reason,
                    )
                delay = backoff.next_delay()
                log.debug("Lease watch restarting in %.1fs: %s", delay, exc)
                stop.wait(delay)
            finally:
                watcher.stop()
