"""Deletion custom resource: remove the remote-pod-network routes the gateway leaves behind.

Runs in AWS Lambda (Python runtime, boto3 from the runtime) behind the CDK Provider framework,
which reports a raised exception to CloudFormation as FAILED with its message. The planner is
`hybrid_gateway_contract.route_cleanup`, bundled beside this file in the asset, the same code the
`hybrid-gateway cleanup` command uses.

Only when the whole stack goes away: a Delete that CloudFormation sends for a replacement or
for an update rollback while the gateway keeps running would otherwise pull the routes from under
it. The physical ID never changes, so updates never cause a replacement; and the stack's own
status, checked with DescribeStacks, must be DELETE_IN_PROGRESS (stack deletion) or
ROLLBACK_IN_PROGRESS (a failed creation being rolled back: every resource is deleted, and routes
the gateway wrote before the failure would stay as blackholes; AWS CloudFormation user guide,
"Stack status codes").

Idempotent: a route already gone (`InvalidRoute.NotFound`) counts as deleted, and every pass
re-reads the tables. Every decision is logged. Routes that come back after a pass (a gateway
pod still terminating) are deleted again; if they keep coming back the handler fails loudly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_gateway_contract.route_cleanup import (
    CleanupPlan,
    gateway_eni_ids,
    plan_route_cleanup,
    routes_from_describe,
)

LOG = logging.getLogger("hybrid-gateway-route-cleanup")
LOG.setLevel(logging.INFO)

#: Stack statuses in which every resource of the stack is being deleted: a stack deletion and
#: a create rollback (nested stacks too: theirs is set the same way). Not UPDATE_ROLLBACK_*
#: or *_CLEANUP_IN_PROGRESS: the stack, and its gateway, stay.
DELETING = frozenset({"DELETE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS"})
#: A route deleted twice by someone else between our read and our write.
ROUTE_GONE = "InvalidRoute.NotFound"


@dataclass(frozen=True)
class CleanupConfig:
    """The custom resource's properties (strings, as CloudFormation passes them)."""

    route_table_ids: tuple[str, ...]
    pod_cidrs: tuple[str, ...]
    instance_filters: tuple[Mapping[str, Any], ...]
    settle_seconds: float
    max_passes: int
    shards: int | None = None  # active-active: the shard prefixes are the gateway's routes too

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> CleanupConfig:
        def required_list(key: str) -> tuple[str, ...]:
            values = props.get(key)
            if not isinstance(values, list) or not values:
                raise ValueError(f"{key}: a non-empty list is required, got {values!r}")
            return tuple(str(v) for v in values)

        filters = props.get("InstanceFilters")
        if not isinstance(filters, list) or not filters:
            raise ValueError(f"InstanceFilters: a non-empty list is required, got {filters!r}")

        def number(key: str, default: str) -> float:
            value = props.get(key, default)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: {value!r} is not a number") from None

        shards = props.get("Shards")
        if shards is not None and not str(shards).isdigit():
            raise ValueError(f"Shards: {shards!r} is not a shard count")
        return cls(
            route_table_ids=required_list("RouteTableIds"),
            pod_cidrs=required_list("PodCidrs"),
            instance_filters=tuple(filters),
            settle_seconds=number("SettleSeconds", "30"),
            max_passes=int(number("MaxPasses", "4")),
            shards=None if shards is None else int(shards),
        )


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def stack_is_being_deleted(cloudformation: Any, stack_id: str) -> tuple[bool, str]:
    """(whether the stack is being deleted, its status) from DescribeStacks."""
    [stack] = cloudformation.describe_stacks(StackName=stack_id)["Stacks"]
    status = str(stack["StackStatus"])
    return status in DELETING, status


def plan(ec2: Any, config: CleanupConfig) -> CleanupPlan:
    """Read the owned tables and the gateway instances; decide with the shared planner."""
    tables = ec2.describe_route_tables(RouteTableIds=list(config.route_table_ids))["RouteTables"]
    reservations: list[Any] = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[dict(f) for f in config.instance_filters]
    ):
        reservations.extend(page["Reservations"])
    return plan_route_cleanup(
        routes_from_describe(tables),
        owned_tables=config.route_table_ids,
        pod_cidrs=config.pod_cidrs,
        gateway_enis=gateway_eni_ids(reservations),
        shards=config.shards,
    )


