"""What every part of the lab shares: its options, its error, and a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hybrid_gateway_contract import Env


class LabError(RuntimeError):
    """The lab could not reach a state it needs; the message says which and why."""


@dataclass
class LabOptions:
    out_dir: Path
    lease_duration_s: float | None = None  # None: the daemon's defaults (3 s / 2 s / 1 s)
    renew_deadline_s: float | None = None  # None: 2/3 of the lease duration
    retry_period_s: float | None = None  # None: 1/3 of the lease duration
    propagation_delay_s: float = 0.5
    router_poll_s: float = 0.1
    rate: float = 100.0
    tcp_interval_s: float = 0.1
    start_timeout_s: float = 60.0
    vtep_match: str = "hash"  # how the hybrid nodes match VTEP endpoints (see `agent`)
    webhook_tls: bool = False  # the webhook calls over TLS (a handshake per call)
    api_outage_s: float = 60.0  # control-plane-upgrade: how long the API is unreachable
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def lease_env(self) -> dict[str, str]:
        if self.lease_duration_s is None:
            return {}
        lease = self.lease_duration_s
        renew = self.renew_deadline_s if self.renew_deadline_s is not None else lease * 2 / 3
        retry = self.retry_period_s if self.retry_period_s is not None else lease / 3
        return {
            Env.LEASE_DURATION: f"{lease:g}s",
            Env.RENEW_DEADLINE: f"{renew:g}s",
            Env.RETRY_PERIOD: f"{retry:g}s",
        }


def wait_for(
    what: str, predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise LabError(f"timed out after {timeout_s:g}s waiting for {what}")
