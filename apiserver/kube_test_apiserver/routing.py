"""Request paths to resources, and HTTP methods to Kubernetes verbs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import errors
from .resources import ResourceType


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def resolve(parts: list[str], types: Sequence[ResourceType]) -> Route:
    """The resource a path names (`/api/v1/...`, `/apis/<group>/<version>/...`), or 404."""
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise errors.page_not_found()
    by_plural = {rt.plural: rt for rt in types if rt.group == group and rt.version == version}
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


def verb_of(method: str, route: Route, query: dict[str, str]) -> str:
    """The Kubernetes verb of a request, as audit logs and RBAC name it."""
    if method == "GET" and route.name is None:
        return "watch" if truthy(query.get("watch")) else "list"
    if method == "POST" and route.name is None:
        return "create"
    verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return verbs.get(method, method.lower())


def truthy(value: str | None) -> bool:
    """Query booleans as Go's strconv.ParseBool reads them (the Python client sends True)."""
    return (value or "").lower() in ("1", "t", "true")
