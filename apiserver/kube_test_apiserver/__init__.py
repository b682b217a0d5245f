"""A Kubernetes API server for tests, with real semantics: the public API.

`ApiServer.start(workdir, crds=[...])` runs it as a separate process (inside a network namespace
if asked), `ApiServer.start_in_process(...)` as threads of the caller; both return the same
handle. Every identity gets its own kubeconfig (`srv.kubeconfig("gw-a")`) for the official
`kubernetes` client. It serves the built-in kinds and the CustomResourceDefinitions passed in,
with resourceVersions, conflicts, watches, 410 Expired and schema validation; the harness can
partition an identity, inject errors and latency, read the audit log and compact history.
`make_certificate`/`server_context` give a test's own server the same self-signed TLS.
"""

from __future__ import annotations

from .audit import lease_writes
from .control import ADMIN_IDENTITY
from .process import ApiServer, ApiServerError
from .tls import make_certificate, server_context

__all__ = [
    "ADMIN_IDENTITY",
    "ApiServer",
    "ApiServerError",
    "lease_writes",
    "make_certificate",
    "server_context",
]
