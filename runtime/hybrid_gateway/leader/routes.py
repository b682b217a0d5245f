"""Route ownership: make every hybrid pod CIDR in every configured table target our primary ENI.

`prepare()` runs at START on every replica, in the background: it resolves the primary ENI
(and its source/destination check), checks that every configured table can be described and
asks EC2 (DryRun) whether this replica may create and replace routes in each, so a wrong table
ID, a missing permission or a source/destination check left on shows up at deploy, not at the
first failover. Afterwards every replica describes its tables every few seconds through the
write client (`prefetch`), which keeps that client's connection open; a failover then costs
only the writes of the wrong routes, in parallel, planned from that description (the
re-checks after an acquisition describe, and repair what changed since).

The source/destination check is read again every few seconds afterwards
(`recheck_interface`): anyone with ec2:ModifyInstanceAttribute or
ec2:ModifyNetworkInterfaceAttribute can turn it back on, and an ENI with the check on drops
every forwarded packet (EC2 user guide, "Change the source or destination checking"). While it
is known to be on, `sync` writes no route to that ENI: checked before every attempt of a write
with the lease guard, so a throttled write does not retry onto it seconds later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Protocol

from hybrid_gateway.adapters.ec2 import (
    FAILURE_REASONS,
    KEEP_WARM_S,
    Ec2Error,
    Ec2Routes,
    PrimaryInterface,
    WriteNotAllowedError,
    failure_reason,
)
from hybrid_gateway.core.backoff import Backoff
from hybrid_gateway.core.pacing import EC2_MUTATING_BUCKET
from hybrid_gateway.core.routes import (
    ObservedRoute,
    RouteKey,
    RoutePlan,
    TargetKind,
    plan_retired_routes,
    plan_routes,
)
from hybrid_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# All writes of a failover in one wave (10 tables x 4 CIDRs = 40): parallelism changes when
# the writes are sent, not how many; a throttled write backs off on its own (adapters/ec2.py).
# The bound holds for the whole replica, over every sync in flight (active-active runs one per
# shard): EC2's bucket for mutating actions holds 50 tokens per account and Region ("Request
# throttling for the Amazon EC2 API", Amazon EC2 Developer Guide; core/pacing.py), so more
# route writes at once would be throttled even from a full bucket. Below the EC2 clients'
# connection pool size (adapters/ec2.make_client), so no write waits for a connection.
MAX_PARALLEL_WRITES = EC2_MUTATING_BUCKET


class Report(Protocol):
    """Records an Event about this replica (a Warning unless `warning` is False)."""

    def __call__(self, reason: str, message: str, *, warning: bool = True) -> None: ...


def _no_report(reason: str, message: str, *, warning: bool = True) -> None:
    pass


# Active-active: from the described tables, the routes to delete now and those retired but
# waiting for their replacements (core/routes.plan_retired_routes).
Retire = Callable[
    [Mapping[str, list[ObservedRoute]]], tuple[tuple[RouteKey, ...], tuple[RouteKey, ...]]
]

#: The Ec2Error `operation` of a failed write-permission probe, and its Event reason.
WRITE_PROBE = "CreateRoute/ReplaceRoute (DryRun)"
WRITES_DENIED_REASON = "RouteWritesNotAllowed"
#: The writes every leader needs in every table (DeleteRoute only retires active-active shards).
PROBED_WRITES = ("CreateRoute", "ReplaceRoute")
#: The outcome of a write the lease guard withheld.
SUPPRESSED = "suppressed"
#: The outcome of a write withheld because the source/destination check was read as ON.
CHECK_ON_NOT_WRITTEN = "source/destination check turned on: not written"
#: A standby describes its tables (`prefetch`) at most this often, and a term's first sync
#: plans from that description instead of describing again while it is at most
#: PREFETCH_MAX_AGE_S old: the describe is one EC2 round trip on the way to the first write
#: (tens to hundreds of milliseconds, against a lease of one second at the shortest timings).
PREFETCH_EVERY_S = KEEP_WARM_S
PREFETCH_MAX_AGE_S = 2 * PREFETCH_EVERY_S
#: The Event reasons of a prefetch streak: failing once the last description is too old to
#: plan a takeover from (PREFETCH_MAX_AGE_S), recovered when one succeeds after that.
PREFETCH_FAILING_REASON = "RoutePrefetchFailing"
PREFETCH_RECOVERED_REASON = "RoutePrefetchRecovered"


@dataclass
class SyncResult:
    plan: RoutePlan
    written: list[RouteKey] = field(default_factory=list)
    failed: list[tuple[RouteKey, str]] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)
    suppressed: bool = False  # the lease ran out during the sync: writes were withheld
    refusals_changed: bool = False  # plan.refused differs from the last sync's: report them
    deleted: list[RouteKey] = field(default_factory=list)  # retired routes removed
    retiring: tuple[RouteKey, ...] = ()  # retired routes left until their replacements exist

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
        report: Report = _no_report,
    ) -> None:
        self._ec2 = ec2
        self._instance_id = instance_id
        self._tables = list(table_ids)
        self._cidrs = list(pod_cidrs)
        self._allow_takeover = allow_takeover
        self._metrics = metrics
        self._report = report
        self._lock = threading.Lock()
        self._primary: PrimaryInterface | None = None
        self._prepared = not self._tables  # nothing to resolve without route tables
        self._problem: str | None = None
        self._last_refused: frozenset[RouteKey] = frozenset()
        self._unverified: str | None = None  # the last inconclusive permission probe, logged once
        self._check_on_reported = False  # the "check is ON" Event was sent for this episode
        self._write_slots = threading.BoundedSemaphore(MAX_PARALLEL_WRITES)  # replica-wide
        # (time.monotonic() described, the tables) from `prefetch`, for one takeover sync
        self._prefetched: tuple[float, dict[str, list[ObservedRoute]]] | None = None
        self._prepared_at: float | None = None  # time.monotonic() `prepare` first succeeded
        self._prefetch_failures = 0  # in a row
        self._prefetch_reported: str | None = None  # the failure reason of the streak's Event
        for reason in FAILURE_REASONS:  # every series from the start, so rates begin at 0
            metrics.route_prefetch_failures.labels(reason)
        metrics.route_prefetch_age.set_function(self.prefetch_age)

    # -- start-up, every replica -----------------------------------------------------------------
    @property
    def prepared(self) -> bool:
        return self._prepared

    def problem(self) -> str | None:
        """Why this replica could not forward for the VPC if it led (readiness), or None."""
        with self._lock:
            return self._problem

    def forwarding_allowed(self) -> bool:
        """False only when the primary ENI is KNOWN to drop forwarded packets."""
        primary = self._primary
        return primary is None or not primary.source_dest_check

    def _check_on_text(self, primary: PrimaryInterface) -> str:
        return (
            f"source/destination check is ON for primary ENI {primary.eni_id} of "
            f"{self._instance_id}: forwarded packets would be dropped; disable it "
            "(launch template or NodeClass)"
        )

    def recheck_interface(self) -> None:
        """Read the primary ENI's source/destination check again (one DescribeInstances).

        Turning on: logged, sent as an Event, readiness names it and `sync` stops writing routes
        to the ENI. Turning off again: logged and sent as an Event. Raises Ec2Error if the read
        fails (the last known state stays)."""
        if not self._tables or not self._prepared:
            return
        primary = self._ec2.primary_interface(self._instance_id)
        self._primary = primary
        self._metrics.primary_eni_source_dest_check.set(1 if primary.source_dest_check else 0)
        if primary.source_dest_check:
            text = self._check_on_text(primary)
            with self._lock:
                self._problem = text
            if not self._check_on_reported:
                self._check_on_reported = True
                log.error("%s; routes are no longer pointed at it", text)
                self._report("SourceDestCheckEnabled", text)
            return
        if self._check_on_reported:
            self._check_on_reported = False
            with self._lock:
                self._problem = None
            text = f"source/destination check is off again for primary ENI {primary.eni_id}"
            log.warning("%s", text)
            self._report("SourceDestCheckDisabled", text)

    def prepare(self) -> None:
        """Resolve the primary ENI and describe every table once; raises Ec2Error.

        Succeeds only when the ENI is known, its source/destination check is off and every
        table exists: a replica keeps calling it (`prepare_until_ready`) until then, and each
        failure is logged, counted and sent as an Event.
        """
        if not self._tables:
            return
        try:
            primary = self._ec2.primary_interface(self._instance_id)
            self._primary = primary
            self._metrics.primary_eni_source_dest_check.set(1 if primary.source_dest_check else 0)
            if primary.source_dest_check:
                raise Ec2Error(
                    "DescribeInstances", "SourceDestCheckEnabled", self._check_on_text(primary)
                )
            observed = self._ec2.describe_routes(self._tables)
            missing = [t for t in self._tables if t not in observed]
            if missing:
                raise Ec2Error(
                    "DescribeRouteTables",
                    "InvalidRouteTableID.NotFound",
                    f"route table(s) {', '.join(missing)} not found (check ROUTE_TABLE_IDS)",
                )
            self._check_write_permission(primary.eni_id)
        except Ec2Error as exc:
            self._metrics.route_prepare_errors.inc()
            with self._lock:
                repeated = self._problem == str(exc)
                self._problem = str(exc)
            log.error("route tables not usable by this replica: %s", exc)
            if not repeated:
                denied = exc.operation == WRITE_PROBE
                self._report(WRITES_DENIED_REASON if denied else "RouteTablesNotUsable", str(exc))
            raise
        with self._lock:
            recovered = self._problem is not None
            self._problem = None
        if self._prepared_at is None:
            self._prepared_at = time.monotonic()
        self._prepared = True
        self._metrics.route_owner_prepared.set(1)
        log.info(
            "primary ENI of %s is %s; %d route table(s) reachable",
            self._instance_id,
            primary.eni_id,
            len(self._tables),
        )
        if recovered:
            log.info("route tables usable again")

    def _check_write_permission(self, eni_id: str) -> None:
        """One DryRun CreateRoute and ReplaceRoute per table (IAM may differ per table, e.g. by
        tag); raises Ec2Error naming every write EC2 says this replica may not make. An answer
        other than allowed/denied is logged (once) and not held against the replica: the
        probe is a warning ahead of time, the writes themselves stay the proof."""
        if not self._cidrs:
            return
        denied: list[str] = []
        for table in self._tables:
            key = RouteKey(table, self._cidrs[0])
            for operation in PROBED_WRITES:
                try:
                    if not self._ec2.write_allowed(operation, key, eni_id):
                        denied.append(f"{operation} in {table}")
                except Ec2Error as exc:
                    if self._unverified != str(exc):
                        self._unverified = str(exc)
                        log.warning("could not verify the route-write permission: %s", exc)
        if denied:
            raise Ec2Error(
                WRITE_PROBE,
                "UnauthorizedOperation",
                f"this replica may not write routes ({', '.join(denied)}): as leader it could "
                "not move the VPC routes; grant ec2:CreateRoute and ec2:ReplaceRoute on the "
                "route tables to the gateway's IAM role",
            )

    def prepare_until_ready(self, stop: threading.Event, *, max_backoff_s: float) -> None:
        """Call `prepare` until it succeeds or `stop`; failures back off up to `max_backoff_s`."""
        backoff = Backoff(initial_s=min(1.0, max_backoff_s), maximum_s=max_backoff_s)
        while not stop.is_set() and not self._prepared:
            try:
                self.prepare()
            except Ec2Error:
                stop.wait(backoff.next_delay())

    def pointing_here(self, destinations: Sequence[str]) -> list[RouteKey]:
        """The routes to `destinations` that still target our primary ENI (one describe);
        a replica that handed its shards over waits for this to be empty before it stops."""
        primary = self._primary
        if not self._tables or primary is None:
            return []
        wanted = set(destinations)
        observed = self._ec2.describe_routes(self._tables)
        return [
            RouteKey(table, route.destination)
            for table, routes in observed.items()
            for route in routes
            if route.destination in wanted
            and route.target_id == primary.eni_id
            and not route.blackhole
        ]

    def prefetch(self) -> bool:
        """Describe every table through the write client, unless done within PREFETCH_EVERY_S,
        for the next takeover (`sync(takeover=True)`): it then sends its writes without a
        describe of its own, on the connection this keeps open. Called every few seconds on
        every replica; True if it described. Raises Ec2Error if the describe fails."""
        if not self._tables or not self._prepared:
            return False
        last = self._prefetched
        if last is not None and time.monotonic() - last[0] < PREFETCH_EVERY_S:
            return False
        started = time.monotonic()
        try:
            observed = self._ec2.describe_routes(self._tables, through_writer=True)
        except Ec2Error as exc:
            self._prefetch_failed(exc)
            raise
        self._prefetched = (started, observed)
        self._prefetch_succeeded()
        return True

    def prefetch_age(self) -> float:
        """Seconds since the tables were last prefetched (since `prepare` succeeded, if never);
        0 before that (`hybrid_gateway_route_prefetch_age_seconds`)."""
        prefetched, prepared_at = self._prefetched, self._prepared_at
        since = prefetched[0] if prefetched is not None else prepared_at
        return 0.0 if since is None else time.monotonic() - since

    def _prefetch_failed(self, exc: Ec2Error) -> None:
        """Count the failure by reason. Once the last description is too old for a takeover
        to plan from (the failure now costs a describe before the first write of a failover),
        one Event for the streak, and one more if its reason changes: a few seconds of
        throttling send none, an hour of AccessDenied sends one."""
        reason = failure_reason(exc)
        self._metrics.route_prefetch_failures.labels(reason).inc()
        self._prefetch_failures += 1
        age = self.prefetch_age()
        if age <= PREFETCH_MAX_AGE_S or self._prefetch_reported == reason:
            return
        self._prefetch_reported = reason
        self._report(
            PREFETCH_FAILING_REASON,
            f"route tables not described for {age:.0f}s ({self._prefetch_failures} failure(s) "
            f"in a row, {reason}): a takeover by this replica describes them before its first "
            f"route write; last error: {exc}",
        )

    def _prefetch_succeeded(self) -> None:
        failures, self._prefetch_failures = self._prefetch_failures, 0
        if self._prefetch_reported is None:
            return
        self._prefetch_reported = None
        self._report(
            PREFETCH_RECOVERED_REASON,
            f"route tables described again for a takeover after {failures} failure(s)",
            warning=False,
        )

    def _takeover_view(
        self, eni: str, cidrs: Sequence[str]
    ) -> dict[str, list[ObservedRoute]] | None:
        """The prefetched tables, if fresh enough to plan a takeover from: every table
        described and no planned route already ours (a takeover finds them at the previous
        holder; any other picture is not worth a guess, so the sync describes). Active-active:
        every shard taken at once plans from the same description."""
        prefetched = self._prefetched
        if prefetched is None or time.monotonic() - prefetched[0] > PREFETCH_MAX_AGE_S:
            return None
        observed = prefetched[1]
        if any(t not in observed for t in self._tables):
            return None
        plan = plan_routes(observed, self._tables, cidrs, eni, allow_takeover=self._allow_takeover)
        return None if plan.in_place else observed

    # -- leader only -----------------------------------------------------------------------------
    def keep_warm(self) -> None:
        """Keep the route-write client's connection open (see `Ec2Routes.keep_warm`)."""
        if self._tables:
            self._ec2.keep_warm(self._tables[0])

    def sync(
        self,
        may_write: Callable[[], bool],
        destinations: Sequence[str] | None = None,
        retire: Retire | None = None,
        *,
        takeover: bool = False,
    ) -> SyncResult:
        """Bring every table to the desired state; raises Ec2Error if the reads fail.

        `destinations` (active-active: one shard's prefixes) replaces the pod CIDRs: only those
        routes are planned and written. `retire` plans the routes to delete from the tables
        (active-active: the shard's, from the current spread; default: the pod CIDRs are the
        plan, so every gateway route strictly inside one is retired, as after a switch back to
        active-standby). They are planned after the writes, on the tables as described plus
        what this sync wrote, so a route is deleted only once its replacement is written
        (core/routes.plan_retired_routes), and deleted by the owner of its first address.

        `takeover` (a term's first sync): plan from the standby's prefetched tables when they
        are fresh (`prefetch`), so the writes go out without waiting for a describe. Such a
        sync retires nothing and, if any write fails, describes and syncs again at once; the
        re-checks that follow an acquisition describe (leader/service.py), so what changed
        since the prefetch is repaired within the late-write window."""
        if not self._tables:
            return SyncResult(RoutePlan())
        started = time.monotonic()
        cidrs = list(destinations) if destinations is not None else self._cidrs
        if takeover and self._primary is not None and not self._primary.source_dest_check:
            observed = self._takeover_view(self._primary.eni_id, cidrs)
            if observed is not None:
                log.info("takeover: writing routes planned from the prefetched route tables")
                result = self._sync_from(observed, cidrs, may_write, retire, started)
                if not result.failed:
                    return result
                log.info("a takeover write planned from the prefetched tables failed: describing")
        return self._sync_from(None, cidrs, may_write, retire, started)

    def _sync_from(
        self,
        observed: Mapping[str, list[ObservedRoute]] | None,
        cidrs: Sequence[str],
        may_write: Callable[[], bool],
        retire: Retire | None,
        started: float,
    ) -> SyncResult:
        """One sync planned on `observed`, or on a describe when None. Only a sync that
        described retires routes: a prefetched picture may be seconds old."""
        described = observed is None
        primary = self._primary
        if primary is None:  # leadership came before start-up preparation finished
            primary = self._primary = self._ec2.primary_interface(self._instance_id)
        if primary.source_dest_check:  # no route to an ENI that drops what it forwards
            raise Ec2Error(
                "DescribeInstances",
                "SourceDestCheckEnabled",
                self._check_on_text(primary) + "; no route is pointed at it",
            )
        eni = primary.eni_id
        if observed is None:
            observed = self._ec2.describe_routes(self._tables)
        plan = plan_routes(observed, self._tables, cidrs, eni, allow_takeover=self._allow_takeover)
        result = SyncResult(plan, missing_tables=[t for t in self._tables if t not in observed])
        for table in result.missing_tables:
            log.error("route table %s not found (check ROUTE_TABLE_IDS)", table)
        result.refusals_changed = self._note_refusals(plan)
        creates = set(plan.create)

        def guard() -> bool:
            """Checked before every attempt of a write (a throttled one retries seconds
            later): the check read as ON meanwhile withholds it, as the lease guard does."""
            return self.forwarding_allowed() and may_write()

        def write(key: RouteKey) -> tuple[RouteKey, str | None]:
            if key in creates:
                outcome = self._send(key, lambda: self._ec2.create_route(key, eni, guard))
            else:
                outcome = self._send(key, lambda: self._ec2.replace_route(key, eni, guard))
            if outcome[1] == SUPPRESSED and not self.forwarding_allowed():
                return key, CHECK_ON_NOT_WRITTEN  # read as ON during this sync
            return outcome

        for key, error in self._wave(plan.writes, write):
            if error == SUPPRESSED:
                result.suppressed = True
            elif error:
                log.warning("route %s in %s: %s", key.destination, key.table_id, error)
                result.failed.append((key, error))
            else:
                log.info("route %s in %s -> %s", key.destination, key.table_id, eni)
                result.written.append(key)
        if described and not result.failed and not result.suppressed:  # the new cut first
            self._retire(observed, retire, eni, may_write, result)
        self._metrics.aws_route_table_update_duration.observe(time.monotonic() - started)
        return result

    def _send(self, key: RouteKey, call: Callable[[], None]) -> tuple[RouteKey, str | None]:
        """One route write (its guard checked per attempt by the adapter) within the replica's
        bound on writes in flight; (key, None), (key, SUPPRESSED) or (key, the error)."""
        with self._write_slots:
            try:
                call()
            except WriteNotAllowedError:
                return key, SUPPRESSED
            except Ec2Error as exc:
                self._metrics.aws_route_table_update_errors.inc()
                return key, str(exc)
        self._metrics.aws_route_table_update.inc()
        return key, None

    def _wave(
        self,
        keys: Sequence[RouteKey],
        send: Callable[[RouteKey], tuple[RouteKey, str | None]],
    ) -> list[tuple[RouteKey, str | None]]:
        """Send `keys` in parallel (at most MAX_PARALLEL_WRITES of the replica at once); every
        outcome, in the order of `keys`."""
        if not keys:
            return []
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_WRITES, len(keys))) as pool:
            return list(pool.map(send, keys))

    def _retire(
        self,
        observed: Mapping[str, list[ObservedRoute]],
        retire: Retire | None,
        eni: str,
        may_write: Callable[[], bool],
        result: SyncResult,
    ) -> None:
        """Delete the retired routes (one rule for both modes: core/routes.plan_retired_routes),
        planned on the tables as described plus this sync's writes, so the replacements of a
        retired route are known to be in place; in parallel with each other (one write time for
        all of them, not one per route: a moved cut can retire many), after those writes."""
        written = set(result.written)
        after: dict[str, list[ObservedRoute]] = {}
        for table, routes in observed.items():
            kept = [r for r in routes if RouteKey(table, r.destination) not in written]
            kept += [
                ObservedRoute(k.destination, TargetKind.NETWORK_INTERFACE, eni)
                for k in result.written
                if k.table_id == table
            ]
            after[table] = kept
        if retire is None:
            pods = [IPv4Network(c) for c in self._cidrs]
            deletes, result.retiring = plan_retired_routes(
                after, self._tables, pods, self._cidrs, self._cidrs
            )
        else:
            deletes, result.retiring = retire(after)
        outcomes = self._wave(
            deletes, lambda key: self._send(key, lambda: self._ec2.delete_route(key, may_write))
        )
        for key, error in outcomes:
            if error == SUPPRESSED:
                result.suppressed = True
            elif error:
                log.warning("retired route %s in %s: %s", key.destination, key.table_id, error)
                result.failed.append((key, error))
            else:
                log.info(
                    "deleted retired route %s in %s: an earlier cut of the pod networks",
                    key.destination,
                    key.table_id,
                )
                result.deleted.append(key)
        if result.deleted:
            self._report(
                "StaleRoutesDeleted",
                f"deleted {len(result.deleted)} route(s) of an earlier cut of the pod networks: "
                + ", ".join(f"{k.destination} in {k.table_id}" for k in result.deleted[:5]),
            )

    def _note_refusals(self, plan: RoutePlan) -> bool:
        self._metrics.route_takeover_refused.set(len(plan.refused))
        keys = frozenset(r.key for r in plan.refused)
        changed = keys != self._last_refused and bool(plan.refused)
        if changed:
            for refusal in plan.refused:
                log.warning("%s; set ALLOW_ROUTE_TAKEOVER=true to take it", refusal.describe())
        self._last_refused = keys
        return changed
