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
