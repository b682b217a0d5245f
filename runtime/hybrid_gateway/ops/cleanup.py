"""`cleanup`: what the gateway leaves behind after an uninstall (pure planning).

Which routes go is decided by the planner the construct's deletion custom resource uses too
(`hybrid_gateway_contract.route_cleanup`): in the owned tables, routes to the pod CIDRs that
target a gateway ENI or are blackholes of a vanished interface; routes to anything else are
never touched. Plus the CiliumVTEPConfig the leader published.
"""

from __future__ import annotations

import json
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


Failures = dict[str, str]  # what failed (route_key / VTEP_KEY) -> why
VTEP_KEY = f"{VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}/{VTEP_CONFIG_NAME}"


def route_key(table_id: str, destination: str) -> str:
    return f"{table_id} {destination}"


def plan_lines(plan: CleanupPlan, *, applied: Failures | None = None) -> list[str]:
    """One line per decision: `would delete` (dry run, `applied` None), `deleted` or
    `FAILED to delete ... (why)` once carried out, `keep` for what is not ours."""

    def done(key: str, text: str) -> str:
        if applied is None:
            return f"would delete {text}"
        if key in applied:
            return f"FAILED to delete {text}: {applied[key]}"
        return f"deleted {text}"

    lines = []
    for decision in plan.routes.decisions:
        route = decision.route
        text = decision.describe().split(" ", 1)[1]  # without the planner's own verb
        if decision.delete:
            lines.append(done(route_key(route.table_id, route.destination), text))
        else:
            lines.append(f"keep {text}")
    if plan.delete_vtep_config:
        lines.append(done(VTEP_KEY, VTEP_KEY))
    if not plan.routes.deletions and not plan.delete_vtep_config:
        lines.append("nothing to clean up")
    return lines


def plan_json(plan: CleanupPlan, *, applied: Failures | None = None) -> str:
    def outcome(key: str) -> str:
        if applied is None:
            return "would delete"
        return "failed" if key in applied else "deleted"

    return json.dumps(
        {
            "dryRun": applied is None,
            "routes": [
                {
                    "routeTableId": d.route.table_id,
                    "destination": d.route.destination,
                    "target": d.route.target,
                    "state": d.route.state,
                    "kind": d.kind.value,
                    "action": "delete" if d.delete else "keep",
                    "outcome": outcome(route_key(d.route.table_id, d.route.destination))
                    if d.delete
                    else "kept",
                }
                for d in plan.routes.decisions
            ],
            "deleteVtepConfig": plan.delete_vtep_config,
            "errors": dict(applied or {}),
        },
        indent=2,
    )
