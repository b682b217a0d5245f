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
    mask_is_reset,
    merge_shard_endpoints,
    object_plan,
    shard_endpoints_match,
    with_plan,
    without_mask,
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
    ) -> None:
        self._store = store
        self._desired_endpoints = desired_endpoints(vpc_cidrs, node_ip, mac)
        self._desired_object = desired_object(vpc_cidrs, node_ip, mac)

    def sync(self, may_write: Callable[[], bool]) -> bool:
        """Return True when the object is as desired; raises VtepConflictError/VtepApiError,
        or VtepWriteNotAllowedError when the lease lapsed before a write attempt."""
        observed = self._store.get()
        # An active-active plan's marks go too (a switch back): its cidrMask and plan name.
        if (
            endpoints_match(observed, self._desired_endpoints)
            and mask_is_reset(observed)
            and object_plan(observed) is None
        ):
            return True
        if not may_write():
            return False
        if observed is None:
            self._store.create(dict(self._desired_object), may_write)
            log.info("created CiliumVTEPConfig %s", self._store.name)
        else:
            spec = {
                **without_mask(observed.get("spec") or {}),
                "endpoints": self._desired_endpoints,
            }
            # at the observed resourceVersion
            self._store.replace(with_plan(observed, spec, None), may_write)
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
        plan_digest: str | None = None,
    ) -> None:
        self._store = store
        self._digest = plan_digest  # the object names the plan its endpoints belong to
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
            # Endpoints written under another plan (or mode) are not kept: only ours go in.
            same_plan = self._digest is None or object_plan(observed) == self._digest
            merged = merge_shard_endpoints(
                observed if same_plan else None, self._plan, self._mine, self._node_ip, self._mac
            )
            if (
                same_plan
                and shard_endpoints_match(observed, merged, self._mask)
                and (self._mask is not None or mask_is_reset(observed))
            ):
                return True
            if not may_write():
                return False
            spec: dict[str, Any] = dict((observed or {}).get("spec") or {})
            spec["endpoints"] = merged
            if self._mask is not None:
                spec["cidrMask"] = self._mask
            else:
                spec = without_mask(spec)  # a mixed plan: no one mask fits, leave the default
            try:
                if observed is None:
                    body = desired_object([], self._node_ip, self._mac, endpoints=merged)
                    self._store.create(with_plan(body, spec, self._digest), may_write)
                else:
                    self._store.replace(with_plan(observed, spec, self._digest), may_write)
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
