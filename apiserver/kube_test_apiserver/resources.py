"""The resource kinds the test server serves, and CRD schema handling (prune, default, validate).

Custom resources come from the CRD files passed in at start (`load_crds`), so the server
validates exactly the schema a real cluster would. The real API server's order is kept:
decode, prune unknown fields, apply `default`s, then validate against the openAPIV3Schema.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from .errors import ApiError

JsonObj = dict[str, Any]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character"
)


@dataclass(frozen=True)
class ResourceType:
    """One served resource (a group/version/plural) and how the server treats it."""

    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    custom: bool = False  # a CRD: generation, deleted object returned, no strategic merge
    # The registry strategy's AllowCreateOnUpdate / AllowUnconditionalUpdate (kubernetes
    # pkg/registry/<group>/<kind>/strategy.go): a PUT of a missing object creates it; a PUT
    # without metadata.resourceVersion overwrites whatever is stored.
    create_on_update: bool = False
    unconditional_update: bool = True
    schema: JsonObj | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`leases.coordination.k8s.io`, or `namespaces` for the core group (as in messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_qualified(self) -> str:
        """`CiliumVTEPConfig.cilium.io` / `Lease.coordination.k8s.io` (as in Invalid messages)."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def validate(self, obj: JsonObj) -> JsonObj:
        """Return `obj` pruned and defaulted, or raise 422 naming every invalid field (400 for
        a time that cannot be decoded, as the real server fails to decode it)."""
        name = str(obj.get("metadata", {}).get("name", ""))
        _normalize_times(self, obj)
        causes = _validate_name(name, dns_label=self.plural == "namespaces")
        causes += _validate_labels(obj.get("metadata", {}))
        if self.schema is not None:
            obj = prune(obj, self.schema, root=True)
            apply_defaults(obj, self.schema)
            causes += schema_causes(obj, self.schema)
        elif self.kind in _BUILTIN_SCHEMAS:
            causes += schema_causes(obj, _BUILTIN_SCHEMAS[self.kind])
        if self.kind == "Event" and not self.custom and not causes:
            causes += _event_causes(obj)
        if causes:
            raise invalid(self, name, causes)
        return obj


# Time fields of built-in kinds: (path, micro). The real server decodes them into metav1.Time
# (seconds) or metav1.MicroTime (microseconds) and always writes them back in UTC with a "Z".
_TIME_FIELDS: dict[str, tuple[tuple[tuple[str, ...], bool], ...]] = {
    "Lease": ((("spec", "acquireTime"), True), (("spec", "renewTime"), True)),
    "Event": (
        (("firstTimestamp",), False),
        (("lastTimestamp",), False),
        (("eventTime",), True),
        (("series", "lastObservedTime"), True),
    ),
}


# metav1.MicroTime is decoded with time.Parse(RFC3339Micro, ...) (apimachinery
# pkg/apis/meta/v1/micro_time.go), and Go's ".000000" layout element requires exactly six
# fraction digits: "2026-01-01T00:00:00Z" or "...00:00+00:00" is refused with 400.
_MICRO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})")


def _normalize_times(rt: ResourceType, obj: JsonObj) -> None:
    for path, micro in _TIME_FIELDS.get(rt.kind, ()) if not rt.custom else ():
        parent: Any = obj
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or parent.get(path[-1]) is None:
            continue
        raw = parent[path[-1]]
        layout = "2006-01-02T15:04:05.000000Z07:00" if micro else "2006-01-02T15:04:05Z07:00"
        try:
            if not isinstance(raw, str):
                raise ValueError(raw)
            if micro and not _MICRO_TIME.fullmatch(raw):
                raise ValueError(raw)
            parsed = dt.datetime.fromisoformat(raw)
            if parsed.tzinfo is None:
                raise ValueError(raw)
        except ValueError:
            raise ApiError(
                400,
                "BadRequest",
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f'{".".join(path)}: parsing time {json.dumps(raw)} as "{layout}"',
            ) from None
        parsed = parsed.astimezone(dt.UTC)
        parent[path[-1]] = (
            parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if micro
            else parsed.strftime("%Y-%m-%dT%H:%M:%SZ")
        )


