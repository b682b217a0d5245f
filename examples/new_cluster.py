"""A new EKS cluster (aws_eks_v2) with hybrid nodes enabled and the gateway in front of them.

The cluster runs managed node groups, not EKS Auto Mode (`examples/auto_mode.py` is that
shape). aws-cdk-lib's `aws_eks_v2.Cluster` turns Auto Mode on unless `default_capacity_type` is
EC2 or NODEGROUP (aws-eks-v2/lib/cluster.ts, `isValidAutoModeConfig`); an Auto Mode cluster
installs no vpc-cni / kube-proxy / coredns, so managed nodes added to it would never become
Ready. Here the networking add-ons are EKS add-ons the app manages (`bootstrap_self_managed_addons`
off, so EKS does not also install unmanaged copies), and a small general-purpose node group runs
CoreDNS and the other system pods, which do not tolerate the gateway nodes' taint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import aws_cdk as cdk
import constructs
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer

from eks_hybrid_gateway import (
    GatewayImage,
    HybridCiliumOptions,
    HybridNodesGateway,
    MetricsExposure,
)
from eks_hybrid_gateway.nag import acknowledge_all
from examples.nag import (
    AUTO_MODE_CLUSTER_FINDINGS,
    CLUSTER_FINDINGS,
    KUBECTL_PROVIDER_FINDINGS,
    NODEGROUP_CLUSTER_FINDINGS,
    kubectl_provider_wiring_findings,
)

#: General-purpose capacity for CoreDNS and other system pods (not the gateway's nodes).
SYSTEM_NODES = 2
SYSTEM_INSTANCE_TYPE = "m6i.large"

#: Add-ons whose pods every node runs (DaemonSets): nodes only become Ready with them.
NODE_NETWORKING_ADDONS = ("vpc-cni", "kube-proxy")

#: Every control plane log type (audit trail for a security review).
CONTROL_PLANE_LOGS = [
    eks.ClusterLoggingTypes.API,
    eks.ClusterLoggingTypes.AUDIT,
    eks.ClusterLoggingTypes.AUTHENTICATOR,
    eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
    eks.ClusterLoggingTypes.SCHEDULER,
]


@dataclass
class HybridCluster:
    """What `new_hybrid_cluster` made; `node_networking` is what nodes must wait for."""

    vpc: ec2.Vpc
    cluster: eks.Cluster
    key: kms.Key
    addons: dict[str, eks.Addon] = field(default_factory=dict)
    system_nodes: eks.Nodegroup | None = None

    @property
    def node_networking(self) -> list[constructs.IConstruct]:
        return [self.addons[name] for name in NODE_NETWORKING_ADDONS if name in self.addons]


def _encrypted_log_group(
    stack: cdk.Stack, id: str, key: kms.Key, name: str | None = None
) -> logs.LogGroup:
    return logs.LogGroup(
        stack,
        id,
        log_group_name=name,
        encryption_key=key,
        retention=logs.RetentionDays.ONE_YEAR,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def allow_cloudwatch_logs(stack: cdk.Stack, key: kms.Key) -> None:
    """The key policy CloudWatch Logs documents for encrypted log groups: its regional service
    principal, only for log groups of this account and region (encryption context)."""
    key.grant(
        iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com").with_conditions(
            {
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            }
        ),
        "kms:Encrypt*",
        "kms:Decrypt*",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:Describe*",
    )


def retained_logs_key(stack: cdk.Stack) -> kms.Key:
    """A key for log groups kept after the stack (the route cleanup's): kept too, so those logs
    stay readable when a failed deletion needs them (the cluster key goes with the stack)."""
    key = kms.Key(
        stack,
        "RetainedLogsKey",
        enable_key_rotation=True,
        description="Log groups kept after the stack (the gateway's route cleanup)",
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    allow_cloudwatch_logs(stack, key)
    return key


def unique_cluster_name(stack: cdk.Stack) -> str:
    """The stack's name and the first block of its stack ID's UUID, new with every creation.

    EKS writes control plane logs to `/aws/eks/<cluster name>/cluster`, which this example
    creates first (encrypted, kept a year). When the stack is deleted, or a failed creation is
    rolled back, EKS can recreate that group while the cluster is still going away
    (terraform-aws-eks issues #2486, #2763, #2446); with a cluster name fixed per stack, the
    next deployment would then fail with "already exists" on the log group. The stack ID
    (`arn:...:stack/<name>/<uuid>`) changes with every creation, so the name never repeats.
    """
    uuid = cdk.Fn.select(2, cdk.Fn.split("/", stack.stack_id))
    return cdk.Fn.join("-", [stack.stack_name, cdk.Fn.select(0, cdk.Fn.split("-", uuid))])


def new_hybrid_cluster(
    stack: cdk.Stack,
    *,
    vpc_cidr: str,
    remote_node_networks: Sequence[str],
    remote_pod_networks: Sequence[str],
    service_cidr: str | None = None,
    auto_mode: bool = False,
    vpc_cni_configuration: Mapping[str, Any] | None = None,
) -> HybridCluster:
    """A two-AZ VPC and an aws_eks_v2 cluster with `remoteNetworkConfig` for hybrid nodes.

    Secrets are envelope-encrypted with a KMS key (rotated yearly), which also encrypts the
    VPC flow log and control plane log groups. The gateway's manifests are applied through
    kubectl, hence the kubectl layer. `vpc_cni_configuration` becomes the `vpc-cni` add-on's
    `configurationValues` (not with Auto Mode, which has no such add-on).
    """
    key = kms.Key(
        stack,
        "ClusterKey",
        enable_key_rotation=True,
        description="EKS secrets envelope encryption and the cluster's log groups",
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    allow_cloudwatch_logs(stack, key)
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
        max_azs=2,
        nat_gateways=1,
        # The default security group admits nothing (Security Hub EC2.2).
        restrict_default_security_group=True,
        flow_logs={
            "all": ec2.FlowLogOptions(
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                    _encrypted_log_group(stack, "FlowLogs", key)
                )
            )
        },
    )
    cluster_name = unique_cluster_name(stack)
    # EKS writes control plane logs to this group; created first, it is encrypted and kept
    # for a year instead of created by EKS without either.
    control_plane_logs = _encrypted_log_group(
        stack, "ControlPlaneLogs", key, f"/aws/eks/{cluster_name}/cluster"
    )
    capacity: dict[str, object] = (
        {}
        if auto_mode
        else {
            # NODEGROUP turns Auto Mode off; the node group itself is added below with an
            # AL2023 AMI (the default capacity would get AL2, which EKS 1.33 and later lack).
            "default_capacity_type": eks.DefaultCapacityType.NODEGROUP,
            "default_capacity": 0,
            "bootstrap_self_managed_addons": False,
        }
    )
    cluster = eks.Cluster(
        stack,
        "Cluster",
        cluster_name=cluster_name,
        version=eks.KubernetesVersion.V1_35,
        vpc=vpc,
        service_ipv4_cidr=service_cidr,
        secrets_encryption_key=key,
        cluster_logging=CONTROL_PLANE_LOGS,
        kubectl_provider_options=eks.KubectlProviderOptions(
            kubectl_layer=KubectlV35Layer(stack, "KubectlLayer")
        ),
        remote_node_networks=[eks.RemoteNodeNetwork(cidrs=list(remote_node_networks))],
        remote_pod_networks=[eks.RemotePodNetwork(cidrs=list(remote_pod_networks))],
        **capacity,  # type: ignore[arg-type]
    )
    cluster.node.add_dependency(control_plane_logs)
    acknowledge_all(
        cluster,
        {
            **KUBECTL_PROVIDER_FINDINGS,
            **CLUSTER_FINDINGS,
            **(AUTO_MODE_CLUSTER_FINDINGS if auto_mode else NODEGROUP_CLUSTER_FINDINGS),
            **kubectl_provider_wiring_findings(
                "ClusterKubectlProviderHandler2E05C68A",
                "ClusterKubectlProviderHandlerHasEcrPublic69E09706",
            ),
        },
    )
    made = HybridCluster(vpc=vpc, cluster=cluster, key=key)
    if not auto_mode:
        _add_networking_addons(stack, made, vpc_cni_configuration)
    return made


def _add_networking_addons(
    stack: cdk.Stack, made: HybridCluster, vpc_cni_configuration: Mapping[str, Any] | None
) -> None:
    """vpc-cni and kube-proxy before any node group; CoreDNS once nodes can run it."""
    for name in (*NODE_NETWORKING_ADDONS, "coredns"):
        configuration = vpc_cni_configuration if name == "vpc-cni" else None
        made.addons[name] = eks.Addon(
            stack,
            f"Addon-{name}",
            # aws_eks_v2.Cluster implements ICluster; its Python typing misses one member.
            cluster=cast(eks.ICluster, made.cluster),
            addon_name=name,
            configuration_values=dict(configuration) if configuration else None,
        )
    made.system_nodes = made.cluster.add_nodegroup_capacity(
        "System",
        ami_type=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
        instance_types=[ec2.InstanceType(SYSTEM_INSTANCE_TYPE)],
        min_size=SYSTEM_NODES,
        desired_size=SYSTEM_NODES,
        max_size=SYSTEM_NODES + 1,
    )
    made.system_nodes.node.add_dependency(*made.node_networking)
    made.addons["coredns"].node.add_dependency(made.system_nodes)


def add_gateway(
    scope: constructs.Construct,
    made: HybridCluster,
    *,
    remote_node_networks: Sequence[str],
    remote_pod_networks: Sequence[str],
    image: GatewayImage | None,
    **props: Any,
) -> HybridNodesGateway:
    """The gateway for `made`, with a metrics Service, after the cluster's node networking."""
    gateway = HybridNodesGateway(
        scope,
        "HybridGateway",
        cluster=made.cluster,
        vpc=made.vpc,
        remote_node_networks=remote_node_networks,
        remote_pod_networks=remote_pod_networks,
        image=image,
        metrics=MetricsExposure.SERVICE,
        **props,
    )
    # The gateway's nodes, like every node, need the CNI and kube-proxy to become Ready.
    if made.node_networking:
        gateway.node.add_dependency(*made.node_networking)
    return gateway


class NewClusterWithGatewayStack(cdk.Stack):
    """VPC, cluster with `remoteNetworkConfig` and managed node groups, and a gateway."""

    def __init__(
        self,
        scope: constructs.Construct,
        id: str,
        *,
        vpc_cidr: str,
        remote_node_networks: Sequence[str],
        remote_pod_networks: Sequence[str],
        image: GatewayImage | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]
        self.hybrid_cluster = new_hybrid_cluster(
            self,
            vpc_cidr=vpc_cidr,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
        )
        # A complete hybrid set-up from one stack: the construct installs the EKS Cilium chart
        # with the VTEP values on the hybrid nodes, excludes the remote pod networks from the
        # managed vpc-cni add-on's SNAT, and removes its VPC routes when the stack is deleted.
        self.gateway = add_gateway(
            self,
            self.hybrid_cluster,
            remote_node_networks=remote_node_networks,
            remote_pod_networks=remote_pod_networks,
            image=image,
            hybrid_cilium=HybridCiliumOptions(),
            vpc_cni_addon=self.hybrid_cluster.addons["vpc-cni"],
            remove_routes_on_delete=True,
            log_encryption_key=retained_logs_key(self),
        )
