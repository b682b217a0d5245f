"""Route ownership that waits for IMDS and EC2 in the background instead of at start-up.

The region and instance id come from the config or from IMDSv2, and the route owner needs an EC2
client for them, then prepares (`RouteOwner.prepare`: primary ENI, every table described). IMDS
can be unreachable (hop limit, a firewalled link-local address, throttling) and so can EC2;
neither may hold up the data plane, which needs neither. So `run` does both steps on its own
thread, retrying with back-off until they succeed, and `sync` raises `RoutesPending` (naming what
it waits for) until the owner exists: leader work keeps retrying, readiness says why. With no
route tables configured there is nothing to resolve and nothing ever waits.

Once prepared, `run` keeps going: every `recheck_s` it reads the primary ENI's
source/destination check again (`RouteOwner.recheck_interface`), so a check turned back on
during a term makes this replica unable to own routes within seconds (`ownership_problem`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from hybrid_gateway.adapters.ec2 import Ec2Error
from hybrid_gateway.adapters.imds import ImdsError, fetch_identity
from hybrid_gateway.config import IMDS_DISABLED_ENV, Config
from hybrid_gateway.core.backoff import Backoff
from hybrid_gateway.core.routes import RouteKey, RoutePlan
from hybrid_gateway.leader.routes import Retire, SyncResult
from hybrid_gateway.reporting import FailureReporter

log = logging.getLogger(__name__)

#: One IMDS attempt per round: the back-off between rounds is ours.
IMDS_TIMEOUT_S = 2.0


class Owner(Protocol):
    """What is used of leader/routes.RouteOwner."""

    @property
    def prepared(self) -> bool: ...
    def prepare(self) -> None: ...
    def problem(self) -> str | None: ...
    def forwarding_allowed(self) -> bool: ...
    def keep_warm(self) -> None: ...
    def pointing_here(self, destinations: Sequence[str]) -> list[RouteKey]: ...
    def recheck_interface(self) -> None: ...
    def prefetch(self) -> bool: ...
    def sync(
        self,
        may_write: Callable[[], bool],
        destinations: Sequence[str] | None = None,
        retire: Retire | None = None,
        *,
        takeover: bool = False,
    ) -> SyncResult: ...


class RoutesPending(Exception):  # noqa: N818 (a state, not a failure of the caller)
    """Routes cannot be synced yet: the instance identity or EC2 is not resolved."""


def resolve_identity(config: Config) -> tuple[str, str]:
    """Region and instance id: from the config when both are given, else from IMDSv2 (unless
    the AWS SDKs' AWS_EC2_METADATA_DISABLED turns it off)."""
    if config.aws_region and config.aws_instance_id:
        return config.aws_region, config.aws_instance_id
    if config.imds.disabled:
        raise ImdsError(f"{IMDS_DISABLED_ENV}=true: set AWS_REGION and AWS_INSTANCE_ID instead")
    identity = fetch_identity(config.imds.endpoint, timeout_s=IMDS_TIMEOUT_S, attempts=1)
    return config.aws_region or identity.region, config.aws_instance_id or identity.instance_id


class DeferredRoutes:
    def __init__(
        self,
        *,
        table_ids: Sequence[str],
        resolve: Callable[[], tuple[str, str]],
        build: Callable[[str, str], Owner],
        reporter: FailureReporter,
        max_backoff_s: float = 30.0,
        recheck_s: float = 5.0,
    ) -> None:
        self._recheck_s = recheck_s
        self._tables = tuple(table_ids)
        self._resolve = resolve
        self._build = build
        self._reporter = reporter
        self._backoff = Backoff(initial_s=min(0.5, max_backoff_s), maximum_s=max_backoff_s)
        self._owner: Owner | None = None
        self._waiting_for: str | None = "instance identity and EC2 client" if self._tables else None
        self.heartbeat = time.monotonic()
        self._prefetch_failing = False

    @property
    def waiting_for(self) -> str | None:
        """What route ownership still waits for (None: ready, or no route tables configured)."""
        return self._waiting_for

    def problem(self) -> str | None:
        """Why this replica could not forward for the VPC if it led (the owner's), or None."""
        return self._owner.problem() if self._owner is not None else None

    def forwarding_allowed(self) -> bool:
        """False only when the primary ENI is KNOWN to drop forwarded packets."""
        return self._owner.forwarding_allowed() if self._owner is not None else True

    def pointing_here(self, destinations: Sequence[str]) -> list[RouteKey]:
        """The owner's `pointing_here`; nothing before the owner exists (it wrote nothing)."""
        owner = self._owner
        return owner.pointing_here(destinations) if owner is not None else []

    def ownership_problem(self) -> str | None:
        """Why this replica cannot own the VPC routes right now, or None (it can, or no route
        tables are configured): the instance identity, the primary ENI or a table is not
        resolved yet, or the ENI is known to drop forwarded packets."""
        if not self._tables:
            return None
        owner = self._owner
        if owner is None or not owner.prepared:
            return f"waiting for {self._waiting_for}"
        if not owner.forwarding_allowed():
            return owner.problem() or "the primary ENI's source/destination check is on"
        return None

    def run(self, stop: threading.Event) -> None:
        """Resolve identity, build the route owner, then prepare it; retry until done or `stop`.

        Identity and client failures are reported here; `RouteOwner.prepare` reports its own."""
        if not self._tables:
            return
        while not stop.is_set() and self._owner is None:
            self.heartbeat = time.monotonic()
            step = "instance identity"
            try:
                region, instance_id = self._resolve()
                step = "EC2 client"
                owner = self._build(region, instance_id)
            except Exception as exc:  # IMDS unreachable, throttled, refused: retry
                self._waiting_for = f"{step}: {exc}"
                self._reporter.failed(step, exc)
                stop.wait(self._backoff.next_delay())
                continue
            self._reporter.succeeded()
            self._owner = owner
            log.info("route ownership: region %s, instance %s", region, instance_id)
        self._backoff.reset()
        while not stop.is_set() and self._owner is not None and not self._owner.prepared:
            self.heartbeat = time.monotonic()
            try:
                self._owner.prepare()
            except Ec2Error as exc:  # logged, counted and sent as an Event by the owner
                self._waiting_for = f"EC2: {exc}"
                stop.wait(self._backoff.next_delay())
                continue
        if self._owner is not None and self._owner.prepared:
            self._waiting_for = None
        self._recheck_until(stop)

    def _recheck_until(self, stop: threading.Event) -> None:
        """Read the ENI's source/destination check again every `recheck_s` until `stop`; a
        failed read keeps the last known state and is logged (the next read retries). Each
        round also prefetches the route tables for a takeover (`RouteOwner.prefetch`, which
        describes at most every few seconds)."""
        owner = self._owner
        if owner is None:
            return
        self._prefetch(owner)
        while not stop.wait(self._recheck_s):
            self.heartbeat = time.monotonic()
            try:
                owner.recheck_interface()
            except Ec2Error as exc:
                self._reporter.failed("ENI re-check", exc)
            else:
                self._reporter.succeeded("ENI re-check")
            self._prefetch(owner)

    def _prefetch(self, owner: Owner) -> None:
        """Only a head start is lost when this fails (a takeover then describes first): logged
        when it starts and stops failing; the owner counts each failure by reason and sends an
        Event once the streak costs a takeover its head start (`RouteOwner.prefetch`)."""
        try:
            owner.prefetch()
        except Ec2Error as exc:
            if not self._prefetch_failing:
                log.warning("route tables not prefetched for a takeover: %s", exc)
            self._prefetch_failing = True
            return
        if self._prefetch_failing:
            log.info("route tables prefetched again")
        self._prefetch_failing = False

    def keep_warm(self) -> None:
        """The owner's, once it exists."""
        if self._owner is not None:
            self._owner.keep_warm()

    def sync(
        self,
        may_write: Callable[[], bool],
        destinations: Sequence[str] | None = None,
        retire: Retire | None = None,
        *,
        takeover: bool = False,
    ) -> SyncResult:
        owner = self._owner
        if owner is not None:
            return owner.sync(may_write, destinations, retire, takeover=takeover)
        if not self._tables:
            return SyncResult(RoutePlan())
        raise RoutesPending(f"waiting for {self._waiting_for}")
