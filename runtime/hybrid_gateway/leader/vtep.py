"""CiliumVTEPConfig ownership: created if missing, corrected if edited, recreated if deleted."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.core.vtep import desired_endpoints, desired_object, endpoints_match

log = logging.getLogger(__name__)


class VtepOwner:
    def __init__(
        self,
        store: VtepStore,
        *,
        vpc_cidrs: Sequence[ipaddress.IPv4Network],
        node_ip: str,
        mac: str,
    ) -> None:
        self._store = store
        self._desired_endpoints = desired_endpoints(vpc_cidrs, node_ip, mac)
        self._desired_object = desired_object(vpc_cidrs, node_ip, mac)

    def sync(self, may_write: Callable[[], bool]) -> bool:
        """Return True when the object is as desired; raises VtepConflictError/VtepApiError,
        or VtepWriteNotAllowedError when the lease lapsed before a write attempt."""
        observed = self._store.get()
        if endpoints_match(observed, self._desired_endpoints):
            return True
        if not may_write():
            return False
        if observed is None:
            self._store.create(dict(self._desired_object), may_write)
            log.info("created CiliumVTEPConfig %s", self._store.name)
        else:
            body = dict(observed)
            body["spec"] = {
                **dict(observed.get("spec") or {}),
                "endpoints": self._desired_endpoints,
            }
            self._store.replace(body, may_write)  # at the observed resourceVersion
            log.info("corrected CiliumVTEPConfig %s", self._store.name)
        return True
