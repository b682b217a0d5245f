"""Each example as deployed: the compute and add-ons its gateway nodes depend on, the route
tables it programs, and what a security review looks at (encryption, logs).

Compute facts come from aws-cdk-lib's aws-eks-v2/lib/cluster.ts: Auto Mode is on unless
`defaultCapacityType` is EC2 or NODEGROUP (`isValidAutoModeConfig`), and then `ComputeConfig`,
`StorageConfig.BlockStorage` and `KubernetesNetworkConfig.ElasticLoadBalancing` are enabled.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

NEW = "HybridGatewayNewCluster"
AUTO = "HybridGatewayAutoMode"
PLATFORM_CLUSTER = "HybridGatewayPlatformCluster"
PLATFORM_GATEWAY = "HybridGatewayPlatformGateway"
EXISTING = "HybridGatewayExistingCluster"
NODEGROUP_CLUSTERS = [NEW, PLATFORM_CLUSTER]


def _cluster(template: dict[str, Any], cfn: Any) -> dict[str, Any]:
    _, cluster = cfn.single(cfn.resources_of_type(template, "AWS::EKS::Cluster"))
    props: dict[str, Any] = cluster["Properties"]
    return props


def _addons(template: dict[str, Any], cfn: Any) -> dict[str, str]:
    """Add-on name -> logical ID."""
    return {
        v["Properties"]["AddonName"]: k
        for k, v in cfn.resources_of_type(template, "AWS::EKS::Addon")
    }


def _gateway_env(template: dict[str, Any], cfn: Any) -> dict[str, str]:
    objects = cfn.manifest_objects(template, "HybridGatewayManifests")
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e.get("value") for e in env}


@pytest.mark.parametrize("stack", NODEGROUP_CLUSTERS)
def test_managed_node_group_example_is_not_auto_mode(
    synthesized: Any, cfn: Any, stack: str
) -> None:
    cluster = _cluster(synthesized.templates[stack], cfn)
    assert cluster["ComputeConfig"] == {"Enabled": False}
    assert cluster["StorageConfig"] == {"BlockStorage": {"Enabled": False}}
    assert cluster["KubernetesNetworkConfig"]["ElasticLoadBalancing"] == {"Enabled": False}
    # The app manages the networking add-ons; EKS installs no unmanaged copies beside them.
    assert cluster["BootstrapSelfManagedAddons"] is False


@pytest.mark.parametrize("stack", NODEGROUP_CLUSTERS)
def test_nodes_get_the_add_ons_they_need_before_they_start(
    synthesized: Any, cfn: Any, stack: str
) -> None:
    template = synthesized.templates[stack]
    addons = _addons(template, cfn)
    assert {"vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent"} <= set(addons)
    nodegroups = dict(cfn.resources_of_type(template, "AWS::EKS::Nodegroup"))
    [system_id] = [k for k in nodegroups if k.startswith("ClusterNodegroupSystem")]
    system = nodegroups[system_id]
    # Without vpc-cni and kube-proxy a node never becomes Ready.
    assert {addons["vpc-cni"], addons["kube-proxy"]} <= set(system["DependsOn"])
    # CoreDNS is a Deployment: it needs a node that tolerates it, i.e. not a gateway node.
    assert system_id in template["Resources"][addons["coredns"]]["DependsOn"]
    assert system["Properties"]["AmiType"] == "AL2023_x86_64_STANDARD"
    assert "Taints" not in system["Properties"]
    assert system["Properties"]["ScalingConfig"]["MinSize"] >= 2


def test_gateway_nodes_wait_for_node_networking(synthesized: Any, cfn: Any) -> None:
    template = synthesized.templates[NEW]
    addons = _addons(template, cfn)
    [(_, nodegroup)] = [
        (k, v)
        for k, v in cfn.resources_of_type(template, "AWS::EKS::Nodegroup")
        if k.startswith("HybridGateway")
    ]
    assert {addons["vpc-cni"], addons["kube-proxy"]} <= set(nodegroup["DependsOn"])


def test_auto_mode_example_is_auto_mode_without_node_groups(synthesized: Any, cfn: Any) -> None:
    template = synthesized.templates[AUTO]
    cluster = _cluster(template, cfn)
    assert cluster["ComputeConfig"]["Enabled"] is True
    assert cluster["ComputeConfig"]["NodePools"] == ["system", "general-purpose"]
    assert cluster["KubernetesNetworkConfig"]["ElasticLoadBalancing"] == {"Enabled": True}
    assert "BootstrapSelfManagedAddons" not in cluster
    assert not cfn.resources_of_type(template, "AWS::EKS::Nodegroup")
    # Auto Mode runs networking and the Pod Identity agent itself (EKS user guide,
    # pod-id-agent-setup: "built into EKS Auto Mode"): no add-ons.
    assert _addons(template, cfn) == {}
    capacity = cfn.manifest_objects(template, "HybridGatewayCapacity")
    assert {o["kind"] for o in capacity} == {"NodeClass", "NodePool"}


@pytest.mark.parametrize("stack", [NEW, AUTO, PLATFORM_CLUSTER])
def test_every_subnet_route_table_of_the_cluster_is_programmed(
    synthesized: Any, cfn: Any, stack: str
) -> None:
    """The cluster's ENIs and load balancers use public and private subnets (aws-eks-v2's
    default `vpcSubnets`), so the leader must own every one of their route tables."""
    cluster_template = synthesized.templates[stack]
    gateway_template = synthesized.templates[
        PLATFORM_GATEWAY if stack == PLATFORM_CLUSTER else stack
    ]
    cluster_subnets = _cluster(cluster_template, cfn)["ResourcesVpcConfig"]["SubnetIds"]
    associations = [
        v["Properties"]
        for _, v in cfn.resources_of_type(cluster_template, "AWS::EC2::SubnetRouteTableAssociation")
    ]
    tables_of_cluster_subnets = {
        a["RouteTableId"]["Ref"] for a in associations if a["SubnetId"] in cluster_subnets
    }
    assert len(cluster_subnets) == 4  # 2 public + 2 private
    env = _gateway_env(gateway_template, cfn)
    programmed = set(env["ROUTE_TABLE_IDS"].split(","))
    if stack == PLATFORM_CLUSTER:
        # Across stacks the IDs arrive as imports of the cluster stack's outputs.
        exports = {
            o["Export"]["Name"]: o["Value"]["Ref"]
            for o in cluster_template["Outputs"].values()
            if "Ref" in o["Value"]
        }
        programmed = {
            exports[name.removeprefix("<ImportValue:").rstrip(">")] for name in programmed
        }
    else:
        programmed = {name.removeprefix("<Ref:").rstrip(">") for name in programmed}
    assert programmed == tables_of_cluster_subnets


def test_existing_cluster_example_programs_public_and_private_tables(
    synthesized: Any, cfn: Any
) -> None:
    env = _gateway_env(synthesized.templates[EXISTING], cfn)
    assert sorted(env["ROUTE_TABLE_IDS"].split(",")) == [
        f"rtb-0123456789abcdef{i}" for i in range(4)
    ]


@pytest.mark.parametrize("stack", [NEW, AUTO, PLATFORM_CLUSTER])
def test_secrets_and_logs_are_encrypted_with_the_cluster_key(
    synthesized: Any, cfn: Any, stack: str
) -> None:
    template = synthesized.templates[stack]
    keys = {
        key_id: key
        for key_id, key in cfn.resources_of_type(template, "AWS::KMS::Key")
        if key_id.startswith("ClusterKey")
    }
    key_id, key = cfn.single(keys.items())
    assert key["Properties"]["EnableKeyRotation"] is True
    cluster = _cluster(template, cfn)
    [encryption] = cluster["EncryptionConfig"]
    assert encryption == {
        "Provider": {"KeyArn": {"Fn::GetAtt": [key_id, "Arn"]}},
        "Resources": ["secrets"],
    }
    assert sorted(t["Type"] for t in cluster["Logging"]["ClusterLogging"]["EnabledTypes"]) == [
        "api",
        "audit",
        "authenticator",
        "controllerManager",
        "scheduler",
    ]
    groups = [
        (group_id, group)
        for group_id, group in cfn.resources_of_type(template, "AWS::Logs::LogGroup")
        if "RouteCleanup" not in group_id  # retained, with its own retained key (below)
    ]
    # VPC flow logs and the control plane's
    assert len(groups) == 2
    for _, group in groups:
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        assert group["Properties"]["RetentionInDays"] == 365
    [logs_statement] = [
        st
        for st in key["Properties"]["KeyPolicy"]["Statement"]
        if st["Principal"] == {"Service": "logs.us-west-2.amazonaws.com"}
    ]
    assert cfn.render(logs_statement["Condition"]) == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": (
                "arn:<Ref:AWS::Partition>:logs:us-west-2:123456789012:log-group:*"
            )
        }
    }
    assert "kms:GenerateDataKey*" in logs_statement["Action"]
    # The control plane's log group is the one EKS writes to: /aws/eks/<cluster name>/cluster.
    names = [
        g["Properties"]["LogGroupName"] for _, g in groups if "LogGroupName" in g["Properties"]
    ]
    assert names == [{"Fn::Join": ["", ["/aws/eks/", cluster["Name"], "/cluster"]]}]


@pytest.mark.parametrize("stack", [NEW, AUTO, PLATFORM_CLUSTER])
def test_the_cluster_name_is_new_with_every_stack_creation(
    synthesized: Any, cfn: Any, stack: str
) -> None:
    """EKS recreates /aws/eks/<name>/cluster after a deletion or a create rollback
    (terraform-aws-eks #2486, #2763, #2446): a cluster name fixed per stack would make the next
    deployment's pre-created log group fail with "already exists". The name ends in the first
    block of the stack ID's UUID, which changes with every creation."""
    name = _cluster(synthesized.templates[stack], cfn)["Name"]
    stack_uuid = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}
    assert name == {
        "Fn::Join": [
            "-",
            [stack, {"Fn::Select": [0, {"Fn::Split": ["-", stack_uuid]}]}],
        ]
    }


