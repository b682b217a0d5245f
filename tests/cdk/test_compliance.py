"""cdk-nag, cfn-lint and snapshots over the session's synthesized templates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cfnlint.api
import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

GATEWAY_PREFIX = "HybridGateway"


def test_cdk_nag_reports_no_unacknowledged_finding(synthesized: Any) -> None:
    """Synthesis already fails otherwise; the report shows the plugin ran and what it accepted."""
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    [nag] = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    suppressed = nag["suppressedViolations"]
    assert suppressed, "the AwsSolutions plugin accepted nothing: did it run?"
    assert all(v["reason"] and v["acknowledgedId"] for v in suppressed)


def test_cdk_nag_fails_synthesis_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    """The same plugin set-up rejects a wildcard nobody explained."""
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stack = cdk.Stack(app, "Unexplained")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"]))
    with pytest.raises(RuntimeError, match=r"(?s)ValidationFailed: .*Resource::\*"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    [nag] = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert [v["ruleName"] for v in nag["violations"]] == ["AwsSolutions-IAM5[Resource::*]"]


def test_every_acknowledgement_has_a_real_reason(synthesized: Any) -> None:
    nag_acks = [a for a in synthesized.acknowledgements if a["id"].startswith("AwsSolutions::")]
    assert nag_acks
    for ack in nag_acks:
        assert len(ack["reason"].split()) >= 8, ack
        assert not re.search(r"\b(todo|fixme|ignore|suppress)\b", ack["reason"], re.I), ack


def test_gateway_acknowledgements_are_exactly_the_expected_ones(synthesized: Any) -> None:
    """The construct's own acknowledgements stay few and deliberate."""
    own = sorted(
        {
            a["id"].removeprefix("AwsSolutions::AwsSolutions-")
            for a in synthesized.acknowledgements
            if "/HybridGateway/" in f"{a['path']}/" and a["id"].startswith("AwsSolutions::")
        }
    )
    policy = "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{}]"
    [cleanup_invoke] = [
        a
        for a in own
        if re.fullmatch(
            r"IAM5\[Resource::<HybridGatewayRouteCleanupHandler[0-9A-F]{8}\.Arn>:\*\]", a
        )
    ]
    assert own == sorted(
        [
            policy.format("AmazonEC2ContainerRegistryPullOnly"),
            policy.format("AmazonEKSWorkerNodePolicy"),
            policy.format("AmazonEKS_CNI_Policy"),
            policy.format("AmazonEKSWorkerNodeMinimalPolicy"),
            "IAM5[Resource::*]",
            "IAM5[Resource::arn:<AWS::Partition>:ec2:us-west-2:123456789012:instance/*]",
            "IAM5[Resource::arn:<AWS::Partition>:ec2:us-west-2:123456789012:network-interface/*]",
            # The route cleanup's Provider framework invokes its handler's versions
            # (the new-cluster example turns `remove_routes_on_delete` on).
            cleanup_invoke,
        ]
    )


def test_cfn_lint_finds_no_errors_in_any_template(synthesized: Any) -> None:
    # 6 stacks + the nested kubectl providers of the 2 imported clusters
    assert len(synthesized.template_files) == 8
    config = cfnlint.api.ManualArgs(regions=["us-west-2"])
    errors = {
        path.name: [
            f"{m.rule.id}: {m.message}"
            for m in cfnlint.api.lint_file(Path(path), config=config)
            if m.rule.id.startswith("E")
        ]
        for path in synthesized.template_files
    }
    assert errors == {path.name: [] for path in synthesized.template_files}


_HASH = re.compile(r"[0-9a-f]{64}")


def _normalized_gateway_resources(template: dict[str, Any]) -> dict[str, Any]:
    """The gateway's resources (and its manifest), with asset hashes and versions masked."""
    selected = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if logical_id.startswith(GATEWAY_PREFIX) or f"{GATEWAY_PREFIX}Manifests" in logical_id
    }
    text = _HASH.sub("<asset-hash>", json.dumps(selected, sort_keys=True))
    normalized: dict[str, Any] = json.loads(text)
    return normalized


@pytest.mark.parametrize(
    "stack",
    [
        "HybridGatewayNewCluster",
        "HybridGatewayExistingCluster",
        "HybridGatewayAutoMode",
        "HybridGatewayPlatformGateway",
        "AssetImage",
    ],
)
def test_gateway_template_snapshot(
    synthesized: Any, snapshot: SnapshotAssertion, stack: str
) -> None:
    resources = _normalized_gateway_resources(synthesized.templates[stack])
    assert any(r["Type"] == "AWS::EKS::PodIdentityAssociation" for r in resources.values())
    assert resources == snapshot.use_extension(JSONSnapshotExtension)
