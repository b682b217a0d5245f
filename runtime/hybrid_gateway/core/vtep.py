"""The desired CiliumVTEPConfig, pure.

Hybrid-side Cilium sends VPC-bound traffic into the tunnel towards `tunnelEndpoint` with the
inner destination MAC `mac`; both must be the leader's, one endpoint per VPC CIDR.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    MAX_VTEP_ENDPOINTS,
    VTEP_CONFIG_KIND,
    VTEP_CONFIG_NAME,
    vtep_endpoint_name,
)
from hybrid_gateway_contract.plans import PLAN_ANNOTATION


def desired_endpoints(
    vpc_cidrs: Sequence[ipaddress.IPv4Network], node_ip: str, mac: str
) -> list[dict[str, str]]:
    """One endpoint per VPC CIDR in VPC_CIDR order, named by `vtep_endpoint_name`."""
    if not 1 <= len(vpc_cidrs) <= MAX_VTEP_ENDPOINTS:
        raise ValueError(
            f"{len(vpc_cidrs)} VPC CIDRs: CiliumVTEPConfig holds 1 to {MAX_VTEP_ENDPOINTS}"
        )
    return [
        {
            "name": vtep_endpoint_name(i, len(vpc_cidrs)),
            "tunnelEndpoint": node_ip,
            "cidr": str(cidr),
            "mac": mac.lower(),
        }
        for i, cidr in enumerate(vpc_cidrs)
    ]


def desired_object(
    vpc_cidrs: Sequence[ipaddress.IPv4Network],
    node_ip: str,
    mac: str,
    *,
    endpoints: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The full object to create (cluster-scoped; `spec.cidrMask` left unset like the reference)."""
    return {
        "apiVersion": f"{CILIUM_GROUP}/{CILIUM_VERSION}",
        "kind": VTEP_CONFIG_KIND,
        "metadata": {
            "name": VTEP_CONFIG_NAME,
            "labels": {"app.kubernetes.io/managed-by": "eks-hybrid-nodes-gateway"},
        },
        "spec": {
            "endpoints": [dict(e) for e in endpoints]
            if endpoints is not None
            else desired_endpoints(vpc_cidrs, node_ip, mac)
        },
    }


def _compared(endpoints: object) -> list[tuple[str, str, str]] | None:
    """The fields that decide whether the object needs an update, in a comparable form."""
    if not isinstance(endpoints, list):
        return None
    out: list[tuple[str, str, str]] = []
    for item in endpoints:
        if not isinstance(item, Mapping):
            return None
        out.append(
            (
                str(item.get("tunnelEndpoint", "")),
                str(item.get("cidr", "")),
                str(item.get("mac", "")).lower(),
            )
        )
    return sorted(out)


def endpoints_match(
    observed: Mapping[str, Any] | None, desired: Sequence[Mapping[str, str]]
) -> bool:
    """True if the observed object needs no update: the same (tunnelEndpoint, cidr, mac) set.

    The reference decides on exactly these three fields (internal/cilium/vtep.go needsUpdate),
    so an object it wrote (endpoint `vpc-gateway`) is taken over without a rewrite. Endpoint
    names, order, MAC case and other spec fields (a server-defaulted `cidrMask`) are not
    compared. Unlike the reference, which reads only the first endpoint, every endpoint counts:
    a missing, extra or edited one is corrected (SPEC §5).
    """
    if observed is None:
        return False
    spec = observed.get("spec")
    if not isinstance(spec, Mapping):
        return False
    return _compared(spec.get("endpoints")) == _compared(list(desired))


# --- active-active: one shard's endpoints in the shared object ----------------------------------
def dotted_mask(prefix_length: int) -> str:
    """`spec.cidrMask` for a prefix length (18 -> 255.255.192.0)."""
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefix_length}").netmask)


def _endpoint_key(item: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(item.get("name", "")),
        str(item.get("tunnelEndpoint", "")),
        str(item.get("cidr", "")),
        str(item.get("mac", "")).lower(),
    )


