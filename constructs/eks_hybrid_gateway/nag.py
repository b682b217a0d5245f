"""The one way the library acknowledges a cdk-nag AwsSolutions finding: by rule, with a reason."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
import constructs


def acknowledge(scope: constructs.IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag AwsSolutions finding on `scope` (and below), with its reason."""
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"AwsSolutions::AwsSolutions-{rule}", reason=reason)
    )


def acknowledge_all(scope: constructs.IConstruct, findings: Mapping[str, str]) -> None:
    """`acknowledge` for each rule -> reason of `findings`."""
    for rule, reason in findings.items():
        acknowledge(scope, rule, reason)


def managed_policy_rule(name: str) -> str:
    """The cdk-nag rule (for `acknowledge`) that flags the AWS managed policy `name`."""
    return f"IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"