def test_the_retained_route_cleanup_logs_stay_readable(synthesized: Any, cfn: Any) -> None:
    """The route cleanup's log group outlives the stack, and so does the key encrypting it."""
    template = synthesized.templates[NEW]
    [(_, group)] = [
        (group_id, group)
        for group_id, group in cfn.resources_of_type(template, "AWS::Logs::LogGroup")
        if "RouteCleanup" in group_id
    ]
    assert group["DeletionPolicy"] == "Retain"
    [key_id] = group["Properties"]["KmsKeyId"]["Fn::GetAtt"][:1]
    assert template["Resources"][key_id]["DeletionPolicy"] == "Retain"


def test_vpc_cni_configuration_goes_to_the_vpc_cni_add_on_only(cfn: Any) -> None:
    """Where a caller (e.g. the VPC CNI SNAT exclusion) configures the app's vpc-cni add-on."""
    import json

    import aws_cdk as cdk
    from aws_cdk.assertions import Template
    from examples.new_cluster import new_hybrid_cluster

    stack = cdk.Stack(
        cdk.App(), "S", env=cdk.Environment(account="123456789012", region="us-west-2")
    )
    made = new_hybrid_cluster(
        stack,
        vpc_cidr="10.0.0.0/16",
        remote_node_networks=["192.168.100.0/24"],
        remote_pod_networks=["10.85.0.0/16"],
        vpc_cni_configuration={"env": {"ENABLE_PREFIX_DELEGATION": "true"}},
    )
    template = Template.from_stack(stack).to_json()
    configured = {
        v["Properties"]["AddonName"]: v["Properties"].get("ConfigurationValues")
        for _, v in cfn.resources_of_type(template, "AWS::EKS::Addon")
    }
    assert json.loads(configured.pop("vpc-cni")) == {"env": {"ENABLE_PREFIX_DELEGATION": "true"}}
    assert set(configured.values()) == {None}
    assert made.addons["vpc-cni"].node.id == "Addon-vpc-cni"


