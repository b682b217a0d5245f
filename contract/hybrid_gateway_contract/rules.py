"""Validation rules shared by the construct library (synth time) and the runtime (start-up).

Written once here so the two sides cannot drift: a value the construct accepts is one the daemon
starts with, and the other way round. Every rule is pure and dependency-free and returns the
problem (a reason, or a structured `CidrProblem`) instead of raising, so each side wraps it in
its own error type that names its own field: the prop on the construct side, the environment
variable and flag on the runtime side. `check_cidr_plan` is the public address-plan checker,
also meant for a preflight command.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hybrid_gateway_contract import MAX_VTEP_ENDPOINTS, VXLAN_OVERHEAD_BYTES

__all__ = [
    "MAX_VXLAN_MTU",
    "MIN_VXLAN_MTU",
    "CidrEntry",
    "CidrField",
    "CidrProblem",
    "CidrProblemKind",
    "LeaseTiming",
    "LeaseTimingProblem",
    "NetworkRole",
    "ParsedCidr",
    "check_cidr_plan",
    "dns_label_problem",
    "dns_subdomain_problem",
    "lease_name_problem",
    "lease_timing_problem",
    "parse_cidr",
    "region_problem",
    "route_table_id_problem",
    "split_list",
    "vxlan_mtu_problem",
]

# --- Kubernetes names ---------------------------------------------------------------------------
# k8s.io/apimachinery/pkg/util/validation/validation.go: IsDNS1123Label (namespaces) and
# IsDNS1123Subdomain (most object names; a Lease name is checked with NameIsDNSSubdomain in
# k8s.io/kubernetes/pkg/apis/coordination/validation). Dots separate labels: `a..b` is refused.
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE: Final = re.compile(rf"^{_DNS1123_LABEL}$")
_DNS_SUBDOMAIN_RE: Final = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
DNS_LABEL_MAX_LENGTH: Final = 63
DNS_SUBDOMAIN_MAX_LENGTH: Final = 253


def dns_label_problem(value: str) -> str | None:
    """Why `value` is not an RFC 1123 DNS label (a namespace name), or None."""
    if len(value) > DNS_LABEL_MAX_LENGTH:
        return f"longer than {DNS_LABEL_MAX_LENGTH} characters"
    if not _DNS_LABEL_RE.match(value):
        return "not a valid Kubernetes name (RFC 1123 DNS label: a-z, 0-9, '-')"
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """Why `value` is not an RFC 1123 DNS subdomain (most object names), or None."""
    if len(value) > DNS_SUBDOMAIN_MAX_LENGTH:
        return f"longer than {DNS_SUBDOMAIN_MAX_LENGTH} characters"
    if not _DNS_SUBDOMAIN_RE.match(value):
        return (
            "not a valid Kubernetes name (RFC 1123 DNS subdomain: labels of a-z, 0-9, '-' "
            "joined by single dots)"
        )
    return None


def lease_name_problem(value: str) -> str | None:
    """Why `value` cannot name the leader Lease, or None."""
    return dns_subdomain_problem(value)


# --- AWS identifiers ----------------------------------------------------------------------------
# Route table IDs: `rtb-` and 8 (older) or 17 hexadecimal digits (EC2 resource ID format).
_ROUTE_TABLE_ID_RE: Final = re.compile(r"^rtb-(?:[0-9a-f]{8}|[0-9a-f]{17})$")

# Region names are `<area>-<words>-<number>`: us-east-1, us-gov-west-1, cn-north-1,
# eu-isoe-west-1, us-isob-east-1, eusc-de-east-1, ap-southeast-7, mx-central-1. A syntactic
# rule, not a list, so a region launched after this release is accepted. It generalises the
# `regionRegex` of every partition in botocore/data/partitions.json (all of the form
# `^<area prefix>\-\w+\-\d+$`) to any lower-case area of two or more letters, and keeps `\w`
# to lower-case words, so an AZ (`us-east-1a`), `US-EAST-1` or a pseudo-region such as
# `aws-global` is refused.
_REGION_RE: Final = re.compile(r"^[a-z]{2,}(?:-[a-z]+)+-\d+$")


def route_table_id_problem(value: str) -> str | None:
    if not _ROUTE_TABLE_ID_RE.match(value):
        return "not a route table ID (rtb- and 8 or 17 hexadecimal digits)"
    return None


def region_problem(value: str) -> str | None:
    if not _REGION_RE.match(value):
        return "not an AWS region name such as us-east-1 or us-gov-west-1"
    return None


# --- VXLAN device MTU ---------------------------------------------------------------------------
MIN_VXLAN_MTU: Final = 576  # the IPv4 minimum datagram size every host must accept
MAX_VXLAN_MTU: Final = 9001 - VXLAN_OVERHEAD_BYTES  # AWS jumbo frames minus the VXLAN overhead


def vxlan_mtu_problem(value: int) -> str | None:
    if not MIN_VXLAN_MTU <= value <= MAX_VXLAN_MTU:
        return f"must be an integer {MIN_VXLAN_MTU}-{MAX_VXLAN_MTU}"
    return None


# --- Lease timings ------------------------------------------------------------------------------
class LeaseTiming(enum.Enum):
    """The three leader-election settings, so a problem can name the one to change."""

    LEASE_DURATION = "lease duration"
    RENEW_DEADLINE = "renew deadline"
    RETRY_PERIOD = "retry period"


@dataclass(frozen=True)
class LeaseTimingProblem:
    """Which timing to change, its value in seconds, and why (the reason does not repeat the
    value: each side names the setting and value its own way)."""

    setting: LeaseTiming
    value_s: float
    reason: str

    @property
    def message(self) -> str:
        return f"{self.setting.value} {self.value_s:g}s {self.reason}"


def lease_timing_problem(
    lease_duration_s: float, renew_deadline_s: float, retry_period_s: float
) -> LeaseTimingProblem | None:
    """The first broken rule of `0 < retry period < renew deadline < lease duration`, or None.

    client-go's leaderelection.NewLeaderElector enforces the same order: a holder must stop
    (renew deadline) before others may acquire (lease duration), and must get a second renewal
    attempt (retry period) inside its deadline.
    """
    for setting, value in (
        (LeaseTiming.LEASE_DURATION, lease_duration_s),
        (LeaseTiming.RENEW_DEADLINE, renew_deadline_s),
        (LeaseTiming.RETRY_PERIOD, retry_period_s),
    ):
        if not value > 0:
            return LeaseTimingProblem(setting, value, "must be positive")
    if renew_deadline_s >= lease_duration_s:
        return LeaseTimingProblem(
            LeaseTiming.RENEW_DEADLINE,
            renew_deadline_s,
            f"must be shorter than the lease duration ({lease_duration_s:g}s), or a holder "
            "could act after others may acquire",
        )
    if retry_period_s >= renew_deadline_s:
        return LeaseTimingProblem(
            LeaseTiming.RETRY_PERIOD,
            retry_period_s,
            f"must be shorter than the renew deadline ({renew_deadline_s:g}s), or the holder "
            "gets no second renewal attempt",
        )
    return None


# --- Comma-separated lists ----------------------------------------------------------------------
def split_list(raw: str) -> list[str]:
    """Items of a comma-separated setting, trimmed; empty items are skipped.

    The reference parses its lists this way (cmd/gateway/main.go parseCIDRs and
    internal/aws/routetable.go ParseRouteTableIDs), and its chart passes the user's raw string,
    so `a,,b,` must mean `a,b`.
    """
    return [item.strip() for item in raw.split(",") if item.strip()]


# --- The address plan ---------------------------------------------------------------------------
class NetworkRole(enum.Enum):
    """What a CIDR is for; the gateway needs all of them pairwise disjoint."""

    VPC = "VPC CIDR"
    REMOTE_NODE = "remote node network"
    REMOTE_POD = "remote pod network"
    SERVICE = "service CIDR"


@dataclass(frozen=True)
class CidrField:
    """One setting holding CIDRs, under the caller's own name for it.

    `values` keeps the caller's order; an item that is None is not known yet (a deploy-time
    value) and is skipped but keeps its index. `single` fields (one value, e.g. the service
    CIDR) are named without an index.
    """

    name: str
    role: NetworkRole
    values: Sequence[str | None]
    required: bool = True
    single: bool = False


@dataclass(frozen=True)
class CidrEntry:
    """Where a value came from: the field name and its position in it."""

    field: str
    index: int | None
    value: str

    @property
    def where(self) -> str:
        return self.field if self.index is None else f"{self.field}[{self.index}]"


class CidrProblemKind(enum.Enum):
    MISSING = "missing"
    TOO_MANY = "too-many"
    NOT_A_CIDR = "not-a-cidr"
    HOST_BITS = "host-bits"
    DUPLICATE = "duplicate"
    OVERLAP = "overlap"


@dataclass(frozen=True)
class CidrProblem:
    """One thing wrong with the address plan.

    `entries` are the offending values, the one to change first (for an overlap: the later one,
    then the earlier one it overlaps). `fields` and `values` list their names and texts.
    """

    kind: CidrProblemKind
    entries: tuple[CidrEntry, ...]
    message: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(entry.field for entry in self.entries))

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(entry.value for entry in self.entries)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ParsedCidr:
    entry: CidrEntry
    network: ipaddress.IPv4Network


def parse_cidr(entry: CidrEntry) -> ParsedCidr | CidrProblem:
    """One value as an IPv4 network: a prefix length is required and host bits are refused."""
    shown = f"{entry.where}: {entry.value!r}"
    try:
        network = ipaddress.IPv4Network(entry.value, strict=False)
    except ValueError as exc:
        return CidrProblem(
            CidrProblemKind.NOT_A_CIDR, (entry,), f"{shown} is not a valid IPv4 CIDR ({exc})"
        )
    if "/" not in entry.value:
        return CidrProblem(
            CidrProblemKind.NOT_A_CIDR,
            (entry,),
            f"{shown} is not a valid IPv4 CIDR (missing /prefix length)",
        )
    if str(network) != entry.value:
        return CidrProblem(
            CidrProblemKind.HOST_BITS,
            (entry,),
            f"{shown} has host bits set; did you mean {str(network)!r}?",
        )
    return ParsedCidr(entry, network)


def check_cidr_plan(fields: Sequence[CidrField]) -> list[CidrProblem]:
    """Every problem of an address plan, in field order; an empty list means it is usable.

    Checks: required fields are not empty; at most MAX_VTEP_ENDPOINTS VPC CIDRs (Cilium's VTEP
    map); each value is an IPv4 CIDR with a prefix length and no host bits; no value is listed
    twice; no two CIDRs overlap, within a field or across fields (VPC, remote node, remote pod
    and service networks must be disjoint, as the EKS remoteNetworkConfig requires).
    """
    problems: list[CidrProblem] = []
    parsed: list[ParsedCidr] = []
    vpc_count = 0
    for field in fields:
        if field.required and not field.values:
            problems.append(
                CidrProblem(
                    CidrProblemKind.MISSING,
                    (CidrEntry(field.name, None, ""),),
                    f"{field.name}: at least one {field.role.value} is required, got []",
                )
            )
        if field.role is NetworkRole.VPC:
            vpc_count += len(field.values)
            if vpc_count > MAX_VTEP_ENDPOINTS:
                texts = ", ".join(str(v) for v in field.values)
                problems.append(
                    CidrProblem(
                        CidrProblemKind.TOO_MANY,
                        (CidrEntry(field.name, None, texts),),
                        f"{field.name}: {len(field.values)} CIDRs given ({texts}); Cilium's "
                        f"VTEP map holds at most {MAX_VTEP_ENDPOINTS}",
                    )
                )
        for index, value in enumerate(field.values):
            if value is None:
                continue
            entry = CidrEntry(field.name, None if field.single else index, value)
            result = parse_cidr(entry)
            if isinstance(result, CidrProblem):
                problems.append(result)
            else:
                parsed.append(result)
    for i, later in enumerate(parsed):
        for earlier in parsed[:i]:
            if not later.network.overlaps(earlier.network):
                continue
            kind = (
                CidrProblemKind.DUPLICATE
                if later.network == earlier.network
                else CidrProblemKind.OVERLAP
            )
            verb = "is listed twice, also as" if kind is CidrProblemKind.DUPLICATE else "overlaps"
            problems.append(
                CidrProblem(
                    kind,
                    (later.entry, earlier.entry),
                    f"{later.entry.where}: {later.entry.value!r} {verb} "
                    f"{earlier.entry.where}: {earlier.entry.value!r}; the VPC, remote node, "
                    "remote pod and service networks must be disjoint",
                )
            )
            break  # one problem per value: fixing it may clear the others
    return problems
