"""The desired CiliumVTEPConfig and the comparison that decides whether to correct it."""

from __future__ import annotations

import ipaddress

import pytest

from hybrid_gateway.core.vtep import desired_endpoints, desired_object, endpoints_match

VPCS = [ipaddress.IPv4Network("10.0.0.0/16"), ipaddress.IPv4Network("10.1.0.0/16")]
MAC = "02:AB:cd:00:11:22"


def test_a_single_vpc_cidr_gets_the_reference_endpoint_name() -> None:
    """internal/cilium/vtep.go (aws/eks-hybrid-nodes-gateway) names its one endpoint
    `vpc-gateway`; several VPC CIDRs (ours only) are `vpc-gateway-<i>`."""
    [endpoint] = desired_endpoints(VPCS[:1], "10.0.1.10", MAC)
    assert endpoint["name"] == "vpc-gateway"


def test_one_endpoint_per_vpc_cidr_in_order() -> None:
    eps = desired_endpoints(VPCS, "10.0.1.10", MAC)
    assert [e["name"] for e in eps] == ["vpc-gateway-0", "vpc-gateway-1"]
    assert [e["cidr"] for e in eps] == ["10.0.0.0/16", "10.1.0.0/16"]
    assert {e["tunnelEndpoint"] for e in eps} == {"10.0.1.10"}
    assert {e["mac"] for e in eps} == {MAC.lower()}


def test_object_is_cluster_scoped_without_cidr_mask() -> None:
    obj = desired_object(VPCS, "10.0.1.10", MAC)
    assert obj["apiVersion"] == "cilium.io/v2" and obj["kind"] == "CiliumVTEPConfig"
    assert obj["metadata"]["name"] == "hybrid-gateway" and "namespace" not in obj["metadata"]
    assert "cidrMask" not in obj["spec"]


def test_more_than_eight_cidrs_is_rejected() -> None:
    nets = [ipaddress.IPv4Network(f"10.{i}.0.0/16") for i in range(9)]
    with pytest.raises(ValueError, match="1 to 8"):
        desired_endpoints(nets, "10.0.1.10", MAC)


def test_match_ignores_order_case_and_server_defaults() -> None:
    desired = desired_endpoints(VPCS, "10.0.1.10", MAC)
    observed = {"spec": {"cidrMask": "255.255.255.0", "endpoints": list(reversed(desired))}}
    assert endpoints_match(observed, desired)


@pytest.mark.parametrize("field", ["tunnelEndpoint", "mac", "cidr"])
def test_any_edited_field_is_a_mismatch(field: str) -> None:
    desired = desired_endpoints(VPCS, "10.0.1.10", MAC)
    edited = [dict(e) for e in desired]
    edited[1][field] = "10.9.9.9" if field != "mac" else "02:00:00:00:00:01"
    assert not endpoints_match({"spec": {"endpoints": edited}}, desired)


def test_endpoint_names_do_not_decide_an_update() -> None:
    """The reference's needsUpdate compares tunnelEndpoint, cidr and mac only: an object whose
    endpoints carry other names is taken over as it is."""
    desired = desired_endpoints(VPCS, "10.0.1.10", MAC)
    renamed = [{**e, "name": f"theirs-{i}"} for i, e in enumerate(desired)]
    assert endpoints_match({"spec": {"endpoints": renamed}}, desired)


def test_missing_or_extra_endpoint_or_object_is_a_mismatch() -> None:
    desired = desired_endpoints(VPCS, "10.0.1.10", MAC)
    assert not endpoints_match(None, desired)
    assert not endpoints_match({"spec": {"endpoints": desired[:1]}}, desired)
    extra = [*desired, {"name": "x", "tunnelEndpoint": "1.1.1.1", "cidr": "1.0.0.0/8", "mac": MAC}]
    assert not endpoints_match({"spec": {"endpoints": extra}}, desired)
    assert not endpoints_match({"spec": {}}, desired)
