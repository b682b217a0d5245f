"""Pure helpers on JSON objects: label/field selectors and the three PATCH formats."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

JsonObj = dict[str, Any]
Selector = Callable[[JsonObj], bool]

# --- selectors ----------------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*(?:(in|notin)\s*\((.*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (`a in (x,y),b=c`)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


@dataclass(frozen=True)
class Requirement:
    """One selector term (in, notin, exists, !exists); `=` and `!=` are in/notin one value."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, fields: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in fields
        if self.op == "!exists":
            return self.key not in fields
        present = fields.get(self.key) in self.values
        return present if self.op == "in" else not present


def _all(requirements: list[Requirement], fields: Mapping[str, str]) -> bool:
    return all(r.matches(fields) for r in requirements)


def parse_label_selector(text: str) -> Selector:
    """Equality (`=`, `==`, `!=`), set (`in`, `notin`) and existence (`k`, `!k`) requirements."""
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            requirements.append(
                Requirement(key, "notin" if op == "!=" else "in", frozenset([value]))
            )
            continue
        st = _SET_RE.match(part)
        if not st or (st.group(1) and st.group(3)):
            raise bad_request(f"unable to parse requirement: {part.strip()!r}")
        negate, key, op, values_text = st.groups()
        if op:
            values = frozenset(v.strip() for v in values_text.split(",") if v.strip())
            requirements.append(Requirement(key, op, values))
        else:
            requirements.append(Requirement(key, "!exists" if negate else "exists"))

    def matches(obj: JsonObj) -> bool:
        return _all(requirements, obj.get("metadata", {}).get("labels") or {})

    return matches


_FIELDS = ("metadata.name", "metadata.namespace")


def _field_values(obj: JsonObj) -> dict[str, str]:
    meta = obj.get("metadata", {})
    return {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}


def parse_field_selector(text: str) -> Selector:
    """`metadata.name` and `metadata.namespace` with `=`, `==`, `!=` (what every kind supports)."""
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        eq = _EQ_RE.match(part)
        if not eq:
            raise bad_request(f"invalid selector: {text!r}; can't understand {part.strip()!r}")
        key, op, value = eq.groups()
        if key not in _FIELDS:
            raise bad_request(
                f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
        requirements.append(Requirement(key, "notin" if op == "!=" else "in", frozenset([value])))

    def matches(obj: JsonObj) -> bool:
        return _all(requirements, _field_values(obj))

    return matches


# --- patches --------------------------------------------------------------------------------------

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f"invalid JSON pointer {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", f"the server rejected our request due to an error: {message}")


def _resolve(doc: Any, tokens: list[str], path: str) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            raise _patch_error(f"path {path!r} does not exist")
    return doc


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _patch_error(f"array index out of range in {path!r}")
    else:
        raise _patch_error(f"cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise _patch_error("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise _patch_error(f"path {path!r} does not exist")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise bad_request(
            "json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
        )
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _patch_error(f"invalid JSON patch operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise _patch_error(f"operation {kind} at {path!r} needs a value")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc, _ = _remove(doc, path) if _pointer(path) else (doc, None)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            doc, value = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "copy":
            value = copy.deepcopy(_resolve(doc, _pointer(op.get("from", "")), op.get("from", "")))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _resolve(doc, _pointer(path), path) != op["value"]:
                raise _patch_error(f"test operation failed at {path!r}")
        else:
            raise _patch_error(f"unknown JSON patch operation {kind!r}")
    return doc
