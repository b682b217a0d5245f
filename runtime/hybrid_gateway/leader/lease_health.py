"""The Lease as the elector sees it, with every failure reported and live holders remembered.

A replica that cannot read or write its Lease (401/403 from RBAC, 404 from a wrong namespace,
an unreachable API server) takes no part in the election; the elector alone would only retry
quietly. This wrapper reports each failed call (`FailureReporter`: a rate-limited warning, a
metric, an Event) and remembers when a live holder was last seen, ourselves or another replica
renewing, so readiness turns false once none has been seen for several lease durations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hybrid_gateway.adapters.kube_lease import LeaseConflictError
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.leader.elector import LeaseBackend
from hybrid_gateway.reporting import FailureReporter


class ReportedLease:
    """A `LeaseBackend` for the elector (get/write) plus `seen` for the Lease watch."""

    def __init__(
        self,
        store: LeaseBackend,
        reporter: FailureReporter,
        *,
        holder_loss_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._reporter = reporter
        self._holder_loss_s = holder_loss_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_seen: tuple[str, str | None] | None = None
        self._live_at = clock()  # start-up counts as a sighting: a grace period

    def get(self, timeout_s: float) -> LeaseRecord | None:
        try:
            record = self._store.get(timeout_s)
        except Exception as exc:
            self._reporter.failed("get", exc)
            raise
        self._reporter.succeeded("get")
        self.seen(record)
        return record

    def write(
        self,
        previous: LeaseRecord | None,
        holder: str | None,
        lease_duration_s: float,
        timeout_s: float,
    ) -> LeaseRecord:
        try:
            record = self._store.write(previous, holder, lease_duration_s, timeout_s)
        except LeaseConflictError:
            raise  # another replica won the race: the API works, someone is active
        except Exception as exc:
            self._reporter.failed("update" if previous is not None else "create", exc)
            raise
        self._reporter.succeeded()  # written: every path works
        self.seen(record)
        return record

    def seen(self, record: LeaseRecord | None) -> None:
        """A state of the Lease (from a read, our write or the watch): a holder whose renewal
        time changed since the last state seen is alive."""
        if record is None or record.released or record.holder is None:
            return
        key = (record.holder, record.renew_time)
        with self._lock:
            if key != self._last_seen:
                self._last_seen = key
                self._live_at = self._clock()

    def problem(self) -> str | None:
        """Why this replica cannot take part in the election, or None."""
        with self._lock:
            silent = self._clock() - self._live_at
        if silent <= self._holder_loss_s:
            return None
        error = self._reporter.last_error if self._reporter.failing_for() > 0 else None
        return f"no live Lease holder seen for {silent:.0f}s" + (f" ({error})" if error else "")
