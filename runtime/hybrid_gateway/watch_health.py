"""A list/watch loop as a supervised task: its failures reported, its heartbeat watched.

Every watch of the daemon (Lease, CiliumVTEPConfig, the Lease group, CiliumNodes) runs as its own
`Task`: a watch stuck in a call fails `/healthz` by name, a failing one is logged, counted and
sent as an Event by its `FailureReporter`, and readiness turns false when it has been failing
longer than a replica may go without it (`leader.assembly.readiness_problem`).
"""

from __future__ import annotations

from hybrid_gateway.adapters.kube_watch import ListWatch, WatchFailure
from hybrid_gateway.reporting import FailureReporter
from hybrid_gateway.supervisor import Beat, Task
from hybrid_gateway.timings import Timings


class WatchHealth:
    """A watch's failure reporting and its heartbeat: the watch turns while it lists, receives
    events or bookmarks, ends windows (`ListWatch.last_progress`), or fails and retries."""

    def __init__(self, reporter: FailureReporter) -> None:
        self.reporter = reporter
        self._failed = Beat()

    def on_error(self, failure: WatchFailure) -> None:
        self._failed()
        self.reporter.failed("list/watch", failure.message)

    def task(self, name: str, watch: ListWatch, timings: Timings) -> Task:
        return Task(
            name,
            watch.run,
            heartbeat=lambda: max(watch.last_progress or 0.0, self._failed.last()),
            stale_after_s=timings.stale_watch_s,
        )