def _event_causes(event: JsonObj) -> list[JsonObj]:
    """core/v1 Event rules of the real server: the namespace must agree with the object's.

    Events about cluster-scoped objects (CiliumNodes) may only live in "default" (or, for
    events with an eventTime, "kube-system"); those with an eventTime also need reporting fields.
    """
    namespace = event["metadata"].get("namespace", "")
    involved = event.get("involvedObject") or {}
    involved_ns = involved.get("namespace") or ""
    mismatch = {
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {json.dumps(involved_ns)}: does not match event.namespace",
        "field": "involvedObject.namespace",
    }
    causes: list[JsonObj] = []
    if not event.get("eventTime"):
        allowed = ("", "default") if not involved_ns else (involved_ns,)
        if namespace not in allowed:
            causes.append(mismatch)
        return causes
    if not involved_ns and namespace not in ("default", "kube-system"):
        causes.append(mismatch)
    for field_name in ("reportingComponent", "reportingInstance", "action"):
        if not event.get(field_name):
            causes.append(
                {"reason": "FieldValueRequired", "message": "Required value", "field": field_name}
            )
    return causes


def invalid(rt: ResourceType, name: str, causes: list[JsonObj]) -> ApiError:
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    details: JsonObj = {"name": name, "kind": rt.kind, "causes": causes}
    if rt.group:
        details["group"] = rt.group
    return ApiError(422, "Invalid", f'{rt.kind_qualified} "{name}" is invalid: {summary}', details)


