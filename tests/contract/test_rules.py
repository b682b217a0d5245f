"""The contract's validation rules (hybrid_gateway_contract.rules), on their own.

The construct and the runtime wrap these; test_shared_rules.py proves both sides
agree. Here: the public API a preflight check builds on, and the rules' edges.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_gateway_contract import rules

# --- The address plan: the public API a preflight check builds on ------------------------------


def _plan(**fields: list[str | None]) -> list[rules.CidrProblem]:
    roles = {
        "vpc": rules.NetworkRole.VPC,
        "nodes": rules.NetworkRole.REMOTE_NODE,
        "pods": rules.NetworkRole.REMOTE_POD,
        "service": rules.NetworkRole.SERVICE,
    }
    return rules.check_cidr_plan(
        [
            rules.CidrField(name, roles[name], values, single=name == "service")
            for name, values in fields.items()
        ]
    )


def test_a_sound_plan_has_no_problems() -> None:
    assert (
        _plan(
            vpc=["10.0.0.0/16", "10.1.0.0/16"],
            nodes=["192.168.100.0/24"],
            pods=["10.80.0.0/16"],
            service=["172.20.0.0/16"],
        )
        == []
    )


def test_every_problem_is_listed_with_its_fields_and_values() -> None:
    problems = _plan(
        vpc=["10.0.0.0/16"],
        nodes=["192.168.100.1/24", "x"],
        pods=["10.0.128.0/17", "10.80.0.0/16", "10.80.0.0/16"],
        service=["10.80.1.0/24"],
    )
    got = [(p.kind, p.fields, p.values) for p in problems]
    kind = rules.CidrProblemKind
    assert got == [
        (kind.HOST_BITS, ("nodes",), ("192.168.100.1/24",)),
        (kind.NOT_A_CIDR, ("nodes",), ("x",)),
        (kind.OVERLAP, ("pods", "vpc"), ("10.0.128.0/17", "10.0.0.0/16")),
        (kind.DUPLICATE, ("pods",), ("10.80.0.0/16", "10.80.0.0/16")),
        (kind.OVERLAP, ("service", "pods"), ("10.80.1.0/24", "10.80.0.0/16")),
    ]
    assert [str(p) for p in problems] == [
        "nodes[0]: '192.168.100.1/24' has host bits set; did you mean '192.168.100.0/24'?",
        "nodes[1]: 'x' is not a valid IPv4 CIDR (Expected 4 octets in 'x')",
        "pods[0]: '10.0.128.0/17' overlaps vpc[0]: '10.0.0.0/16'; the VPC, remote node, remote "
        "pod and service networks must be disjoint",
        "pods[2]: '10.80.0.0/16' is listed twice, also as pods[1]: '10.80.0.0/16'; the VPC, "
        "remote node, remote pod and service networks must be disjoint",
        "service: '10.80.1.0/24' overlaps pods[1]: '10.80.0.0/16'; the VPC, remote node, remote "
        "pod and service networks must be disjoint",
    ]
    assert [e.where for e in problems[2].entries] == ["pods[0]", "vpc[0]"]


def test_missing_lists_too_many_vpc_cidrs_and_unknown_values() -> None:
    problems = _plan(vpc=[f"10.{i}.0.0/16" for i in range(9)], pods=[])
    assert [(p.kind, p.fields) for p in problems] == [
        (rules.CidrProblemKind.TOO_MANY, ("vpc",)),
        (rules.CidrProblemKind.MISSING, ("pods",)),
    ]
    # None is a value not known yet (a deploy-time token): counted, never parsed or compared.
    assert _plan(vpc=[None], pods=[None, "10.80.0.0/16"]) == []


@pytest.mark.parametrize(
    ("duration", "deadline", "retry", "setting"),
    [
        (3.0, 2.0, 1.0, None),
        (0.0, 2.0, 1.0, rules.LeaseTiming.LEASE_DURATION),
        (3.0, 3.0, 1.0, rules.LeaseTiming.RENEW_DEADLINE),
        (3.0, 2.0, 2.0, rules.LeaseTiming.RETRY_PERIOD),
        (3.0, 2.0, -1.0, rules.LeaseTiming.RETRY_PERIOD),
    ],
)
def test_lease_timing_problem_names_the_setting_to_change(
    duration: float, deadline: float, retry: float, setting: rules.LeaseTiming | None
) -> None:
    problem = rules.lease_timing_problem(duration, deadline, retry)
    assert (problem.setting if problem else None) is setting


def test_split_list_skips_empty_items() -> None:
    assert rules.split_list(" a ,, b ,") == ["a", "b"]
    assert rules.split_list(" , ") == []


def test_every_region_botocore_knows_is_accepted() -> None:
    """botocore/data/partitions.json lists the regions of every partition (aws, aws-cn,
    aws-us-gov, the ISO partitions, the European Sovereign Cloud); the `*-global` entries are
    endpoint pseudo-regions, not regions."""
    import botocore

    path = Path(botocore.__file__).parent / "data" / "partitions.json"
    partitions = json.loads(path.read_text())["partitions"]
    regions = [r for p in partitions for r in p["regions"] if not r.endswith("-global")]
    assert len(regions) > 30
    assert [r for r in regions if rules.region_problem(r) is not None] == []
    for pseudo in ("aws-global", "us-east-1a", "US-EAST-1", "us-east", "useast1"):
        assert rules.region_problem(pseudo) is not None, pseudo
