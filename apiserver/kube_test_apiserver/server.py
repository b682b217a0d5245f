"""HTTP front of the test API server: authentication, partitions and faults, then dispatch.

Speaks the Kubernetes REST conventions the official client and kubectl rely on (paths, Status
bodies, chunked newline-delimited watch events). The jobs live in their own modules: routing
(`routing`), discovery and OpenAPI (`discovery`), watch streams (`watch`), the harness's admin
API (`admin`, also served on a Unix socket so a harness in another network namespace can reach
it) and the typed audit record (`audit`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import select
import socket
import ssl
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import errors
from .admin import ADMIN_PREFIX, admin_action, injected
from .audit import AuditRecord
from .control import ADMIN_IDENTITY, Control
from .discovery import discovery
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
from .resources import ResourceType, unknown_fields
from .routing import Route, resolve, verb_of
from .store import ExpiredError, Store
from .watch import serve_watch

__all__ = ["ADMIN_IDENTITY", "ADMIN_PREFIX", "Control", "Handler"]

log = logging.getLogger("kube_test_apiserver")

# Media types this server decodes a request body from. It does not speak protobuf: like any API
# server without a decoder for the request's Content-Type it answers 415 with the accepted types
# (k8s.io/apiserver pkg/endpoints/handlers/negotiation/errors.go, errUnsupportedMediaType; the
# apiextensions server answers the same for custom resources, which have no protobuf form).
BODY_MEDIA_TYPES = ("application/json", "application/yaml")


class _DroppedError(Exception):
    """The request is 'lost in the network': close the connection without any response."""


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
    _audit: AuditRecord | None = None

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

    def _record_audit(self) -> None:
        """Append this request's audit record once, BEFORE its answer leaves: a client that
        has its response then always finds the record (after it, a fast client could read the
        audit first and miss it)."""
        if self._audit is not None and not self._recorded:
            self._audit.mono_done = time.monotonic()
            self.control.record(self._audit)
            self._recorded = True

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self._record_audit()
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

    def _content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _read_body(self, *, media_types: tuple[str, ...] = BODY_MEDIA_TYPES) -> Any:
        """The decoded body; 415 for a Content-Type outside `media_types` (none means JSON)."""
        content_type = self._content_type()
        if content_type and content_type not in media_types:
            self._read_raw()
            raise unsupported_media_type(media_types)
        raw = self._read_raw()
        if not raw.strip():
            raise errors.bad_request("the request body is empty")
        if content_type == "application/yaml":
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise errors.bad_request(f"the request body is not valid YAML: {exc}") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None

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

    # --- the watch sink ---------------------------------------------------------------------------

    def open_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def chunk(self, payload: JsonObj) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def client_gone(self) -> bool:
        """True when the client closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                # No MSG_PEEK under TLS; a client never sends during a watch, so readable
                # means a close_notify or FIN (or a partial record: not gone yet).
                self.connection.setblocking(False)
                try:
                    return self.connection.recv(1) == b""
                except (ssl.SSLWantReadError, BlockingIOError):
                    return False
                finally:
                    self.connection.setblocking(True)
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True

    # --- dispatch ---------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._body = None
        self._recorded = False
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        record = AuditRecord(method=method, path=url.path, query=url.query)
        is_admin = url.path.startswith(ADMIN_PREFIX)
        self._audit = None if is_admin else record
        try:
            identity = self._authenticate()
            record.identity = identity
            if is_admin:
                if identity != ADMIN_IDENTITY:
                    raise errors.forbidden(f'identity "{identity}" may not use {ADMIN_PREFIX}')
                self._admin(method, url.path)
                return
            parts = [p for p in url.path.split("/") if p]
            route: Route | None = None
            with contextlib.suppress(ApiError):  # discovery or a bad path: answered below
                route = resolve(parts, self.store.types)
            if route is not None:  # described before any fault, so the audit says what was lost
                record.verb = verb_of(method, route, query)
                record.resource = route.rt.plural
                record.namespace = route.namespace
                record.name = route.name
                record.subresource = route.subresource
            self._wait_partition(identity)
            delay = self.control.delay(identity, record.resource)
            if delay > 0:
                time.sleep(delay)
            fault = self.control.take_fault(identity, record.resource)
            if fault is not None:
                raise injected(fault)
            self._dispatch(method, parts, route, query=query, identity=identity, record=record)
        except _DroppedError:
            record.status = None
            record.dropped = True
            self.drop()
        except ApiError as err:
            record.status = err.code
            record.reason = err.reason
            self._read_raw()
            self._send_json(err.code, err.status())
        except OSError:  # the client went away mid-response
            self.close_connection = True
        except Exception:  # a bug in the server: answer 500 like a real one would
            log.exception("internal error on %s %s", method, self.path)
            record.status = 500
            internal = ApiError(500, "InternalError", "an internal error in the test server")
            self._send_json(500, internal.status())
        finally:
            self._record_audit()  # dropped or failed mid-answer: recorded all the same

    def _admin(self, method: str, path: str) -> None:
        action = admin_action(method, path)
        body: Any = {}
        if method == "POST" and self._read_raw().strip():
            body = self._read_body()
        if not isinstance(body, dict):
            raise errors.bad_request("an admin request body must be a JSON object")
        self._send_json(200, action(self.control, self.store, body))

    def _dispatch(
        self,
        method: str,
        parts: list[str],
        route: Route | None,
        *,
        query: dict[str, str],
        identity: str,
        record: AuditRecord,
    ) -> None:
        document = discovery(parts, self.store.types, self.control.url)
        if document is not None:
            if method != "GET":
                raise errors.method_not_allowed(method)
            record.verb = "get"
            record.status = 200
            self._send_json(200, document)
            return
        if route is None:
            route = resolve(parts, self.store.types)  # raises the 404 for this path
        if record.verb == "watch":
            self._watch(route, query, identity, record)
            return
        result, code = self._serve(method, route, query, record.verb)
        record.status = code
        if method != "GET" and isinstance(result, dict) and result.get("kind") == route.rt.kind:
            record.resource_version = result["metadata"].get("resourceVersion")
            record.name = record.name or result["metadata"].get("name")
        self._send_json(code, result)

    def _serve(
        self, method: str, route: Route, query: dict[str, str], verb: str
    ) -> tuple[Any, int]:
        rt, ns, name = route.rt, route.namespace, route.name
        if query.get("dryRun"):
            raise errors.bad_request("dryRun is not supported by the test API server")
        strict = query.get("fieldValidation") == "Strict"
        if verb == "list":
            return self._list(route, query), 200
        if verb == "create":
            if rt.namespaced and ns is None:
                raise errors.method_not_allowed(method)
            return self.store.create(rt, ns, _checked(rt, self._read_body(), strict=strict)), 201
        if name is None:
            raise errors.method_not_allowed(method)
        if verb == "get":
            return self.store.get(rt, ns, name), 200
        if verb == "update":
            body = _checked(rt, self._read_body(), strict=strict)
            obj, created = self.store.put(rt, ns, name, body, subresource=route.subresource)
            return obj, 201 if created else 200
        if verb == "patch":
            return self._patch(route, name, strict=strict), 200
        if verb == "delete" and route.subresource is None:
            return self._delete(route, name), 200
        raise errors.method_not_allowed(method)

    # --- verbs ------------------------------------------------------------------------------------

    def _watch(
        self, route: Route, query: dict[str, str], identity: str, record: AuditRecord
    ) -> None:
        def opened() -> None:
            # recorded now, not when the stream ends: watches are long
            record.status = 200
            self._record_audit()

        serve_watch(
            self,
            store=self.store,
            control=self.control,
            route=route,
            query=query,
            selector=_selector(query),
            identity=identity,
            on_open=opened,
        )

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
        if token_rv == LATEST_RV:
            token_rv = None  # the token of an expired list: go on at the current version
        selector = _selector(query)
        try:
            items, rv = self.store.list_objects(
                rt, route.namespace, selector, after=after, limit=limit, read_at=token_rv
            )
        except ExpiredError:
            assert after is not None
            raise continue_expired(after) from None
        rv = token_rv if token_rv is not None else rv
        meta: JsonObj = {"resourceVersion": str(rv)}
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            meta["continue"] = _continue_token(rv, _sort_key(items[-1]))
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

    def _patch(self, route: Route, name: str, *, strict: bool) -> JsonObj:
        content_type = self._content_type()
        if content_type == STRATEGIC_MERGE_PATCH and route.rt.custom:
            self._read_raw()
            raise unsupported_media_type(
                (
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                )
            )
        if content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            body = self._read_body(media_types=(content_type,))
            if not isinstance(body, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            _checked(route.rt, body, strict=strict)
            return self.store.patch(
                route.rt,
                route.namespace,
                name,
                lambda current: merge_patch(current, body),
                subresource=route.subresource,
            )
        if content_type == JSON_PATCH:
            operations = self._read_body(media_types=(content_type,))
            if not isinstance(operations, list):
                raise errors.bad_request(
                    "json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
                )
            return self.store.patch(
                route.rt,
                route.namespace,
                name,
                lambda current: json_patch(current, operations),
                subresource=route.subresource,
            )
        self._read_raw()
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


#: The version in the continue token of an expired list: "continue at the latest version"
#: (k8s.io/apiserver pkg/storage/etcd3/errors.go `handleCompactedErrorForPaging`: rv -1).
LATEST_RV = -1
#: k8s.io/apiserver pkg/storage/etcd3/errors.go `inconsistentContinue`, the message of the 410
#: Expired answer to a list continued at a compacted revision.
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


def _continue_token(rv: int, after: tuple[str, str]) -> str:
    token = {"rv": rv, "after": list(after)}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def continue_expired(after: tuple[str, str]) -> ApiError:
    """410 Expired for a list continued at a compacted version, as kube-apiserver answers it
    (etcd3/errors.go `interpretListError` with paging: apimachinery `NewResourceExpired`, code
    410, reason "Expired"), with a token that goes on at the latest version in its ListMeta."""
    return ApiError(
        410,
        "Expired",
        INCONSISTENT_CONTINUE,
        metadata={"continue": _continue_token(LATEST_RV, after)},
    )


def unsupported_media_type(accepted: tuple[str, ...]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def _checked(rt: ResourceType, body: Any, *, strict: bool) -> Any:
    """`body` itself; with `fieldValidation=Strict`, 400 for fields the kind's schema does not
    declare, worded as the real server's strict decoding error."""
    if strict and rt.schema is not None and isinstance(body, dict):
        unknown = unknown_fields(body, rt.schema)
        if unknown:
            listed = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f"strict decoding error: {listed}"
            )
    return body


def _selector(query: dict[str, str]) -> Selector | None:
    checks: list[Selector] = []
    if query.get("labelSelector"):
        checks.append(parse_label_selector(query["labelSelector"]))
    if query.get("fieldSelector"):
        checks.append(parse_field_selector(query["fieldSelector"]))
    if not checks:
        return None
    return lambda obj: all(check(obj) for check in checks)


def _sort_key(obj: JsonObj) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])
