"""Server state besides objects: identities and tokens, partitions, faults, the audit log."""

from __future__ import annotations

import os
import random
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import errors
from .audit import AuditRecord

ADMIN_IDENTITY = "admin"
_IDENTITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


@dataclass
class Control:
    """Everything besides objects: tokens, partitions, the audit log, watch bookkeeping."""

    kubeconfig_dir: Path
    url: str = ""
    ca_pem: bytes | None = None  # the serving certificate's PEM when serving TLS
    tokens: dict[str, str] = field(default_factory=dict)  # token -> identity
    identities: dict[str, str] = field(default_factory=dict)  # identity -> token
    partitions: dict[str, str] = field(default_factory=dict)  # identity -> "drop" | "hang"
    # "identity/resource" ("*": any, see fault_key) -> delay, or -> [code, remaining]
    latency_s: dict[str, float] = field(default_factory=dict)
    latency_jitter_s: dict[str, float] = field(default_factory=dict)  # up to this much more
    faults: dict[str, list[int]] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    watch_epoch: int = 0  # bumped to cut every open watch
    bookmark_interval_s: float = 1.0
    max_watch_s: float = 1800.0
    lock: threading.Condition = field(default_factory=threading.Condition)
    stopping: threading.Event = field(default_factory=threading.Event)

    def identity(self, name: str) -> tuple[str, Path]:
        """Token and kubeconfig path for `name`, created on first use (idempotent)."""
        if not _IDENTITY_RE.match(name):
            raise errors.bad_request(
                f"identity {name!r} is invalid: use letters, digits and . _ : @ - (max 128)"
            )
        with self.lock:
            token = self.identities.get(name)
            if token is None:
                token = secrets.token_urlsafe(24)
                self.identities[name] = token
                self.tokens[token] = name
            path = self.kubeconfig_dir / f"{name}.kubeconfig"
            write_kubeconfig(path, self.url, name, token, self.ca_pem)
            return token, path

    def record(self, entry: AuditRecord) -> None:
        with self.lock:
            self.audit.append(entry)

    def partition_mode(self, identity: str) -> str | None:
        with self.lock:
            return self.partitions.get(identity)

    def take_fault(self, identity: str, resource: str | None) -> int | None:
        """The status code to fail this request with, if a fault is armed for `identity` and
        `resource` (the most specific armed fault wins)."""
        with self.lock:
            fault = None
            for key in fault_keys(identity, resource):
                fault = self.faults.get(key)
                if fault is not None:
                    break
            if fault is None:
                return None
            fault[1] -= 1
            if fault[1] <= 0:
                self.faults = {k: v for k, v in self.faults.items() if v is not fault}
            return fault[0]

    def delay(self, identity: str, resource: str | None) -> float:
        """The delay for this request (the most specific one set wins): its latency plus a
        uniform random share of its jitter."""
        with self.lock:
            for key in fault_keys(identity, resource):
                if key in self.latency_s:
                    return self.latency_s[key] + random.uniform(
                        0.0, self.latency_jitter_s.get(key, 0.0)
                    )
            return 0.0

    def set_partition(self, identity: str, mode: str | None) -> None:
        with self.lock:
            if mode is None:
                self.partitions.pop(identity, None)
            else:
                self.partitions[identity] = mode
            self.lock.notify_all()


def write_kubeconfig(
    path: Path, url: str, identity: str, token: str, ca_pem: bytes | None = None
) -> None:
    cluster: dict[str, str] = {"server": url}
    if ca_pem is not None:
        import base64

        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testkit", "cluster": cluster}],
        "users": [{"name": identity, "user": {"token": token}}],
        "contexts": [
            {
                "name": f"{identity}@testkit",
                "context": {"cluster": "testkit", "user": identity, "namespace": "default"},
            }
        ],
        "current-context": f"{identity}@testkit",
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    tmp.replace(path)


def fault_key(identity: str | None, resource: str | None) -> str:
    """The key of a fault or latency for `identity` and `resource` (None: any)."""
    return f"{identity or '*'}/{resource or '*'}"


def fault_keys(identity: str, resource: str | None) -> list[str]:
    """Fault and latency keys that match a request, most specific first."""
    return [
        fault_key(identity, resource),
        fault_key(identity, None),
        fault_key(None, resource),
        fault_key(None, None),
    ]
