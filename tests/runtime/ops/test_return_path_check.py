"""SG-RETURN-PATH on pure facts: which rules admit replies that come back through another
gateway's ENI, and how loud a missing rule is in each mode."""

from __future__ import annotations

from dataclasses import replace

from hybrid_gateway.ops.checks import check_return_path_security_groups
from hybrid_gateway.ops.facts import Facts, GatewayInstance, GatewaySettings, SecurityGroup, SgRule
from hybrid_gateway.ops.report import Verdict
from hybrid_gateway_contract.sharding import GatewayMode

SETTINGS = GatewaySettings(
    namespace="ns",
    deployment="gw",
    replicas=2,
    vpc_cidrs=("10.0.0.0/16",),
    pod_cidrs=("10.100.0.0/16",),
    route_table_ids=("rtb-1",),
    lease_name="gw",
    mode=GatewayMode.ACTIVE_ACTIVE,
)
INSTANCE = GatewayInstance("i-1", "running", "10.0.0.11", "eni-1", False, "required", ("sg-1",))


def facts(*ingress: SgRule, mode: GatewayMode = GatewayMode.ACTIVE_ACTIVE) -> Facts:
    return Facts(
        now=0.0,
        settings=replace(SETTINGS, mode=mode),
        instances=(INSTANCE,),
        security_groups={"sg-1": SecurityGroup("sg-1", tuple(ingress), ())},
    )


TCP = SgRule("tcp", 32768, 60999, ("10.0.0.0/16",))
UDP = SgRule("udp", 32768, 60999, ("10.0.0.0/16",))


def test_the_constructs_rules_pass() -> None:
    result = check_return_path_security_groups(facts(TCP, UDP))
    assert result.verdict is Verdict.OK, result


def test_a_wider_rule_passes_and_a_narrower_one_does_not() -> None:
    everything = SgRule("-1", None, None, ("10.0.0.0/8",))
    assert check_return_path_security_groups(facts(everything)).verdict is Verdict.OK
    by_number = SgRule("6", 1024, 65535, ("10.0.0.0/16",))
    assert check_return_path_security_groups(facts(by_number, UDP)).verdict is Verdict.OK
    part = SgRule("tcp", 32768, 40000, ("10.0.0.0/16",))
    result = check_return_path_security_groups(facts(part, UDP))
    assert result.verdict is Verdict.FAIL
    assert result.evidence == ("i-1 (sg-1): no inbound TCP 32768-60999 from 10.0.0.0/16",)
    subnet_only = SgRule("udp", 32768, 60999, ("10.0.1.0/24",))
    assert check_return_path_security_groups(facts(TCP, subnet_only)).verdict is Verdict.FAIL


def test_missing_rules_fail_in_active_active_and_warn_in_active_standby() -> None:
    active = check_return_path_security_groups(facts(TCP))
    assert active.verdict is Verdict.FAIL and "every flow" in active.fix
    standby = check_return_path_security_groups(facts(TCP, mode=GatewayMode.ACTIVE_STANDBY))
    assert standby.verdict is Verdict.WARN and "after every leader switch" in standby.fix


def test_without_instances_it_is_skipped_with_the_reason() -> None:
    result = check_return_path_security_groups(Facts(now=0.0, settings=SETTINGS))
    assert result.verdict is Verdict.SKIPPED and "no gateway instances" in result.evidence[0]