_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _key_problem(key: str) -> str | None:
    """Why `key` is not a valid label/annotation key (`[prefix/]name`), or None."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"prefix part {_SUBDOMAIN_MESSAGE}"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (at most 63 characters)"
        )
    return None


def _validate_labels(meta: JsonObj) -> list[JsonObj]:
    """Label and annotation keys and label values, checked as the real server does."""
    causes: list[JsonObj] = []
    for section in ("labels", "annotations"):
        entries = meta.get(section) or {}
        if not isinstance(entries, dict):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {json.dumps(entries)}: must be a map of strings",
                    "field": f"metadata.{section}",
                }
            )
            continue
        for key, value in entries.items():
            problem = _key_problem(key)
            if problem is None and not isinstance(value, str):
                problem = "values must be strings"
            elif problem is None and section == "labels":
                if len(value) > 63 or not _LABEL_VALUE.match(value):
                    causes.append(
                        {
                            "reason": "FieldValueInvalid",
                            "message": f"Invalid value: {json.dumps(value)}: a valid label must "
                            "be an empty string or consist of alphanumeric characters, '-', '_' "
                            "or '.', and must start and end with an alphanumeric character (at "
                            "most 63 characters)",
                            "field": f"metadata.labels.{key}",
                        }
                    )
                continue
            if problem is not None:
                causes.append(
                    {
                        "reason": "FieldValueInvalid",
                        "message": f"Invalid value: {json.dumps(key)}: {problem}",
                        "field": f"metadata.{section}",
                    }
                )
    return causes


def _validate_name(name: str, *, dns_label: bool) -> list[JsonObj]:
    if not name:
        return [
            {
                "reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required",
                "field": "metadata.name",
            }
        ]
    pattern, why, limit = (
        (_DNS_LABEL, _LABEL_MESSAGE, 63) if dns_label else (_DNS_SUBDOMAIN, _SUBDOMAIN_MESSAGE, 253)
    )
    if len(name) > limit or not pattern.match(name):
        return [
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {json.dumps(name)}: {why}",
                "field": "metadata.name",
            }
        ]
    return []


# --- structural schema handling ------------------------------------------------------------------


def _preserves_unknown(schema: JsonObj) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(value: Any, schema: JsonObj, *, root: bool = False) -> Any:
    """Drop fields the schema does not declare, as the real server does for structural CRDs."""
    if isinstance(value, dict):
        props: JsonObj = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        out: JsonObj = {}
        for key, item in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                out[key] = item
            elif key in props:
                out[key] = prune(item, props[key])
            elif isinstance(additional, dict):
                out[key] = prune(item, additional)
            elif additional is True or _preserves_unknown(schema):
                out[key] = item
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return value


def unknown_fields(value: Any, schema: JsonObj, path: str = "", *, root: bool = True) -> list[str]:
    """Paths of the fields `prune` would drop (what `fieldValidation=Strict` rejects)."""
    found: list[str] = []
    if isinstance(value, dict):
        props: JsonObj = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            if key in props:
                found += unknown_fields(item, props[key], where, root=False)
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, where, root=False)
            elif not (additional is True or _preserves_unknown(schema)):
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{index}]", root=False)
    return found


def apply_defaults(value: Any, schema: JsonObj) -> None:
    """Fill in `default`s of absent properties, recursively (in place)."""
    if isinstance(value, dict):
        props: JsonObj = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in props:
                    apply_defaults(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def to_json_schema(schema: Any) -> Any:
    """openAPIV3Schema -> JSON Schema (draft 4): drop x-kubernetes-*, honour `nullable`."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: JsonObj = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format", "default"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        else:
            out[key] = to_json_schema(value)
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _field_path(error: ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


_VALIDATORS: dict[str, Draft4Validator] = {}  # by the schema's canonical JSON


def schema_causes(obj: JsonObj, schema: JsonObj) -> list[JsonObj]:
    """Every violation as a Status cause, worded like the real server's messages."""
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        validator = _VALIDATORS[key] = Draft4Validator(to_json_schema(schema))
    causes: list[JsonObj] = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        path = _field_path(error)
        value = json.dumps(error.instance)
        kind = error.validator
        if kind == "required":
            present = error.instance if isinstance(error.instance, dict) else {}
            for missing in error.validator_value:
                if missing not in present:
                    where = f"{path}.{missing}" if path else str(missing)
                    cause = {
                        "reason": "FieldValueRequired",
                        "message": "Required value",
                        "field": where,
                    }
                    if cause not in causes:
                        causes.append(cause)
            continue
        if kind == "pattern":
            message = (
                f"Invalid value: {value}: {path} in body should match '{error.validator_value}'"
            )
        elif kind == "type":
            message = (
                f"Invalid value: {json.dumps(_json_type(error.instance))}: {path} in body must be "
                f"of type {error.validator_value}: {value}"
            )
        elif kind == "enum":
            allowed = ", ".join(json.dumps(v) for v in error.validator_value)
            causes.append(
                {
                    "reason": "FieldValueNotSupported",
                    "message": f"Unsupported value: {value}: supported values: {allowed}",
                    "field": path,
                }
            )
            continue
        elif kind == "maxItems":
            causes.append(
                {
                    "reason": "FieldValueTooMany",
                    "message": f"Too many: {len(error.instance)}: must have at most "
                    f"{error.validator_value} items",
                    "field": path,
                }
            )
            continue
        elif kind == "minItems":
            message = (
                f"Invalid value: {len(error.instance)}: {path} in body should have at least "
                f"{error.validator_value} items"
            )
        elif kind == "maxLength":
            causes.append(
                {
                    "reason": "FieldValueTooLong",
                    "message": f"Too long: may not be more than {error.validator_value} bytes",
                    "field": path,
                }
            )
            continue
        elif kind == "minLength":
            message = (
                f"Invalid value: {value}: {path} in body should be at least "
                f"{error.validator_value} chars long"
            )
        else:
            message = f"Invalid value: {value}: {error.message}"
        causes.append({"reason": "FieldValueInvalid", "message": message, "field": path})
    return causes


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


# --- the served resources ------------------------------------------------------------------------

_LEASE_SCHEMA: JsonObj = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "holderIdentity": {"type": ["string", "null"]},
                "leaseDurationSeconds": {"type": ["integer", "null"], "minimum": 1},
                "acquireTime": {"type": ["string", "null"]},
                "renewTime": {"type": ["string", "null"]},
                "leaseTransitions": {"type": ["integer", "null"], "minimum": 0},
                "strategy": {"type": ["string", "null"]},
                "preferredHolder": {"type": ["string", "null"]},
            },
        }
    },
}
_EVENT_SCHEMA: JsonObj = {
    "type": "object",
    "required": ["involvedObject"],
    "properties": {
        "involvedObject": {"type": "object"},
        "reason": {"type": ["string", "null"]},
        "message": {"type": ["string", "null"]},
        "type": {"type": ["string", "null"], "enum": ["Normal", "Warning", None]},
        "count": {"type": ["integer", "null"]},
    },
}
_BUILTIN_SCHEMAS: dict[str, JsonObj] = {"Lease": _LEASE_SCHEMA, "Event": _EVENT_SCHEMA}

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",)),
    ResourceType("", "v1", "events", "event", "Event", True, ("ev",)),
    # kubernetes pkg/registry/coordination/lease/strategy.go: AllowCreateOnUpdate true,
    # AllowUnconditionalUpdate false.
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        True,
        create_on_update=True,
        unconditional_update=False,
    ),
    # What `hybrid-gateway preflight` and `status` read; stored as objects, no controllers.
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "nodes", "node", "Node", False, ("no",), status_subresource=True),
    ResourceType("", "v1", "pods", "pod", "Pod", True, ("po",), status_subresource=True),
    ResourceType("apps", "v1", "deployments", "deployment", "Deployment", True, ("deploy",), True),
    ResourceType("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True, ("ds",), True),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        status_subresource=True,
    ),
)


