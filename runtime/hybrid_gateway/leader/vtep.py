"""CiliumVTEPConfig ownership: created if missing, corrected if edited, recreated if deleted."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
        # An active-active plan's marks go too (a switch back): its cidrMask and plan name.
        if (
            endpoints_match(observed, desired)
            and mask_is_reset(observed)
            and object_plan(observed) is None
            and self._store.owned(observed)  # else adopted: the Namespace becomes its owner
        ):
            return True
        if not may_write():
            return False
        if observed is None:
            self._store.create(desired_object(cidrs, self._node_ip, self._mac), may_write)
            log.info("created CiliumVTEPConfig %s", self._store.name)
        else:
            spec = {
                **without_mask(observed.get("spec") or {}),
                "endpoints": desired,
            }
            # at the observed resourceVersion
            self._store.replace(with_plan(observed, spec, None), may_write)
            log.info("corrected CiliumVTEPConfig %s", self._store.name)
        return True


class ReplicaVtepWriter:
    """The CiliumVTEPConfig endpoints of every shard this replica holds, in one write.

    Active-active mode: each shard's VTEP lane calls `lane(shard).sync`, but the lanes of one
    replica never race each other. Under one lock, a sync reads the object once, puts in the
    endpoints of EVERY shard whose term is valid at that moment (`terms`: the replica's shard
    terms, so shards taken at once go out together; `merge_shard_endpoints`) and
    replaces it at the resourceVersion it read (the precondition: another replica writing
    meanwhile makes it 409, and the merge is redone on a fresh read), guarded by all those
    terms before each attempt. A lane whose shard was published by another lane's sync since
    the last change of the object (`changed`) answers from that result without a read, so a
    change costs one read per replica, not one per shard.
    """

    CONFLICT_RETRIES = 5

    def __init__(
        self,
        store: VtepStore,
        *,
        plan: ShardPlan,
        node_ip: str,
        mac: str,
        fresh_s: float,
        terms: Callable[[], Mapping[int, Callable[[], bool]]] = dict,
        clock: Callable[[], float] = time.monotonic,
        plan_digest: str | None = None,
    ) -> None:
        self._store = store
        self._terms = terms
        self._digest = plan_digest  # the object names the plan its endpoints belong to
        self._plan = [endpoint for s in plan.shards for endpoint in s.vtep_endpoints]
        self._names = {s.index: frozenset(n for n, _c in s.vtep_endpoints) for s in plan.shards}
        self._node_ip = node_ip
        self._mac = mac
        length = plan.vtep_prefix_length
        self._mask = dotted_mask(length) if length is not None else None
        self._fresh_s = fresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._guards: dict[int, Callable[[], bool]] = {}
        self._changes = 0  # object changes seen by the watch
        self._verified: frozenset[int] = frozenset()  # shards published as of `_verified_at`
        self._verified_change = -1
        self._verified_at = -float("inf")
        self.reads = 0
        self.writes = 0

    def changed(self) -> None:
        """The object's spec changed (or it was created or deleted): look again."""
        with self._lock:
            self._changes += 1

    def lane(self, shard: int) -> _ShardVtepLane:
        return _ShardVtepLane(self, shard)

    def sync(self, shard: int, may_write: Callable[[], bool]) -> bool:
        """True when `shard`'s endpoints are published; raises like `VtepOwner.sync`."""
        if not self._names[shard]:
            return True  # more shards than endpoints: this shard has no return path of its own
        with self._lock:
            self._guards.update(self._terms())  # shards whose lanes have not synced yet
            self._guards[shard] = may_write
            held = frozenset(s for s, guard in self._guards.items() if guard())
            if shard not in held:
                return False
            if (
                shard in self._verified
                and self._verified_change == self._changes
                and self._clock() - self._verified_at < self._fresh_s
            ):
                return True
            return self._publish(held)

    def _publish(self, held: frozenset[int]) -> bool:
        mine = frozenset(name for s in held for name in self._names[s])
        guards = [self._guards[s] for s in held]

        def all_valid() -> bool:
            return all(guard() for guard in guards)

        for _attempt in range(self.CONFLICT_RETRIES):
            change, at = self._changes, self._clock()
            observed = self._store.get()
            self.reads += 1
            # Endpoints written under another plan (or mode) are not kept: only ours go in.
            same_plan = self._digest is None or object_plan(observed) == self._digest
            merged = merge_shard_endpoints(
                observed if same_plan else None, self._plan, mine, self._node_ip, self._mac
            )
            if (
                same_plan
                and shard_endpoints_match(observed, merged, self._mask)
                and (self._mask is not None or mask_is_reset(observed))
                and self._store.owned(observed)
            ):
                self._verified, self._verified_change, self._verified_at = held, change, at
                return True
            if not all_valid():
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
                    self._store.create(with_plan(body, spec, self._digest), all_valid)
                else:
                    self._store.replace(with_plan(observed, spec, self._digest), all_valid)
            except VtepConflictError:
                continue  # another replica wrote meanwhile: merge into its version
            self.writes += 1
            self._verified, self._verified_change, self._verified_at = held, change, at
            log.info(
                "published %s in CiliumVTEPConfig %s (shards %s)",
                ", ".join(sorted(mine)),
                self._store.name,
                ",".join(map(str, sorted(held))),
            )
            return True
        raise VtepConflictError(
            f"CiliumVTEPConfig {self._store.name} kept changing: "
            f"{self.CONFLICT_RETRIES} conflicting writes in a row"
        )


@dataclass(frozen=True)
class _ShardVtepLane:
    """One shard's view of the replica's writer (what `LeaderWork` syncs)."""

    writer: ReplicaVtepWriter
    shard: int

    def sync(self, may_write: Callable[[], bool]) -> bool:
        return self.writer.sync(self.shard, may_write)
