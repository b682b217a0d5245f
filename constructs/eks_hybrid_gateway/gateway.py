"""`HybridNodesGateway`: dedicated capacity, IAM, security group and the gateway Deployment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import aws_cdk as cdk
import cdk8s
import constructs
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks
from aws_cdk import aws_eks_v2 as eks_v2
from aws_cdk import aws_iam as iam

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.auto_mode import AutoModeCapacityChart
from eks_hybrid_gateway.chart import (
    CapacityType,
    GatewayResources,
    HybridGatewayChart,
    LeaderElectionTimings,
    MetricsExposure,
    validate_chart_options,
)
from eks_hybrid_gateway.hybrid_cilium import HybridCiliumOptions, install_hybrid_cilium
from eks_hybrid_gateway.image import GatewayImage
from eks_hybrid_gateway.validation import (
    HybridGatewayConfigError,
    is_token,
    validate_networks,
    validate_route_table_ids,
)
from eks_hybrid_gateway.vpc_cni import VpcCniAddon, apply_snat_exclusion, check_vpc_cni_addon

if TYPE_CHECKING:  # route_cleanup builds on this module's IAM helpers
    from eks_hybrid_gateway.route_cleanup import GatewayRouteCleanup

#: Either kind of cluster: `aws_eks_v2` (recommended for new clusters) or `aws_eks` (v1).
AnyCluster = eks.ICluster | eks_v2.ICluster | eks.Cluster | eks_v2.Cluster

#: AWS sizing guidance: c6in.xlarge for 10-100 hybrid nodes, c6in.2xlarge above.
DEFAULT_INSTANCE_TYPE = "c6in.xlarge"

_TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
}


def _literal_vpc_cidr(vpc: ec2.IVpc) -> str:
    """The VPC's primary CIDR, as a literal when the VPC is defined in this app."""
    child = vpc.node.default_child
    if isinstance(child, ec2.CfnVPC) and child.cidr_block and not is_token(child.cidr_block):
        return child.cidr_block
    return vpc.vpc_cidr_block


