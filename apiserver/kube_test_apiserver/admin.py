"""The harness's admin API under `/_testkit/`: one function per (method, action)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from .control import Control, fault_key
from .errors import ApiError
from .store import Store

ADMIN_PREFIX = "/_testkit/"
JsonObj = dict[str, Any]
AdminAction = Callable[[Control, Store, JsonObj], JsonObj]

INJECTABLE = {
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden by the test: the identity may not do this (RBAC)"),
    404: ("NotFound", "the server could not find the requested resource (injected by the test)"),
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


def injected(code: int) -> ApiError:
    reason, message = INJECTABLE[code]
    details = {"retryAfterSeconds": 1} if code == 429 else None
    return ApiError(code, reason, message, details)


def _audit(control: Control, store: Store, body: JsonObj) -> JsonObj:
    with control.lock:
        records = [record.to_json() for record in control.audit]
    return {"records": records}


def _identities(control: Control, store: Store, body: JsonObj) -> JsonObj:
    token, kubeconfig = control.identity(str(body.get("name", "")))
    return {"kubeconfig": str(kubeconfig), "token": token}


def _partition(control: Control, store: Store, body: JsonObj) -> JsonObj:
    mode = body.get("mode", "drop")
    if mode not in ("drop", "hang"):
        raise errors.bad_request(f"partition mode must be 'drop' or 'hang', got {mode!r}")
    control.set_partition(str(body.get("identity")), mode)
    store.wake_all()
    return {"partitioned": sorted(control.partitions)}


def _heal(control: Control, store: Store, body: JsonObj) -> JsonObj:
    control.set_partition(str(body.get("identity")), None)
    return {"partitioned": sorted(control.partitions)}


def _latency(control: Control, store: Store, body: JsonObj) -> JsonObj:
    seconds, jitter = float(body.get("seconds", 0)), float(body.get("jitter", 0))
    if not 0 <= seconds <= 60 or not 0 <= jitter <= 60:
        raise errors.bad_request(
            f"latency and jitter must be within 0..60 s, got {seconds} and {jitter}"
        )
    key = fault_key(body.get("identity"), body.get("resource"))
    with control.lock:
        control.latency_s[key] = seconds
        control.latency_jitter_s[key] = jitter
        return {"latency": dict(control.latency_s), "jitter": dict(control.latency_jitter_s)}


def _faults(control: Control, store: Store, body: JsonObj) -> JsonObj:
    code, count = int(body.get("code", 500)), int(body.get("count", 1))
    if code not in INJECTABLE or count < 0:
        raise errors.bad_request(
            f"fault code must be one of {sorted(INJECTABLE)} and count >= 0, got {code} x {count}"
        )
    with control.lock:
        key = fault_key(body.get("identity"), body.get("resource"))
        if count:
            control.faults[key] = [code, count]
        else:
            control.faults.pop(key, None)
        return {"faults": dict(control.faults)}


def _compact(control: Control, store: Store, body: JsonObj) -> JsonObj:
    return {"resourceVersion": str(store.compact())}


def _close_watches(control: Control, store: Store, body: JsonObj) -> JsonObj:
    with control.lock:
        control.watch_epoch += 1
        epoch = control.watch_epoch
    store.wake_all()
    return {"epoch": epoch}


ACTIONS: dict[tuple[str, str], AdminAction] = {
    ("GET", "audit"): _audit,
    ("POST", "identities"): _identities,
    ("POST", "partition"): _partition,
    ("POST", "heal"): _heal,
    ("POST", "latency"): _latency,
    ("POST", "faults"): _faults,
    ("POST", "compact"): _compact,
    ("POST", "close-watches"): _close_watches,
}


def admin_action(method: str, path: str) -> AdminAction:
    """The function serving an admin path, or 404."""
    action = ACTIONS.get((method, path[len(ADMIN_PREFIX) :].strip("/")))
    if action is None:
        raise errors.page_not_found()
    return action
