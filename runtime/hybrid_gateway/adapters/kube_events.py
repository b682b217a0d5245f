"""Kubernetes Events, so operators see skipped nodes, leadership changes and refusals in
`kubectl describe` and `kubectl get events`, not only in the daemon's log.

Events are best effort: a failure to record one is logged and never stops the caller.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from kubernetes import client

log = logging.getLogger(__name__)

COMPONENT = "eks-hybrid-nodes-gateway"


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about. Cluster-scoped objects have namespace None."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None


#: The API server accepts an Event about a cluster-scoped object (a CiliumNode, the
#: CiliumVTEPConfig) only in this namespace; any other is rejected with 422.
CLUSTER_SCOPED_EVENTS_NAMESPACE = "default"


class EventRecorder:
    """Writes core/v1 Events next to the object they are about."""

    def __init__(self, api: client.CoreV1Api, *, host: str | None) -> None:
        self._api = api
        self._host = host

    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        namespace = obj.namespace or CLUSTER_SCOPED_EVENTS_NAMESPACE
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{obj.name}.{uuid.uuid4().hex[:16]}", namespace=namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=obj.api_version,
                kind=obj.kind,
                name=obj.name,
                namespace=obj.namespace,
                uid=obj.uid,
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=COMPONENT, host=self._host),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component=COMPONENT,
            reporting_instance=self._host or "",
        )
        try:
            self._api.create_namespaced_event(namespace, event)
        except Exception as exc:  # best effort by design: never fail the caller
            log.warning("could not record event %s on %s/%s: %s", reason, obj.kind, obj.name, exc)
