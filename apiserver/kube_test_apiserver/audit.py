"""One audit record per API request: who asked what, and how it was answered.

Typed so every part of the server fills the same fields; `to_json()` is what the admin API
returns (the keys the harness and the tests read, see `ApiServer.audit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AuditRecord:
    method: str
    path: str
    query: str
    verb: str = ""
    identity: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    status: int | None = None
    reason: str | None = None
    resource_version: str | None = None
    dropped: bool = False
    mono: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)
    mono_done: float | None = None

    def __post_init__(self) -> None:
        if not self.verb:
            self.verb = self.method.lower()

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "method": self.method,
            "verb": self.verb,
            "path": self.path,
            "query": self.query,
            "resource": self.resource,
            "namespace": self.namespace,
            "name": self.name,
            "subresource": self.subresource,
            "status": self.status,
            "reason": self.reason,
            "resourceVersion": self.resource_version,
            "dropped": self.dropped,
            "mono": self.mono,
            "wall": self.wall,
            "mono_done": self.mono_done,
        }


def lease_writes(
    audit: list[dict[str, Any]], namespace: str, *, name: str | None = None
) -> list[tuple[float, str]]:
    """Successful Lease creates and updates in `namespace` (of the Lease `name` only, if
    given) from `ApiServer.audit()`, as (server monotonic time, writer identity), in order:
    who held which Lease when, as the server saw it."""
    prefix = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return sorted(
        (float(e["mono"]), str(e["identity"]))
        for e in audit
        if e["path"].startswith(prefix)
        and e["verb"] in ("create", "update")
        and e["status"] in (200, 201)
        and (name is None or e["name"] == name)
    )
