"""A fresh read of every Lease that entitles a write (the active-standby Lease and the shard
Leases of the group), with their labels, for the one-regime-at-a-time fence.

A list without a resourceVersion is served from etcd with a quorum read ("Resource versions",
Kubernetes API concepts: resourceVersion unset means "Most Recent", a consistent read), so
it sees every write stored before it started; that is what the fence's read-after-acquire
relies on. One HTTP attempt each (kube_attempts.py), with a client-side timeout.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_lease import LeaseApiError, lease_record
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL

#: (Lease name, record, labels) of one Lease.
LeaseState = tuple[str, LeaseRecord, Mapping[str, str]]


class WriterLeases:
    def __init__(self, api_client: client.ApiClient, namespace: str, lease_name: str) -> None:
        self._api = client.CoordinationV1Api(single_attempt(api_client))
        self._namespace = namespace
        self._lease_name = lease_name

    def read(self, timeout_s: float) -> list[LeaseState]:
        """The active-standby Lease (if it exists) and every Lease of the group; raises
        LeaseApiError."""
        where = f"{self._namespace}/{self._lease_name}"
        states: list[LeaseState] = []
        try:
            try:
                leader = self._api.read_namespaced_lease(
                    self._lease_name, self._namespace, _request_timeout=timeout_s
                )
                states.append(
                    (self._lease_name, lease_record(leader), leader.metadata.labels or {})
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
            group = self._api.list_namespaced_lease(
                self._namespace,
                label_selector=f"{LEASE_GROUP_LABEL}={self._lease_name}",
                _request_timeout=timeout_s,
            )
        except ApiException as exc:
            raise LeaseApiError(f"read the Leases of {where}: {exc.status} {exc.reason}") from exc
        except Exception as exc:  # urllib3 timeouts, connection errors
            raise LeaseApiError(f"read the Leases of {where}: {exc}") from exc
        for lease in group.items:
            states.append((lease.metadata.name, lease_record(lease), lease.metadata.labels or {}))
        return states
