"""HTTP front of the test API server: routing, auth, partitions, audit, watch streams.

Speaks the Kubernetes REST conventions the official client relies on (paths, Status bodies,
chunked newline-delimited watch events). Admin endpoints live under `/_testkit/` and need the
admin token; they are also served on a Unix socket so a harness in another network namespace
can reach them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import re
import secrets
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import errors
from .errors import ApiError
from .objects import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    JsonObj,
    Selector,
    json_patch,
    merge_patch,
    parse_field_selector,
    parse_label_selector,
)
from .resources import ResourceType
from .store import Event, ExpiredError, Store

log = logging.getLogger("hybrid_gateway_testkit.apiserver")

ADMIN_IDENTITY = "admin"
ADMIN_PREFIX = "/_testkit/"
KUBE_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-hybrid-gateway-testkit",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_IDENTITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


@dataclass
class Control:
    """Everything besides objects: tokens, partitions, the audit log, watch bookkeeping."""

    kubeconfig_dir: Path
    url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # token -> identity
    identities: dict[str, str] = field(default_factory=dict)  # identity -> token
    partitions: dict[str, str] = field(default_factory=dict)  # identity -> "drop" | "hang"
    latency_s: dict[str, float] = field(default_factory=dict)  # identity ("*": all) -> delay
    faults: dict[str, list[int]] = field(default_factory=dict)  # identity -> [code, remaining]
    audit: list[JsonObj] = field(default_factory=list)
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
            write_kubeconfig(path, self.url, name, token)
            return token, path

    def record(self, entry: JsonObj) -> None:
        with self.lock:
            self.audit.append(entry)

    def partition_mode(self, identity: str) -> str | None:
        with self.lock:
            return self.partitions.get(identity)

    def take_fault(self, identity: str) -> int | None:
        """The status code to fail this request with, if a fault is armed for `identity`."""
        with self.lock:
            fault = self.faults.get(identity) or self.faults.get("*")
            if fault is None:
                return None
            fault[1] -= 1
            if fault[1] <= 0:
                self.faults = {k: v for k, v in self.faults.items() if v is not fault}
            return fault[0]

    def delay(self, identity: str) -> float:
        with self.lock:
            return self.latency_s.get(identity, self.latency_s.get("*", 0.0))

    def set_partition(self, identity: str, mode: str | None) -> None:
        with self.lock:
            if mode is None:
                self.partitions.pop(identity, None)
            else:
                self.partitions[identity] = mode
            self.lock.notify_all()


def write_kubeconfig(path: Path, url: str, identity: str, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testkit", "cluster": {"server": url}}],
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


class _DroppedError(Exception):
    """The request is 'lost in the network': close the connection without any response."""


@dataclass
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive like the real server."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: small responses would otherwise wait ~40 ms for delayed ACKs. The Unix admin
    # socket has no such option: its handler turns this off.
    disable_nagle_algorithm = True
    server_version = "hybrid-gateway-testkit-apiserver"
    store: Store
    control: Control
    _body: bytes | None = None
    _recorded = False

    # --- plumbing ---------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _read_raw(self) -> bytes:
        """The request body, read at most once per request."""
        if self._body is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def _read_body(self) -> Any:
        raw = self._read_raw()
        if not raw.strip():
            raise errors.bad_request("the request body is empty")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None

    def _drain_body(self) -> None:
        self._read_raw()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _authenticate(self) -> str:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise errors.unauthorized()
        with self.control.lock:
            identity = self.control.tokens.get(header[len("Bearer ") :].strip())
        if identity is None:
            raise errors.unauthorized()
        return identity

    def _wait_partition(self, identity: str) -> None:
        """Raise _DroppedError if `identity` is partitioned ('hang' first waits for heal)."""
        mode = self.control.partition_mode(identity)
        if mode is None:
            return
        if mode == "hang":
            with self.control.lock:
                self.control.lock.wait_for(
                    lambda: (
                        identity not in self.control.partitions or self.control.stopping.is_set()
                    ),
                    timeout=self.control.max_watch_s,
                )
        raise _DroppedError()

    # --- dispatch ---------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._body = None
        self._recorded = False
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        entry: JsonObj = {
            "identity": None,
            "method": method,
            "verb": method.lower(),
            "path": url.path,
            "query": url.query,
            "status": None,
            "mono": time.monotonic(),
            "wall": time.time(),
        }
        is_admin = url.path.startswith(ADMIN_PREFIX)
        try:
            identity = self._authenticate()
            entry["identity"] = identity
            if is_admin:
                if identity != ADMIN_IDENTITY:
                    raise errors.forbidden(f'identity "{identity}" may not use {ADMIN_PREFIX}')
                self._admin(method, url.path, query)
                return
            parts = [p for p in url.path.split("/") if p]
            route: Route | None = None
            with contextlib.suppress(ApiError):  # discovery or a bad path: answered below
                route = self._route(parts)
            if route is not None:  # described before any fault, so the audit says what was lost
                entry.update(
                    verb=_verb(method, route, query),
                    resource=route.rt.plural,
                    namespace=route.namespace,
                    name=route.name,
                    subresource=route.subresource,
                )
            self._wait_partition(identity)
            delay = self.control.delay(identity)
            if delay > 0:
                time.sleep(delay)
            fault = self.control.take_fault(identity)
            if fault is not None:
                raise _injected(fault)
            self._dispatch(method, parts, route, query=query, identity=identity, entry=entry)
        except _DroppedError:
            entry["status"] = None
            entry["dropped"] = True
            self._drop()
        except ApiError as err:
            entry["status"] = err.code
            entry["reason"] = err.reason
            self._drain_body()
            self._send_json(err.code, err.status())
        except OSError:  # the client went away mid-response
            self.close_connection = True
        except Exception:  # a bug in the server: answer 500 like a real one would
            log.exception("internal error on %s %s", method, self.path)
            entry["status"] = 500
            internal = ApiError(500, "InternalError", "an internal error in the test server")
            self._send_json(500, internal.status())
        finally:
            if not is_admin and not self._recorded:
                entry["mono_done"] = time.monotonic()
                self.control.record(entry)

    def _dispatch(
        self,
        method: str,
        parts: list[str],
        route: Route | None,
        *,
        query: dict[str, str],
        identity: str,
        entry: JsonObj,
    ) -> None:
        discovery = self._discovery(parts)
        if discovery is not None:
            if method != "GET":
                raise errors.method_not_allowed(method)
            entry["verb"] = "get"
            entry["status"] = 200
            self._send_json(200, discovery)
            return
        if route is None:
            route = self._route(parts)  # raises the 404 for this path
        result, code = self._serve(method, route, query, identity, entry)
        if result is None:  # a watch stream: already answered
            return
        entry["status"] = code
        if method != "GET" and isinstance(result, dict) and result.get("kind") == route.rt.kind:
            entry["resourceVersion"] = result["metadata"].get("resourceVersion")
            entry["name"] = entry["name"] or result["metadata"].get("name")
        self._send_json(code, result)

    def _route(self, parts: list[str]) -> Route:
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.page_not_found()
        by_plural = {
            rt.plural: rt for rt in self.store.types if rt.group == group and rt.version == version
        }
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and rest[2] in by_plural
            and by_plural[rest[2]].namespaced
        ):
            namespace, rest = rest[1], rest[2:]
        elif len(rest) >= 3 and rest[0] == "namespaces" and rest[2] != "status":
            # an unknown kind, or a cluster-scoped kind under a namespace
            raise errors.page_not_found()
        if not rest or rest[0] not in by_plural or len(rest) > 3:
            raise errors.page_not_found()
        rt = by_plural[rest[0]]
        name = rest[1] if len(rest) >= 2 else None
        subresource = rest[2] if len(rest) == 3 else None
        if subresource is not None and not (subresource == "status" and rt.status_subresource):
            raise errors.page_not_found()
        if rt.namespaced and namespace is None and name is not None:
            raise errors.page_not_found()
        return Route(rt, namespace, name, subresource)

    def _serve(
        self, method: str, route: Route, query: dict[str, str], identity: str, entry: JsonObj
    ) -> tuple[Any, int]:
        rt, ns, name = route.rt, route.namespace, route.name
        if query.get("dryRun"):
            raise errors.bad_request("dryRun is not supported by the test API server")
        verb = entry["verb"]
        if verb == "watch":
            entry["status"] = 200
            self._watch(route, query, identity, entry)
            return None, 200
        if verb == "list":
            return self._list(route, query), 200
        if verb == "create":
            if rt.namespaced and ns is None:
                raise errors.method_not_allowed(method)
            return self.store.create(rt, ns, self._read_body()), 201
        if name is None:
            raise errors.method_not_allowed(method)
        if verb == "get":
            return self.store.get(rt, ns, name), 200
        if verb == "update":
            body = self._read_body()
            return self.store.update(rt, ns, name, body, subresource=route.subresource), 200
        if verb == "patch":
            return self._patch(route, name), 200
        if verb == "delete" and route.subresource is None:
            return self._delete(route, name), 200
        raise errors.method_not_allowed(method)

    # --- verbs ------------------------------------------------------------------------------------

    def _selector(self, query: dict[str, str]) -> Selector | None:
        checks: list[Selector] = []
        if query.get("labelSelector"):
            checks.append(parse_label_selector(query["labelSelector"]))
        if query.get("fieldSelector"):
            checks.append(parse_field_selector(query["fieldSelector"]))
        if not checks:
            return None
        return lambda obj: all(check(obj) for check in checks)

    def _list(self, route: Route, query: dict[str, str]) -> JsonObj:
        rt = route.rt
        limit = int(query.get("limit") or 0)
        after: tuple[str, str] | None = None
        token_rv: int | None = None
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                after, token_rv = (str(token["after"][0]), str(token["after"][1])), int(token["rv"])
            except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
                raise errors.bad_request("continue key is not valid") from None
        selector = self._selector(query)
        items, rv = self.store.list_objects(rt, route.namespace, selector, after=after, limit=limit)
        rv = token_rv if token_rv is not None else rv
        meta: JsonObj = {"resourceVersion": str(rv)}
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            token = {"rv": rv, "after": list(_sort_key(items[-1]))}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            if selector is None:  # as the real server: with selectors the count is unknown
                meta["remainingItemCount"] = self.store.count_after(
                    rt, route.namespace, _sort_key(items[-1])
                )
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": items,
        }

    def _patch(self, route: Route, name: str) -> JsonObj:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = self._read_body()
        if content_type == STRATEGIC_MERGE_PATCH and route.rt.custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        if content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            if not isinstance(body, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            return self.store.patch(
                route.rt,
                route.namespace,
                name,
                lambda current: merge_patch(current, body),
                subresource=route.subresource,
            )
        if content_type == JSON_PATCH:
            if not isinstance(body, list):
                raise errors.bad_request(
                    "json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
                )
            return self.store.patch(
                route.rt,
                route.namespace,
                name,
                lambda current: json_patch(current, body),
                subresource=route.subresource,
            )
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format ({content_type or 'none'}) - "
            "accepted media types include: application/json-patch+json, "
            "application/merge-patch+json, application/strategic-merge-patch+json",
        )

    def _delete(self, route: Route, name: str) -> JsonObj:
        raw = self._read_raw()
        try:
            options: Any = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            raise errors.bad_request("the DeleteOptions body is not valid JSON") from None
        preconditions = (options or {}).get("preconditions") or {}
        gone, deleted = self.store.delete(
            route.rt,
            route.namespace,
            name,
            precondition_rv=preconditions.get("resourceVersion"),
            precondition_uid=preconditions.get("uid"),
        )
        if not deleted or route.rt.custom or route.rt is self.store.namespace_type:
            return gone
        details: JsonObj = {"name": name, "kind": route.rt.plural, "uid": gone["metadata"]["uid"]}
        if route.rt.group:
            details["group"] = route.rt.group
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    # --- watch ------------------------------------------------------------------------------------

    def _watch(self, route: Route, query: dict[str, str], identity: str, entry: JsonObj) -> None:
        rt = route.rt
        selector = self._selector(query)
        raw_rv = query.get("resourceVersion", "")
        try:
            rv = None if raw_rv in ("", "0") else int(raw_rv)
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{raw_rv}"') from None
        try:
            timeout = float(query.get("timeoutSeconds") or 0)
        except ValueError:
            raise errors.bad_request(
                f"invalid timeoutSeconds {query['timeoutSeconds']!r}"
            ) from None
        if timeout <= 0:
            timeout = self.control.max_watch_s
        deadline = time.monotonic() + min(timeout, self.control.max_watch_s)
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        epoch = self.control.watch_epoch
        expired: ExpiredError | None = None
        try:
            initial, position = self.store.watch_start(rt, route.namespace, selector, rv)
        except ExpiredError as exc:
            initial, position, expired = [], 0, exc

        entry["mono_done"] = time.monotonic()
        self.control.record(entry)  # now, not when the stream ends: watches are long
        self._recorded = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if expired is not None:
            self._chunk(_expired_event(expired))
            self._end_chunks()
            return
        for obj in initial:
            self._chunk({"type": "ADDED", "object": obj})
        last_bookmark = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if self.control.stopping.is_set():
                self._drop()
                return
            if self.control.watch_epoch != epoch:
                break  # ended cleanly, as the server's own watch timeout does
            mode = self.control.partition_mode(identity)
            if mode == "drop" or self._client_gone():
                self._drop()
                return
            wait = min(deadline - now, 0.5)
            if mode == "hang":  # silent, like a stalled TCP stream; resumes if healed in time
                with self.control.lock:
                    self.control.lock.wait(wait)
                if time.monotonic() >= deadline:
                    self._drop()
                    return
                continue
            try:
                events, position = self.store.events_after(position, wait)
            except ExpiredError as exc:
                self._chunk(_expired_event(exc))
                break
            for event in events:
                out = _visible(event, rt, route.namespace, selector)
                if out is not None:
                    self._chunk(out)
            if bookmarks and time.monotonic() - last_bookmark >= self.control.bookmark_interval_s:
                self._chunk(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": rt.kind,
                            "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(position)},
                        },
                    }
                )
                last_bookmark = time.monotonic()
        self._end_chunks()

    def _chunk(self, payload: JsonObj) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _client_gone(self) -> bool:
        """True when the client closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True

    # --- discovery --------------------------------------------------------------------------------

    def _discovery(self, parts: list[str]) -> JsonObj | None:
        types = self.store.types
        if parts == ["version"]:
            return KUBE_VERSION
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return {"status": "ok"}
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.control.url}
                ],
            }
        if parts == ["apis"]:
            groups: dict[str, list[str]] = {}
            for rt in types:
                if rt.group:
                    groups.setdefault(rt.group, [])
                    if rt.version not in groups[rt.group]:
                        groups[rt.group].append(rt.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        if len(parts) == 2 and parts[0] == "apis":
            versions = sorted({rt.version for rt in types if rt.group == parts[1]})
            if not versions:
                raise errors.page_not_found()
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": parts[1],
                "versions": [{"groupVersion": f"{parts[1]}/{v}", "version": v} for v in versions],
                "preferredVersion": {
                    "groupVersion": f"{parts[1]}/{versions[0]}",
                    "version": versions[0],
                },
            }
        if parts == ["api", "v1"]:
            return _resource_list("v1", [rt for rt in types if not rt.group])
        if len(parts) == 3 and parts[0] == "apis":
            served = [rt for rt in types if rt.group == parts[1] and rt.version == parts[2]]
            if not served:
                raise errors.page_not_found()
            return _resource_list(f"{parts[1]}/{parts[2]}", served)
        return None

    # --- admin ------------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, query: dict[str, str]) -> None:
        action = path[len(ADMIN_PREFIX) :].strip("/")
        body: Any = {}
        if method == "POST" and self._read_raw().strip():
            body = self._read_body()
        if method == "GET" and action == "audit":
            with self.control.lock:
                records = list(self.control.audit)
            self._send_json(200, {"records": records})
        elif method == "POST" and action == "identities":
            token, kubeconfig = self.control.identity(str(body.get("name", "")))
            self._send_json(200, {"kubeconfig": str(kubeconfig), "token": token})
        elif method == "POST" and action == "partition":
            mode = body.get("mode", "drop")
            if mode not in ("drop", "hang"):
                raise errors.bad_request(f"partition mode must be 'drop' or 'hang', got {mode!r}")
            self.control.set_partition(str(body.get("identity")), mode)
            self.store.wake_all()
            self._send_json(200, {"partitioned": sorted(self.control.partitions)})
        elif method == "POST" and action == "latency":
            seconds = float(body.get("seconds", 0))
            if not 0 <= seconds <= 60:
                raise errors.bad_request(f"latency must be within 0..60 s, got {seconds}")
            with self.control.lock:
                self.control.latency_s[str(body.get("identity") or "*")] = seconds
            self._send_json(200, {"latency": self.control.latency_s})
        elif method == "POST" and action == "faults":
            code, count = int(body.get("code", 500)), int(body.get("count", 1))
            if code not in _INJECTABLE or count < 0:
                raise errors.bad_request(
                    f"fault code must be one of {sorted(_INJECTABLE)} and count >= 0, "
                    f"got {code} x {count}"
                )
            with self.control.lock:
                key = str(body.get("identity") or "*")
                if count:
                    self.control.faults[key] = [code, count]
                else:
                    self.control.faults.pop(key, None)
            self._send_json(200, {"faults": self.control.faults})
        elif method == "POST" and action == "heal":
            self.control.set_partition(str(body.get("identity")), None)
            self._send_json(200, {"partitioned": sorted(self.control.partitions)})
        elif method == "POST" and action == "compact":
            self._send_json(200, {"resourceVersion": str(self.store.compact())})
        elif method == "POST" and action == "close-watches":
            with self.control.lock:
                self.control.watch_epoch += 1
            self.store.wake_all()
            self._send_json(200, {"epoch": self.control.watch_epoch})
        else:
            raise errors.page_not_found()


