"""A small Lease elector: the pure decision table plus a loop that reads and writes the Lease.

Why not the client library's elector: it exits the process on bad config, cannot release the
lease on shutdown, and cannot be cancelled (DESIGN.md §4).

Leadership is a time window, not a flag: `valid()` is true only until `renew_deadline` after the
last successful renewal was SENT, measured on the monotonic clock, and it turns false by itself
even if this thread is stuck in a hung request. Leader work checks it before every write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from hybrid_gateway.core.lease import (
    Action,
    LeaseRecord,
    Observation,
    decide,
    leader_valid_until,
    observe,
    warrants_early_round,
)

log = logging.getLogger(__name__)


class LeaseBackend(Protocol):
    def get(self, timeout_s: float) -> LeaseRecord | None: ...

    def write(
        self,
        previous: LeaseRecord | None,
        holder: str | None,
        lease_duration_s: float,
        timeout_s: float,
    ) -> LeaseRecord: ...


class LeaseElector:
    def __init__(
        self,
        backend: LeaseBackend,
        *,
        identity: str,
        lease_duration_s: float,
        renew_deadline_s: float,
        retry_period_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self._backend = backend
        self.identity = identity
        self._duration = lease_duration_s
        self._deadline = renew_deadline_s
        self._retry = retry_period_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._observation: Observation | None = None
        self._valid_until = 0.0
        self._leading = False
        self._wake = threading.Event()
        self.acquired_at: float | None = None  # monotonic time of the current term's acquisition
        self.heartbeat = clock()
        self.holder: str | None = None  # last holder seen

    # -- queried by leader work ---------------------------------------------------------------
    def valid(self) -> bool:
        """True while this replica may act as leader (checked before every leader write)."""
        with self._lock:
            return self._leading and self._clock() < self._valid_until

    def valid_for(self) -> float:
        with self._lock:
            return max(0.0, self._valid_until - self._clock()) if self._leading else 0.0

    # -- the loop ------------------------------------------------------------------------------
    def notice(self, seen: LeaseRecord | None) -> None:
        """A Lease state seen on the watch: start the next round now if it may change what we
        do (released, deleted, new holder). Called from the watch thread."""
        if warrants_early_round(self._observation, seen):
            self._wake.set()

    def wake(self) -> None:
        """End the current wait at once (a Lease change, or shutdown after setting `stop`)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """A round every retry period, or earlier when woken; polling stays the safety net
        for a watch that is down or missed an event."""
        while not stop.is_set():
            self._wake.clear()
            self.try_once()
            self.heartbeat = self._clock()
            if not stop.is_set():
                self._wake.wait(self._retry)
        self._set_leading(False)

    def try_once(self) -> None:
        """One read/decide/write round; never raises."""
        started = self._clock()
        timeout = max(0.05, min(self._retry, self._deadline / 2))
        try:
            observation = self._observation
            if not (self._leading and observation and observation.record.holder == self.identity):
                record = self._backend.get(timeout)
                observation = observe(self._observation, record, self._clock()) if record else None
                self._observation = observation
                self.holder = record.holder if record else None
            action = decide(observation, self.identity, self._clock())
            if action is Action.FOLLOW:
                self._set_leading(False)
                return
            previous = observation.record if observation else None
            written = self._backend.write(previous, self.identity, self._duration, timeout)
        except Exception as exc:  # conflicts, timeouts, partitions: re-read next round
            log.debug("lease round failed: %s", exc)
            self._observation = None if self._leading else self._observation
            if self._leading and not self.valid():
                log.warning("could not renew the lease within the renew deadline: %s", exc)
                self._set_leading(False)
            return
        self._observation = Observation(written, self._clock())
        self.holder = written.holder
        with self._lock:
            self._valid_until = leader_valid_until(started, self._deadline)
        self._set_leading(True, acquired_at=started)

    def stop_leading(self) -> None:
        """Invalidate leadership locally at once (shutdown): no leader write passes after this."""
        self._set_leading(False)

    def release(self, timeout_s: float = 2.0) -> bool:
        """Give the lease up (holder emptied) so a standby can take it at once.

        Call only after leader work has stopped. Written at the last observed resourceVersion:
        if anyone else wrote since, the write conflicts and nothing is released.
        """
        self._set_leading(False)
        observation = self._observation
        if observation is None or observation.record.holder != self.identity:
            return False
        try:
            self._backend.write(observation.record, None, self._duration, timeout_s)
        except Exception as exc:
            log.warning("could not release the lease: %s", exc)
            return False
        log.info("released the lease")
        return True

    def _set_leading(self, leading: bool, acquired_at: float | None = None) -> None:
        with self._lock:
            changed = leading != self._leading
            self._leading = leading
            if not leading:
                self._valid_until = 0.0
            if changed and leading:
                self.acquired_at = acquired_at
        if changed:
            log.info(
                "%s leadership (identity %s)", "acquired" if leading else "lost", self.identity
            )
            self._on_change(leading)
