"""Synth-time checks with errors that name the prop and the offending value.

The rules themselves live in `hybrid_gateway_contract.rules`, shared with the runtime, so a
value accepted here is one the daemon starts with; this module only names the prop. Values that
are unresolved CDK tokens (known only at deploy time) are skipped: they cannot be checked here,
and rejecting them would make VPCs created in the same app unusable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk

from hybrid_gateway_contract import rules


class HybridGatewayConfigError(ValueError):
    """A prop of the gateway has a value that cannot work; the message names both."""


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


def _literals(values: Sequence[str]) -> list[str | None]:
    """The values with deploy-time tokens replaced by None (skipped, index kept)."""
    return [None if is_token(value) else value for value in values]


def parse_cidrs(prop: str, values: Sequence[str]) -> list[NamedCidr]:
    """Parse every literal CIDR of a prop; tokens are skipped."""
    parsed: list[NamedCidr] = []
    for index, value in enumerate(_literals(values)):
        if value is not None:
            parsed.append(NamedCidr(f"{prop}[{index}]", value, _parse_cidr(prop, index, value)))
    return parsed


def _parse_cidr(prop: str, index: int, value: str) -> ipaddress.IPv4Network:
    result = rules.parse_cidr(rules.CidrEntry(prop, index, value))
    if isinstance(result, rules.CidrProblem):
        raise HybridGatewayConfigError(result.message)
    return result.network


def parse_cidr_or_token(prop: str, index: int, value: str) -> ipaddress.IPv4Network | None:
    """One CIDR of a prop, or None for a deploy-time token."""
    return None if is_token(value) else _parse_cidr(prop, index, value)


def validate_networks(
    *,
    vpc_cidrs: Sequence[str],
    remote_node_networks: Sequence[str],
    remote_pod_networks: Sequence[str],
    service_cidr: str | None,
) -> None:
    """Every check on the address plan the gateway relies on (the contract's CIDR planner)."""
    role = rules.NetworkRole
    plan = [
        rules.CidrField("vpc_cidrs", role.VPC, _literals(vpc_cidrs)),
        rules.CidrField("remote_node_networks", role.REMOTE_NODE, _literals(remote_node_networks)),
        rules.CidrField("remote_pod_networks", role.REMOTE_POD, _literals(remote_pod_networks)),
    ]
    if service_cidr is not None:
        plan.append(
            rules.CidrField("service_cidr", role.SERVICE, _literals([service_cidr]), single=True)
        )
    problems = rules.check_cidr_plan(plan)
    if problems:
        raise HybridGatewayConfigError(problems[0].message)


def validate_replicas(prop: str, value: int) -> None:
    if not is_token(value) and value < 2:
        raise HybridGatewayConfigError(
            f"{prop}: {value} is fewer than 2; active/standby needs two replicas on two nodes"
        )


def validate_dns_label(prop: str, value: str, *, subdomain: bool = False) -> None:
    """Kubernetes object names: DNS-1123 labels (namespaces) or subdomains (most others)."""
    if is_token(value):
        return
    problem = (rules.dns_subdomain_problem if subdomain else rules.dns_label_problem)(value)
    if problem is not None:
        raise HybridGatewayConfigError(f"{prop}: {value!r} is {problem}")


def validate_lease_name(prop: str, value: str) -> None:
    if not is_token(value) and (problem := rules.lease_name_problem(value)) is not None:
        raise HybridGatewayConfigError(f"{prop}: {value!r} is {problem}")


def validate_route_table_ids(prop: str, values: Sequence[str]) -> None:
    for index, value in enumerate(_literals(values)):
        if value is not None and (problem := rules.route_table_id_problem(value)) is not None:
            raise HybridGatewayConfigError(f"{prop}[{index}]: {value!r} is {problem}")


def validate_region(prop: str, value: str | None) -> None:
    if value is None or is_token(value):
        return
    if (problem := rules.region_problem(value)) is not None:
        raise HybridGatewayConfigError(f"{prop}: {value!r} is {problem}")


def validate_vxlan_mtu(prop: str, value: int | None) -> None:
    if value is None or is_token(value):
        return
    if (problem := rules.vxlan_mtu_problem(value)) is not None:
        raise HybridGatewayConfigError(f"{prop}: {value} {problem}")


def validate_lease_timings(
    prop: str, lease_duration_s: float, renew_deadline_s: float, retry_period_s: float
) -> None:
    """`prop` names the timings object; the error names the setting to change inside it."""
    problem = rules.lease_timing_problem(lease_duration_s, renew_deadline_s, retry_period_s)
    if problem is not None:
        setting = f"{problem.setting.name.lower()}_s"
        raise HybridGatewayConfigError(
            f"{prop}.{setting}: {problem.value_s:g}: {problem.reason} (need retry_period_s < "
            "renew_deadline_s < lease_duration_s)"
        )
