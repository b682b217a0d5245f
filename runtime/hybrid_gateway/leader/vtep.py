"""CiliumVTEPConfig ownership: created if missing, corrected if edited, recreated if deleted."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

from hybrid_gateway.adapters.kube_vtep import VtepConflictError, VtepStore
from hybrid_gateway.core.vtep import (
    desired_endpoints,
    desired_object,
    dotted_mask,
    endpoints_match,
    merge_shard_endpoints,
    shard_endpoints_match,
)
from hybrid_gateway_contract.sharding import ShardPlan

log = logging.getLogger(__name__)


class VtepOwner:
    def __init__(
        self,
        store: VtepStore,
        *,
        vpc_cidrs: Sequence[ipaddress.IPv4Network],
        node_ip: str,
        mac: str,
        endpoint_cidrs: Callable[[], Sequence[ipaddress.IPv4Network]] | None = None,
    ) -> None:
        """`endpoint_cidrs`: the endpoint CIDRs to publish now (VPC_CIDR cut to the Cilium
        agents' mask, `CiliumMatch.endpoint_cidrs`); VPC_CIDR as is when not given."""
        self._store = store
        self._vpc_cidrs = tuple(vpc_cidrs)
        self._node_ip = node_ip
        self._mac = mac
        self._endpoint_cidrs = endpoint_cidrs or (lambda: self._vpc_cidrs)

    def sync(self, may_write: Callable[[], bool]) -> bool:
        """Return True when the object is as desired; raises VtepConflictError/VtepApiError,
        or VtepWriteNotAllowedError when the lease lapsed before a write attempt."""
        cidrs = list(self._endpoint_cidrs())
        desired = desired_endpoints(cidrs, self._node_ip, self._mac)
        observed = self._store.get()
        if endpoints_match(observed, desired):
            return True
        if not may_write():
            return False
        if observed is None:
            self._store.create(desired_object(cidrs, self._node_ip, self._mac), may_write)
            log.info("created CiliumVTEPConfig %s", self._store.name)
        else:
            body = dict(observed)
            body["spec"] = {
                **dict(observed.get("spec") or {}),
                "endpoints": desired,
            }
            self._store.replace(body, may_write)  # at the observed resourceVersion
            log.info("corrected CiliumVTEPConfig %s", self._store.name)
        return True


class ShardVtepOwner:
    """One shard's endpoints in the shared CiliumVTEPConfig (active-active mode).

    Every shard owner reads the object, puts its own endpoints in (`merge_shard_endpoints`)
    and replaces it at the version it read, so owners writing at once conflict (409) instead
    of overwriting each other; a conflict is retried at once on a fresh read, a few times.
    """

    CONFLICT_RETRIES = 5

    def __init__(
        self,
        store: VtepStore,
        *,
        plan: ShardPlan,
        shard: int,
        node_ip: str,
        mac: str,
    ) -> None:
        self._store = store
        self._plan = [endpoint for s in plan.shards for endpoint in s.vtep_endpoints]
        self._mine = frozenset(name for name, _cidr in plan.shards[shard].vtep_endpoints)
        self._node_ip = node_ip
        self._mac = mac
        length = plan.vtep_prefix_length
        self._mask = dotted_mask(length) if length is not None else None

    def sync(self, may_write: Callable[[], bool]) -> bool:
        """True when our endpoints are published; raises like `VtepOwner.sync`."""
        if not self._mine:
            return True  # more shards than endpoints: this shard has no return path of its own
        for _attempt in range(self.CONFLICT_RETRIES):
            observed = self._store.get()
            merged = merge_shard_endpoints(
                observed, self._plan, self._mine, self._node_ip, self._mac
            )
            if shard_endpoints_match(observed, merged, self._mask):
                return True
            if not may_write():
                return False
            spec: dict[str, Any] = dict((observed or {}).get("spec") or {})
            spec["endpoints"] = merged
            if self._mask is not None:
                spec["cidrMask"] = self._mask
            try:
                if observed is None:
                    body = desired_object([], self._node_ip, self._mac, endpoints=merged)
                    body["spec"] = spec
                    self._store.create(body, may_write)
                else:
                    self._store.replace({**observed, "spec": spec}, may_write)
            except VtepConflictError:
                continue  # another owner wrote meanwhile: merge into its version
            log.info(
                "published %s in CiliumVTEPConfig %s",
                ", ".join(sorted(self._mine)),
                self._store.name,
            )
            return True
        raise VtepConflictError(
            f"CiliumVTEPConfig {self._store.name} kept changing: "
            f"{self.CONFLICT_RETRIES} conflicting writes in a row"
        )
