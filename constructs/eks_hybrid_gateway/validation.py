"""Synth-time checks with errors that name the prop and the offending value.

Values that are unresolved CDK tokens (known only at deploy time) are skipped: they cannot be
checked here, and rejecting them would make VPCs created in the same app unusable.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk

import hybrid_gateway_contract as contract


class HybridGatewayConfigError(ValueError):
    """A prop of the gateway has a value that cannot work; the message names both."""


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ROUTE_TABLE_ID = re.compile(r"^rtb-[0-9a-f]{8}([0-9a-f]{9})?$")


def is_token(value: object) -> bool:
    """True for values only known at deploy time (CDK tokens)."""
    return cdk.Token.is_unresolved(value)


@dataclass(frozen=True)
class NamedCidr:
    """A parsed CIDR and where it came from, for error messages."""

    prop: str
    text: str
    network: ipaddress.IPv4Network


def require_nonempty(prop: str, values: Sequence[object], what: str) -> None:
    """Reject an empty list; `what` names one of its elements, e.g. "VPC CIDR"."""
    if not values:
        raise HybridGatewayConfigError(f"{prop}: at least one {what} is required, got []")


def parse_cidrs(prop: str, values: Sequence[str]) -> list[NamedCidr]:
    """Parse every literal CIDR of a prop; tokens are skipped."""
    parsed: list[NamedCidr] = []
    for index, value in enumerate(values):
        if is_token(value):
            continue
        where = f"{prop}[{index}]"
        try:
            network = ipaddress.IPv4Network(value, strict=False)
        except ValueError as exc:
            raise HybridGatewayConfigError(
                f"{where}: {value!r} is not a valid IPv4 CIDR ({exc})"
            ) from None
        if "/" not in value:
            raise HybridGatewayConfigError(
                f"{where}: {value!r} is not a valid IPv4 CIDR (missing /prefix length)"
            )
        if str(network) != value:
            raise HybridGatewayConfigError(
                f"{where}: {value!r} has host bits set; did you mean {str(network)!r}?"
            )
        parsed.append(NamedCidr(where, value, network))
    return parsed


def check_no_overlaps(cidrs: Sequence[NamedCidr]) -> None:
    """Reject any two CIDRs (from the same prop or different props) that overlap."""
    for i, first in enumerate(cidrs):
        for second in cidrs[i + 1 :]:
            if first.network.overlaps(second.network):
                raise HybridGatewayConfigError(
                    f"{second.prop}: {second.text!r} overlaps {first.prop}: {first.text!r}; "
                    "the VPC, remote node, remote pod and service networks must be disjoint"
                )


def validate_networks(
    *,
    vpc_cidrs: Sequence[str],
    remote_node_networks: Sequence[str],
    remote_pod_networks: Sequence[str],
    service_cidr: str | None,
) -> None:
    """Every check on the address plan the gateway relies on."""
    require_nonempty("remote_node_networks", remote_node_networks, "remote node network")
    require_nonempty("remote_pod_networks", remote_pod_networks, "remote pod network")
    require_nonempty("vpc_cidrs", vpc_cidrs, "VPC CIDR")
    if len(vpc_cidrs) > contract.MAX_VTEP_ENDPOINTS:
        raise HybridGatewayConfigError(
            f"vpc_cidrs: {len(vpc_cidrs)} CIDRs given ({', '.join(map(str, vpc_cidrs))}); "
            f"Cilium's VTEP map holds at most {contract.MAX_VTEP_ENDPOINTS}"
        )
    all_cidrs = [
        *parse_cidrs("vpc_cidrs", vpc_cidrs),
        *parse_cidrs("remote_node_networks", remote_node_networks),
        *parse_cidrs("remote_pod_networks", remote_pod_networks),
    ]
    if service_cidr is not None:
        all_cidrs.extend(
            NamedCidr("service_cidr", c.text, c.network)
            for c in parse_cidrs("service_cidr", [service_cidr])
        )
    check_no_overlaps(all_cidrs)


def validate_replicas(prop: str, value: int) -> None:
    if not is_token(value) and value < 2:
        raise HybridGatewayConfigError(
            f"{prop}: {value} is fewer than 2; active/standby needs two replicas on two nodes"
        )


def validate_positive(prop: str, value: float) -> None:
    if not is_token(value) and not value > 0:
        raise HybridGatewayConfigError(f"{prop}: {value} must be greater than 0")


def validate_dns_label(prop: str, value: str, *, subdomain: bool = False) -> None:
    """Kubernetes object names: DNS-1123 labels (namespaces) or subdomains (most others)."""
    if is_token(value):
        return
    pattern, limit = (_DNS_SUBDOMAIN, 253) if subdomain else (_DNS_LABEL, 63)
    if len(value) > limit or not pattern.match(value):
        kind = "subdomain" if subdomain else "label"
        raise HybridGatewayConfigError(
            f"{prop}: {value!r} is not a valid Kubernetes name (RFC 1123 DNS {kind})"
        )


def validate_route_table_ids(prop: str, values: Sequence[str]) -> None:
    for index, value in enumerate(values):
        if not is_token(value) and not _ROUTE_TABLE_ID.match(value):
            raise HybridGatewayConfigError(
                f"{prop}[{index}]: {value!r} is not a route table ID (rtb-xxxxxxxx)"
            )