#: The files a CRD path (a directory) contributes, as controller-runtime's envtest reads them
#: (pkg/envtest/crd.go `readCRDs`): JSON or YAML, one or more documents each.
CRD_SUFFIXES = (".json", ".yaml", ".yml")


class CrdError(ValueError):
    """A CRD passed in cannot be served; the message names the path."""


def load_crd(crd: JsonObj) -> ResourceType:
    """A ResourceType from a CustomResourceDefinition document (its storage version)."""
    spec = crd["spec"]
    names = spec["names"]
    version = next(v for v in spec["versions"] if v.get("storage", False))
    return ResourceType(
        group=spec["group"],
        version=version["name"],
        plural=names["plural"],
        singular=names.get("singular", names["kind"].lower()),
        kind=names["kind"],
        namespaced=spec["scope"] == "Namespaced",
        short_names=tuple(names.get("shortNames", ())),
        status_subresource="status" in (version.get("subresources") or {}),
        custom=True,
        schema=version["schema"]["openAPIV3Schema"],
    )


def _crd_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(f for f in path.iterdir() if f.suffix in CRD_SUFFIXES and f.is_file())
    if path.is_file():
        return [path]
    raise CrdError(f"CRD path {path}: no such file or directory")


def load_crds(paths: list[Path]) -> list[ResourceType]:
    """The CustomResourceDefinitions in `paths` (files, or directories of JSON/YAML files, as
    envtest's `CRDInstallOptions.Paths`). Documents of other kinds are skipped, as envtest does;
    a missing path, a path without any CRD, a CRD without a storage version or a resource served
    twice is an error naming the path."""
    served = {(t.group, t.plural): "built in" for t in BUILTIN_TYPES}
    out: list[ResourceType] = []
    for path in paths:
        found = 0
        for file in _crd_files(path):
            try:
                docs = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise CrdError(f"CRD file {file}: {exc}") from exc
            for doc in docs:
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                try:
                    crd = load_crd(doc)
                except (KeyError, TypeError, AttributeError, StopIteration) as exc:
                    name = (doc.get("metadata") or {}).get("name")
                    missing = str(exc) or "a storage version"  # StopIteration: no version stored
                    raise CrdError(
                        f"CRD file {file}: CustomResourceDefinition {name!r} lacks {missing}"
                    ) from exc
                key = (crd.group, crd.plural)
                if key in served:
                    raise CrdError(
                        f"CRD file {file}: {crd.plural}.{crd.group} is already served "
                        f"({served[key]})"
                    )
                served[key] = str(file)
                out.append(crd)
                found += 1
        if not found:
            raise CrdError(f"CRD path {path}: no CustomResourceDefinition in it")
    return out


def all_types(crds: list[ResourceType] | None = None) -> list[ResourceType]:
    """The built-in kinds and the custom resources passed in."""
    return [*BUILTIN_TYPES, *(crds or [])]
