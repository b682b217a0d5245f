"""The desired CiliumVTEPConfig, pure.

Hybrid-side Cilium sends VPC-bound traffic into the tunnel towards `tunnelEndpoint` with the
inner destination MAC `mac`; both must be the leader's, one endpoint per VPC CIDR.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    a missing, extra or edited one is corrected (docs/design.md#vtep-config).
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


# --- the object's owner: the gateway's Namespace ---------------------------------------------
def namespace_owner(namespace: str, uid: str) -> dict[str, str]:
    """An owner reference to the gateway's Namespace (cluster-scoped, as a cluster-scoped
    dependent's owner must be: Kubernetes documentation, "Garbage Collection", "Owners and
    dependents").

    Kubernetes' garbage collector deletes the CiliumVTEPConfig once that Namespace is gone,
    which is after every gateway pod in it has terminated (a Namespace is removed only when
    its content is), so uninstalling the gateway (`kubectl delete` of its manifests, the
    construct's stack deletion) does not leave the hybrid nodes' VPC-bound traffic going into
    a tunnel to a gateway that no longer exists. No `blockOwnerDeletion`: the object must
    never hold the Namespace's deletion up.
    """
    return {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": uid}


def _owner_refs(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return [ref for ref in refs if isinstance(ref, Mapping)]


def has_owner(observed: Mapping[str, Any] | None, owner: Mapping[str, str]) -> bool:
    """True if `observed` names `owner` (by UID) among its owners."""
    return any(ref.get("uid") == owner["uid"] for ref in _owner_refs(observed))


def with_owner(obj: Mapping[str, Any], owner: Mapping[str, str]) -> dict[str, Any]:
    """`obj` with `owner` among its owner references. Other owners are kept, except an older
    reference to a Namespace of the same name (a UID that object no longer has)."""
    kept = [
        dict(ref)
        for ref in _owner_refs(obj)
        if not (ref.get("kind") == owner["kind"] and ref.get("name") == owner["name"])
    ]
    metadata = dict(obj.get("metadata") or {})
    metadata["ownerReferences"] = [*kept, dict(owner)]
    return {**obj, "metadata": metadata}


# --- what the hybrid nodes' Cilium agents can match --------------------------------------------
#: The `cilium-config` key of the agent's VTEP mask (Helm value `vtep.mask`; cilium/cilium
#: pkg/option/config.go `VtepMask = "vtep-mask"`), and the agent's default when the key is
#: absent or empty (daemon/cmd flag `--vtep-mask`, default "255.255.255.0").
AGENT_VTEP_MASK_KEY = "vtep-mask"
DEFAULT_AGENT_VTEP_MASK = "255.255.255.0"


class VtepMatchError(ValueError):
    """The hybrid nodes' Cilium cannot match the endpoints the gateway would publish."""


def agent_mask_length(config: Mapping[str, str]) -> int:
    """The prefix length of the agent's `vtep-mask` in a `cilium-config` ConfigMap's data.

    Upstream Cilium looks VTEP endpoints up in a BPF hash keyed by `destination & vtep-mask`,
    ONE mask for every endpoint (bpf/lib/vtep.h `cilium_vtep_map` BPF_MAP_TYPE_HASH;
    pkg/maps/vtep/vtep.go `NewKey` masks with `option.Config.VtepCidrMask`), and the v2
    CiliumVTEPConfig reconcilers never read `spec.cidrMask`; so this mask decides what matches.
    """
    raw = (config.get(AGENT_VTEP_MASK_KEY) or "").strip() or DEFAULT_AGENT_VTEP_MASK
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{raw}").prefixlen
    except ValueError as exc:
        raise VtepMatchError(
            f"cilium-config {AGENT_VTEP_MASK_KEY}={raw!r} is not an IPv4 netmask"
        ) from exc


def endpoints_for_agent_mask(
    vpc_cidrs: Sequence[ipaddress.IPv4Network], mask_length: int
) -> list[ipaddress.IPv4Network]:
    """The endpoint CIDRs (active-standby) the agent's hash matches exactly: each VPC CIDR cut
    into prefixes of the agent's mask length. A /16 endpoint under a /24 mask would be keyed
    by its first /24 only, so the rest of the VPC would not come back through the tunnel.

    Raises VtepMatchError when no such cut exists: a VPC CIDR longer than the mask (its key
    would claim the whole /mask around it) or more than Cilium's 8 endpoints.
    """
    longer = [c for c in vpc_cidrs if c.prefixlen > mask_length]
    if longer:
        raise VtepMatchError(
            f"VPC CIDR {longer[0]} is longer than the Cilium agents' vtep-mask /{mask_length}: "
            f"its endpoint would also take the rest of {longer[0].supernet(new_prefix=mask_length)}"
            f"; {needed_mask_advice(vpc_cidrs)}"
        )
    count = sum(2 ** (mask_length - c.prefixlen) for c in vpc_cidrs)
    if count > MAX_VTEP_ENDPOINTS:
        raise VtepMatchError(
            f"VPC CIDR(s) {', '.join(map(str, vpc_cidrs))} under the Cilium agents' vtep-mask "
            f"/{mask_length} ({dotted_mask(mask_length)}) need {count} endpoints of "
            f"/{mask_length}, more than Cilium's {MAX_VTEP_ENDPOINTS} (one endpoint per VPC "
            f"CIDR would match only its first /{mask_length}); {needed_mask_advice(vpc_cidrs)}"
        )
    return [sub for cidr in vpc_cidrs for sub in cidr.subnets(new_prefix=mask_length)]


def needed_mask_advice(vpc_cidrs: Sequence[ipaddress.IPv4Network]) -> str:
    """What to set on Cilium so that these VPC CIDRs can be matched."""
    longest = max(c.prefixlen for c in vpc_cidrs)
    if sum(2 ** (longest - c.prefixlen) for c in vpc_cidrs) > MAX_VTEP_ENDPOINTS:
        return (
            "the VPC CIDRs differ too much in size for one mask and 8 endpoints; give VPC_CIDR "
            "only the CIDRs hybrid pods must reach"
        )
    return (
        f"set Cilium's Helm value vtep.mask={dotted_mask(longest)} (cilium-config "
        f"{AGENT_VTEP_MASK_KEY}) and restart the Cilium agents"
    )


def plan_mask_problem(endpoint_cidrs: Sequence[str], mask_length: int) -> str | None:
    """Why the agents cannot match these endpoints exactly (each must be as long as the
    agent's mask), or None."""
    lengths = sorted({ipaddress.IPv4Network(c).prefixlen for c in endpoint_cidrs})
    if lengths == [mask_length] or not lengths:
        return None
    return (
        f"endpoints of /{', /'.join(map(str, lengths))} under the Cilium agents' vtep-mask "
        f"/{mask_length}: each is matched by destination & mask, so only endpoints of exactly "
        f"/{mask_length} match what they name"
        + (
            f"; set Cilium's Helm value vtep.mask={dotted_mask(lengths[0])} (cilium-config "
            f"{AGENT_VTEP_MASK_KEY}) and restart the Cilium agents"
            if len(lengths) == 1
            else ""
        )
    )


@dataclass(frozen=True)
class AgentMatch:
    """The judgement of what the agents run with: the active-standby endpoint CIDRs to publish
    (VPC_CIDR cut to the agents' mask, or VPC_CIDR as is when that cannot be known or done),
    and why the cluster cannot match them (None: it can, or it cannot be told)."""

    endpoints: tuple[ipaddress.IPv4Network, ...]
    problem: str | None
    seen: str


def judge_agents(
    served_versions: Sequence[str] | None,
    config: Mapping[str, str] | None,
    *,
    vpc_cidrs: Sequence[ipaddress.IPv4Network],
    plan_endpoints: Sequence[str] | None = None,
) -> AgentMatch:
    """`served_versions`: the CiliumVTEPConfig CRD's served versions (None: no CRD, which the
    VTEP writes and watch report themselves); `config`: the `cilium-config` data (None: no
    such ConfigMap, so the mask is unknown and nothing is refused); `plan_endpoints`: the
    active-active plan's endpoint CIDRs (None in active-standby)."""
    as_is = tuple(vpc_cidrs)
    if served_versions is not None and CILIUM_VERSION not in served_versions:
        return AgentMatch(
            as_is,
            f"the {VTEP_CONFIG_KIND} CRD serves {', '.join(served_versions) or 'no version'}, "
            f"not {CILIUM_GROUP}/{CILIUM_VERSION} (spec.endpoints), which this gateway writes",
            "CRD",
        )
    if config is None:
        return AgentMatch(as_is, None, "no kube-system/cilium-config: the agents' mask unknown")
    try:
        mask = agent_mask_length(config)
    except VtepMatchError as exc:
        return AgentMatch(as_is, str(exc), "cilium-config")
    seen = f"agents' vtep-mask /{mask}"
    if plan_endpoints is not None:
        return AgentMatch(as_is, plan_mask_problem(plan_endpoints, mask), seen)
    try:
        return AgentMatch(tuple(endpoints_for_agent_mask(vpc_cidrs, mask)), None, seen)
    except VtepMatchError as exc:
        return AgentMatch(as_is, str(exc), seen)
