"""The CiliumVTEPConfig object (cilium.io/v2, cluster-scoped) through the official client.

Writes are leader work: each HTTP attempt is preceded by the caller's lease check, and the
client below makes no attempt of its own (adapters/kube_attempts.py), so a write cannot leave
after the lease lapsed by way of a hidden urllib3 retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_watch import ListWatch, WatchFailure
from hybrid_gateway.core.vtep import has_owner, namespace_owner, with_owner
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


#: After a failed read of the owner Namespace, writes go without an owner for this long.
OWNER_RETRY_S = 60.0


class VtepStore:
    """The object, read and written. With `owner_namespace`, every write makes that Namespace
    (the gateway's own) the object's owner (core/vtep.py `namespace_owner`), and `owned` says
    whether an object already names it, so a writer also adopts an object written before
    (by an older gateway or the reference's)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        settings: WatchingSettings,
        name: str = VTEP_CONFIG_NAME,
        owner_namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # one HTTP attempt per call, reads and watches included (kube_attempts.py)
        attempts = single_attempt(api_client)
        self._api = client.CustomObjectsApi(attempts)
        self._core = client.CoreV1Api(attempts)
        self._writer = self._api
        self._settings = settings
        self._timeout = settings.request_timeout_s
        self.name = name
        self._owner_namespace = owner_namespace
        self._owner: dict[str, str] | None = None
        self._owner_retry_at = -float("inf")
        self._clock = clock

    def owner(self) -> dict[str, str] | None:
        """The owner reference to write (None: no owner namespace, or it cannot be read now;
        the failure is logged and the read tried again after OWNER_RETRY_S)."""
        if self._owner is not None or self._owner_namespace is None:
            return self._owner
        if self._clock() < self._owner_retry_at:
            return None
        try:
            namespace = self._core.read_namespace(
                self._owner_namespace, _request_timeout=self._timeout
            )
            uid = namespace.metadata.uid if namespace.metadata is not None else None
            if not uid:
                raise ValueError("no metadata.uid")
        except Exception as exc:
            self._owner_retry_at = self._clock() + OWNER_RETRY_S
            why = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else str(exc)
            log.warning(
                "cannot read Namespace %s (%s): CiliumVTEPConfig %s written without an owner, "
                "so uninstalling the gateway will not remove it (grant get on that namespace)",
                self._owner_namespace,
                why,
                self.name,
            )
            return None
        self._owner = namespace_owner(self._owner_namespace, str(uid))
        return self._owner

    def owned(self, observed: dict[str, Any] | None) -> bool:
        """False only when `observed` lacks an owner this store would write."""
        owner = self.owner()
        return owner is None or observed is None or has_owner(observed, owner)

    def _owned_body(self, body: dict[str, Any]) -> dict[str, Any]:
        owner = self.owner()
        return body if owner is None else with_owner(body, owner)

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
        body = self._owned_body(body)
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
        body = self._owned_body(body)
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
            settings=self._settings,
        )
