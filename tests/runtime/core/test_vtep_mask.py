"""What the hybrid nodes' Cilium agents can match: one VTEP mask for every endpoint.

Upstream Cilium keys its VTEP map by `destination & vtep-mask` (cilium/cilium bpf/lib/vtep.h,
pkg/maps/vtep/vtep.go; the agent's `--vtep-mask` defaults to 255.255.255.0), so an endpoint
matches all of its CIDR only when it is exactly as long as the mask.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from hybrid_gateway.core.vtep import (
    VtepMatchError,
    agent_mask_length,
    endpoints_for_agent_mask,
    judge_agents,
    plan_mask_problem,
)


def nets(*cidrs: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(c) for c in cidrs]


def lookup(endpoints: list[ipaddress.IPv4Network], mask: int, address: str) -> str | None:
    """The agent's hash lookup: the key is the address under the mask, each endpoint's key
    its network under the mask."""
    key = ipaddress.IPv4Network(f"{address}/{mask}", strict=False).network_address
    table = {
        ipaddress.IPv4Network(f"{e.network_address}/{mask}", strict=False).network_address: e
        for e in endpoints
    }
    found = table.get(key)
    return str(found) if found is not None else None


def test_mask_from_cilium_config_with_the_agents_default() -> None:
    assert agent_mask_length({}) == 24
    assert agent_mask_length({"vtep-mask": ""}) == 24  # the Helm chart renders an empty value
    assert agent_mask_length({"vtep-mask": "255.255.0.0"}) == 16
    bad = re.escape("vtep-mask='255.0.255.0' is not an IPv4 netmask")
    with pytest.raises(VtepMatchError, match=bad):
        agent_mask_length({"vtep-mask": "255.0.255.0"})


def test_a_16_under_a_24_mask_matches_only_its_first_24_and_the_cut_matches_all() -> None:
    vpc = nets("10.0.0.0/16")
    assert lookup(vpc, 24, "10.0.0.9") == "10.0.0.0/16"
    assert lookup(vpc, 24, "10.0.77.9") is None  # the rest of the VPC is not matched
    cut = endpoints_for_agent_mask(nets("10.0.0.0/16"), 18)
    assert [str(c) for c in cut] == [
        "10.0.0.0/18",
        "10.0.64.0/18",
        "10.0.128.0/18",
        "10.0.192.0/18",
    ]
    for address in ("10.0.0.9", "10.0.77.9", "10.0.200.1", "10.0.255.254"):
        assert lookup(cut, 18, address) is not None
    assert lookup(cut, 18, "10.1.0.1") is None


def test_no_cut_when_it_needs_more_than_8_endpoints_or_a_cidr_is_longer_than_the_mask() -> None:
    with pytest.raises(VtepMatchError, match=r"need 256 endpoints of /24.*vtep.mask=255.255.0.0"):
        endpoints_for_agent_mask(nets("10.0.0.0/16"), 24)
    with pytest.raises(VtepMatchError, match=r"10.0.0.0/20 is longer than .* /16"):
        endpoints_for_agent_mask(nets("10.0.0.0/20"), 16)
    with pytest.raises(VtepMatchError, match="differ too much in size"):
        endpoints_for_agent_mask(nets("10.0.0.0/16", "10.1.0.0/24"), 16)


def test_active_active_endpoints_must_be_as_long_as_the_mask() -> None:
    assert plan_mask_problem(["10.0.0.0/18", "10.0.64.0/18"], 18) is None
    problem = plan_mask_problem(["10.0.0.0/18", "10.0.64.0/18"], 24)
    assert problem is not None and "vtep.mask=255.255.192.0" in problem


def test_judgement_of_what_the_agents_run_with() -> None:
    vpc = nets("10.0.0.0/16")
    unknown = judge_agents(["v2"], None, vpc_cidrs=vpc)
    assert (unknown.endpoints, unknown.problem) == (tuple(vpc), None)  # no ConfigMap: as is
    cut = judge_agents(["v2"], {"vtep-mask": "255.255.128.0"}, vpc_cidrs=vpc)
    assert [str(c) for c in cut.endpoints] == ["10.0.0.0/17", "10.0.128.0/17"]
    assert cut.problem is None
    refused = judge_agents(["v2"], {}, vpc_cidrs=vpc)
    assert refused.endpoints == tuple(vpc) and "256 endpoints" in (refused.problem or "")
    alpha = judge_agents(["v2alpha1"], {"vtep-mask": "255.255.0.0"}, vpc_cidrs=vpc)
    assert "serves v2alpha1, not cilium.io/v2" in (alpha.problem or "")
    no_crd = judge_agents(None, {"vtep-mask": "255.255.0.0"}, vpc_cidrs=vpc)
    assert no_crd.problem is None
