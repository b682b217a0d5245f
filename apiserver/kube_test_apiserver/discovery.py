"""Discovery documents: /version, /api, /apis, resource lists, and the OpenAPI v3 index.

The OpenAPI v3 documents are what kubectl reads to decide whether the server validates fields
itself: kubectl's `queryParamVerifierV3.HasSupport` (k8s.io/cli-runtime
pkg/resource/query_param_verifier_v3.go) looks, in the group-version document, for a PATCH
operation carrying `x-kubernetes-group-version-kind` of the kind with a `fieldValidation`
parameter. When it finds one, `kubectl apply` sends `fieldValidation=Strict` and skips its own
client-side validation (which would need the protobuf /openapi/v2), so no `--validate=false`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from . import errors
from .resources import ResourceType

JsonObj = dict[str, Any]

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
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_ITEM_OPERATIONS = (("get", "get"), ("put", "put"), ("patch", "patch"), ("delete", "delete"))
_WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def discovery(parts: list[str], types: Sequence[ResourceType], url: str) -> JsonObj | None:
    """The discovery document a path names, None if it is not a discovery path (404 if it
    names a group or version that is not served)."""
    if parts == ["version"]:
        return KUBE_VERSION
    if parts in (["healthz"], ["readyz"], ["livez"]):
        return {"status": "ok"}
    if parts == ["api"]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": url}],
        }
    if parts == ["apis"]:
        return _group_list(types)
    if len(parts) == 2 and parts[0] == "apis":
        versions = sorted({rt.version for rt in types if rt.group == parts[1]})
        if not versions:
            raise errors.page_not_found()
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], versions)}
    if parts == ["api", "v1"]:
        return _resource_list("v1", [rt for rt in types if not rt.group])
    if len(parts) == 3 and parts[0] == "apis":
        served = [rt for rt in types if rt.group == parts[1] and rt.version == parts[2]]
        if not served:
            raise errors.page_not_found()
        return _resource_list(f"{parts[1]}/{parts[2]}", served)
    if parts[:2] == ["openapi", "v3"]:
        return _openapi_v3(parts[2:], types)
    return None


def _group(name: str, versions: list[str]) -> JsonObj:
    return {
        "name": name,
        "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
        "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
    }


def _group_list(types: Sequence[ResourceType]) -> JsonObj:
    groups: dict[str, list[str]] = {}
    for rt in types:
        if rt.group and rt.version not in groups.setdefault(rt.group, []):
            groups[rt.group].append(rt.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in groups.items()],
    }


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


# --- OpenAPI v3 ----------------------------------------------------------------------------------


def _gv_path(rt: ResourceType) -> str:
    return f"apis/{rt.group}/{rt.version}" if rt.group else "api/v1"


def _openapi_v3(rest: list[str], types: Sequence[ResourceType]) -> JsonObj:
    by_path: dict[str, list[ResourceType]] = {}
    for rt in types:
        by_path.setdefault(_gv_path(rt), []).append(rt)
    if not rest:
        return {
            "paths": {
                path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(path, served)}"}
                for path, served in sorted(by_path.items())
            }
        }
    served = by_path.get("/".join(rest))
    if served is None:
        raise errors.page_not_found()
    return _gv_document(served)


def _hash(path: str, served: list[ResourceType]) -> str:
    text = json.dumps(_gv_document(served), sort_keys=True)
    return hashlib.sha512(f"{path}\n{text}".encode()).hexdigest().upper()


def _schema_name(rt: ResourceType) -> str:
    """`io.cilium.v2.CiliumNode`, `io.k8s.api.core.v1.ConfigMap`-like (reversed group)."""
    group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{group}.{rt.version}.{rt.kind}"


def _gvk(rt: ResourceType) -> JsonObj:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _gv_document(served: list[ResourceType]) -> JsonObj:
    schemas: JsonObj = {}
    paths: JsonObj = {}
    for rt in served:
        schema: JsonObj = dict(rt.schema) if rt.schema is not None else {"type": "object"}
        schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
        schemas[_schema_name(rt)] = schema
        ref = {"$ref": f"#/components/schemas/{_schema_name(rt)}"}
        content = {"application/json": {"schema": ref}}
        base = f"/{_gv_path(rt)}/" + ("namespaces/{namespace}/" if rt.namespaced else "")
        params = [
            {"name": p, "in": "query", "schema": {"type": "string"}} for p in _WRITE_PARAMETERS
        ]
        paths[f"{base}{rt.plural}/{{name}}"] = {
            op: {
                "operationId": f"{op}{rt.kind}",
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": _gvk(rt),
                "parameters": params if op in ("put", "patch") else [],
                "responses": {"200": {"description": "OK", "content": content}},
            }
            for op, action in _ITEM_OPERATIONS
        }
        paths[f"{base}{rt.plural}"] = {
            "post": {
                "operationId": f"create{rt.kind}",
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "parameters": params,
                "requestBody": {"content": content},
                "responses": {"201": {"description": "Created", "content": content}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }
