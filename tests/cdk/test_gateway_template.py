"""Fine-grained assertions on the synthesized CloudFormation of `HybridNodesGateway`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

import hybrid_gateway_contract as contract

NEW = "HybridGatewayNewCluster"
EXISTING = "HybridGatewayExistingCluster"
AUTO = "HybridGatewayAutoMode"
ASSET = "AssetImage"


@pytest.fixture(scope="module")
def new(synthesized: Any) -> dict[str, Any]:
    template: dict[str, Any] = synthesized.templates[NEW]
    return template


@pytest.fixture(scope="module")
def existing(synthesized: Any) -> dict[str, Any]:
    template: dict[str, Any] = synthesized.templates[EXISTING]
    return template


@pytest.fixture(scope="module")
def auto(synthesized: Any) -> dict[str, Any]:
    template: dict[str, Any] = synthesized.templates[AUTO]
    return template


# --- Managed node group --------------------------------------------------------------------------
def test_node_group_is_labelled_tainted_and_sized(new: dict[str, Any], cfn: Any) -> None:
    Template.from_json(new).has_resource_properties(
        "AWS::EKS::Nodegroup",
        {
            "Labels": {contract.GATEWAY_NODE_LABEL_KEY: "true"},
            "Taints": [
                {"Key": contract.GATEWAY_NODE_TAINT_KEY, "Value": "true", "Effect": "NO_SCHEDULE"}
            ],
            "ScalingConfig": {"MinSize": 2, "DesiredSize": 2, "MaxSize": 2},
            "InstanceTypes": ["c6in.xlarge"],
            "AmiType": "AL2023_x86_64_STANDARD",
            "CapacityType": "ON_DEMAND",
            "LaunchTemplate": {"Id": Match.any_value(), "Version": Match.any_value()},
        },
    )


def test_node_group_spans_two_private_subnets(new: dict[str, Any], cfn: Any) -> None:
    _, nodegroup = _gateway_nodegroup(new, cfn)
    subnet_refs = [s["Ref"] for s in nodegroup["Properties"]["Subnets"]]
    assert len(subnet_refs) == 2
    zones = {new["Resources"][ref]["Properties"]["AvailabilityZone"] for ref in subnet_refs}
    assert zones == {"us-west-2a", "us-west-2b"}
    assert all("Private" in ref for ref in subnet_refs)


def test_graviton_instance_type_picks_the_arm_ami(synthesized: Any, cfn: Any) -> None:
    _, nodegroup = cfn.single(
        cfn.resources_of_type(synthesized.templates[ASSET], "AWS::EKS::Nodegroup")
    )
    assert nodegroup["Properties"]["AmiType"] == "AL2023_ARM_64_STANDARD"
    assert nodegroup["Properties"]["InstanceTypes"] == ["c7gn.xlarge"]


def test_launch_template_requires_imdsv2_with_one_hop(new: dict[str, Any], cfn: Any) -> None:
    tags = [
        {"Key": contract.GATEWAY_NODE_LABEL_KEY, "Value": "true"},
        {"Key": "hybrid-gateway-cluster", "Value": Match.any_value()},
    ]
    Template.from_json(new).has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": {
                "MetadataOptions": {
                    "HttpEndpoint": "enabled",
                    "HttpTokens": "required",
                    "HttpPutResponseHopLimit": 1,
                },
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/xvda", "Ebs": Match.object_like({"Encrypted": True})}
                ],
                # The interface tags are what the node role's ModifyNetworkInterfaceAttribute
                # is conditioned on.
                "TagSpecifications": [
                    {"ResourceType": "instance", "Tags": tags},
                    {"ResourceType": "network-interface", "Tags": tags},
                ],
            }
        },
    )
    _, launch_template = cfn.single(cfn.resources_of_type(new, "AWS::EC2::LaunchTemplate"))
    data = launch_template["Properties"]["LaunchTemplateData"]
    # No instance profile: EKS managed node groups reject one in the launch template.
    assert "IamInstanceProfile" not in data
    cluster_tag = data["TagSpecifications"][1]["Tags"][1]["Value"]
    [(cluster_id, _)] = cfn.resources_of_type(new, "AWS::EKS::Cluster")
    assert cluster_tag == {"Ref": cluster_id}


def test_launch_template_keeps_the_cluster_security_group(
    existing: dict[str, Any], cfn: Any
) -> None:
    _, launch_template = cfn.single(cfn.resources_of_type(existing, "AWS::EC2::LaunchTemplate"))
    groups = launch_template["Properties"]["LaunchTemplateData"]["SecurityGroupIds"]
    gateway_sg, _ = cfn.single(cfn.resources_of_type(existing, "AWS::EC2::SecurityGroup"))
    assert groups == ["sg-0123456789abcdef0", {"Fn::GetAtt": [gateway_sg, "GroupId"]}]


def test_node_role_managed_policies(new: dict[str, Any], cfn: Any) -> None:
    node_roles = [
        role
        for logical_id, role in cfn.resources_of_type(new, "AWS::IAM::Role")
        if logical_id.startswith("HybridGatewayNodeRole")
    ]
    [role] = node_roles
    names = sorted(
        cfn.render(arn).rsplit("/", 1)[-1] for arn in role["Properties"]["ManagedPolicyArns"]
    )
    assert names == [
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
    ]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }


# --- Security group -----------------------------------------------------------------------------
def test_security_group_allows_vxlan_both_ways_the_return_path_and_nothing_else(
    auto: dict[str, Any], cfn: Any
) -> None:
    _, sg = cfn.single(
        (k, v)
        for k, v in cfn.resources_of_type(auto, "AWS::EC2::SecurityGroup")
        if k.startswith("HybridGateway")
    )
    props = sg["Properties"]
    networks = ["192.168.100.0/24", "192.168.101.0/24"]
    vxlan = [(n, "udp", 8472, 8472) for n in networks]
    # Replies to connections hybrid pods opened may arrive on the other gateway's ENI
    # (hybrid_gateway_contract.security_groups): TCP and UDP from the VPC to client ports only.
    [vpc_cidr] = {r["CidrIp"] for r in props["SecurityGroupIngress"] if r["CidrIp"] not in networks}
    return_path = [(vpc_cidr, protocol, 32768, 60999) for protocol in ("tcp", "udp")]
    assert sorted(
        (r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"])
        for r in props["SecurityGroupIngress"]
    ) == sorted(vxlan + return_path)
    assert (
        sorted(
            (r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"])
            for r in props["SecurityGroupEgress"]
        )
        == vxlan
    )
    assert not any(r["CidrIp"] == "0.0.0.0/0" for r in props["SecurityGroupEgress"])


# --- Pod IAM role through Pod Identity ------------------------------------------------------------
def _gateway_resource(
    template: dict[str, Any], cfn: Any, cfn_type: str, id_prefix: str
) -> tuple[str, dict[str, Any]]:
    """The one resource of `cfn_type` whose logical ID starts with `id_prefix`."""
    found: tuple[str, dict[str, Any]] = cfn.single(
        (k, v) for k, v in cfn.resources_of_type(template, cfn_type) if k.startswith(id_prefix)
    )
    return found


def _pod_role(template: dict[str, Any], cfn: Any) -> tuple[str, dict[str, Any]]:
    return _gateway_resource(template, cfn, "AWS::IAM::Role", "HybridGatewayPodRole")


def _pod_statements(template: dict[str, Any], cfn: Any) -> dict[str, dict[str, Any]]:
    role_id, _ = _pod_role(template, cfn)
    [policy] = [
        p
        for _, p in cfn.resources_of_type(template, "AWS::IAM::Policy")
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_pod_role_trusts_eks_pod_identity(new: dict[str, Any], cfn: Any) -> None:
    _, role = _pod_role(new, cfn)
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]


def test_route_writes_are_scoped_to_owned_route_tables(existing: dict[str, Any], cfn: Any) -> None:
    statements = _pod_statements(existing, cfn)
    write = statements["ProgramOwnedRouteTables"]
    assert sorted(write["Action"]) == ["ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute"]
    arn = "arn:<Ref:AWS::Partition>:ec2:us-west-2:123456789012:route-table/"
    assert sorted(cfn.render(r) for r in write["Resource"]) == [
        f"{arn}rtb-0123456789abcdef{i}" for i in range(4)
    ]
    describe = statements["DescribeRoutingState"]
    assert sorted(describe["Action"]) == ["ec2:DescribeInstances", "ec2:DescribeRouteTables"]
    assert describe["Resource"] == "*"
    assert set(statements) == {"ProgramOwnedRouteTables", "DescribeRoutingState"}


def test_default_route_tables_are_all_of_the_vpc(new: dict[str, Any], cfn: Any) -> None:
    write = _pod_statements(new, cfn)["ProgramOwnedRouteTables"]
    tables = sorted(cfn.render(r).rsplit("/", 1)[-1] for r in write["Resource"])
    expected = sorted(f"<Ref:{k}>" for k, _ in cfn.resources_of_type(new, "AWS::EC2::RouteTable"))
    assert tables == expected
    assert len(tables) == 4  # 2 public + 2 private subnets


def test_no_cloudformation_routes_to_the_pod_networks(new: dict[str, Any], cfn: Any) -> None:
    destinations = [
        r["Properties"].get("DestinationCidrBlock")
        for _, r in cfn.resources_of_type(new, "AWS::EC2::Route")
    ]
    assert destinations, "the VPC's own default routes should be there"
    assert "10.85.0.0/16" not in destinations


def test_pod_identity_association(new: dict[str, Any], cfn: Any) -> None:
    role_id, _ = _pod_role(new, cfn)
    _, association = cfn.single(cfn.resources_of_type(new, "AWS::EKS::PodIdentityAssociation"))
    props = association["Properties"]
    assert props["Namespace"] == contract.DEFAULT_NAMESPACE
    assert props["ServiceAccount"] == contract.DEFAULT_SERVICE_ACCOUNT
    assert props["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert "Ref" in props["ClusterName"]
    # The agent add-on comes with a cluster owned by the app, and precedes the association.
    [agent_id] = [
        k
        for k, v in cfn.resources_of_type(new, "AWS::EKS::Addon")
        if v["Properties"]["AddonName"] == "eks-pod-identity-agent"
    ]
    assert agent_id in association.get("DependsOn", [])


def test_imported_cluster_gets_no_agent_add_on(existing: dict[str, Any], cfn: Any) -> None:
    assert not cfn.resources_of_type(existing, "AWS::EKS::Addon")
    _, association = cfn.single(cfn.resources_of_type(existing, "AWS::EKS::PodIdentityAssociation"))
    assert association["Properties"]["ClusterName"] == "hybrid-cluster"


# --- Kubernetes manifests -------------------------------------------------------------------------
def test_manifest_waits_for_identity_and_capacity(new: dict[str, Any], cfn: Any) -> None:
    manifest_id, manifest = cfn.single(
        (k, v)
        for k, v in cfn.resources_of_type(new, "Custom::AWSCDK-EKS-KubernetesResource")
        if "HybridGatewayManifests" in k
    )
    depends = manifest.get("DependsOn", [])
    association_id, _ = cfn.single(cfn.resources_of_type(new, "AWS::EKS::PodIdentityAssociation"))
    nodegroup_id, _ = _gateway_nodegroup(new, cfn)
    barrier = [k for k in depends if k.startswith("ClusterKubectlReadyBarrier")]
    assert association_id in depends
    assert nodegroup_id in depends
    assert barrier, "the manifest waits for the cluster's kubectl barrier"
    assert manifest_id.startswith("HybridGateway"), "the gateway owns its manifest"


def test_manifest_env_carries_the_stack_values(existing: dict[str, Any], cfn: Any) -> None:
    objects = cfn.manifest_objects(existing, "HybridGatewayManifests")
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VPC_CIDR"] == "10.1.0.0/16"
    assert env["POD_CIDRS"] == "10.85.0.0/16"
    # Public and private subnets' tables: the cluster's load balancers use both.
    assert env["ROUTE_TABLE_IDS"] == ",".join(
        [
            "rtb-0123456789abcdef2",
            "rtb-0123456789abcdef3",
            "rtb-0123456789abcdef0",
            "rtb-0123456789abcdef1",
        ]
    )
    assert env["AWS_REGION"] == "us-west-2"
    assert container["image"].endswith("eks-hybrid-nodes-gateway:0.1.0")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Role",  # get on kube-system/cilium-config (the Cilium agents' vtep-mask)
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
        ]
    )


def test_new_cluster_manifest_resolves_the_vpc_cidr_and_route_tables(
    new: dict[str, Any], cfn: Any
) -> None:
    objects = cfn.manifest_objects(new, "HybridGatewayManifests")
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    # The CIDR of a VPC defined in the app is known at synth time, so it is validated too.
    assert env["VPC_CIDR"] == "10.0.0.0/16"
    tables = env["ROUTE_TABLE_IDS"].split(",")
    assert sorted(tables) == sorted(
        f"<Ref:{k}>" for k, _ in cfn.resources_of_type(new, "AWS::EC2::RouteTable")
    )
    assert {o["kind"] for o in objects} >= {"Service"}  # the example exposes metrics


# --- Auto Mode ---------------------------------------------------------------------------------
def test_auto_mode_uses_a_node_pool_instead_of_a_node_group(auto: dict[str, Any], cfn: Any) -> None:
    assert not cfn.resources_of_type(auto, "AWS::EKS::Nodegroup")
    assert not cfn.resources_of_type(auto, "AWS::EC2::LaunchTemplate")
    _, entry = cfn.single(
        (k, v)
        for k, v in cfn.resources_of_type(auto, "AWS::EKS::AccessEntry")
        if k.startswith("HybridGateway")
    )
    assert entry["Properties"]["Type"] == "EC2"
    [policy] = cfn.render(entry["Properties"]["AccessPolicies"])
    assert policy == {
        "AccessScope": {"Type": "cluster"},
        "PolicyArn": (
            "arn:<Ref:AWS::Partition>:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy"
        ),
    }
    capacity = cfn.manifest_objects(auto, "HybridGatewayCapacity")
    node_class = next(o for o in capacity if o["kind"] == "NodeClass")
    assert node_class["spec"]["advancedNetworking"] == {"sourceDestCheck": "DisabledPrimaryENI"}
    assert len(node_class["spec"]["securityGroupSelectorTerms"]) == 2
    gateway = cfn.manifest_objects(auto, "HybridGatewayManifests")
    [deployment] = [o for o in gateway if o["kind"] == "Deployment"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    # Only built-in kinds in the gateway's manifest: no CRD can fail it.
    assert {o["kind"] for o in gateway} >= {"Service"}
    assert not any(o["apiVersion"].startswith("monitoring.coreos.com") for o in gateway)
    # The node role gets no ENI permission: Auto Mode turns the check off itself.
    statements = [
        s
        for _, p in cfn.resources_of_type(auto, "AWS::IAM::Policy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert not any(
        "ec2:Modify" in str(s.get("Action")) and "Attribute" in str(s.get("Action"))
        for s in statements
    )


# --- Image asset -------------------------------------------------------------------------------
def test_asset_image_is_built_from_the_runtime_dockerfile(synthesized: Any, cfn: Any) -> None:
    images = synthesized.assets[ASSET]["dockerImages"]
    [(asset_hash, image)] = list(images.items())
    source = image["source"]
    assert source["dockerFile"] == "runtime/Dockerfile"
    assert source["platform"] == "linux/arm64"
    staged = synthesized.outdir / source["directory"]
    assert (staged / "runtime" / "Dockerfile").is_file()
    assert (staged / "contract" / "c.py").is_file()
    assert not (staged / "unrelated.txt").exists(), "build context must hold only what it needs"
    objects = cfn.manifest_objects(synthesized.templates[ASSET], "HybridGatewayManifests")
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(asset_hash)


def test_registry_image_creates_no_asset(synthesized: Any, cfn: Any) -> None:
    assert not synthesized.assets[EXISTING].get("dockerImages")


def test_manifest_json_is_valid_for_every_stack(synthesized: Any, cfn: Any) -> None:
    for name in (NEW, EXISTING, AUTO, ASSET):
        objects = cfn.manifest_objects(synthesized.templates[name], "HybridGatewayManifests")
        assert json.loads(json.dumps(objects)) == objects
        assert any(o["kind"] == "Deployment" for o in objects)


def _gateway_nodegroup(template: dict[str, Any], cfn: Any) -> tuple[str, dict[str, Any]]:
    return _gateway_resource(template, cfn, "AWS::EKS::Nodegroup", "HybridGateway")


def test_user_data_is_the_packaged_boot_script(new: dict[str, Any], cfn: Any) -> None:
    from eks_hybrid_gateway.capacity import boot_script

    _, launch_template = cfn.single(cfn.resources_of_type(new, "AWS::EC2::LaunchTemplate"))
    user_data = launch_template["Properties"]["LaunchTemplateData"]["UserData"]
    assert "Fn::Base64" in user_data
    rendered = cfn.render(user_data)
    assert "Content-Type: multipart/mixed" in rendered
    script = boot_script()
    assert script.strip() in rendered
    # The primary ENI, not the instance attribute (AWS getting-started page of the gateway).
    assert "modify-network-interface-attribute" in script
    assert "--no-source-dest-check" in script
    assert "modify-instance-attribute" not in script


def test_node_role_may_modify_interfaces_in_the_vpc_of_tagged_gateway_instances(
    new: dict[str, Any], cfn: Any
) -> None:
    """A managed node group does not apply the launch template's network-interface tags
    (aws/containers-roadmap#1496), so no statement may depend on interface tags: interfaces
    are scoped by the VPC, the instances they are attached to by the instance tags."""
    policy_id, policy = cfn.single(
        (k, v)
        for k, v in cfn.resources_of_type(new, "AWS::IAM::Policy")
        if k.startswith("HybridGatewaySourceDestCheckPolicy")
    )
    interfaces, instances = policy["Properties"]["PolicyDocument"]["Statement"]
    for statement in (interfaces, instances):
        assert statement["Action"] == "ec2:ModifyNetworkInterfaceAttribute"
    assert interfaces["Sid"] == "DisableOwnSourceDestCheck"
    assert cfn.render(interfaces["Resource"]) == (
        "arn:<Ref:AWS::Partition>:ec2:us-west-2:123456789012:network-interface/*"
    )
    [(vpc_id, _)] = cfn.resources_of_type(new, "AWS::EC2::VPC")
    assert cfn.render(interfaces["Condition"]) == {
        "StringEquals": {
            "ec2:Vpc": f"arn:<Ref:AWS::Partition>:ec2:us-west-2:123456789012:vpc/<Ref:{vpc_id}>"
        }
    }
    assert cfn.render(instances["Resource"]) == (
        "arn:<Ref:AWS::Partition>:ec2:us-west-2:123456789012:instance/*"
    )
    conditions = instances["Condition"]["StringEquals"]
    assert conditions[f"aws:ResourceTag/{contract.GATEWAY_NODE_LABEL_KEY}"] == "true"
    [(cluster_id, _)] = cfn.resources_of_type(new, "AWS::EKS::Cluster")
    assert conditions["aws:ResourceTag/hybrid-gateway-cluster"] == {"Ref": cluster_id}
    # The launch template tags the instances with exactly what the condition asks for.
    _, launch_template = cfn.single(cfn.resources_of_type(new, "AWS::EC2::LaunchTemplate"))
    [instance_tags] = [
        spec["Tags"]
        for spec in launch_template["Properties"]["LaunchTemplateData"]["TagSpecifications"]
        if spec["ResourceType"] == "instance"
    ]
    assert {t["Key"]: t["Value"] for t in instance_tags} == {
        key.removeprefix("aws:ResourceTag/"): value for key, value in conditions.items()
    }
    role_id, _ = cfn.single(
        (k, v)
        for k, v in cfn.resources_of_type(new, "AWS::IAM::Role")
        if k.startswith("HybridGatewayNodeRole")
    )
    assert policy["Properties"]["Roles"] == [{"Ref": role_id}]
    # The nodes boot only once their role may change their interface.
    _, nodegroup = _gateway_nodegroup(new, cfn)
    assert policy_id in nodegroup["DependsOn"]
    statements = [
        s
        for _, p in cfn.resources_of_type(new, "AWS::IAM::Policy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert not any("ec2:ModifyInstanceAttribute" in str(s["Action"]) for s in statements)
