"""The only writes of the operations commands: cleanup's route and CiliumVTEPConfig deletions."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
)

from .cleanup import VTEP_KEY, CleanupPlan, Failures, route_key


def apply_cleanup(plan: CleanupPlan, *, ec2: Any, kube: client.ApiClient | None) -> Failures:
    """Carry the plan out, one change at a time; returns why each failed change failed, keyed
    as `failure_key` names it (deleting what is already gone counts as done)."""
    failures: Failures = {}
    for removal in plan.routes.deletions:
        key = route_key(removal.table_id, removal.destination)
        try:
            ec2.delete_route(
                RouteTableId=removal.table_id, DestinationCidrBlock=removal.destination
            )
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") != "InvalidRoute.NotFound":
                failures[key] = f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
        except botocore.exceptions.BotoCoreError as exc:
            failures[key] = str(exc)
    if plan.delete_vtep_config:
        if kube is None:
            failures[VTEP_KEY] = "no Kubernetes client"
        else:
            try:
                client.CustomObjectsApi(kube).delete_cluster_custom_object(
                    CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, VTEP_CONFIG_NAME
                )
            except ApiException as exc:
                if exc.status != 404:
                    failures[VTEP_KEY] = f"{exc.status} {exc.reason}"
            except Exception as exc:  # urllib3 connection errors
                failures[VTEP_KEY] = str(exc)
    return failures