def merge_shard_endpoints(
    observed: Mapping[str, Any] | None,
    plan: Sequence[tuple[str, str]],
    mine: frozenset[str],
    node_ip: str,
    mac: str,
) -> list[dict[str, str]]:
    """The endpoint list after this replica publishes the endpoints named in `mine`.

    `plan` is every endpoint of the shard plan, (name, cidr) in plan order. Ours point at us;
    another shard's endpoint is kept exactly as its owner wrote it when its name and CIDR are
    the plan's, and left out until its owner publishes it otherwise; endpoints outside the plan
    (the active-standby endpoint, an older plan) are dropped, so the object only ever holds
    disjoint endpoints of one prefix length. A write touches only our own entries.
    """
    spec = observed.get("spec") if observed is not None else None
    current = spec.get("endpoints") if isinstance(spec, Mapping) else None
    by_name = {
        str(item.get("name")): item
        for item in (current if isinstance(current, list) else [])
        if isinstance(item, Mapping)
    }
    merged: list[dict[str, str]] = []
    for name, cidr in plan:
        if name in mine:
            merged.append(
                {"name": name, "tunnelEndpoint": node_ip, "cidr": cidr, "mac": mac.lower()}
            )
            continue
        theirs = by_name.get(name)
        if theirs is not None and str(theirs.get("cidr", "")) == cidr:
            merged.append({k: str(v) for k, v in theirs.items()})
    return merged


def shard_endpoints_match(
    observed: Mapping[str, Any] | None, merged: Sequence[Mapping[str, str]], mask: str | None
) -> bool:
    """True if the observed object already holds exactly `merged` (and `mask`, when set)."""
    if observed is None:
        return False
    spec = observed.get("spec")
    if not isinstance(spec, Mapping):
        return False
    current = spec.get("endpoints")
    if not isinstance(current, list) or not all(isinstance(i, Mapping) for i in current):
        return False
    if mask is not None and spec.get("cidrMask") != mask:
        return False
    return sorted(map(_endpoint_key, current)) == sorted(map(_endpoint_key, merged))


# --- which plan the object's endpoints belong to, and its mask ----------------------------------
#: The CRD's default for `spec.cidrMask` (`+kubebuilder:default="255.255.255.0"` on
#: CiliumVTEPConfigSpec.CIDRMask in Cilium's cilium.io/v2 VTEP types): removing the field
#: makes the API server store this value again, so "reset" reads as either.
CRD_DEFAULT_CIDR_MASK = "255.255.255.0"


def object_plan(observed: Mapping[str, Any] | None) -> str | None:
    """The plan digest the object's shard endpoints were written under (None: none, e.g. an
    active-standby leader or the reference wrote it)."""
    if observed is None:
        return None
    annotations = (observed.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(PLAN_ANNOTATION)
    return str(value) if value else None


def mask_is_reset(observed: Mapping[str, Any] | None) -> bool:
    """True when `spec.cidrMask` is absent or the CRD default (nobody's plan set it)."""
    spec = (observed or {}).get("spec") or {}
    return spec.get("cidrMask") in (None, CRD_DEFAULT_CIDR_MASK)


def with_plan(
    observed: Mapping[str, Any], spec: Mapping[str, Any], plan: str | None
) -> dict[str, Any]:
    """`observed` with `spec`, annotated with `plan` (None: the annotation removed)."""
    metadata = dict(observed.get("metadata") or {})
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != PLAN_ANNOTATION
    }
    if plan is not None:
        annotations[PLAN_ANNOTATION] = plan
    metadata["annotations"] = annotations or None
    return {**observed, "metadata": metadata, "spec": dict(spec)}


def without_mask(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` with `cidrMask` removed (the API server stores the CRD default)."""
    return {k: v for k, v in spec.items() if k != "cidrMask"}
