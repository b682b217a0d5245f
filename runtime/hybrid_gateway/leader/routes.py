"""Route ownership: make every hybrid pod CIDR in every configured table target our primary ENI.

One DescribeRouteTables for all tables, then only the wrong routes are written, in parallel. The
primary ENI is looked up once per process (an instance's DeviceIndex-0 ENI never changes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from hybrid_gateway.adapters.ec2 import Ec2Error, Ec2Routes, WriteNotAllowedError
from hybrid_gateway.core.routes import Refusal, RouteKey, RoutePlan, plan_routes
from hybrid_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

MAX_PARALLEL_WRITES = 16


@dataclass
class SyncResult:
    plan: RoutePlan
    written: list[RouteKey] = field(default_factory=list)
    failed: list[tuple[RouteKey, str]] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)
    suppressed: bool = False  # the lease ran out during the sync: writes were withheld

    @property
    def converged(self) -> bool:
        return not self.failed and not self.missing_tables and not self.suppressed


class RouteOwner:
    def __init__(
        self,
        ec2: Ec2Routes,
        *,
        instance_id: str,
        table_ids: Sequence[str],
        pod_cidrs: Sequence[str],
        allow_takeover: bool,
        metrics: GatewayMetrics,
        on_refusals: Callable[[Sequence[Refusal]], None] = lambda refusals: None,
    ) -> None:
        self._ec2 = ec2
        self._instance_id = instance_id
        self._tables = list(table_ids)
        self._cidrs = list(pod_cidrs)
        self._allow_takeover = allow_takeover
        self._metrics = metrics
        self._on_refusals = on_refusals
        self._eni: str | None = None
        self._last_refused: frozenset[RouteKey] = frozenset()

    def sync(self, may_write: Callable[[], bool]) -> SyncResult:
        """Bring every table to the desired state; raises Ec2Error if the reads fail."""
        if not self._tables:
            return SyncResult(RoutePlan())
        started = time.monotonic()
        if self._eni is None:
            self._eni = self._ec2.primary_eni(self._instance_id)
            log.info("primary ENI of %s is %s", self._instance_id, self._eni)
        observed = self._ec2.describe_routes(self._tables)
        plan = plan_routes(
            observed, self._tables, self._cidrs, self._eni, allow_takeover=self._allow_takeover
        )
        result = SyncResult(plan, missing_tables=[t for t in self._tables if t not in observed])
        for table in result.missing_tables:
            log.error("route table %s not found (check ROUTE_TABLE_IDS)", table)
        self._report_refusals(plan.refused)

        eni = self._eni
        creates = set(plan.create)

        def write(key: RouteKey) -> tuple[RouteKey, str | None]:
            if not may_write():
                return key, "suppressed"
            try:
                if key in creates:
                    self._ec2.create_route(key, eni)
                else:
                    self._ec2.replace_route(key, eni)
            except WriteNotAllowedError:
                return key, "suppressed"
            except Ec2Error as exc:
                self._metrics.aws_route_table_update_errors.inc()
                return key, str(exc)
            self._metrics.aws_route_table_update.inc()
            return key, None

        if plan.writes:
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_WRITES, len(plan.writes))) as pool:
                for key, error in pool.map(write, plan.writes):
                    if error == "suppressed":
                        result.suppressed = True
                    elif error:
                        log.warning("route %s in %s: %s", key.destination, key.table_id, error)
                        result.failed.append((key, error))
                    else:
                        log.info("route %s in %s -> %s", key.destination, key.table_id, eni)
                        result.written.append(key)
        self._metrics.aws_route_table_update_duration.observe(time.monotonic() - started)
        return result

    def _report_refusals(self, refused: Sequence[Refusal]) -> None:
        self._metrics.route_takeover_refused.set(len(refused))
        keys = frozenset(r.key for r in refused)
        if keys != self._last_refused and refused:
            for refusal in refused:
                log.warning("%s; set ALLOW_ROUTE_TAKEOVER=true to take it", refusal.describe())
            self._on_refusals(refused)
        self._last_refused = keys
