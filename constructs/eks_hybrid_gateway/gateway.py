"""`HybridNodesGateway`: dedicated capacity, IAM, security group and the gateway Deployment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import aws_cdk as cdk
import cdk8s
import constructs
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks as eks
from aws_cdk import aws_eks_v2 as eks_v2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.capacity import (
    CapacitySpec,
    GatewayCapacity,
    add_auto_mode_capacity,
    add_managed_node_group,
)
from eks_hybrid_gateway.chart import (
    CapacityType,
    GatewayResources,
    HybridGatewayChart,
    LeaderElectionTimings,
    MetricsExposure,
    validate_chart_options,
)
from eks_hybrid_gateway.cilium import vtep_mask_length
from eks_hybrid_gateway.hybrid_cilium import HybridCiliumOptions, install_hybrid_cilium
from eks_hybrid_gateway.image import GatewayImage
from eks_hybrid_gateway.kubectl_access import grant_imported_kubectl_handler_role
from eks_hybrid_gateway.kubernetes import (
    AnyCluster,
    apply_manifest,
    auto_mode_enabled,
    is_created_in_app,
    is_v2_cluster,
)
from eks_hybrid_gateway.mode import GatewayMode, ModeKind, resolve_mode
from eks_hybrid_gateway.route_cleanup import GatewayRouteCleanup, validate_log_encryption_key
from eks_hybrid_gateway.routing_iam import allow_describe_routing_state, route_table_arns
from eks_hybrid_gateway.security_group import RemotePodAccess, gateway_security_group
from eks_hybrid_gateway.validation import (
    HybridGatewayConfigError,
    is_token,
    validate_networks,
    validate_route_table_ids,
)
from eks_hybrid_gateway.vpc_cni import VpcCniAddon, apply_snat_exclusion, check_vpc_cni_addon

__all__ = ["DEFAULT_INSTANCE_TYPE", "AnyCluster", "HybridNodesGateway"]

#: AWS sizing guidance: c6in.xlarge for 10-100 hybrid nodes, c6in.2xlarge above.
DEFAULT_INSTANCE_TYPE = "c6in.xlarge"

_POD_MONITOR_METRICS = (MetricsExposure.POD_MONITOR, MetricsExposure.SERVICE_AND_POD_MONITOR)


def _literal_vpc_cidr(vpc: ec2.IVpc) -> str:
    """The VPC's primary CIDR, as a literal when the VPC is defined in this app."""
    child = vpc.node.default_child
    if isinstance(child, ec2.CfnVPC) and child.cidr_block and not is_token(child.cidr_block):
        return child.cidr_block
    return vpc.vpc_cidr_block


