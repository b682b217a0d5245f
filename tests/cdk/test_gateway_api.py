"""The construct's public surface: connections, grants, attributes, embedded manifests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
import kubernetes_validate
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from eks_hybrid_gateway import KUBERNETES_VERSION

GatewayFactory = Callable[..., Any]
CUSTOM_KINDS = {"NodeClass", "NodePool"}


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
def test_manifests_applied_by_cdk_validate_strictly_for_the_target_version(
    synthesized: Any, cfn: Any, stack: str
) -> None:
    template = synthesized.templates[stack]
    objects = cfn.manifest_objects(template, "HybridGatewayManifests")
    if stack == "HybridGatewayAutoMode":
        objects += cfn.manifest_objects(template, "HybridGatewayCapacity")
    builtin = [o for o in objects if o["kind"] not in CUSTOM_KINDS]
    assert len(builtin) >= 8
    for obj in builtin:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_connections_open_more_on_the_gateway_security_group(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    assert gateway.connections.security_groups == [gateway.security_group]
    gateway.connections.allow_from(ec2.Peer.ipv4("10.0.5.0/24"), ec2.Port.tcp(9443), "webhook")
    template = Template.from_stack(cdk.Stack.of(gateway))
    props = template.find_resources("AWS::EC2::SecurityGroup")
    [sg] = [v for k, v in props.items() if k.startswith("Gateway")]
    ingress = {
        (r["CidrIp"], r["IpProtocol"], r["FromPort"])
        for r in sg["Properties"]["SecurityGroupIngress"]
    }
    assert ingress == {
        ("192.168.100.0/24", "udp", 8472),
        ("10.0.0.0/16", "tcp", 32768),  # replies through another gateway's ENI
        ("10.0.0.0/16", "udp", 32768),
        ("10.0.5.0/24", "tcp", 9443),
    }


def test_grant_principal_is_the_pod_role(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    assert gateway.grant_principal is gateway.role
    bucket_arn = "arn:aws:s3:::gateway-config"
    gateway.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{bucket_arn}/*"])
    )
    template = Template.from_stack(cdk.Stack.of(gateway))
    statements = [
        s
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert {
        "Action": "s3:GetObject",
        "Effect": "Allow",
        "Resource": f"{bucket_arn}/*",
    } in statements


def test_grant_route_table_widens_route_writes(make_gateway: GatewayFactory, cfn: Any) -> None:
    gateway = make_gateway()
    gateway.grant_route_table("rtb-0fedcba9876543210")
    template = Template.from_stack(cdk.Stack.of(gateway))
    resources = [
        r
        for policy in template.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "ec2:CreateRoute" in s["Action"]
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    tables = sorted(cfn.render(r).rsplit("/", 1)[-1] for r in resources)
    assert tables == ["rtb-0123456789abcdef0", "rtb-0123456789abcdef1", "rtb-0fedcba9876543210"]


def test_attributes_expose_what_was_decided(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(replicas=3)
    assert gateway.vpc_cidrs == ["10.0.0.0/16"]
    assert gateway.remote_pod_networks == ["10.85.0.0/16"]
    assert gateway.instance_type.to_string() == "c6in.xlarge"
    assert gateway.nodegroup is not None
    assert gateway.capacity.ready is gateway.nodegroup
    Template.from_stack(cdk.Stack.of(gateway)).has_resource_properties(
        "AWS::EKS::Nodegroup", {"ScalingConfig": {"MinSize": 3, "DesiredSize": 3, "MaxSize": 3}}
    )
    assert gateway.launch_template is not None
    assert gateway.chart.service_account_name == "eks-hybrid-nodes-gateway"
    assert gateway.image_uri.endswith("eks-hybrid-nodes-gateway:0.1.0")


def test_cni_policy_can_be_left_off(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(attach_cni_policy=False)
    template = Template.from_stack(cdk.Stack.of(gateway))
    roles = template.find_resources("AWS::IAM::Role")
    [node_role] = [v for k, v in roles.items() if k.startswith("GatewayNodeRole")]
    arns = str(node_role["Properties"]["ManagedPolicyArns"])
    assert "AmazonEKSWorkerNodePolicy" in arns
    assert "AmazonEKS_CNI_Policy" not in arns


def test_default_asset_context_holds_everything_the_dockerfile_copies() -> None:
    """The asset sends only contract/ and runtime/: every COPY source must be inside them."""
    from pathlib import Path

    from eks_hybrid_gateway.image import ASSET_EXCLUDES, RUNTIME_DOCKERFILE, default_build_context

    root = default_build_context()
    assert root == Path(__file__).resolve().parents[2]
    dockerfile = root / RUNTIME_DOCKERFILE
    assert dockerfile.is_file()
    included = {pattern.removeprefix("!") for pattern in ASSET_EXCLUDES if pattern.startswith("!")}
    sources = [
        word
        for line in dockerfile.read_text().splitlines()
        if line.strip().upper().startswith("COPY") and "--from" not in line
        for word in line.split()[1:-1]
    ]
    assert sources, "expected COPY instructions from the build context"
    for source in sources:
        assert source.strip("./").split("/")[0] in included, source


def test_an_aws_eks_v1_cluster_owned_by_the_app_works_too(
    owned_cluster: Any, gateway_on: Any
) -> None:
    stack, vpc, cluster = owned_cluster("v1")
    gateway_on(stack, vpc, cluster)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::EKS::PodIdentityAssociation", 1)
    template.resource_count_is("AWS::EKS::Nodegroup", 1)
    template.has_resource_properties("AWS::EKS::Addon", {"AddonName": "eks-pod-identity-agent"})
    manifests = template.find_resources("Custom::AWSCDK-EKS-KubernetesResource")
    assert any("GatewayManifests" in logical_id for logical_id in manifests)


def test_remote_pod_access_opens_the_gateway_security_group(make_gateway: GatewayFactory) -> None:
    from eks_hybrid_gateway import RemotePodAccess

    alb = ec2.SecurityGroup.from_security_group_id(
        cdk.Stack(cdk.App(), "Elsewhere"), "Alb", "sg-0aaaaaaaaaaaaaaaa"
    )
    gateway = make_gateway(
        remote_pod_access=[
            RemotePodAccess(peer=ec2.Peer.ipv4("10.0.0.0/16"), port=ec2.Port.tcp(8443)),
            RemotePodAccess(peer=alb, port=ec2.Port.tcp(80), description="ALB to hybrid pods"),
        ]
    )
    template = Template.from_stack(cdk.Stack.of(gateway))
    [sg] = [
        v
        for k, v in template.find_resources("AWS::EC2::SecurityGroup").items()
        if k.startswith("Gateway")
    ]
    # CIDR peers are inline rules; a security group peer is its own ingress resource.
    rules = [
        *sg["Properties"]["SecurityGroupIngress"],
        *(
            r["Properties"]
            for r in template.find_resources("AWS::EC2::SecurityGroupIngress").values()
        ),
    ]
    ingress = sorted(
        (r.get("CidrIp") or r.get("SourceSecurityGroupId"), r["IpProtocol"], r["FromPort"])
        for r in rules
    )
    assert ingress == sorted(
        [
            ("192.168.100.0/24", "udp", 8472),
            ("10.0.0.0/16", "tcp", 32768),
            ("10.0.0.0/16", "udp", 32768),
            ("10.0.0.0/16", "tcp", 8443),
            ("sg-0aaaaaaaaaaaaaaaa", "tcp", 80),
        ]
    )
    descriptions = {r["Description"] for r in rules}
    assert "ALB to hybrid pods" in descriptions
    assert any("to remote pods via the gateway" in d for d in descriptions)
    # Egress stays VXLAN only on this group.
    assert [r["FromPort"] for r in sg["Properties"]["SecurityGroupEgress"]] == [8472]


def test_pod_identity_agent_is_a_prop(make_gateway: GatewayFactory) -> None:
    # Imported cluster: off by default (an existing add-on would fail the deployment) ...
    gateway = make_gateway()
    assert gateway.pod_identity_agent is None
    template = Template.from_stack(cdk.Stack.of(gateway))
    template.resource_count_is("AWS::EKS::Addon", 0)
    # ... and created in the gateway's scope, before the association, when asked for.
    gateway = make_gateway(install_pod_identity_agent=True)
    template = Template.from_stack(cdk.Stack.of(gateway))
    template.has_resource_properties(
        "AWS::EKS::Addon", {"AddonName": "eks-pod-identity-agent", "ClusterName": "c"}
    )
    [(agent_id, _)] = template.find_resources("AWS::EKS::Addon").items()
    [association] = template.find_resources("AWS::EKS::PodIdentityAssociation").values()
    assert agent_id in association["DependsOn"]


def test_pod_identity_agent_can_be_left_to_the_cluster_owner(
    owned_cluster: Any, gateway_on: Any
) -> None:
    stack, vpc, cluster = owned_cluster()
    gateway_on(stack, vpc, cluster, install_pod_identity_agent=False)
    Template.from_stack(stack).resource_count_is("AWS::EKS::Addon", 0)


def test_pod_monitor_is_its_own_manifest_after_the_gateway(make_gateway: GatewayFactory) -> None:
    from eks_hybrid_gateway import GatewayPodMonitor

    gateway = make_gateway()
    stack = cdk.Stack.of(gateway)
    monitor = GatewayPodMonitor(stack, "Monitoring", gateway=gateway)
    template = Template.from_stack(stack).to_json()
    manifests = {
        k: v
        for k, v in template["Resources"].items()
        if v["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
    }
    [monitor_id] = [k for k in manifests if k.startswith("Monitoring")]
    [gateway_id] = [k for k in manifests if k.startswith("GatewayManifests")]
    assert gateway_id in manifests[monitor_id]["DependsOn"]
    assert "PodMonitor" in str(manifests[monitor_id]["Properties"]["Manifest"])
    assert "PodMonitor" not in str(manifests[gateway_id]["Properties"]["Manifest"])
    assert monitor.chart.namespace_name == gateway.chart.namespace_name


def test_auto_mode_clusters_get_no_agent_add_on(owned_cluster: Any, gateway_on: Any) -> None:
    """EKS Auto Mode has the Pod Identity agent built in (EKS user guide, pod-id-agent-setup)."""
    from eks_hybrid_gateway import CapacityType

    stack, vpc, cluster = owned_cluster()
    gateway = gateway_on(stack, vpc, cluster, capacity_type=CapacityType.AUTO_MODE)
    assert gateway.pod_identity_agent is None
    Template.from_stack(stack).resource_count_is("AWS::EKS::Addon", 0)


def test_the_security_group_admits_replies_from_every_vpc_cidr_to_pod_client_ports(
    make_gateway: GatewayFactory,
) -> None:
    """A reply to a connection a hybrid pod opened may come back through another gateway's
    ENI than its request left by, where nothing was tracked (security groups track per ENI):
    TCP and UDP from every VPC CIDR to the hybrid pods' client ports (Linux's default
    ip_local_port_range), and nothing wider."""
    gateway = make_gateway(vpc_cidrs=["10.0.0.0/16", "10.1.0.0/16"])
    template = Template.from_stack(cdk.Stack.of(gateway))
    [sg] = [
        v
        for k, v in template.find_resources("AWS::EC2::SecurityGroup").items()
        if k.startswith("Gateway")
    ]
    replies = sorted(
        (r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"])
        for r in sg["Properties"]["SecurityGroupIngress"]
        if r["FromPort"] != 8472
    )
    assert replies == [
        ("10.0.0.0/16", "tcp", 32768, 60999),
        ("10.0.0.0/16", "udp", 32768, 60999),
        ("10.1.0.0/16", "tcp", 32768, 60999),
        ("10.1.0.0/16", "udp", 32768, 60999),
    ]
    assert all("'" not in r["Description"] for r in sg["Properties"]["SecurityGroupIngress"])