def acknowledge(scope: constructs.IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag AwsSolutions finding on `scope` (and below), with its reason."""
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"AwsSolutions::AwsSolutions-{rule}", reason=reason)
    )


def managed_policy_rule(name: str) -> str:
    """The cdk-nag rule (for `acknowledge`) that flags the AWS managed policy `name`."""
    return f"IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


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


def _dedupe(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


@jsii.implements(ec2.IConnectable, iam.IGrantable)
class HybridNodesGateway(constructs.Construct):
    """A complete EKS Hybrid Nodes gateway for one cluster.

    Creates: dedicated gateway capacity (a managed node group with IMDSv2 and source/destination
    check off, or an EKS Auto Mode NodePool + NodeClass), a security group for VXLAN with the
    remote node networks, an IAM role for the gateway pods through EKS Pod Identity, and the
    gateway's Kubernetes objects (`HybridGatewayChart`) applied through the cluster.
    VPC routes to the remote pod networks are NOT declared here: the running leader owns them.

    Args:
        cluster: an `aws_eks_v2` or `aws_eks` cluster, created in the app or imported (an
            imported one needs a kubectl role, the kubectl layer and its security group ID).
        vpc: the cluster VPC.
        remote_node_networks: on-prem node CIDRs, the VXLAN peers; at least one.
        remote_pod_networks: hybrid pod CIDRs the leader routes (`POD_CIDRS`); at least one.
        image: the gateway image; default `GatewayImage.from_asset()` (`runtime/Dockerfile`).
        vpc_cidrs: `VPC_CIDR` for the CiliumVTEPConfig, at most 8; default the VPC's CIDR.
        route_table_ids: tables the leader programs; default all route tables of the VPC.
        service_cidr: the cluster service CIDR, only checked for overlaps; default none.
        capacity_type: managed node group (default) or EKS Auto Mode NodePool/NodeClass.
        instance_type: default `c6in.xlarge` (AWS guidance; `c6in.2xlarge` above 100 nodes).
        replicas: gateway pods and dedicated nodes, at least 2; default 2.
        node_subnets: where nodes go, at least 2 AZs; default the private subnets.
        namespace: default `eks-hybrid-nodes-gateway`.
        resources: container requests/limits; default `GatewayResources()`.
        metrics: metrics Service and/or PodMonitor; default none.
        leader_election: Lease timings; default the runtime's 3 s / 2 s / 1 s.
        vxlan_mtu: default the runtime's 1450.
        attach_cni_policy: `AmazonEKS_CNI_Policy` on the node role; default True.
        debug: verbose runtime logs; default False.
        hybrid_cilium: install the EKS Cilium chart on the hybrid nodes with the VTEP values
            (`HybridCiliumOptions`); default None (you run Cilium with those values yourself).
        vpc_cni_addon: the app's `vpc-cni` add-on (CfnAddon, or aws_eks/aws_eks_v2 Addon) to get the
            SNAT exclusion of the remote pod networks; default None (set it on aws-node yourself).
        remove_routes_on_delete: on stack deletion, delete the pod-network routes the gateway
            wrote (custom resource, see `GatewayRouteCleanup`); default False.
    """

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        cluster: AnyCluster,
        vpc: ec2.IVpc,
        remote_node_networks: Sequence[str],
        remote_pod_networks: Sequence[str],
        image: GatewayImage | None = None,
        vpc_cidrs: Sequence[str] | None = None,
        route_table_ids: Sequence[str] | None = None,
        service_cidr: str | None = None,
        capacity_type: CapacityType = CapacityType.MANAGED_NODE_GROUP,
        instance_type: ec2.InstanceType | None = None,
        replicas: int = 2,
        node_subnets: Sequence[ec2.ISubnet] | None = None,
        namespace: str = contract.DEFAULT_NAMESPACE,
        resources: GatewayResources | None = None,
        metrics: MetricsExposure = MetricsExposure.NONE,
        leader_election: LeaderElectionTimings | None = None,
        vxlan_mtu: int | None = None,
        attach_cni_policy: bool = True,
        debug: bool = False,
        hybrid_cilium: HybridCiliumOptions | None = None,
        vpc_cni_addon: VpcCniAddon | None = None,
        remove_routes_on_delete: bool = False,
    ) -> None:
        # Everything is checked before the construct joins the tree, so a rejected prop leaves
        # the scope exactly as it was.
        chosen_vpc_cidrs = list(vpc_cidrs) if vpc_cidrs is not None else [_literal_vpc_cidr(vpc)]
        validate_networks(
            vpc_cidrs=chosen_vpc_cidrs,
            remote_node_networks=list(remote_node_networks),
            remote_pod_networks=list(remote_pod_networks),
            service_cidr=service_cidr,
        )
        validate_chart_options(
            replicas=replicas,
            namespace=namespace,
            leader_election=leader_election,
            vxlan_mtu=vxlan_mtu,
        )
        chosen_tables = _dedupe(
            route_table_ids if route_table_ids is not None else self._vpc_route_table_ids(vpc)
        )
        if not chosen_tables:
            raise HybridGatewayConfigError(
                "route_table_ids: no route tables given and the VPC has no subnets with route "
                "tables; pass route_table_ids=[...]"
            )
        validate_route_table_ids("route_table_ids", chosen_tables)
        chosen_subnets = (
            list(node_subnets)
            if node_subnets is not None
            else vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets
        )
        self._check_two_zones(chosen_subnets)
        chosen_image = image or GatewayImage.from_asset()
        chosen_image.validate()
        if hybrid_cilium is not None:
            hybrid_cilium.helm_values(list(remote_pod_networks))
        if vpc_cni_addon is not None:
            check_vpc_cni_addon(vpc_cni_addon)

        super().__init__(scope, id)
        stack = cdk.Stack.of(self)
        self._attach_cni_policy = attach_cni_policy
        self.vpc = vpc
        self.cluster = cluster
        self.vpc_cidrs = chosen_vpc_cidrs
        self.remote_node_networks = list(remote_node_networks)
        self.remote_pod_networks = list(remote_pod_networks)
        self.route_table_ids = chosen_tables
        self.instance_type = instance_type or ec2.InstanceType(DEFAULT_INSTANCE_TYPE)
        self.capacity_type = capacity_type
        self.node_subnets = chosen_subnets
        subnets = [subnet.subnet_id for subnet in self.node_subnets]

        # --- Security group: VXLAN with the remote node networks, both directions, nothing else.
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            allow_all_outbound=False,
            description="EKS Hybrid Nodes gateway: VXLAN (UDP 8472) with the remote node networks",
        )
        vxlan = ec2.Port.udp(contract.VXLAN_PORT)
        for cidr in self.remote_node_networks:
            peer = ec2.Peer.ipv4(cidr)
            self.security_group.add_ingress_rule(peer, vxlan, f"VXLAN from hybrid nodes {cidr}")
            self.security_group.add_egress_rule(peer, vxlan, f"VXLAN to hybrid nodes {cidr}")
        self._connections = ec2.Connections(security_groups=[self.security_group])

        # --- Node role (both capacity types).
        self.node_role = iam.Role(
            self,
            "NodeRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="EKS Hybrid Nodes gateway nodes",
        )

        # --- Pod role through EKS Pod Identity.
        self.role = iam.Role(
            self,
            "PodRole",
            assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal("pods.eks.amazonaws.com")),
            description="EKS Hybrid Nodes gateway pods: point hybrid pod CIDR routes at the leader",
        )
        allow_describe_routing_state(
            self.role,
            "the write actions (CreateRoute/ReplaceRoute) are scoped to the ARNs of "
            "the owned route tables",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ProgramOwnedRouteTables",
                actions=["ec2:CreateRoute", "ec2:ReplaceRoute"],
                resources=route_table_arns(stack, self.route_table_ids),
            )
        )

        bound = chosen_image.bind(
            self, node_role=self.node_role, architecture=self.instance_type.architecture
        )
        self.image_uri = bound.image_uri

        self.nodegroup: eks.CfnNodegroup | None = None
        self.launch_template: ec2.CfnLaunchTemplate | None = None
        capacity_dependency: constructs.IDependable
        if capacity_type is CapacityType.MANAGED_NODE_GROUP:
            capacity_dependency = self._add_managed_node_group(stack, subnets, replicas)
        else:
            capacity_dependency = self._add_auto_mode_capacity(subnets, replicas)

        # --- Kubernetes objects.
        self.chart = HybridGatewayChart(
            cdk8s.App(),
            "gateway",
            image=self.image_uri,
            vpc_cidrs=self.vpc_cidrs,
            pod_cidrs=self.remote_pod_networks,
            route_table_ids=self.route_table_ids,
            namespace=namespace,
            replicas=replicas,
            capacity_type=capacity_type,
            resources=resources,
            metrics=metrics,
            leader_election=leader_election,
            vxlan_mtu=vxlan_mtu,
            aws_region=stack.region,
            debug=debug,
        )
        self.pod_identity_association = eks.CfnPodIdentityAssociation(
            self,
            "PodIdentityAssociation",
            cluster_name=cluster.cluster_name,
            namespace=namespace,
            service_account=self.chart.service_account_name,
            role_arn=self.role.role_arn,
        )
        self.manifest = cluster.add_cdk8s_chart(f"{id}Manifests", self.chart)
        # Credentials are injected when a pod is created: the association (and the agent that
        # serves it) must exist before the Deployment's first pod does.
        self.manifest.node.add_dependency(self.pod_identity_association)
        agent = cluster.eks_pod_identity_agent
        if agent is not None:
            self.pod_identity_association.node.add_dependency(agent)
        self.manifest.node.add_dependency(capacity_dependency)
        self._add_extras(hybrid_cilium, vpc_cni_addon, remove_routes_on_delete, capacity_dependency)

    # ------------------------------------------------------------------------------------------
    @property
    def connections(self) -> ec2.Connections:
        """The gateway nodes' VXLAN security group; open more with `connections.allow_from`."""
        return self._connections

    @property
    def grant_principal(self) -> iam.IPrincipal:
        """The gateway pods' role: grant it anything else the pods should reach."""
        return self.role

    def grant_route_table(self, *route_table_ids: str) -> None:
        """Let the gateway also program routes in these tables (they must be in ROUTE_TABLE_IDS
        to be used; prefer the `route_table_ids` prop)."""
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateRoute", "ec2:ReplaceRoute"],
                resources=route_table_arns(cdk.Stack.of(self), route_table_ids),
            )
        )

    def _add_extras(
        self,
        hybrid_cilium: HybridCiliumOptions | None,
        vpc_cni_addon: VpcCniAddon | None,
        remove_routes_on_delete: bool,
        capacity: constructs.IDependable,
    ) -> None:
        """The opt-in parts around the gateway: hybrid-side Cilium, SNAT exclusion, cleanup."""
        self.hybrid_cilium: constructs.Construct | None = None
        if hybrid_cilium is not None:
            self.hybrid_cilium = install_hybrid_cilium(
                self,
                "HybridCilium",
                cluster=self.cluster,
                remote_pod_networks=self.remote_pod_networks,
                options=hybrid_cilium,
            )
            # Cilium brings the CiliumVTEPConfig CRD the gateway writes to.
            self.manifest.node.add_dependency(self.hybrid_cilium)
        if vpc_cni_addon is not None:
            apply_snat_exclusion(vpc_cni_addon, self.remote_pod_networks)
        self.route_cleanup: GatewayRouteCleanup | None = None
        if remove_routes_on_delete:
            from eks_hybrid_gateway.route_cleanup import GatewayRouteCleanup

            # Deleted after the manifests (the pods would put the routes back) and before the
            # nodes (whose ENIs identify the gateway's routes).
            self.route_cleanup = GatewayRouteCleanup(
                self,
                "RouteCleanup",
                cluster_name=self.cluster.cluster_name,
                route_table_ids=self.route_table_ids,
                pod_cidrs=self.remote_pod_networks,
                instance_filters=[
                    {"Name": "instance.group-id", "Values": [self.security_group.security_group_id]}
                ],
            )
            self.route_cleanup.node.add_dependency(capacity)
            self.manifest.node.add_dependency(self.route_cleanup)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _vpc_route_table_ids(vpc: ec2.IVpc) -> list[str]:
        subnets = [*vpc.public_subnets, *vpc.private_subnets, *vpc.isolated_subnets]
        return [subnet.route_table.route_table_id for subnet in subnets]

    @staticmethod
    def _check_two_zones(subnets: Sequence[ec2.ISubnet]) -> None:
        all_zones = [subnet.availability_zone for subnet in subnets]
        zones = [az for az in all_zones if not is_token(az)]
        if len(zones) == len(all_zones) and len(set(zones)) < 2:
            raise HybridGatewayConfigError(
                f"node_subnets: the selected subnets span {sorted(set(zones))}; the gateway "
                "needs subnets in at least 2 availability zones"
            )

    def _add_node_managed_policies(self, policies: Mapping[str, str]) -> None:
        """Attach AWS managed policies to the node role, each acknowledged with its reason."""
        for policy, reason in policies.items():
            self.node_role.add_managed_policy(
                iam.ManagedPolicy.from_aws_managed_policy_name(policy)
            )
            acknowledge(self.node_role, managed_policy_rule(policy), reason)

    def _add_managed_node_group(
        self, stack: cdk.Stack, subnets: list[str], replicas: int
    ) -> constructs.IDependable:
        policies = {
            "AmazonEKSWorkerNodePolicy": "the kubelet of an EKS managed node needs the node "
            "policy AWS maintains alongside EKS",
            "AmazonEC2ContainerRegistryPullOnly": "nodes pull the gateway and add-on images "
            "from ECR; the AWS policy grants pull only",
            "AmazonEKS_CNI_Policy": "aws-node (VPC CNI) on the gateway nodes assigns the node's "
            "ENI addresses; clusters giving aws-node its own Pod Identity role can set "
            "attach_cni_policy=False",
        }
        if not self._attach_cni_policy:
            del policies["AmazonEKS_CNI_Policy"]
        self._add_node_managed_policies(policies)
        # Source/destination check off on its own primary ENI, at boot. Instance IDs are unknown
        # before launch, so the statement is limited by tags to this cluster's gateway nodes.
        acknowledge(
            self.node_role,
            f"IAM5[Resource::arn:<AWS::Partition>:ec2:{stack.region}:{stack.account}:instance/*]",
            "instance IDs of managed node group members are unknown before launch; the "
            "statement allows only ModifyInstanceAttribute and only on instances tagged with "
            "this cluster's name and the gateway node tag",
        )
        self.node_role.add_to_policy(
            iam.PolicyStatement(
                sid="DisableOwnSourceDestCheck",
                actions=["ec2:ModifyInstanceAttribute"],
                resources=[stack.format_arn(service="ec2", resource="instance", resource_name="*")],
                conditions={
                    "StringEquals": {
                        "aws:ResourceTag/eks:cluster-name": self.cluster.cluster_name,
                        f"aws:ResourceTag/{contract.GATEWAY_NODE_LABEL_KEY}": (
                            contract.GATEWAY_NODE_LABEL_VALUE
                        ),
                    }
                },
            )
        )
        user_data = ec2.MultipartUserData()
        script = ec2.UserData.for_linux()
        script.add_commands(
            "set -euo pipefail",
            "# The gateway forwards packets for addresses other than its own.",
            "INSTANCE_ID=$(ec2-metadata --instance-id | cut -d ' ' -f 2)",
            "sysctl -w net.ipv4.ip_forward=1",
            "disabled=no",
            "for attempt in 1 2 3 4 5 6; do",
            f"  if aws ec2 modify-instance-attribute --region {stack.region} "
            '--instance-id "$INSTANCE_ID" --no-source-dest-check; then disabled=yes; break; fi',
            '  sleep "$attempt"',
            "done",
            # Fail the boot script visibly (cloud-init logs) instead of a silently dead tunnel.
            'if [ "$disabled" != yes ]; then',
            '  echo "hybrid-gateway: could not disable the source/destination check" >&2',
            "  exit 1",
            "fi",
        )
        user_data.add_user_data_part(script, ec2.MultipartBody.SHELL_SCRIPT, True)
        tags = [
            cdk.CfnTag(key=contract.GATEWAY_NODE_LABEL_KEY, value=contract.GATEWAY_NODE_LABEL_VALUE)
        ]
        self.launch_template = ec2.CfnLaunchTemplate(
            self,
            "LaunchTemplate",
            launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
                metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(
                    http_endpoint="enabled",
                    http_tokens="required",
                    # hostNetwork pods reach IMDS in one hop; other pods cannot.
                    http_put_response_hop_limit=1,
                ),
                # Set here, EKS no longer adds the cluster security group by itself.
                security_group_ids=[
                    self.cluster.cluster_security_group_id,
                    self.security_group.security_group_id,
                ],
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
                    ec2.CfnLaunchTemplate.TagSpecificationProperty(
                        resource_type="instance", tags=tags
                    )
                ],
            ),
        )
        arm = self.instance_type.architecture == ec2.InstanceArchitecture.ARM_64
        self.nodegroup = eks.CfnNodegroup(
            self,
            "Nodegroup",
            cluster_name=self.cluster.cluster_name,
            node_role=self.node_role.role_arn,
            subnets=subnets,
            ami_type="AL2023_ARM_64_STANDARD" if arm else "AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            instance_types=[self.instance_type.to_string()],
            scaling_config=eks.CfnNodegroup.ScalingConfigProperty(
                min_size=replicas, desired_size=replicas, max_size=replicas
            ),
            update_config=eks.CfnNodegroup.UpdateConfigProperty(max_unavailable=1),
            labels={contract.GATEWAY_NODE_LABEL_KEY: contract.GATEWAY_NODE_LABEL_VALUE},
            taints=[
                eks.CfnNodegroup.TaintProperty(
                    key=contract.GATEWAY_NODE_TAINT_KEY,
                    value=contract.GATEWAY_NODE_TAINT_VALUE,
                    effect=_TAINT_EFFECTS[contract.GATEWAY_NODE_TAINT_EFFECT],
                )
            ],
            launch_template=eks.CfnNodegroup.LaunchTemplateSpecificationProperty(
                id=self.launch_template.ref,
                version=self.launch_template.attr_latest_version_number,
            ),
            tags={contract.GATEWAY_NODE_LABEL_KEY: contract.GATEWAY_NODE_LABEL_VALUE},
        )
        return self.nodegroup

    def _add_auto_mode_capacity(self, subnets: list[str], replicas: int) -> constructs.IDependable:
        self._add_node_managed_policies(
            {
                "AmazonEKSWorkerNodeMinimalPolicy": "EKS Auto Mode nodes need the minimal node "
                "policy AWS maintains for them",
                "AmazonEC2ContainerRegistryPullOnly": "nodes pull the gateway image from ECR; the "
                "AWS policy grants pull only",
            }
        )
        partition = cdk.Stack.of(self).partition
        access_entry = eks.CfnAccessEntry(
            self,
            "NodeAccessEntry",
            cluster_name=self.cluster.cluster_name,
            principal_arn=self.node_role.role_arn,
            type="EC2",
            access_policies=[
                eks.CfnAccessEntry.AccessPolicyProperty(
                    policy_arn=f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy",
                    access_scope=eks.CfnAccessEntry.AccessScopeProperty(type="cluster"),
                )
            ],
        )
        self.auto_mode_chart = AutoModeCapacityChart(
            cdk8s.App(),
            "capacity",
            node_role_name=self.node_role.role_name,
            subnet_ids=subnets,
            security_group_ids=[
                self.cluster.cluster_security_group_id,
                self.security_group.security_group_id,
            ],
            instance_types=[self.instance_type.to_string()],
            max_nodes=replicas + 1,
        )
        capacity = self.cluster.add_cdk8s_chart(f"{self.node.id}Capacity", self.auto_mode_chart)
        capacity.node.add_dependency(access_entry)
        return cast(constructs.IDependable, capacity)
