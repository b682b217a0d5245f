"""Dedicated gateway nodes, one builder per capacity type.

Both builders attach what their nodes need to the node role, create the capacity in the
gateway's scope and return what the gateway's manifests must wait for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import aws_cdk as cdk
import cdk8s
import constructs
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.auto_mode import AutoModeCapacityChart
from eks_hybrid_gateway.kubernetes import AnyCluster, apply_manifest, cluster_module
from eks_hybrid_gateway.nag import acknowledge, managed_policy_rule
from eks_hybrid_gateway.validation import is_token

#: Tag the launch template puts on the gateway nodes (with the cluster name as value); with
#: `hybrid-gateway-node=true` on the instance it is what lets a node change its interface. Also
#: requested on the interfaces, which a managed node group leaves untagged (containers-roadmap
#: #1496): nothing may depend on interface tags.
ENI_CLUSTER_TAG_KEY = "hybrid-gateway-cluster"

#: Kubernetes taint effects by the name of aws-cdk-lib's `TaintEffect` member.
_TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
}

#: The boot script, shipped as package data (`scripts/`).
BOOT_SCRIPT = "disable-source-dest-check.sh"


def boot_script() -> str:
    """The gateway nodes' boot script: IP forwarding on, source/destination check off."""
    return (resources.files("eks_hybrid_gateway") / "scripts" / BOOT_SCRIPT).read_text()


@dataclass(frozen=True)
class CapacitySpec:
    """What either capacity builder needs."""

    cluster: AnyCluster
    vpc: ec2.IVpc
    node_role: iam.Role
    security_group_ids: Sequence[str]
    subnets: Sequence[ec2.ISubnet]
    instance_type: ec2.InstanceType
    replicas: int


@dataclass(frozen=True)
class GatewayCapacity:
    """What a builder made. `ready` is what the gateway's Deployment waits for."""

    ready: constructs.IConstruct
    nodegroup: Any = None
    launch_template: ec2.CfnLaunchTemplate | None = None
    source_dest_check_policy: iam.Policy | None = None
    auto_mode_chart: AutoModeCapacityChart | None = None


def attach_managed_policies(role: iam.Role, policies: Mapping[str, str]) -> None:
    """Attach AWS managed policies to `role`, each acknowledged with its reason."""
    for policy, reason in policies.items():
        role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(policy))
        acknowledge(role, managed_policy_rule(policy), reason)


def _node_tags(cluster_name: str) -> list[cdk.CfnTag]:
    return [
        cdk.CfnTag(key=contract.GATEWAY_NODE_LABEL_KEY, value=contract.GATEWAY_NODE_LABEL_VALUE),
        cdk.CfnTag(key=ENI_CLUSTER_TAG_KEY, value=cluster_name),
    ]


