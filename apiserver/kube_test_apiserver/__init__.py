"""A test Kubernetes API server with real semantics, run as a separate process.

`ApiServer.start(workdir)` starts it and returns a handle; every identity gets its own kubeconfig
(`srv.kubeconfig("gw-a")`) for the official `kubernetes` client. Serves namespaces, events, leases
and the bundled Cilium CRDs with resourceVersions, conflicts, watches, 410 Expired and schema
validation; the harness can partition an identity, read the audit log and compact history.
"""

from __future__ import annotations

from .control import ADMIN_IDENTITY
from .process import ApiServer, ApiServerError

__all__ = ["ADMIN_IDENTITY", "ApiServer", "ApiServerError"]
