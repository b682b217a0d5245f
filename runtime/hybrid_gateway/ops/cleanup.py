"""`cleanup`: what the gateway leaves behind after an uninstall (pure planning).

Which routes go is decided by the planner the construct's deletion custom resource uses too
(`hybrid_gateway_contract.route_cleanup`): in the owned tables, routes to the pod CIDRs that
target a gateway ENI or are blackholes of a vanished interface; routes to anything else are
never touched. Plus the CiliumVTEPConfig the leader published.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from hybrid_gateway_contract import CILIUM_GROUP, VTEP_CONFIG_NAME, VTEP_CONFIGS_PLURAL
from hybrid_gateway_contract.route_cleanup import CleanupPlan as RoutePlan
from hybrid_gateway_contract.route_cleanup import plan_route_cleanup

from .facts import Facts


@dataclass(frozen=True)
class CleanupPlan:
    routes: RoutePlan
    delete_vtep_config: bool


def plan_cleanup(facts: Facts) -> CleanupPlan:
    settings = facts.settings
    assert settings is not None and settings.pod_cidrs
    routes = plan_route_cleanup(
        facts.owned_routes,
        owned_tables=settings.route_table_ids,
        pod_cidrs=settings.pod_cidrs,
        gateway_enis=facts.gateway_enis,
    )
    return CleanupPlan(routes, facts.vtep_endpoints is not None)


def plan_lines(plan: CleanupPlan, *, dry_run: bool) -> list[str]:
    prefix = "would " if dry_run else ""
    lines = [prefix + d.describe() if d.delete else d.describe() for d in plan.routes.decisions]
    if plan.delete_vtep_config:
        lines.append(f"{prefix}delete {VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}/{VTEP_CONFIG_NAME}")
    if not plan.routes.deletions and not plan.delete_vtep_config:
        lines.append("nothing to clean up")
    return lines


def plan_json(plan: CleanupPlan, *, dry_run: bool, errors: Sequence[str] = ()) -> str:
    return json.dumps(
        {
            "dryRun": dry_run,
            "routes": [
                {
                    "routeTableId": d.route.table_id,
                    "destination": d.route.destination,
                    "target": d.route.target,
                    "state": d.route.state,
                    "kind": d.kind.value,
                    "action": "delete" if d.delete else "keep",
                }
                for d in plan.routes.decisions
            ],
            "deleteVtepConfig": plan.delete_vtep_config,
            "errors": list(errors),
        },
        indent=2,
    )
