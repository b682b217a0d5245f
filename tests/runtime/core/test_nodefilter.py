"""The node filter's pure parts: the script, the drift comparison, the counters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hybrid_gateway.core.nodefilter import (
    COUNT_CHAIN,
    TABLE,
    TO_HYBRID,
    TO_VPC,
    Counted,
    CounterPrefix,
    normalized,
    read_counters,
    ruleset,
    shard_counters,
    standby_counters,
)


def test_the_script_replaces_the_table_atomically_and_notracks_both_directions() -> None:
    script = ruleset(["10.100.0.0/16", "10.101.0.0/16"], ["10.0.0.0/16"], [])
    lines = script.splitlines()
    # create-if-missing, delete, create: one transaction whatever was there
    assert lines[:3] == [f"table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{"]
    assert "type filter hook prerouting priority raw; policy accept;" in script
    pods, vpc = "{ 10.100.0.0/16, 10.101.0.0/16 }", "{ 10.0.0.0/16 }"
    assert f"ip saddr {pods} ip daddr {vpc} notrack" in script
    assert f"ip saddr {vpc} ip daddr {pods} notrack" in script
    # the node's own addresses keep conntrack, and that rule comes first
    assert script.index("fib daddr type local accept") < script.index(" notrack\n")


def test_counters_are_rules_on_the_forward_hook_after_the_filters() -> None:
    counters = shard_counters([(0, ["10.100.0.0/17"], ["10.0.0.0/17"])])
    script = ruleset(["10.100.0.0/16"], ["10.0.0.0/16"], counters)
    assert "type filter hook forward priority filter + 10; policy accept;" in script
    to_hybrid = "ip saddr { 10.0.0.0/16 } ip daddr 10.100.0.0/17 counter"
    to_vpc = "ip saddr { 10.100.0.0/16 } ip daddr 10.0.0.0/17 counter"
    assert f'{to_hybrid} comment "to_hybrid|0|10.100.0.0/17"' in script
    assert f'{to_vpc} comment "to_vpc|0|10.0.0.0/17"' in script


def test_bad_input_is_refused_early() -> None:
    with pytest.raises(ValueError, match="at least one pod CIDR"):
        ruleset([], ["10.0.0.0/16"], [])
    with pytest.raises(ValueError, match="direction"):
        ruleset(["10.100.0.0/16"], ["10.0.0.0/16"], [CounterPrefix("sideways", "0", "1.0.0.0/8")])


def _listing(packets: int, handle: int, extra_rule: bool = False) -> dict[str, Any]:
    rule = {
        "family": "ip",
        "table": TABLE,
        "chain": COUNT_CHAIN,
        "handle": handle,
        "comment": "to_hybrid|1|10.100.64.0/18",
        "expr": [{"counter": {"packets": packets, "bytes": packets * 100}}],
    }
    items: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "ip", "name": TABLE, "handle": 7}},
        {"rule": rule},
    ]
    if extra_rule:
        items.append({"rule": {**rule, "comment": "someone's", "handle": handle + 1}})
    return {"nftables": items}


def test_drift_ignores_handles_and_counter_values_but_not_rules() -> None:
    assert normalized(_listing(0, 3)) == normalized(_listing(500, 9))
    assert normalized(_listing(0, 3)) != normalized(_listing(0, 3, extra_rule=True))
    json.loads(normalized(_listing(0, 3)))  # plain JSON text


def test_counters_are_read_by_their_comment() -> None:
    counted = read_counters(_listing(42, 3, extra_rule=True))
    assert counted == {CounterPrefix(TO_HYBRID, "1", "10.100.64.0/18"): Counted(42, 4200)}


def test_standby_counts_per_pod_and_vpc_cidr() -> None:
    assert standby_counters(["10.100.0.0/16"], ["10.0.0.0/16"]) == [
        CounterPrefix(TO_HYBRID, "all", "10.100.0.0/16"),
        CounterPrefix(TO_VPC, "all", "10.0.0.0/16"),
    ]