def _source_dest_check_policy(scope: constructs.Construct, spec: CapacitySpec) -> iam.Policy:
    """`ec2:ModifyNetworkInterfaceAttribute` for the boot script, scoped by what exists at launch.

    Interface IDs are unknown before launch, and a managed node group does not apply the launch
    template's network-interface tags (aws/containers-roadmap#1496; it does apply the instance
    tags, hashicorp/terraform-provider-aws#32151), so a tag condition on the interface never
    matches. Instead: interfaces in the cluster VPC (`ec2:Vpc`), and instances carrying the
    gateway node tags the launch template puts on them. AWS's own `AmazonEKSNetworkingPolicy`
    grants this action on `network-interface/*` and `instance/*`: the interface and the instance
    it is attached to are the resources the call is authorized against.

    The Service Authorization Reference ("Actions, resources, and condition keys for Amazon
    EC2", ModifyNetworkInterfaceAttribute; as captured in iann0036/iam-dataset
    aws/iam_definition.json) lists `network-interface*` (required) with the condition keys
    `ec2:Vpc`, `ec2:Subnet`, `ec2:NetworkInterfaceID`, `ec2:ResourceTag/...`, and `instance`,
    `security-group` and `subnet` as optional resources, authorized when the call involves
    them. So `ec2:Vpc` scopes the interface, the instance statement limits an attached
    interface to gateway instances, and a call that sets security groups or subnets is refused
    (no statement grants those resources). `hybrid-gateway account-check` asks a real account
    (a DryRun of the call on the gateway nodes' interfaces; docs/operations.md).
    """
    stack = cdk.Stack.of(scope)
    action = "ec2:ModifyNetworkInterfaceAttribute"
    interfaces = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
    instances = stack.format_arn(service="ec2", resource="instance", resource_name="*")
    vpc_arn = stack.format_arn(service="ec2", resource="vpc", resource_name=spec.vpc.vpc_id)
    policy = iam.Policy(
        scope,
        "SourceDestCheckPolicy",
        roles=[spec.node_role],
        statements=[
            iam.PolicyStatement(
                sid="DisableOwnSourceDestCheck",
                actions=[action],
                resources=[interfaces],
                conditions={"StringEquals": {"ec2:Vpc": vpc_arn}},
            ),
            iam.PolicyStatement(
                sid="OnGatewayInstancesOnly",
                actions=[action],
                resources=[instances],
                conditions={
                    "StringEquals": {
                        f"aws:ResourceTag/{contract.GATEWAY_NODE_LABEL_KEY}": (
                            contract.GATEWAY_NODE_LABEL_VALUE
                        ),
                        f"aws:ResourceTag/{ENI_CLUSTER_TAG_KEY}": spec.cluster.cluster_name,
                    }
                },
            ),
        ],
    )
    # cdk-nag names unresolved pseudo parameters as <AWS::Region> and <AWS::AccountId>.
    region = "<AWS::Region>" if is_token(stack.region) else stack.region
    account = "<AWS::AccountId>" if is_token(stack.account) else stack.account
    acknowledge(
        policy,
        f"IAM5[Resource::arn:<AWS::Partition>:ec2:{region}:{account}:network-interface/*]",
        "network interface IDs of managed node group members are unknown before launch and "
        "the node group does not apply launch-template interface tags; the statement allows "
        "only ModifyNetworkInterfaceAttribute and only on interfaces in the cluster VPC",
    )
    acknowledge(
        policy,
        f"IAM5[Resource::arn:<AWS::Partition>:ec2:{region}:{account}:instance/*]",
        "instance IDs of managed node group members are unknown before launch; the statement "
        "allows only ModifyNetworkInterfaceAttribute and only on instances tagged as this "
        "cluster's gateway nodes",
    )
    return policy


def _launch_template(scope: constructs.Construct, spec: CapacitySpec) -> ec2.CfnLaunchTemplate:
    user_data = ec2.MultipartUserData()
    script = ec2.UserData.custom(boot_script())
    user_data.add_user_data_part(script, ec2.MultipartBody.SHELL_SCRIPT, True)
    tags = _node_tags(spec.cluster.cluster_name)
    return ec2.CfnLaunchTemplate(
        scope,
        "LaunchTemplate",
        launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
            metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(
                http_endpoint="enabled",
                http_tokens="required",
                # hostNetwork pods reach IMDS in one hop; other pods cannot.
                http_put_response_hop_limit=1,
            ),
            # Set here, EKS no longer adds the cluster security group by itself.
            security_group_ids=list(spec.security_group_ids),
            block_device_mappings=[
                ec2.CfnLaunchTemplate.BlockDeviceMappingProperty(
                    device_name="/dev/xvda",
                    ebs=ec2.CfnLaunchTemplate.EbsProperty(
                        volume_size=20, volume_type="gp3", encrypted=True
                    ),
                )
            ],
            user_data=cdk.Fn.base64(user_data.render()),
            tag_specifications=[
                ec2.CfnLaunchTemplate.TagSpecificationProperty(resource_type=kind, tags=tags)
                for kind in ("instance", "network-interface")
            ],
        ),
    )