def _dedupe(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _vpc_route_table_ids(vpc: ec2.IVpc) -> list[str]:
    """The route tables of every subnet of the VPC: public (load balancers, and the cluster's
    ENIs when it uses public subnets), private and isolated."""
    subnets = [*vpc.public_subnets, *vpc.private_subnets, *vpc.isolated_subnets]
    return [subnet.route_table.route_table_id for subnet in subnets]


def _check_two_zones(subnets: Sequence[ec2.ISubnet]) -> None:
    all_zones = [subnet.availability_zone for subnet in subnets]
    zones = [az for az in all_zones if not is_token(az)]
    if len(zones) == len(all_zones) and len(set(zones)) < 2:
        raise HybridGatewayConfigError(
            f"node_subnets: the selected subnets span {sorted(set(zones))}; the gateway "
            "needs subnets in at least 2 availability zones"
        )


def _check_capacity_type(cluster: AnyCluster, capacity_type: CapacityType) -> None:
    if capacity_type is CapacityType.AUTO_MODE and auto_mode_enabled(cluster) is False:
        raise HybridGatewayConfigError(
            f"capacity_type: {capacity_type} needs an EKS Auto Mode cluster, and this cluster "
            "is created without Auto Mode compute (ComputeConfig.Enabled false); use "
            "CapacityType.MANAGED_NODE_GROUP"
        )


def _check_cluster_vpc(cluster: AnyCluster, capacity_type: CapacityType) -> None:
    if capacity_type is not CapacityType.MANAGED_NODE_GROUP:
        return
    try:
        cluster.vpc  # noqa: B018 - an imported cluster without one raises
    except RuntimeError:
        raise HybridGatewayConfigError(
            "cluster: imported without a VPC; aws-cdk-lib's managed node group selects its "
            "subnets through cluster.vpc: pass vpc= to Cluster.from_cluster_attributes"
        ) from None


def _check_v1_cluster_stack(
    scope: constructs.Construct, cluster: AnyCluster, capacity_type: CapacityType
) -> None:
    """aws-cdk-lib's aws_eks (v1) Nodegroup maps its role in the aws-auth ConfigMap of a cluster
    the app creates (aws-eks/lib/managed-nodegroup.ts), in the cluster's stack: from another
    stack that would tie the two stacks both ways."""
    if capacity_type is not CapacityType.MANAGED_NODE_GROUP or not isinstance(cluster, eks.Cluster):
        return
    cluster_stack = cdk.Stack.of(cluster).node.path
    gateway_stack = cdk.Stack.of(scope).node.path
    if cluster_stack != gateway_stack:
        raise HybridGatewayConfigError(
            f"cluster: an aws_eks (v1) Cluster of stack {cluster_stack!r} cannot get gateway "
            f"nodes from stack {gateway_stack!r} (aws-cdk-lib maps the node role in the "
            "cluster's aws-auth, in the cluster's stack); use an aws_eks_v2 cluster or put the "
            "gateway in the cluster's stack"
        )


def _check_kubectl(cluster: AnyCluster) -> None:
    # aws-eks-v2's KubernetesManifest needs the cluster's kubectl provider (k8s-manifest.ts).
    if is_v2_cluster(cluster) and cast(eks_v2.ICluster, cluster).kubectl_provider is None:
        raise HybridGatewayConfigError(
            "cluster: has no kubectl provider, so the gateway's manifests cannot be applied; "
            "create the cluster with kubectl_provider_options=KubectlProviderOptions("
            "kubectl_layer=...) or import it with kubectl_provider=..."
        )


def _check_metrics(metrics: MetricsExposure) -> None:
    if metrics in _POD_MONITOR_METRICS:
        raise HybridGatewayConfigError(
            f"metrics: {metrics} would put a PodMonitor, whose CRD a fresh cluster lacks, in "
            "the gateway's stack; use MetricsExposure.SERVICE here and add "
            "GatewayPodMonitor(scope, id, gateway=...) where the Prometheus Operator is "
            "installed"
        )


@dataclass(frozen=True)
class _Resolved:
    """Props after defaults and checks."""

    vpc_cidrs: list[str]
    route_table_ids: list[str]
    node_subnets: list[ec2.ISubnet]
    image: GatewayImage


def _resolve(
    scope: constructs.Construct,
    *,
    cluster: AnyCluster,
    vpc: ec2.IVpc,
    remote_node_networks: Sequence[str],
    remote_pod_networks: Sequence[str],
    vpc_cidrs: Sequence[str] | None,
    route_table_ids: Sequence[str] | None,
    service_cidr: str | None,
    capacity_type: CapacityType,
    node_subnets: Sequence[ec2.ISubnet] | None,
    metrics: MetricsExposure,
    image: GatewayImage | None,
) -> _Resolved:
    """Apply the defaults and every check that needs no construct; raise on the first error."""
    chosen_vpc_cidrs = list(vpc_cidrs) if vpc_cidrs is not None else [_literal_vpc_cidr(vpc)]
    validate_networks(
        vpc_cidrs=chosen_vpc_cidrs,
        remote_node_networks=list(remote_node_networks),
        remote_pod_networks=list(remote_pod_networks),
        service_cidr=service_cidr,
    )
    _check_capacity_type(cluster, capacity_type)
    _check_cluster_vpc(cluster, capacity_type)
    _check_v1_cluster_stack(scope, cluster, capacity_type)
    _check_kubectl(cluster)
    _check_metrics(metrics)
    tables = _dedupe(route_table_ids if route_table_ids is not None else _vpc_route_table_ids(vpc))
    if not tables:
        raise HybridGatewayConfigError(
            "route_table_ids: no route tables given and the VPC has no subnets with route "
            "tables; pass route_table_ids=[...]"
        )
    validate_route_table_ids("route_table_ids", tables)
    subnets = (
        list(node_subnets)
        if node_subnets is not None
        else vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets
    )
    _check_two_zones(subnets)
    chosen_image = image or GatewayImage.from_asset()
    chosen_image.validate()
    return _Resolved(chosen_vpc_cidrs, tables, subnets, chosen_image)


@jsii.implements(ec2.IConnectable, iam.IGrantable)
class HybridNodesGateway(constructs.Construct):
    """A complete EKS Hybrid Nodes gateway for one cluster.

    Creates, all in its own scope: dedicated gateway capacity (a managed node group with IMDSv2
    and the source/destination check off on the primary ENI, or an EKS Auto Mode NodePool +
    NodeClass), a security group for VXLAN with the remote node networks, an IAM role for the
    gateway pods through EKS Pod Identity, and the gateway's Kubernetes objects
    (`HybridGatewayChart`) applied through the cluster's kubectl provider. Because nothing is
    created in the cluster's scope, the gateway can live in another stack (or `Stage`) than its
    cluster: references go from the gateway to the cluster only.
    VPC routes to the remote pod networks are NOT declared here: the running gateway owns them
    (the leader in active-standby mode; in active-active mode each shard's owner).

    Args:
        cluster: an `aws_eks_v2` or `aws_eks` cluster, created in the app or imported (an
            imported one needs a kubectl role, the kubectl layer and its security group ID).
        vpc: the cluster VPC.
        remote_node_networks: on-prem node CIDRs, the VXLAN peers; at least one.
        remote_pod_networks: hybrid pod CIDRs the leader routes (`POD_CIDRS`); at least one.
        image: the gateway image. @default `GatewayImage.from_asset()` (`runtime/Dockerfile`)
        vpc_cidrs: `VPC_CIDR` for the CiliumVTEPConfig, at most 8. @default the VPC's CIDR
        route_table_ids: tables the leader programs: those of every subnet the cluster's ENIs
            and load balancers use. @default the route tables of all the VPC's subnets
        service_cidr: the cluster service CIDR, only checked for overlaps. @default none
        capacity_type: managed node group or EKS Auto Mode NodePool/NodeClass; AUTO_MODE on a
            cluster created without Auto Mode is an error.
            @default CapacityType.MANAGED_NODE_GROUP
        instance_type: @default `c6in.xlarge` (AWS guidance; `c6in.2xlarge` above 100 nodes)
        replicas: gateway pods and dedicated nodes (one pod per node), at least 2; in
            active-active mode every replica carries shards. @default 2
        node_subnets: where nodes go, at least 2 AZs. @default the private subnets
        namespace: @default `eks-hybrid-nodes-gateway`
        resources: container requests/limits. @default `GatewayResources()`
        metrics: `NONE` or `SERVICE` (a headless metrics Service). A PodMonitor is the separate
            `GatewayPodMonitor` construct. @default MetricsExposure.NONE
        leader_election: Lease timings. @default the runtime's 3 s / 2 s / 1 s
        vxlan_mtu: @default the runtime's 1450
        attach_cni_policy: `AmazonEKS_CNI_Policy` on the node role. @default True
        install_pod_identity_agent: add the `eks-pod-identity-agent` EKS add-on, which serves
            the pods' credentials. Set it for an imported cluster that lacks the add-on (an
            existing add-on makes the deployment fail). @default True for a cluster created in
            the app without Auto Mode, False for an Auto Mode cluster (the agent is built in)
            and for an imported one
        remote_pod_access: peers and ports allowed to reach the remote pod networks through
            the gateway (ALB/NLB in IP mode, VPC services outside the cluster security group).
            @default none: only the cluster security group's members
        debug: verbose runtime logs. @default False
        hybrid_cilium: install the EKS Cilium chart on the hybrid nodes with the VTEP values
            (`HybridCiliumOptions`). @default None: you run Cilium with those values yourself
        vpc_cni_addon: the app's `vpc-cni` add-on (CfnAddon, or aws_eks/aws_eks_v2 Addon) to
            get the SNAT exclusion of the remote pod networks. @default None: set it on
            aws-node yourself
        remove_routes_on_delete: on stack deletion, delete the pod-network routes the gateway
            wrote (custom resource, see `GatewayRouteCleanup`). @default False
        log_encryption_key: KMS key for the log group the construct creates (the route
            cleanup's, retained after the stack, so a key the app creates must be retained
            too); its key policy must let CloudWatch Logs use it. @default None:
            CloudWatch Logs' own encryption at rest
        mode: `GatewayMode.active_standby()` (one leader routes everything) or
            `GatewayMode.active_active(shards=4, max_routes_per_table=500)` (the remote pod
            networks are cut into `shards` prefixes, each routed to the replica owning it; the
            owned tables' "Routes per route table" quota must fit them).
            @default GatewayMode.active_standby()
        shards: deprecated: `GatewayMode.active_active(shards=...)`.
        max_routes_per_table: deprecated: `GatewayMode.active_active(max_routes_per_table=...)`.
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
        install_pod_identity_agent: bool | None = None,
        remote_pod_access: Sequence[RemotePodAccess] = (),
        debug: bool = False,
        hybrid_cilium: HybridCiliumOptions | None = None,
        vpc_cni_addon: VpcCniAddon | None = None,
        remove_routes_on_delete: bool = False,
        log_encryption_key: kms.IKey | None = None,
        mode: GatewayMode | ModeKind | str = GatewayMode.ACTIVE_STANDBY,
        shards: int | None = None,
        max_routes_per_table: int | None = None,
    ) -> None:
        # Everything is checked before the construct joins the tree, so a rejected prop leaves
        # the scope exactly as it was; the error names the construct's path, the prop and value.
        try:
            resolved = _resolve(
                scope,
                cluster=cluster,
                vpc=vpc,
                remote_node_networks=remote_node_networks,
                remote_pod_networks=remote_pod_networks,
                vpc_cidrs=vpc_cidrs,
                route_table_ids=route_table_ids,
                service_cidr=service_cidr,
                capacity_type=capacity_type,
                node_subnets=node_subnets,
                metrics=metrics,
                image=image,
            )
            if hybrid_cilium is not None:
                hybrid_cilium.helm_values(list(remote_pod_networks))
            if vpc_cni_addon is not None:
                check_vpc_cni_addon(vpc_cni_addon)
            if remove_routes_on_delete:
                validate_log_encryption_key(log_encryption_key)
            validate_chart_options(
                replicas=replicas,
                namespace=namespace,
                leader_election=leader_election,
                vxlan_mtu=vxlan_mtu,
            )
            chosen_mode = resolve_mode(mode, shards, max_routes_per_table)
            chosen_mode.check_plan(
                pod_cidrs=("remote_pod_networks", remote_pod_networks),
                vpc_cidrs=("vpc_cidrs", resolved.vpc_cidrs),
                lease_name=contract.DEFAULT_LEASE_NAME,
            )
        except HybridGatewayConfigError as exc:
            path = "/".join(part for part in (scope.node.path, id) if part)
            raise HybridGatewayConfigError(f"{path}: {exc}") from None

        super().__init__(scope, id)
        self.vpc = vpc
        self.cluster = cluster
        self.vpc_cidrs = resolved.vpc_cidrs
        self.remote_node_networks = list(remote_node_networks)
        self.remote_pod_networks = list(remote_pod_networks)
        self.route_table_ids = resolved.route_table_ids
        self.instance_type = instance_type or ec2.InstanceType(DEFAULT_INSTANCE_TYPE)
        self.capacity_type = capacity_type
        self.node_subnets = resolved.node_subnets
        self.mode = chosen_mode

        self.security_group = gateway_security_group(
            self,
            vpc=vpc,
            remote_node_networks=self.remote_node_networks,
            vpc_cidrs=self.vpc_cidrs,
            remote_pod_access=list(remote_pod_access),
        )
        self._connections = ec2.Connections(security_groups=[self.security_group])
        self.node_role = iam.Role(
            self,
            "NodeRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="EKS Hybrid Nodes gateway nodes",
        )
        self.role = self._add_pod_role()
        self.image_uri = resolved.image.bind(
            self, node_role=self.node_role, architecture=self.instance_type.architecture
        ).image_uri
        self.capacity = self._add_capacity(replicas, attach_cni_policy)
        self.nodegroup = self.capacity.nodegroup
        self.launch_template = self.capacity.launch_template
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
            aws_region=cdk.Stack.of(self).region,
            debug=debug,
            mode=self.mode,
        )
        self.pod_identity_agent = self._pod_identity_agent(install_pod_identity_agent)
        self.pod_identity_association = self._add_pod_identity_association(namespace)
        self.manifest = apply_manifest(self, "Manifests", cluster=cluster, chart=self.chart)
        # An imported kubectl handler role misses what aws-cdk-lib attaches as managed policies.
        self.kubectl_handler_policy = grant_imported_kubectl_handler_role(
            self, cluster, ecr_public=hybrid_cilium is not None
        )
        # Credentials are injected when a pod is created: the association (and the agent that
        # serves it) must exist before the Deployment's first pod does, and so must its nodes.
        self.manifest.node.add_dependency(self.pod_identity_association, self.capacity.ready)
        self._add_extras(
            hybrid_cilium,
            vpc_cni_addon,
            remove_routes_on_delete,
            self.capacity.ready,
            log_encryption_key,
        )

    # ------------------------------------------------------------------------------------------
    @property
    def connections(self) -> ec2.Connections:
        """The gateway nodes' security group: VXLAN with the remote node networks, plus the
        `remote_pod_access` rules; open more with `connections.allow_from`. Traffic forwarded
        to hybrid pods crosses this group too."""
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
                actions=["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"],
                resources=route_table_arns(cdk.Stack.of(self), route_table_ids),
            )
        )

    def _add_extras(
        self,
        hybrid_cilium: HybridCiliumOptions | None,
        vpc_cni_addon: VpcCniAddon | None,
        remove_routes_on_delete: bool,
        capacity: constructs.IDependable,
        log_encryption_key: kms.IKey | None,
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
                vtep_mask_length=vtep_mask_length(
                    self.vpc_cidrs,
                    remote_pod_networks=self.remote_pod_networks,
                    shards=self.mode.shards,
                ),
            )
            # Cilium brings the CiliumVTEPConfig CRD the gateway writes to.
            self.manifest.node.add_dependency(self.hybrid_cilium)
        if vpc_cni_addon is not None:
            apply_snat_exclusion(vpc_cni_addon, self.remote_pod_networks)
        self.route_cleanup: GatewayRouteCleanup | None = None
        if remove_routes_on_delete:
            # Deleted after the manifests (the pods would put the routes back) and before the
            # nodes (whose ENIs identify the gateway's routes).
            self.route_cleanup = GatewayRouteCleanup(
                self,
                "RouteCleanup",
                cluster_name=self.cluster.cluster_name,
                route_table_ids=self.route_table_ids,
                pod_cidrs=self.remote_pod_networks,
                shards=self.mode.shards,
                instance_filters=[
                    {"Name": "instance.group-id", "Values": [self.security_group.security_group_id]}
                ],
                log_encryption_key=log_encryption_key,
            )
            self.route_cleanup.node.add_dependency(capacity)
            self.manifest.node.add_dependency(self.route_cleanup)

    # ------------------------------------------------------------------------------------------
    def _add_pod_role(self) -> iam.Role:
        """The pods' role through EKS Pod Identity: read routing state, write owned tables."""
        role = iam.Role(
            self,
            "PodRole",
            assumed_by=iam.SessionTagsPrincipal(iam.ServicePrincipal("pods.eks.amazonaws.com")),
            description="EKS Hybrid Nodes gateway pods: point hybrid pod CIDR routes at the leader",
        )
        allow_describe_routing_state(
            role,
            "the write actions (CreateRoute/ReplaceRoute/DeleteRoute) are scoped to the "
            "ARNs of the owned route tables",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ProgramOwnedRouteTables",
                # DeleteRoute: a shard route of an earlier cut (plan change, switch back to
                # active-standby) is removed by its new writer (runtime core/stale_routes.py).
                actions=["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"],
                resources=route_table_arns(cdk.Stack.of(self), self.route_table_ids),
            )
        )
        return role

    def _add_capacity(self, replicas: int, attach_cni_policy: bool) -> GatewayCapacity:
        spec = CapacitySpec(
            cluster=self.cluster,
            vpc=self.vpc,
            node_role=self.node_role,
            security_group_ids=[
                self.cluster.cluster_security_group_id,
                self.security_group.security_group_id,
            ],
            subnets=self.node_subnets,
            instance_type=self.instance_type,
            replicas=replicas,
        )
        if self.capacity_type is CapacityType.MANAGED_NODE_GROUP:
            return add_managed_node_group(self, spec, attach_cni_policy=attach_cni_policy)
        return add_auto_mode_capacity(self, spec)

    def _pod_identity_agent(self, install: bool | None) -> constructs.IConstruct | None:
        """The `eks-pod-identity-agent` add-on, if this gateway is to make sure it exists."""
        if install is None:
            # EKS Auto Mode has the agent built in (EKS user guide, pod-id-agent-setup).
            install = is_created_in_app(self.cluster) and not auto_mode_enabled(self.cluster)
        if not install:
            return None
        if is_created_in_app(self.cluster):
            # aws-cdk-lib creates it once per cluster, in the cluster's scope.
            agent: constructs.IConstruct | None = self.cluster.eks_pod_identity_agent
            return agent
        return eks.CfnAddon(
            self,
            "PodIdentityAgent",
            addon_name="eks-pod-identity-agent",
            cluster_name=self.cluster.cluster_name,
        )

    def _add_pod_identity_association(self, namespace: str) -> eks.CfnPodIdentityAssociation:
        association = eks.CfnPodIdentityAssociation(
            self,
            "PodIdentityAssociation",
            cluster_name=self.cluster.cluster_name,
            namespace=namespace,
            service_account=self.chart.service_account_name,
            role_arn=self.role.role_arn,
        )
        if self.pod_identity_agent is not None:
            association.node.add_dependency(self.pod_identity_agent)
        return association
