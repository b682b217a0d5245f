"""IAM shared by the two writers of the gateway's VPC routes: the gateway pods' role and the
route cleanup's handler role. Both read the routing state everywhere and write only the owned
route tables."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

from eks_hybrid_gateway.nag import acknowledge


def route_table_arns(stack: cdk.Stack, route_table_ids: Sequence[str]) -> list[str]:
    return [
        stack.format_arn(service="ec2", resource="route-table", resource_name=rtb)
        for rtb in route_table_ids
    ]


def allow_describe_routing_state(role: iam.Role, scoped_writes: str) -> None:
    """DescribeInstances and DescribeRouteTables on `*` (they support no resource-level
    permissions), acknowledged for cdk-nag with how the role's writes are scoped instead."""
    acknowledge(
        role,
        "IAM5[Resource::*]",
        "ec2:DescribeInstances and ec2:DescribeRouteTables support no resource-level "
        f"permissions; {scoped_writes}",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="DescribeRoutingState",
            actions=["ec2:DescribeInstances", "ec2:DescribeRouteTables"],
            resources=["*"],
        )
    )
