"""The CiliumVTEPConfig object (cilium.io/v2, cluster-scoped) through the official client."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

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


class VtepStore:
    def __init__(
        self, api_client: client.ApiClient, *, timeout_s: float, name: str = VTEP_CONFIG_NAME
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
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

    def create(self, body: dict[str, Any]) -> None:
        self._write(
            lambda: self._api.create_cluster_custom_object(
                CILIUM_GROUP,
                CILIUM_VERSION,
                VTEP_CONFIGS_PLURAL,
                body,
                _request_timeout=self._timeout,
            )
        )

    def replace(self, body: dict[str, Any]) -> None:
        """Replace at the body's metadata.resourceVersion (409 if it changed meanwhile)."""
        self._write(
            lambda: self._api.replace_cluster_custom_object(
                CILIUM_GROUP,
                CILIUM_VERSION,
                VTEP_CONFIGS_PLURAL,
                self.name,
                body,
                _request_timeout=self._timeout,
            )
        )

    def _write(self, call: Callable[[], object]) -> None:
        try:
            call()
        except ApiException as exc:
            if exc.status == 409:
                raise VtepConflictError(f"CiliumVTEPConfig {self.name} changed") from exc
            raise VtepApiError(
                f"write CiliumVTEPConfig {self.name}: {exc.status} {exc.reason}: {exc.body}"
            ) from exc
        except Exception as exc:
            raise VtepApiError(f"write CiliumVTEPConfig {self.name}: {exc}") from exc

    def watch(
        self,
        stop: threading.Event,
        on_change: Callable[[str], None],
        *,
        window_s: float = 30.0,
        max_backoff_s: float = 5.0,
        on_error: Callable[[Exception], None] = lambda exc: None,
        on_listed: Callable[[], None] = lambda: None,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        """Call `on_change(event_type)` for every event on our object until `stop`.

        Each watch window is bounded (server and client timeouts); errors back off (doubling up
        to `max_backoff_s`) and the watch restarts from a fresh list, so a missed event costs at
        most one window (the periodic resync repairs the rest). Every failure goes to `on_error`
        (the caller reports it), every successful list to `on_listed`; `beat` is called once per
        attempt and per event (liveness).
        """
        backoff = Backoff(initial_s=min(0.2, max_backoff_s), maximum_s=max_backoff_s)
        while not stop.is_set():
            beat()
            watcher = watch.Watch()
            try:
                listed = self._api.list_cluster_custom_object(
                    CILIUM_GROUP,
                    CILIUM_VERSION,
                    VTEP_CONFIGS_PLURAL,
                    _request_timeout=self._timeout,
                )
                version = str(listed.get("metadata", {}).get("resourceVersion", "")) or None
                on_listed()
                backoff.reset()
                for event in watcher.stream(
                    self._api.list_cluster_custom_object,
                    CILIUM_GROUP,
                    CILIUM_VERSION,
                    VTEP_CONFIGS_PLURAL,
                    resource_version=version,
                    timeout_seconds=max(1, int(window_s)),
                    _request_timeout=window_s + self._timeout,
                ):
                    beat()
                    if stop.is_set():
                        break
                    obj = event.get("object") or {}
                    name = obj.get("metadata", {}).get("name") if isinstance(obj, dict) else None
                    if name == self.name:
                        on_change(str(event.get("type")))
            except Exception as exc:  # reconnect; the periodic resync covers the gap
                on_error(exc)
                delay = backoff.next_delay()
                log.debug("CiliumVTEPConfig watch restarting in %.1fs: %s", delay, exc)
                stop.wait(delay)
            finally:
                watcher.stop()
