"""The one-regime-at-a-time fence of a replica (core/regime.py has the rule and why).

Fed by the replica's Lease watches (every state of the active-standby Lease and of the group's
Leases, with labels), it answers three questions:

- `blocked()`: may an elector of ours acquire now? (its `can_acquire` gate)
- `guard(term)`: may a write of this term go out now? Part of every write guard, next to the
  term's `valid()`. The first call after a term started re-reads the Leases from the API
  server, so a writer of another regime that acquired at the same moment is seen before our
  first write; later calls use the watched view, which is never older than that read.
- and on every change: if another regime that outranks ours holds a live Lease, every elector
  we protect hands its Lease over (ends its term, waits for in-flight writes, releases).

Liveness is judged like the electors judge it: on our own monotonic clock, a Lease is live
until its duration has passed since we first saw its current renewal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_lease import record_from_json
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_watch import ListWatch, WatchFailure
from hybrid_gateway.core.lease import LeaseRecord, Observation, observe
from hybrid_gateway.core.regime import FenceDecision, Writer, fence, lease_regime
from hybrid_gateway.leader.elector import Term
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL

log = logging.getLogger("hybrid_gateway")


class LeaseReader(Protocol):
    def read(self, timeout_s: float) -> list[tuple[str, LeaseRecord, Mapping[str, str]]]: ...


class Yielding(Protocol):
    """What the fence needs of an elector it protects."""

    @property
    def leading(self) -> bool: ...
    def request_handover(self, wait_idle: Callable[[float], bool]) -> None: ...


@dataclass
class _Protected:
    elector: Yielding
    wait_idle: Callable[[float], bool]


class RegimeFence:
    def __init__(
        self,
        *,
        regime: str,
        lease_name: str,
        reader: LeaseReader,
        read_timeout_s: float,
        on_yield: Callable[[FenceDecision], None] = lambda decision: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.regime = regime
        self._lease_name = lease_name
        self._reader = reader
        self._timeout = read_timeout_s
        self._on_yield = on_yield
        self._clock = clock
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._seen: dict[str, tuple[Observation, str]] = {}  # Lease -> (observation, regime)
        self._last_read_started = -float("inf")
        self._protected: list[_Protected] = []
        self._yielding = False
        self.last_error: str | None = None

    # -- fed by the watches ---------------------------------------------------------------------
    def seen(self, name: str, record: LeaseRecord | None, labels: Mapping[str, str]) -> None:
        """A Lease state from a watch or a read (None: deleted)."""
        regime = lease_regime(name, self._lease_name, labels)
        if regime is None:
            return
        with self._lock:
            if record is None:
                self._seen.pop(name, None)
            else:
                previous = self._seen.get(name)
                self._seen[name] = (
                    observe(previous[0] if previous else None, record, self._clock()),
                    regime,
                )
        self._check_yield()

    def forget_missing(self, present: set[str]) -> None:
        """After a full list: Leases of the group that are gone (the active-standby Lease is
        not part of the group list and is kept)."""
        with self._lock:
            for name in [n for n in self._seen if n not in present and n != self._lease_name]:
                del self._seen[name]

    # -- questions --------------------------------------------------------------------------------
    def decision(self) -> FenceDecision:
        now = self._clock()
        with self._lock:
            live = [
                Writer(name, str(obs.record.holder), regime)
                for name, (obs, regime) in self._seen.items()
                if not obs.record.released and now < obs.observed_at + obs.record.lease_duration_s
            ]
        return fence(self.regime, live)

    def blocked(self) -> bool:
        """True while a writer of another regime holds a live Lease: acquire nothing."""
        return not self.decision().may_write

    def guard(self, term: Term) -> bool:
        """Part of the write guard of `term` (see the module docstring)."""
        if self._last_read_started <= term.acquired_at and not self._fresh_read(term.acquired_at):
            return False
        return self.decision().may_write

    def _fresh_read(self, after: float) -> bool:
        with self._read_lock:
            if self._last_read_started > after:
                return True  # another thread's read started after this term's acquisition
            started = self._clock()
            try:
                states = self._reader.read(self._timeout)
            except Exception as exc:
                self.last_error = str(exc)
                log.warning("cannot confirm that no other regime writes; not writing: %s", exc)
                return False
            self.last_error = None
            for name, record, labels in states:
                self.seen(name, record, labels)
            self.forget_missing({name for name, _record, _labels in states})
            self._last_read_started = started
            return True

    # -- yielding ---------------------------------------------------------------------------------
    def protect(self, elector: Yielding, wait_idle: Callable[[float], bool]) -> None:
        """Hand `elector`'s Lease over whenever a regime that outranks ours is live."""
        self._protected.append(_Protected(elector, wait_idle))

    def _check_yield(self) -> None:
        decision = self.decision()
        if not decision.must_yield:
            self._yielding = False
            return
        leading = [p for p in self._protected if p.elector.leading]
        if not leading:
            return
        if not self._yielding:
            self._yielding = True
            log.warning(
                "another regime holds live Leases: %s; handing %d Lease(s) over",
                decision.describe(),
                len(leading),
            )
            self._on_yield(decision)
        for protected in leading:
            protected.elector.request_handover(protected.wait_idle)


def feed_list(fence: RegimeFence, items: Iterable[Mapping[str, Any]]) -> None:
    """A group list (JSON items of a watch's list) into the fence."""
    names: set[str] = set()
    for item in items:
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name") or "")
        names.add(name)
        fence.seen(name, record_from_json(dict(item)), metadata.get("labels") or {})
    fence.forget_missing(names)


def feed_event(fence: RegimeFence, kind: str, item: Mapping[str, Any]) -> None:
    """One watch event of the group (or of the active-standby Lease) into the fence."""
    metadata = item.get("metadata") or {}
    name = str(metadata.get("name") or "")
    record = None if kind == "DELETED" else record_from_json(dict(item))
    fence.seen(name, record, metadata.get("labels") or {})


def group_watch(
    api_client: Any,
    namespace: str,
    lease_name: str,
    fence: RegimeFence,
    *,
    on_listed: Callable[[], None],
    on_error: Callable[[WatchFailure], None],
    settings: WatchingSettings,
) -> ListWatch:
    """The active-standby leader's watch of the shard Leases (the group label), into `fence`."""

    def on_list(items: Iterator[dict[str, Any]]) -> None:
        feed_list(fence, items)
        on_listed()

    return ListWatch(
        f"Lease group watch {namespace}",
        client.CoordinationV1Api(single_attempt(api_client)).list_namespaced_lease,
        args=(namespace,),
        label_selector=f"{LEASE_GROUP_LABEL}={lease_name}",
        on_list=on_list,
        on_event=lambda kind, item: feed_event(fence, kind, item),
        on_error=on_error,
        settings=settings,
    )
