"""One shard's endpoints merged into the shared CiliumVTEPConfig (active-active), pure."""

from __future__ import annotations

from typing import Any

from hybrid_gateway.core.vtep import dotted_mask, merge_shard_endpoints, shard_endpoints_match

PLAN = [("vpc-gateway-0", "10.0.0.0/17"), ("vpc-gateway-1", "10.0.128.0/17")]
MAC_A, MAC_B = "02:aa:00:00:00:01", "02:bb:00:00:00:02"


def obj(*endpoints: dict[str, str], mask: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpoints": list(endpoints)}
    if mask is not None:
        spec["cidrMask"] = mask
    return {"metadata": {"name": "hybrid-gateway", "resourceVersion": "7"}, "spec": spec}


def ep(name: str, cidr: str, ip: str, mac: str) -> dict[str, str]:
    return {"name": name, "tunnelEndpoint": ip, "cidr": cidr, "mac": mac}


def test_an_owner_writes_its_endpoint_and_keeps_the_others_exactly() -> None:
    theirs = ep("vpc-gateway-1", "10.0.128.0/17", "10.0.1.11", MAC_B.upper())
    merged = merge_shard_endpoints(
        obj(ep("vpc-gateway-0", "10.0.0.0/17", "10.0.1.99", MAC_B), theirs),
        PLAN,
        frozenset({"vpc-gateway-0"}),
        "10.0.1.10",
        MAC_A,
    )
    assert merged == [ep("vpc-gateway-0", "10.0.0.0/17", "10.0.1.10", MAC_A), theirs]


def test_foreign_endpoints_and_other_plans_are_dropped_unpublished_ones_left_out() -> None:
    observed = obj(
        ep("vpc-gateway", "10.0.0.0/16", "10.0.1.12", MAC_B),  # active-standby's endpoint
        ep("vpc-gateway-1", "10.0.128.0/18", "10.0.1.11", MAC_B),  # an older plan's CIDR
    )
    merged = merge_shard_endpoints(observed, PLAN, frozenset({"vpc-gateway-0"}), "10.0.1.10", MAC_A)
    assert merged == [ep("vpc-gateway-0", "10.0.0.0/17", "10.0.1.10", MAC_A)]
    assert merge_shard_endpoints(None, PLAN, frozenset({"vpc-gateway-1"}), "10.0.1.10", MAC_A) == [
        ep("vpc-gateway-1", "10.0.128.0/17", "10.0.1.10", MAC_A)
    ]


def test_match_needs_the_same_entries_by_name_and_the_mask() -> None:
    mine = ep("vpc-gateway-0", "10.0.0.0/17", "10.0.1.10", MAC_A)
    mask = dotted_mask(17)
    assert mask == "255.255.128.0"
    assert shard_endpoints_match(obj(mine, mask=mask), [mine], mask)
    assert not shard_endpoints_match(obj(mine), [mine], mask)  # mask missing: write it
    assert not shard_endpoints_match(obj(mine, mask=mask), [mine, mine | {"name": "x"}], mask)
    renamed = mine | {"name": "vpc-gateway-1"}
    assert not shard_endpoints_match(obj(renamed, mask=mask), [mine], mask)
    assert shard_endpoints_match(obj(mine | {"mac": MAC_A.upper()}, mask=mask), [mine], mask)
    assert not shard_endpoints_match(None, [mine], mask)
