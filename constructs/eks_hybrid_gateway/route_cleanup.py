"""`GatewayRouteCleanup`: on stack deletion, remove the VPC routes the gateway wrote.

The leader writes `pod CIDR -> its primary ENI` into the owned tables at run time (in active-active
mode, each shard's owner writes the shard's prefixes of every pod CIDR), so CloudFormation never
knows about those routes; without this resource, deleting the stack leaves them behind as blackholes
once the nodes are gone (docs/design.md#reference-limits). The Lambda handler ships as package data
(`route_cleanup_handler/index.py`) together with the shared, dependency-free planner
`hybrid_gateway_contract.route_cleanup`, which `hybrid-gateway cleanup` also uses.

Deletion order (CloudFormation deletes in reverse dependency order): the gateway's manifests
depend on this resource and this resource depends on the gateway nodes, so on stack deletion
the gateway pods go first (they would put the routes back), then the routes, then the nodes.
aws-cdk-lib's kubectl handler deletes a manifest with `kubectl delete -f` (which waits for the
Namespace, hence its pods, to be gone) but only logs a failed delete
(custom-resource-handlers aws-eks/kubectl-handler/apply): the handler therefore looks again
after a settle time instead of trusting that no gateway pod is left.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, cast

import aws_cdk as cdk
import constructs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr

import hybrid_gateway_contract
from eks_hybrid_gateway.nag import acknowledge
from eks_hybrid_gateway.routing_iam import allow_describe_routing_state, route_table_arns
from eks_hybrid_gateway.validation import HybridGatewayConfigError, is_token
from hybrid_gateway_contract.route_cleanup import plan_route_cleanup

#: CloudFormation type of the custom resource.
RESOURCE_TYPE = "Custom::HybridGatewayRouteCleanup"
#: Default wait between cleanup passes: the gateway pods' termination grace period (chart).
DEFAULT_SETTLE = cdk.Duration.seconds(30)
_HANDLER_PACKAGE = "eks_hybrid_gateway.route_cleanup_handler"
_CONTRACT_FILES = ("__init__.py", "route_cleanup.py", "sharding.py")


@functools.cache
def handler_asset_dir() -> Path:
    """A directory holding the handler (`index.py`) and the contract package it imports.

    Staged once per process; the asset hash depends only on the files' content.
    """
    staging = Path(tempfile.mkdtemp(prefix="hybrid-gateway-route-cleanup-"))
    handler = resources.files(_HANDLER_PACKAGE).joinpath("index.py")
    (staging / "index.py").write_text(handler.read_text())
    contract_dir = staging / "hybrid_gateway_contract"
    contract_dir.mkdir()
    contract_source = Path(hybrid_gateway_contract.__file__).parent
    for name in _CONTRACT_FILES:
        shutil.copyfile(contract_source / name, contract_dir / name)
    return staging


#: The handler's Lambda timeout; passes x settle must leave room for the API calls.
HANDLER_TIMEOUT = cdk.Duration.minutes(5)
_MAX_WAITING_S = 240


def _validate_timing(settle: cdk.Duration, passes: int) -> None:
    if not 1 <= passes <= 5:
        raise HybridGatewayConfigError(f"passes: {passes} is not between 1 and 5")
    seconds = settle.to_seconds()
    if is_token(seconds):
        return
    if not 0 <= seconds * passes <= _MAX_WAITING_S:
        raise HybridGatewayConfigError(
            f"settle: {seconds:g} s x {passes} passes is outside 0-{_MAX_WAITING_S} s; the "
            f"handler must finish within its {HANDLER_TIMEOUT.to_minutes():g}-minute timeout"
        )


def _validate_shards(shards: int | None, pod_cidrs: Sequence[str]) -> None:
    """The handler plans the shard prefixes at deletion: a count it cannot cut with would fail
    the stack deletion, so refuse it now (pod CIDRs known only at deploy time are skipped)."""
    if shards is None:
        return
    known = [cidr for cidr in pod_cidrs if not is_token(cidr)]
    try:
        plan_route_cleanup(
            [],
            owned_tables=[],
            # With no pod CIDR known yet, only the count itself is checked (any cuts a /0).
            pod_cidrs=known or ["0.0.0.0/0"],
            gateway_enis=[],
            shards=shards,
        )
    except ValueError as exc:
        raise HybridGatewayConfigError(str(exc)) from None


def validate_log_encryption_key(key: kms.IKey | None) -> None:
    """The handler's log group is retained after the stack: a key deleted with the stack would
    leave those logs unreadable exactly when a failed cleanup needs them (a KMS key scheduled
    for deletion can no longer decrypt, AWS KMS developer guide "Deleting AWS KMS keys")."""
    if key is None:
        return
    resource = key.node.default_child
    if not isinstance(resource, kms.CfnKey):
        return  # an imported key: its lifetime is not this app's
    if resource.cfn_options.deletion_policy == cdk.CfnDeletionPolicy.DELETE:
        raise HybridGatewayConfigError(
            f"log_encryption_key: {key.node.path} is deleted with its stack "
            "(RemovalPolicy.DESTROY), but the route cleanup's log group is retained: its logs "
            "would become unreadable; retain the key (RemovalPolicy.RETAIN) or leave "
            "log_encryption_key unset"
        )


class GatewayRouteCleanup(constructs.Construct):
    """Deletes, on stack deletion only, the remote-pod-network routes in the owned tables that
    target a gateway node's ENI or have become blackholes; never routes to other targets.

    Args:
        cluster_name: the cluster, for the resource's physical ID and logs.
        route_table_ids: the owned tables (`ROUTE_TABLE_IDS`); DeleteRoute is scoped to them.
        pod_cidrs: the remote pod networks (`POD_CIDRS`).
        shards: active-active mode's shard count (`SHARDS`): their shard prefixes are deleted
            too, and so are the whole pod CIDRs (the mode may have been switched); default
            None (active-standby: the whole pod CIDRs only).
        instance_filters: EC2 `DescribeInstances` filters selecting the gateway nodes, e.g.
            `[{"Name": "instance.group-id", "Values": [sg_id]}]`.
        settle: wait between passes, so a gateway pod still terminating cannot put a route
            back unseen; default 30 s (the pods' termination grace period).
        passes: at most this many delete passes before failing; default 4.
        log_encryption_key: KMS key for the handler's log group, which is retained after the
            stack: a key the app creates must be retained too; default None (CloudWatch
            Logs' own encryption at rest).
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        cluster_name: str,
        route_table_ids: Sequence[str],
        pod_cidrs: Sequence[str],
        instance_filters: Sequence[Mapping[str, Any]],
        shards: int | None = None,
        settle: cdk.Duration = DEFAULT_SETTLE,
        passes: int = 4,
        log_encryption_key: kms.IKey | None = None,
    ) -> None:
        _validate_timing(settle, passes)
        _validate_shards(shards, pod_cidrs)
        validate_log_encryption_key(log_encryption_key)
        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=log_encryption_key,
            retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="EKS Hybrid Nodes gateway: delete the gateway's routes on stack deletion",
        )
        log_group.grant_write(self.role)
        allow_describe_routing_state(
            self.role, "ec2:DeleteRoute is scoped to the ARNs of the owned route tables"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="DeleteGatewayRoutes",
                actions=["ec2:DeleteRoute"],
                resources=route_table_arns(stack, route_table_ids),
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="OnlyOnStackDeletion",
                actions=["cloudformation:DescribeStacks"],
                resources=[stack.stack_id],
            )
        )
        self.handler = lambda_.Function(
            self,
            "Handler",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.on_event",
            code=lambda_.Code.from_asset(str(handler_asset_dir())),
            role=self.role,
            log_group=log_group,
            timeout=HANDLER_TIMEOUT,
            description="EKS Hybrid Nodes gateway: delete the gateway's routes on stack deletion",
        )
        self.handler.node.add_dependency(self.role)
        # The framework function gets its own role that writes only to this log group (instead
        # of the AWS basic execution policy on every log group).
        framework_role = iam.Role(
            self,
            "ProviderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="EKS Hybrid Nodes gateway: CloudFormation provider of the route cleanup",
        )
        log_group.grant_write(framework_role)
        handler_id = stack.get_logical_id(cast(cdk.CfnElement, self.handler.node.default_child))
        acknowledge(
            framework_role,
            f"IAM5[Resource::<{handler_id}.Arn>:*]",
            "the CDK provider framework invokes any version of its own route cleanup function; "
            "the statement names that one function",
        )
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.handler,
            log_group=log_group,
            framework_on_event_role=framework_role,
        )
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type=RESOURCE_TYPE,
            properties={
                "ClusterName": cluster_name,
                "RouteTableIds": list(route_table_ids),
                "PodCidrs": list(pod_cidrs),
                "InstanceFilters": [dict(f) for f in instance_filters],
                "SettleSeconds": str(int(settle.to_seconds())),
                "MaxPasses": str(passes),
                # Only when set, so an active-standby gateway's template stays as it was.
                **({} if shards is None else {"Shards": str(shards)}),
            },
        )