def delete_routes(ec2: Any, cleanup: CleanupPlan) -> tuple[list[str], list[str]]:
    """Delete what the plan says; (deleted, failures), every one logged."""
    deleted: list[str] = []
    failures: list[str] = []
    for decision in cleanup.decisions:
        LOG.info(decision.describe())
        if not decision.delete:
            continue
        route = decision.route
        where = f"{route.table_id} {route.destination}"
        try:
            ec2.delete_route(RouteTableId=route.table_id, DestinationCidrBlock=route.destination)
        except Exception as exc:
            if _error_code(exc) == ROUTE_GONE:
                LOG.info("already gone: %s", where)
                deleted.append(where)
                continue
            LOG.error("could not delete %s: %s", where, exc)
            failures.append(f"{where}: {exc}")
            continue
        LOG.info("deleted %s (was -> %s)", where, route.target)
        deleted.append(where)
    return deleted, failures


def clean_up(
    ec2: Any, config: CleanupConfig, *, sleep: Callable[[float], None] = time.sleep
) -> list[str]:
    """Delete, wait `settle_seconds`, look again; done when a look finds nothing. Raise if a
    deletion failed or routes still come back after `max_passes`. Returns every deletion."""
    all_deleted: list[str] = []
    for attempt in range(1, config.max_passes + 1):
        cleanup = plan(ec2, config)
        if not cleanup.deletions:
            LOG.info("pass %d: nothing left to delete", attempt)
            return all_deleted
        deleted, failures = delete_routes(ec2, cleanup)
        all_deleted.extend(deleted)
        if failures:
            raise RuntimeError(
                f"could not delete {len(failures)} gateway route(s): {'; '.join(failures)}"
            )
        sleep(config.settle_seconds)  # a gateway pod still terminating may write once more
    leftover = [f"{r.table_id} {r.destination}" for r in plan(ec2, config).deletions]
    if leftover:
        raise RuntimeError(
            f"gateway routes came back after {config.max_passes} passes (is a gateway pod "
            f"still running?): {', '.join(leftover)}"
        )
    return all_deleted


def handle(
    event: Mapping[str, Any],
    *,
    ec2: Any,
    cloudformation: Any,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The Provider framework's onEvent, with its AWS clients given."""
    request = event["RequestType"]
    props = event["ResourceProperties"]
    # Stable physical ID: an update never replaces the resource (a replacement would Delete).
    physical_id = str(event.get("PhysicalResourceId") or f"route-cleanup-{props['ClusterName']}")
    if request != "Delete":
        CleanupConfig.from_properties(props)  # fail the deployment early on bad properties
        LOG.info("%s: nothing to do until the stack is deleted", request)
        return {"PhysicalResourceId": physical_id}
    deleting, status = stack_is_being_deleted(cloudformation, str(event["StackId"]))
    if not deleting:
        LOG.info("stack status %s is not a stack deletion: routes left to the gateway", status)
        return {"PhysicalResourceId": physical_id, "Data": {"Deleted": "0"}}
    deleted = clean_up(ec2, CleanupConfig.from_properties(props), sleep=sleep)
    LOG.info("deleted %d route(s): %s", len(deleted), json.dumps(deleted))
    return {"PhysicalResourceId": physical_id, "Data": {"Deleted": str(len(deleted))}}


def client_config() -> Any:
    """The SDK retries throttling and 5xx (standard mode); the Lambda timeout bounds the run."""
    import botocore.config

    return botocore.config.Config(retries={"mode": "standard", "max_attempts": 10})


def _clients() -> tuple[Any, Any]:
    import boto3

    config = client_config()
    return boto3.client("ec2", config=config), boto3.client("cloudformation", config=config)


def on_event(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point (`index.on_event`)."""
    ec2, cloudformation = _clients()
    return handle(event, ec2=ec2, cloudformation=cloudformation)


__all__ = ["CleanupConfig", "clean_up", "handle", "on_event", "plan"]
