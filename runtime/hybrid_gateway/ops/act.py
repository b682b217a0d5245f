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

from .cleanup import CleanupPlan


def apply_cleanup(plan: CleanupPlan, *, ec2: Any, kube: client.ApiClient | None) -> list[str]:
    """Carry the plan out; returns one message per failed change (already gone is success)."""
    failures: list[str] = []
    for removal in plan.routes.deletions:
        try:
            ec2.delete_route(
                RouteTableId=removal.table_id, DestinationCidrBlock=removal.destination
            )
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code != "InvalidRoute.NotFound":
                failures.append(
                    f"delete route {removal.destination} in {removal.table_id}: {code}: {exc}"
                )
        except botocore.exceptions.BotoCoreError as exc:
            failures.append(f"delete route {removal.destination} in {removal.table_id}: {exc}")
    if plan.delete_vtep_config:
        if kube is None:
            failures.append("delete CiliumVTEPConfig: no Kubernetes client")
        else:
            try:
                client.CustomObjectsApi(kube).delete_cluster_custom_object(
                    CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, VTEP_CONFIG_NAME
                )
            except ApiException as exc:
                if exc.status != 404:
                    failures.append(f"delete CiliumVTEPConfig: {exc.status} {exc.reason}")
            except Exception as exc:  # urllib3 connection errors
                failures.append(f"delete CiliumVTEPConfig: {exc}")
    return failures
