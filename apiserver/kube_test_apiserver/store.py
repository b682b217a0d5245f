"""The object store: one global resourceVersion, a bounded event history, watch positions.

Stored objects are never mutated after they are stored (every write stores a new dict), so
readers may serialize them without holding the lock. Every write appends exactly one event, so
the history holds every resourceVersion from `floor + 1` to the current one: a watch from a
resourceVersion below `floor` cannot be served and gets 410 Expired, as on a real server.
`compact()` also stands for etcd's compaction: a list continued at a version below it gets 410
Expired too (the bounded history alone does not do that, as the watch cache's capacity does not
expire a continue token on a real server: those read etcd).
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import ApiError
from .objects import JsonObj, Selector
from .resources import ResourceType, invalid

Key = tuple[str, str]  # (namespace or "", name)

# Fields of metadata only the server sets; clients' values are ignored (create) or kept (update).
_SYSTEM_METADATA = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
_DELETION_FIELDS = ("deletionTimestamp", "deletionGracePeriodSeconds")


@dataclass(frozen=True)
class Event:
    """One change: `obj` after it (for DELETED: the last state, at the deletion's version)."""

    rv: int
    rtype: ResourceType
    type: str  # ADDED | MODIFIED | DELETED
    obj: JsonObj
    old: JsonObj | None


class ExpiredError(Exception):
    """The requested resourceVersion is older than the retained history."""

    def __init__(self, requested: int, floor: int) -> None:
        super().__init__(f"too old resource version: {requested} ({floor})")
        self.requested = requested
        self.floor = floor


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
    return ((namespace or "") if rt.namespaced else "", name)


def _without(obj: JsonObj, *fields: str) -> JsonObj:
    return {k: v for k, v in obj.items() if k not in fields}


class Store:
    """All objects of all served kinds; thread-safe through one condition variable."""

    def __init__(self, types: Iterable[ResourceType], *, history_size: int = 1000) -> None:
        if history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {history_size}")
        self.cond = threading.Condition()
        self.types = list(types)
        self._objects: dict[ResourceType, dict[Key, JsonObj]] = {rt: {} for rt in self.types}
        self._history: deque[Event] = deque()
        self._history_size = history_size
        self._rv = 0
        self._floor = 0
        self._compacted = 0  # the version of the last `compact()`: older reads are gone
        self.namespace_type = next(rt for rt in self.types if rt.plural == "namespaces")

    # --- reads ------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self.cond:
            return self._rv

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> JsonObj:
        with self.cond:
            obj = self._objects[rt].get(_key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt.qualified, name, rt.group, rt.plural)
        return obj

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        selector: Selector | None = None,
        *,
        after: Key | None = None,
        limit: int = 0,
        read_at: int | None = None,
    ) -> tuple[list[JsonObj], int]:
        """Matching objects sorted by (namespace, name), and the version they were read at.

        `after` starts behind that key and `limit` > 0 stops after `limit` + 1 matches (one more
        than a page: the caller learns there is a next page), so a page costs the page, not the
        whole list, as a `continue` read from etcd does. `read_at` is the version a continued
        list reads at: below the last compaction it raises ExpiredError, as etcd answers
        ErrCompacted for a read at a compacted revision (the objects themselves are always the
        current ones: this store keeps no old versions)."""
        with self.cond:
            if read_at is not None and read_at < self._compacted:
                raise ExpiredError(read_at, self._compacted)
            objects = self._objects[rt]
            keys = sorted(objects)
            start = bisect.bisect_right(keys, after) if after is not None else 0
            items: list[JsonObj] = []
            for key in keys[start:]:
                if namespace is not None and key[0] != namespace:
                    continue
                obj = objects[key]
                if selector is None or selector(obj):
                    items.append(obj)
                    if limit and len(items) > limit:
                        break
            return items, self._rv

    def count_after(self, rt: ResourceType, namespace: str | None, after: Key) -> int:
        """How many objects of the kind (in `namespace` if given) sort after `after` (a list's
        remainingItemCount)."""
        with self.cond:
            keys = sorted(self._objects[rt])
            following = keys[bisect.bisect_right(keys, after) :]
            return sum(1 for key in following if namespace is None or key[0] == namespace)

    # --- writes -----------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(
        self, rv: int, rt: ResourceType, kind: str, obj: JsonObj, old: JsonObj | None
    ) -> None:
        if len(self._history) >= self._history_size:
            self._floor = self._history.popleft().rv
        self._history.append(Event(rv, rt, kind, obj, old))
        self.cond.notify_all()

    def _require_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if rt.namespaced and ("", namespace or "") not in self._objects[self.namespace_type]:
            raise errors.not_found("namespaces", namespace or "", "", "namespaces")

    def create(self, rt: ResourceType, namespace: str | None, body: JsonObj) -> JsonObj:
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        meta_in = body.get("metadata") or {}
        if not isinstance(meta_in, dict):
            raise errors.bad_request("metadata must be an object")
        self._check_kind(rt, body)
        if rt.namespaced and meta_in.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if meta_in.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        name = meta_in.get("name") or ""
        if not name and meta_in.get("generateName"):
            suffix = "".join(random.choices(_GENERATE_ALPHABET, k=5))
            name = f"{meta_in['generateName']}{suffix}"
        meta = _without(meta_in, *_SYSTEM_METADATA, "namespace", "name", "managedFields")
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = namespace
        obj = {"apiVersion": rt.api_version, "kind": rt.kind, **copy.deepcopy(body)}
        obj["apiVersion"], obj["kind"], obj["metadata"] = rt.api_version, rt.kind, meta
        if rt.status_subresource:
            obj.pop("status", None)
        if rt is self.namespace_type:
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        obj = rt.validate(obj)
        with self.cond:
            self._require_namespace(rt, namespace)
            key = _key(rt, namespace, name)
            if key in self._objects[rt]:
                raise errors.already_exists(rt.qualified, name, rt.group, rt.plural)
            rv = self._next_rv()
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=str(rv))
            if rt.custom:
                meta["generation"] = 1
            obj["metadata"] = meta
            self._objects[rt][key] = obj
            self._record(rv, rt, "ADDED", obj, None)
            return obj

    def _check_kind(self, rt: ResourceType, body: JsonObj) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind not in (None, "", rt.kind) or api_version not in (None, "", rt.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) and kind ({kind}) do not match the "
                f"expected {rt.api_version} {rt.kind}"
            )

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: JsonObj,
        *,
        subresource: str | None = None,
    ) -> JsonObj:
        """PUT: conditional on metadata.resourceVersion if given, else unconditional (for kinds
        whose strategy allows it). See `put` for kinds that may be created by a PUT."""
        return self.put(rt, namespace, name, body, subresource=subresource)[0]

    def put(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: JsonObj,
        *,
        subresource: str | None = None,
    ) -> tuple[JsonObj, bool]:
        """PUT as kube-apiserver's generic registry does it (k8s.io/apiserver
        pkg/registry/generic/registry/store.go `Update`); returns (object, created).

        - A `metadata.uid` in the body is a precondition (pkg/registry/rest/update.go
          `defaultUpdatedObjectInfo.Preconditions`), checked against the stored object, or
          against an empty one when none is stored (pkg/storage/interfaces.go
          `Preconditions.Check`): a mismatch is 409 Conflict (storage/errors
          `InterpretUpdateError` maps the invalid-object error to a conflict).
        - No object stored: 404, unless the kind allows create-on-update (Leases do); then the
          PUT creates it, its resourceVersion ignored (the create branch never compares it).
        - An existing object without `metadata.resourceVersion` in the body: overwritten when the
          kind allows unconditional updates, else 422 "must be specified for an update".
        """
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the request body must be a JSON object with metadata")
        self._check_kind(rt, body)
        meta_in = body.get("metadata") or {}
        if meta_in.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta_in.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        if rt.namespaced and meta_in.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        with self.cond:
            stored = self._objects[rt].get(_key(rt, namespace, name))
            uid = meta_in.get("uid")
            if uid and (stored is None or uid != stored["metadata"]["uid"]):
                key = f"/registry/{rt.qualified}/{namespace + '/' if namespace else ''}{name}"
                found = stored["metadata"]["uid"] if stored is not None else ""
                rv = stored["metadata"]["resourceVersion"] if stored is not None else 0
                raise errors.conflict(
                    rt.qualified,
                    name,
                    rt.group,
                    rt.plural,
                    f"StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: {rv}, "
                    f"AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID "
                    f"in object meta: {found}",
                )
            if stored is None:
                if not rt.create_on_update or subresource is not None:
                    raise errors.not_found(rt.qualified, name, rt.group, rt.plural)
                meta = _without(meta_in, *_SYSTEM_METADATA)
                return self.create(rt, namespace, {**body, "metadata": meta}), True
            existing = stored
            wanted_rv = meta_in.get("resourceVersion")
            if not wanted_rv and not rt.unconditional_update:
                raise invalid(
                    rt,
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "message": "Invalid value: 0x0: must be specified for an update",
                            "field": "metadata.resourceVersion",
                        }
                    ],
                )
            if wanted_rv and wanted_rv != existing["metadata"]["resourceVersion"]:
                raise errors.conflict(
                    rt.qualified,
                    name,
                    rt.group,
                    rt.plural,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            return self._replace(rt, namespace, existing, body, subresource), False

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        apply_patch: Any,
        *,
        subresource: str | None = None,
    ) -> JsonObj:
        """PATCH: `apply_patch(current) -> patched`; a resourceVersion in it is a precondition."""
        with self.cond:
            existing = self.get(rt, namespace, name)
            patched = apply_patch(existing)
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise errors.bad_request("the patched object must be a JSON object with metadata")
            current_rv = existing["metadata"]["resourceVersion"]
            if patched["metadata"].get("resourceVersion", current_rv) != current_rv:
                raise errors.conflict(
                    rt.qualified,
                    name,
                    rt.group,
                    rt.plural,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            if patched["metadata"].get("name") != name:
                raise errors.bad_request("metadata.name may not be changed by a patch")
            self._check_kind(rt, patched)
            return self._replace(rt, namespace, existing, patched, subresource)

    def _replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        existing: JsonObj,
        body: JsonObj,
        subresource: str | None,
    ) -> JsonObj:
        """Store `body` as the new state of `existing` (lock held); no-op writes change nothing."""
        old_meta = existing["metadata"]
        if subresource == "status":
            candidate = {**copy.deepcopy(existing)}
            if "status" in body:
                candidate["status"] = copy.deepcopy(body["status"])
            else:
                candidate.pop("status", None)
        else:
            meta_in = body.get("metadata") or {}
            meta = _without(meta_in, *_SYSTEM_METADATA, "managedFields")
            candidate = {**copy.deepcopy(body), "metadata": meta}
            if rt.status_subresource:
                candidate.pop("status", None)
                if "status" in existing:
                    candidate["status"] = existing["status"]
            if rt is self.namespace_type:
                candidate["spec"] = existing.get("spec", {})
                candidate["status"] = existing.get("status", {})
        meta = candidate["metadata"]
        for field in ("uid", "creationTimestamp", "generation", *_DELETION_FIELDS):
            if field in old_meta:
                meta[field] = old_meta[field]
        if "deletionTimestamp" in old_meta:
            added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if added:
                raise invalid(
                    rt,
                    old_meta["name"],
                    [
                        {
                            "reason": "FieldValueForbidden",
                            "message": "Forbidden: no new finalizers can be added if the object "
                            "is being deleted, found new finalizers " + json.dumps(sorted(added)),
                            "field": "metadata.finalizers",
                        }
                    ],
                )
        meta["name"] = old_meta["name"]
        if rt.namespaced:
            meta["namespace"] = old_meta["namespace"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        candidate["apiVersion"], candidate["kind"] = rt.api_version, rt.kind
        candidate = rt.validate(candidate)
        if candidate == existing:
            return existing  # a no-op write: no new version, no event (as the real server)
        ignored = ("metadata", "status") if rt.status_subresource else ("metadata",)
        if rt.custom and _without(candidate, *ignored) != _without(existing, *ignored):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        candidate["metadata"] = meta
        key = _key(rt, namespace, old_meta["name"])
        if "deletionTimestamp" in meta and not meta.get("finalizers"):
            del self._objects[rt][key]  # the last finalizer is gone: deletion completes
            self._record(rv, rt, "DELETED", candidate, existing)
            return candidate
        self._objects[rt][key] = candidate
        self._record(rv, rt, "MODIFIED", candidate, existing)
        return candidate

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
    ) -> tuple[JsonObj, bool]:
        """Delete the object; returns its last state and whether it is gone.

        An object with finalizers only gets a deletionTimestamp and stays until an update
        removes its last finalizer. A namespace goes at once, with everything in it.
        """
        with self.cond:
            existing = self.get(rt, namespace, name)
            meta = existing["metadata"]
            if precondition_uid and precondition_uid != meta["uid"]:
                raise errors.conflict(
                    rt.qualified,
                    name,
                    rt.group,
                    rt.plural,
                    f"the UID in the precondition ({precondition_uid}) does not match the UID in "
                    f"record ({meta['uid']}). The object might have been deleted and then "
                    "recreated",
                )
            if precondition_rv and precondition_rv != meta["resourceVersion"]:
                raise errors.conflict(
                    rt.qualified,
                    name,
                    rt.group,
                    rt.plural,
                    f"the ResourceVersion in the precondition ({precondition_rv}) does not match "
                    f"the ResourceVersion in record ({meta['resourceVersion']}). The object might "
                    "have been modified",
                )
            if rt is self.namespace_type:
                if name in PROTECTED_NAMESPACES:
                    raise errors.forbidden(
                        f'namespaces "{name}" is forbidden: this namespace may not be deleted'
                    )
                for other in self.types:
                    if other.namespaced:
                        for key in [k for k in self._objects[other] if k[0] == name]:
                            self._remove(other, key)
            elif meta.get("finalizers"):
                if "deletionTimestamp" in meta:
                    return existing, False
                rv = self._next_rv()
                pending = {
                    **existing,
                    "metadata": {
                        **meta,
                        "deletionTimestamp": _now(),
                        "deletionGracePeriodSeconds": 0,
                        "resourceVersion": str(rv),
                    },
                }
                self._objects[rt][_key(rt, namespace, name)] = pending
                self._record(rv, rt, "MODIFIED", pending, existing)
                return pending, False
            return self._remove(rt, _key(rt, namespace, name)), True

    def _remove(self, rt: ResourceType, key: Key) -> JsonObj:
        existing = self._objects[rt].pop(key)
        rv = self._next_rv()
        gone = {**existing, "metadata": {**existing["metadata"], "resourceVersion": str(rv)}}
        if rt is self.namespace_type:
            gone["status"] = {"phase": "Terminating"}
            gone["metadata"]["deletionTimestamp"] = _now()
        self._record(rv, rt, "DELETED", gone, existing)
        return gone

    # --- watch support ----------------------------------------------------------------------------

    def compact(self) -> int:
        """Forget the whole event history, as etcd's compaction at the current revision: watches
        from any older version and lists continued at one now get 410."""
        with self.cond:
            self._history.clear()
            self._floor = self._rv
            self._compacted = self._rv
            self.cond.notify_all()
            return self._rv

    def watch_start(
        self, rt: ResourceType, namespace: str | None, selector: Selector | None, rv: int | None
    ) -> tuple[list[JsonObj], int]:
        """Objects to announce as ADDED (only when `rv` is None) and the position to follow from."""
        with self.cond:
            if rv is None:
                items, position = self.list_objects(rt, namespace, selector)
                return items, position
            if rv < self._floor:
                raise ExpiredError(rv, self._floor)
            if rv > self._rv and not self.cond.wait_for(lambda: self._rv >= rv, timeout=3.0):
                raise ApiError(
                    504, "Timeout", f"Too large resource version: {rv}, current: {self._rv}"
                )
            return [], rv

    def events_after(self, position: int, timeout: float) -> tuple[list[Event], int]:
        """Events with version > position (waiting up to `timeout` for one) and the new position."""
        with self.cond:
            if position >= self._rv:
                self.cond.wait(timeout)
            if position < self._floor:
                raise ExpiredError(position, self._floor)
            found: list[Event] = []
            for event in reversed(self._history):
                if event.rv <= position:
                    break
                found.append(event)
            found.reverse()
            return found, max(position, self._rv)

    def wake_all(self) -> None:
        with self.cond:
            self.cond.notify_all()