_INJECTABLE = {
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden by the test: the identity may not do this (RBAC)"),
    429: (
        "TooManyRequests",
        "the server has received too many requests and has asked us to try again later",
    ),
    500: (
        "InternalError",
        'an error on the server ("injected by the test") has prevented the request from succeeding',
    ),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


def _injected(code: int) -> ApiError:
    reason, message = _INJECTABLE[code]
    details = {"retryAfterSeconds": 1} if code == 429 else None
    return ApiError(code, reason, message, details)


def _verb(method: str, route: Route, query: dict[str, str]) -> str:
    """The Kubernetes verb of a request, as audit logs and RBAC name it."""
    if method == "GET" and route.name is None:
        return "watch" if _truthy(query.get("watch")) else "list"
    if method == "POST" and route.name is None:
        return "create"
    verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return verbs.get(method, method.lower())


def _truthy(value: str | None) -> bool:
    """Query booleans as Go's strconv.ParseBool reads them (the Python client sends True)."""
    return (value or "").lower() in ("1", "t", "true")


def _sort_key(obj: JsonObj) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def _resource_list(group_version: str, types: list[ResourceType]) -> JsonObj:
    resources: list[JsonObj] = []
    for rt in types:
        entry: JsonObj = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": _VERBS,
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        resources.append(entry)
        if rt.status_subresource:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _expired_event(exc: ExpiredError) -> JsonObj:
    err = ApiError(410, "ExpiredError", str(exc))
    return {"type": "ERROR", "object": err.status()}


def _visible(
    event: Event, rt: ResourceType, namespace: str | None, selector: Selector | None
) -> JsonObj | None:
    """The event as this watcher sees it; selector transitions become ADDED / DELETED."""
    if event.rtype is not rt:
        return None
    if namespace is not None and event.obj["metadata"].get("namespace") != namespace:
        return None
    if selector is None:
        return {"type": event.type, "object": event.obj}
    now = selector(event.obj)
    if event.type != "MODIFIED" or event.old is None:
        return {"type": event.type, "object": event.obj} if now else None
    before = selector(event.old)
    if now and before:
        return {"type": "MODIFIED", "object": event.obj}
    if now:
        return {"type": "ADDED", "object": event.obj}
    if before:
        gone = {**event.old, "metadata": {**event.old["metadata"]}}
        gone["metadata"]["resourceVersion"] = event.obj["metadata"]["resourceVersion"]
        return {"type": "DELETED", "object": gone}
    return None
