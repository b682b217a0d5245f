"""Whether the hybrid nodes' Cilium can match the VTEP endpoints this gateway publishes.

Upstream Cilium matches a destination against the VTEP endpoints in a BPF hash keyed by
`destination & vtep-mask`, ONE mask for all endpoints, set by the agent (core.vtep). The agents'
mask cannot be changed from here, so every replica reads it (and the CRD's served versions) at
start and again every resync period: in active-standby the leader publishes VPC_CIDR cut to that
mask; a layout the agents cannot match makes the replica not ready, with a named error in the
log and a Warning Event (`VtepMaskMismatch`), until Cilium or the settings change.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence

from hybrid_gateway.adapters.kube_cilium import CiliumAgentReader, CiliumReadError
from hybrid_gateway.core.vtep import AgentMatch, judge_agents
from hybrid_gateway.reporting import FailureReporter, Reporting

log = logging.getLogger(__name__)

MISMATCH_REASON = "VtepMaskMismatch"
MATCHED_REASON = "VtepMaskMatched"


class CiliumMatch:
    def __init__(
        self,
        reader: CiliumAgentReader,
        *,
        vpc_cidrs: Sequence[ipaddress.IPv4Network],
        plan_endpoints: Sequence[str] | None,
        reporting: Reporting,
        period_s: float,
    ) -> None:
        self._reader = reader
        self._vpc_cidrs = tuple(vpc_cidrs)
        self._plan_endpoints = plan_endpoints
        self._reporting = reporting
        self.period_s = period_s
        self.on_endpoints_changed: Callable[[], None] = lambda: None  # wakes the VTEP owner
        self._lock = threading.Lock()
        # Until the first read: VPC_CIDR as is (the reference's object), nothing refused.
        self._match = AgentMatch(self._vpc_cidrs, None, "not read yet")
        self._read_failures: FailureReporter = reporting.reporter(
            "Cilium agent configuration",
            "cilium",
            "CiliumConfigUnreadable",
            "grant get on configmaps/cilium-config in kube-system and on the "
            "ciliumvtepconfigs.cilium.io CRD",
        )
        self.heartbeat = time.monotonic()

    def problem(self) -> str | None:
        """Why the cluster cannot match the endpoints (readiness), or None."""
        with self._lock:
            problem = self._match.problem
        return None if problem is None else f"Cilium cannot match the VTEP endpoints: {problem}"

    def endpoint_cidrs(self) -> tuple[ipaddress.IPv4Network, ...]:
        """The active-standby endpoint CIDRs to publish (VPC_CIDR cut to the agents' mask)."""
        with self._lock:
            return self._match.endpoints

    def check(self) -> None:
        """One read and judgement; a change of verdict is logged and filed as an Event."""
        try:
            view = self._reader.read()
        except CiliumReadError as exc:  # keep the last judgement; the reporter says why
            self._read_failures.failed("read", str(exc))
            return
        self._read_failures.succeeded()
        found = judge_agents(
            view.served_versions,
            view.config,
            vpc_cidrs=self._vpc_cidrs,
            plan_endpoints=self._plan_endpoints,
        )
        with self._lock:
            before, self._match = self._match, found
        if found.problem is not None and found.problem != before.problem:
            log.error("Cilium cannot match the VTEP endpoints: %s", found.problem)
            self._reporting.events.emit(
                self._reporting.subject,
                MISMATCH_REASON,
                f"Cilium cannot match the VTEP endpoints: {found.problem}",
                warning=True,
            )
        elif found.problem is None and before.problem is not None:
            log.info("Cilium matches the VTEP endpoints again (%s)", found.seen)
            self._reporting.events.emit(
                self._reporting.subject,
                MATCHED_REASON,
                f"Cilium matches the VTEP endpoints ({found.seen})",
                warning=False,
            )
        if found.endpoints != before.endpoints:
            log.info(
                "VTEP endpoints for the Cilium agents: %s (%s)",
                ", ".join(map(str, found.endpoints)),
                found.seen,
            )
            self.on_endpoints_changed()

    def run(self, stop: threading.Event) -> None:
        """At start, then every period (a changed cilium-config takes effect within one)."""
        while not stop.is_set():
            self.check()
            self.heartbeat = time.monotonic()
            stop.wait(self.period_s)
