"""What the hybrid nodes' Cilium agents run with, read through the official client: the
versions the CiliumVTEPConfig CRD serves and the `cilium-config` ConfigMap's data.

Reads only (get by name): the chart grants `get` on the one CRD and, by a Role in kube-system,
on the one ConfigMap. One HTTP attempt per read, as every Kubernetes call of the daemon
(adapters/kube_attempts.py): the caller reads again every resync period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway_contract import (
    CILIUM_CONFIG_NAME,
    CILIUM_CONFIG_NAMESPACE,
    CILIUM_GROUP,
    VTEP_CONFIGS_PLURAL,
)

VTEP_CRD_NAME = f"{VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}"


class CiliumReadError(Exception):
    """The CRD or the ConfigMap could not be read (refused, unreachable)."""


@dataclass(frozen=True)
class AgentView:
    """None: the object does not exist."""

    served_versions: tuple[str, ...] | None
    config: dict[str, str] | None


class CiliumAgentReader:
    def __init__(self, api_client: Any, *, settings: WatchingSettings) -> None:
        once = single_attempt(api_client)
        self._core = client.CoreV1Api(once)
        self._extensions = client.ApiextensionsV1Api(once)
        self._timeout = settings.request_timeout_s

    def read(self) -> AgentView:
        crd = self._get(
            f"customresourcedefinition {VTEP_CRD_NAME}",
            self._extensions.read_custom_resource_definition,
            VTEP_CRD_NAME,
        )
        config = self._get(
            f"configmap {CILIUM_CONFIG_NAMESPACE}/{CILIUM_CONFIG_NAME}",
            self._core.read_namespaced_config_map,
            CILIUM_CONFIG_NAME,
            CILIUM_CONFIG_NAMESPACE,
        )
        return AgentView(
            served_versions=None
            if crd is None
            else tuple(v.name for v in crd.spec.versions or [] if v.served),
            config=None if config is None else {k: str(v) for k, v in (config.data or {}).items()},
        )

    def _get(self, what: str, call: Any, *args: str) -> Any:
        try:
            return call(*args, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise CiliumReadError(f"read {what}: {exc.status} {exc.reason}") from exc
        except Exception as exc:
            raise CiliumReadError(f"read {what}: {exc}") from exc