def add_managed_node_group(
    scope: constructs.Construct, spec: CapacitySpec, *, attach_cni_policy: bool
) -> GatewayCapacity:
    """A managed node group of exactly `replicas` labelled, tainted nodes (aws-cdk-lib's L2)."""
    policies = {
        "AmazonEKSWorkerNodePolicy": "the kubelet of an EKS managed node needs the node "
        "policy AWS maintains alongside EKS",
        "AmazonEC2ContainerRegistryPullOnly": "nodes pull the gateway and add-on images "
        "from ECR; the AWS policy grants pull only",
        "AmazonEKS_CNI_Policy": "aws-node (VPC CNI) on the gateway nodes assigns the node's "
        "ENI addresses; clusters giving aws-node its own Pod Identity role can set "
        "attach_cni_policy=False",
    }
    if not attach_cni_policy:
        del policies["AmazonEKS_CNI_Policy"]
    attach_managed_policies(spec.node_role, policies)
    policy = _source_dest_check_policy(scope, spec)
    launch_template = _launch_template(scope, spec)

    module = cluster_module(spec.cluster)
    arm = spec.instance_type.architecture == ec2.InstanceArchitecture.ARM_64
    ami = (
        module.NodegroupAmiType.AL2023_ARM_64_STANDARD
        if arm
        else (module.NodegroupAmiType.AL2023_X86_64_STANDARD)
    )
    effect = getattr(module.TaintEffect, _TAINT_EFFECTS[contract.GATEWAY_NODE_TAINT_EFFECT])
    nodegroup = module.Nodegroup(
        scope,
        "Nodegroup",
        cluster=spec.cluster,
        node_role=spec.node_role,
        subnets=ec2.SubnetSelection(subnets=list(spec.subnets)),
        ami_type=ami,
        capacity_type=module.CapacityType.ON_DEMAND,
        instance_types=[spec.instance_type],
        min_size=spec.replicas,
        desired_size=spec.replicas,
        max_size=spec.replicas,
        max_unavailable=1,
        labels={contract.GATEWAY_NODE_LABEL_KEY: contract.GATEWAY_NODE_LABEL_VALUE},
        taints=[
            module.TaintSpec(
                key=contract.GATEWAY_NODE_TAINT_KEY,
                value=contract.GATEWAY_NODE_TAINT_VALUE,
                effect=effect,
            )
        ],
        launch_template_spec=module.LaunchTemplateSpec(
            id=launch_template.ref, version=launch_template.attr_latest_version_number
        ),
        tags={contract.GATEWAY_NODE_LABEL_KEY: contract.GATEWAY_NODE_LABEL_VALUE},
    )
    # A node that boots before its role may change its interface would retry until the policy
    # arrives; with the dependency it never has to.
    nodegroup.node.add_dependency(policy)
    return GatewayCapacity(
        ready=nodegroup,
        nodegroup=nodegroup,
        launch_template=launch_template,
        source_dest_check_policy=policy,
    )


def add_auto_mode_capacity(scope: constructs.Construct, spec: CapacitySpec) -> GatewayCapacity:
    """An EKS Auto Mode NodeClass (source/destination check off) and NodePool, as a manifest."""
    attach_managed_policies(
        spec.node_role,
        {
            "AmazonEKSWorkerNodeMinimalPolicy": "EKS Auto Mode nodes need the minimal node "
            "policy AWS maintains for them",
            "AmazonEC2ContainerRegistryPullOnly": "nodes pull the gateway image from ECR; the "
            "AWS policy grants pull only",
        },
    )
    partition = cdk.Stack.of(scope).partition
    access_entry = eks.CfnAccessEntry(
        scope,
        "NodeAccessEntry",
        cluster_name=spec.cluster.cluster_name,
        principal_arn=spec.node_role.role_arn,
        type="EC2",
        access_policies=[
            eks.CfnAccessEntry.AccessPolicyProperty(
                policy_arn=f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy",
                access_scope=eks.CfnAccessEntry.AccessScopeProperty(type="cluster"),
            )
        ],
    )
    chart = AutoModeCapacityChart(
        cdk8s.App(),
        "capacity",
        node_role_name=spec.node_role.role_name,
        subnet_ids=[subnet.subnet_id for subnet in spec.subnets],
        security_group_ids=list(spec.security_group_ids),
        instance_types=[spec.instance_type.to_string()],
        max_nodes=spec.replicas + 1,
    )
    capacity = apply_manifest(scope, "Capacity", cluster=spec.cluster, chart=chart)
    capacity.node.add_dependency(access_entry)
    return GatewayCapacity(ready=capacity, auto_mode_chart=chart)
