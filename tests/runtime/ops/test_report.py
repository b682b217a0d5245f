"""The pure parts: verdict ordering, exit codes, and the two renderings."""

from __future__ import annotations

import json

from hybrid_gateway.core.routes import ObservedRoute, TargetKind
from hybrid_gateway.ops.checks import PREFLIGHT_CHECKS, run_checks
from hybrid_gateway.ops.facts import Facts
from hybrid_gateway.ops.report import (
    JSON_SCHEMA_VERSION,
    CheckResult,
    Outcome,
    Verdict,
    exit_code,
    results_json,
    results_table,
    worst,
)


def result(verdict: Verdict, fix: str = "Do it.") -> CheckResult:
    return CheckResult(f"X-{verdict.value.upper()}", "a check", verdict, ("seen",), fix)


def test_exit_codes_follow_the_worst_verdict() -> None:
    assert exit_code([result(Verdict.OK), result(Verdict.SKIPPED)]) == 0
    assert exit_code([result(Verdict.OK), result(Verdict.WARN)]) == 1
    assert exit_code([result(Verdict.WARN), result(Verdict.FAIL), result(Verdict.OK)]) == 2
    assert worst([Verdict.SKIPPED, Verdict.WARN, Verdict.OK]) is Verdict.WARN


def test_an_unread_source_is_its_own_outcome_below_a_failure_found() -> None:
    unread = {"ec2": "UnauthorizedOperation"}
    assert exit_code([result(Verdict.OK), result(Verdict.SKIPPED)], unread) == 3
    assert exit_code([result(Verdict.WARN)], unread) == 3  # incomplete is not "warnings"
    assert exit_code([result(Verdict.FAIL), result(Verdict.SKIPPED)], unread) == 2
    assert [o.value for o in Outcome] == [0, 1, 2, 3, 64]  # documented, never renumbered


def test_table_shows_fix_only_when_not_ok_and_json_counts() -> None:
    results = [result(Verdict.OK, fix="never shown"), result(Verdict.FAIL, fix="Open UDP 8472.")]
    table = results_table(results)
    assert "X-FAIL  FAIL     a check" in table and "fix: Open UDP 8472." in table
    assert "never shown" not in table
    body = json.loads(results_json(results, {}, command="preflight"))
    assert body["schemaVersion"] == JSON_SCHEMA_VERSION == 1
    assert (body["outcome"], body["exitCode"], body["unavailable"]) == ("failed", 2, {})
    assert body["summary"] == {"ok": 1, "warn": 0, "fail": 1, "skipped": 0}
    assert [c["id"] for c in body["checks"]] == ["X-OK", "X-FAIL"]


def test_nothing_gathered_means_every_check_skipped_with_a_reason() -> None:
    facts = Facts(
        now=0.0, unavailable={"ec2": "no region", "kubernetes": "no kubeconfig", "eks": "x"}
    )
    results = run_checks(facts)
    assert len(results) == len(PREFLIGHT_CHECKS) == 18
    assert len({r.check_id for r in results}) == 18
    assert {r.verdict for r in results} == {Verdict.SKIPPED}
    assert all(r.evidence and r.evidence[0] for r in results)


def test_a_route_is_gone_when_blackholed_or_its_eni_vanished_never_for_other_targets() -> None:
    facts = Facts(now=0.0, existing_enis=frozenset({"eni-live"}))
    eni, instance = TargetKind.NETWORK_INTERFACE, TargetKind.INSTANCE
    assert not facts.route_gone(ObservedRoute("10.1.0.0/16", eni, "eni-live"))
    assert facts.route_gone(ObservedRoute("10.1.0.0/16", eni, "eni-vanished"))
    assert facts.route_gone(ObservedRoute("10.1.0.0/16", eni, "eni-live", blackhole=True))
    assert not facts.route_gone(ObservedRoute("10.1.0.0/16", instance, "i-0123"))
    assert not facts.route_gone(ObservedRoute("10.1.0.0/16", TargetKind.TRANSIT_GATEWAY, "tgw-1"))