@pytest.mark.parametrize("stack", [NEW, AUTO, PLATFORM_CLUSTER])
def test_the_vpc_default_security_group_admits_nothing(
    synthesized: Any, cfn: Any, stack: str
) -> None:
    template = synthesized.templates[stack]
    [(_, restrict)] = cfn.resources_of_type(template, "Custom::VpcRestrictDefaultSG")
    [(vpc_id, _)] = cfn.resources_of_type(template, "AWS::EC2::VPC")
    assert restrict["Properties"]["DefaultSecurityGroupId"] == {
        "Fn::GetAtt": [vpc_id, "DefaultSecurityGroup"]
    }


def test_new_cluster_example_sets_up_the_hybrid_side_and_removes_its_routes(
    synthesized: Any, cfn: Any
) -> None:
    """The example a platform team copies first is complete: Cilium with VTEP on the hybrid
    nodes, the SNAT exclusion on the managed vpc-cni add-on, and route cleanup on deletion."""
    template = synthesized.templates[NEW]
    addons = _addons(template, cfn)
    vpc_cni = template["Resources"][addons["vpc-cni"]]["Properties"]
    configuration = json.loads(vpc_cni["ConfigurationValues"])
    remote_pod_networks = _gateway_env(template, cfn)["POD_CIDRS"].split(",")
    excluded = configuration["env"]["AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"].split(",")
    assert set(remote_pod_networks) <= set(excluded)
    [(_, cilium)] = cfn.resources_of_type(template, "Custom::AWSCDK-EKS-HelmChart")
    assert cilium["Properties"]["Release"] == "cilium"
    assert json.loads(cilium["Properties"]["Values"])["vtep"]["enabled"] is True
    [(_, cleanup)] = cfn.resources_of_type(template, "Custom::HybridGatewayRouteCleanup")
    assert set(cleanup["Properties"]["PodCidrs"]) == set(remote_pod_networks)
