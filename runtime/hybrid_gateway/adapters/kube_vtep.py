"""The CiliumVTEPConfig object (cilium.io/v2, cluster-scoped) through the official client.

Writes are leader work: each HTTP attempt is preceded by the caller's lease check, and the
client below makes no attempt of its own (adapters/kube_attempts.py), so a write cannot leave
after the lease lapsed by way of a hidden urllib3 retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_watch import ListWatch, WatchFailure
from hybrid_gateway.core.backoff import Backoff
from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
)

log = logging.getLogger(__name__)


class VtepConflictError(Exception):
    """The object changed (or appeared) since we read it."""


class VtepApiError(Exception):
    """The API server could not be reached or refused the call."""


class VtepWriteNotAllowedError(Exception):
    """The lease check failed before an attempt: nothing was sent."""


WRITE_ATTEMPTS = 3


class VtepStore:
    def __init__(
        self, api_client: client.ApiClient, *, timeout_s: float, name: str = VTEP_CONFIG_NAME
    ) -> None:
        # one HTTP attempt per call, reads and watches included (kube_attempts.py)
        self._api = client.CustomObjectsApi(single_attempt(api_client))
        self._writer = self._api
        self._timeout = timeout_s
        self.name = name

    def get(self) -> dict[str, Any] | None:
        try:
            obj = self._api.get_cluster_custom_object(
                CILIUM_GROUP,
                CILIUM_VERSION,
                VTEP_CONFIGS_PLURAL,
                self.name,
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise VtepApiError(
                f"read CiliumVTEPConfig {self.name}: {exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:
            raise VtepApiError(f"read CiliumVTEPConfig {self.name}: {exc}") from exc
        return dict(obj)

    def create(self, body: dict[str, Any], guard: Callable[[], bool]) -> None:
        self._write(
            guard,
            lambda: self._writer.create_cluster_custom_object(
                CILIUM_GROUP,
                CILIUM_VERSION,
                VTEP_CONFIGS_PLURAL,
                body,
                _request_timeout=self._timeout,
            ),
        )

    def replace(self, body: dict[str, Any], guard: Callable[[], bool]) -> None:
        """Replace at the body's metadata.resourceVersion (409 if it changed meanwhile)."""
        self._write(
            guard,
            lambda: self._writer.replace_cluster_custom_object(
                CILIUM_GROUP,
                CILIUM_VERSION,
                VTEP_CONFIGS_PLURAL,
                self.name,
                body,
                _request_timeout=self._timeout,
            ),
        )

    def _write(self, guard: Callable[[], bool], call: Callable[[], object]) -> None:
        """Up to WRITE_ATTEMPTS attempts after connection errors, `guard` checked before each;
        an answer from the server (any status) ends it."""
        for attempt in range(WRITE_ATTEMPTS):
            if not guard():
                raise VtepWriteNotAllowedError(f"lease not valid: {self.name} write withheld")
            try:
                call()
                return
            except ApiException as exc:
                if exc.status == 409:
                    raise VtepConflictError(f"CiliumVTEPConfig {self.name} changed") from exc
                raise VtepApiError(
                    f"write CiliumVTEPConfig {self.name}: {exc.status} {exc.reason}: {exc.body}"
                ) from exc
            except Exception as exc:  # connection errors, timeouts: nothing or all was applied
                if attempt + 1 >= WRITE_ATTEMPTS:
                    raise VtepApiError(f"write CiliumVTEPConfig {self.name}: {exc}") from exc
                log.debug("CiliumVTEPConfig write attempt failed, retrying: %s", exc)

    def watcher(
        self,
        *,
        on_change: Callable[[str], None],
        on_listed: Callable[[], None] = lambda: None,
        on_error: Callable[[WatchFailure], None] = lambda failure: None,
        window_s: float = 30.0,
        max_backoff_s: float = 5.0,
    ) -> ListWatch:
        """A list-then-watch of our object: `on_change(event type)` for every change of it.

        A MODIFIED event that leaves `metadata.generation` as it was is a status write (the
        CRD has a status subresource, which the Cilium agents write: cilium/cilium
        pkg/k8s/apis/cilium.io/v2/vtep_types.go `+kubebuilder:subresource:status`, and the API
        server bumps a custom resource's generation only when something outside metadata and
        status changes: kubernetes apiextensions-apiserver
        pkg/registry/customresource/strategy.go `PrepareForUpdate`), so it is not passed on:
        it changes nothing the gateway writes. A missed event costs at most one window (the
        periodic resync repairs the rest); every (re)list calls `on_listed()`, every failure
        `on_error` (the caller reports it).
        """
        generation: list[object] = [None]  # of the object as last seen

        def on_list(items: Iterator[dict[str, Any]]) -> None:
            seen = None
            for item in items:  # the state lives in the API server: only its generation here
                seen = (item.get("metadata") or {}).get("generation")
            generation[0] = seen
            on_listed()

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            if meta.get("name") != self.name:
                return
            current = meta.get("generation")
            spec_unchanged = current is not None and current == generation[0]
            generation[0] = None if kind == "DELETED" else current
            if kind == "MODIFIED" and spec_unchanged:
                return
            on_change(kind)

        return ListWatch(
            f"CiliumVTEPConfig watch {self.name}",
            self._api.list_cluster_custom_object,
            args=(CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL),
            field_selector=f"metadata.name={self.name}",
            on_list=on_list,
            on_event=on_event,
            on_error=on_error,
            call_timeout_s=self._timeout,
            window_s=max(1, int(window_s)),
            backoff=Backoff(initial_s=min(0.2, max_backoff_s), maximum_s=max_backoff_s),
        )
