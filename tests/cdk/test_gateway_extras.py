"""The opt-in parts around the gateway: hybrid-side Cilium, the VPC CNI SNAT exclusion and the
route cleanup on stack deletion. Templates asserted; cdk-nag and cfn-lint run over them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aws_cdk as cdk
import cfnlint.api
import pytest
from aws_cdk import aws_eks as eks
from aws_cdk import aws_eks_v2 as eks_v2

from eks_hybrid_gateway import (
    KUBERNETES_VERSION,
    CapacityType,
    GatewayImage,
    GatewayMode,
    HybridGatewayConfigError,
    HybridNodesGateway,
    cilium_helm_values,
)
from eks_hybrid_gateway.hybrid_cilium import EKS_CILIUM_CHART_REPOSITORY, HybridCiliumOptions
from eks_hybrid_gateway.route_cleanup import RESOURCE_TYPE, GatewayRouteCleanup

GatewayFactory = Callable[..., HybridNodesGateway]
ACCOUNT = "123456789012"
REGION = "us-west-2"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/eks-hybrid-nodes-gateway:0.1.0"
POD_NETWORKS = ["10.85.0.0/16"]
SNAT = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"
HELM_TYPE = "Custom::AWSCDK-EKS-HelmChart"
MANIFEST_TYPE = "Custom::AWSCDK-EKS-KubernetesResource"
ACTIVE_ACTIVE = "ExtrasActiveActive"
ACTIVE_POD_NETWORKS = ["10.85.0.0/16", "10.86.0.0/16"]


@dataclass
class Assembly:
    outdir: Path
    templates: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def extras(
    tmp_path_factory: pytest.TempPathFactory,
    imported_vpc_and_cluster: Callable[[Any], tuple[Any, Any]],
    synth_checked: Callable[[Any, Path], Any],
) -> Assembly:
    """One app, cdk-nag on: a new aws_eks_v2 cluster (managed node groups) with its vpc-cni
    Addon and every extra on, an imported aws_eks cluster with an L1 vpc-cni add-on, Auto
    Mode capacity and every extra on, and an imported aws_eks cluster with an active-active
    gateway (3 replicas, 8 shards, route cleanup on)."""
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer
    from cdk_nag import AwsSolutionsChecks
    from examples.nag import KUBECTL_PROVIDER_FINDINGS, kubectl_provider_wiring_findings

    from eks_hybrid_gateway.nag import acknowledge_all

    outdir = tmp_path_factory.mktemp("extras.out")
    app = cdk.App(outdir=str(outdir))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    env = cdk.Environment(account=ACCOUNT, region=REGION)

    new = cdk.Stack(app, "ExtrasNewCluster", env=env)
    vpc = ec2.Vpc(
        new,
        "Vpc",
        ip_addresses=ec2.IpAddresses.cidr("10.2.0.0/16"),
        max_azs=2,
        flow_logs={"all": ec2.FlowLogOptions()},
    )
    cluster = eks_v2.Cluster(
        new,
        "Cluster",
        version=eks_v2.KubernetesVersion.V1_35,
        vpc=vpc,
        default_capacity_type=eks_v2.DefaultCapacityType.NODEGROUP,
        default_capacity=0,
        bootstrap_self_managed_addons=False,
        kubectl_provider_options=eks_v2.KubectlProviderOptions(
            kubectl_layer=KubectlV35Layer(new, "KubectlLayer")
        ),
        remote_node_networks=[eks_v2.RemoteNodeNetwork(cidrs=["192.168.100.0/24"])],
        remote_pod_networks=[eks_v2.RemotePodNetwork(cidrs=POD_NETWORKS)],
    )
    acknowledge_all(
        cluster,
        {
            **KUBECTL_PROVIDER_FINDINGS,
            **kubectl_provider_wiring_findings(
                "ClusterKubectlProviderHandler2E05C68A",
                "ClusterKubectlProviderHandlerHasEcrPublic69E09706",
            ),
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonEKSClusterPolicy]": (
                "the EKS cluster role needs the control plane policy AWS maintains alongside EKS"
            ),
        },
    )
    addon = eks_v2.Addon(
        new,
        "VpcCni",
        addon_name="vpc-cni",
        cluster=cast(eks_v2.ICluster, cluster),
        configuration_values={"env": {"ENABLE_PREFIX_DELEGATION": "true"}},
    )
    HybridNodesGateway(
        new,
        "HybridGateway",
        cluster=cluster,
        vpc=vpc,
        remote_node_networks=["192.168.100.0/24"],
        remote_pod_networks=POD_NETWORKS,
        image=GatewayImage.from_registry(IMAGE),
        hybrid_cilium=HybridCiliumOptions(),
        vpc_cni_addon=addon,
        remove_routes_on_delete=True,
    )

    def imported_stack(name: str) -> tuple[cdk.Stack, Any, Any]:
        """A stack with the imported VPC and aws_eks cluster, its provider's findings known."""
        stack = cdk.Stack(app, name, env=env)
        acknowledge_all(
            stack,
            {
                **KUBECTL_PROVIDER_FINDINGS,
                **kubectl_provider_wiring_findings(
                    "Handler886CB40B", "HandlerHasEcrPublic195AF58A"
                ),
            },
        )
        return (stack, *imported_vpc_and_cluster(stack))

    imported, imported_vpc, imported_cluster = imported_stack("ExtrasImportedAutoMode")
    cfn_addon = eks.CfnAddon(imported, "VpcCni", addon_name="vpc-cni", cluster_name="c")
    HybridNodesGateway(
        imported,
        "HybridGateway",
        cluster=imported_cluster,
        vpc=imported_vpc,
        remote_node_networks=["192.168.100.0/24"],
        remote_pod_networks=POD_NETWORKS,
        image=GatewayImage.from_registry(IMAGE),
        capacity_type=CapacityType.AUTO_MODE,
        hybrid_cilium=HybridCiliumOptions(version="1.19.2-1", operator_replicas=2),
        vpc_cni_addon=cfn_addon,
        remove_routes_on_delete=True,
    )
    active, active_vpc, active_cluster = imported_stack(ACTIVE_ACTIVE)
    HybridNodesGateway(
        active,
        "HybridGateway",
        cluster=active_cluster,
        vpc=active_vpc,
        remote_node_networks=["192.168.100.0/24"],
        remote_pod_networks=ACTIVE_POD_NETWORKS,
        image=GatewayImage.from_registry(IMAGE),
        replicas=3,
        mode=GatewayMode.active_active(shards=8),
        remove_routes_on_delete=True,
    )
    assembly = synth_checked(app, outdir)
    return Assembly(
        outdir=outdir,
        templates={
            s.stack_name: json.loads(Path(s.template_full_path).read_text())
            for s in assembly.stacks
        },
    )


def _of_type(template: dict[str, Any], cfn_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def _one(template: dict[str, Any], cfn_type: str, id_part: str = "") -> tuple[str, Any]:
    found = [(k, v) for k, v in _of_type(template, cfn_type).items() if id_part in k]
    assert len(found) == 1, f"{cfn_type} {id_part}: {[k for k, _ in found]}"
    return found[0]


def _depends_on(resource: dict[str, Any]) -> set[str]:
    value = resource.get("DependsOn", [])
    return {value} if isinstance(value, str) else set(value)


# --- cdk-nag and cfn-lint ---------------------------------------------------------------------


def test_cdk_nag_is_clean_and_only_unscopable_findings_are_acknowledged(extras: Assembly) -> None:
    report = json.loads((extras.outdir / "validation-report.json").read_text())
    [nag] = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    cleanup_acks = {
        v["ruleName"]
        for v in nag["suppressedViolations"]
        for c in v["violatingConstructs"]
        if "/RouteCleanup/" in c["constructPath"]
    }
    handler_id = next(
        k
        for k, v in extras.templates["ExtrasNewCluster"]["Resources"].items()
        if k.startswith("HybridGatewayRouteCleanupHandler") and v["Type"] == "AWS::Lambda::Function"
    )
    assert cleanup_acks == {
        "AwsSolutions-IAM5[Resource::*]",  # Describe* support no resource-level permissions
        f"AwsSolutions-IAM5[Resource::<{handler_id}.Arn>:*]",  # the framework invokes its handler
    }


def test_cfn_lint_finds_no_errors(extras: Assembly) -> None:
    config = cfnlint.api.ManualArgs(regions=[REGION])
    files = sorted(extras.outdir.glob("*.template.json"))
    assert len(files) >= 2
    errors = {
        path.name: [
            f"{m.rule.id}: {m.message}"
            for m in cfnlint.api.lint_file(path, config=config)
            if m.rule.id.startswith("E")
        ]
        for path in files
    }
    assert errors == {path.name: [] for path in files}


# --- Route cleanup ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "capacity_type", "capacity_part"),
    [
        ("ExtrasNewCluster", "AWS::EKS::Nodegroup", "HybridGatewayNodegroup"),
        ("ExtrasImportedAutoMode", MANIFEST_TYPE, "HybridGatewayCapacity"),
    ],
)
def test_deletion_order_is_manifests_then_cleanup_then_nodes(
    extras: Assembly, stack: str, capacity_type: str, capacity_part: str
) -> None:
    """CloudFormation deletes in reverse dependency order: nodes <- cleanup <- manifests."""
    template = extras.templates[stack]
    cleanup_id, cleanup = _one(template, RESOURCE_TYPE)
    capacity_id, _ = _one(template, capacity_type, capacity_part)
    manifest_id, manifest = _one(template, MANIFEST_TYPE, "HybridGatewayManifests")
    assert capacity_id in _depends_on(cleanup)
    assert cleanup_id in _depends_on(manifest)
    assert manifest_id not in _depends_on(cleanup)
    assert cleanup["DeletionPolicy"] == "Delete"


@pytest.mark.parametrize("stack", ["ExtrasNewCluster", "ExtrasImportedAutoMode", ACTIVE_ACTIVE])
def test_the_vtep_config_owner_goes_with_the_gateway_manifest(
    extras: Assembly, cfn: Any, stack: str
) -> None:
    """The daemon makes the gateway's Namespace the CiliumVTEPConfig's owner, so Kubernetes'
    garbage collector removes the object once that Namespace is gone, i.e. after its gateway
    pods (runtime core/vtep.py `namespace_owner`). That Namespace is in the manifest the stack
    deletes first (before the route cleanup, the nodes after it), and the ClusterRole lets
    the pods read that one Namespace and still not delete the object themselves."""
    template = extras.templates[stack]
    cleanup_id, _ = _one(template, RESOURCE_TYPE)
    _, manifest = _one(template, MANIFEST_TYPE, "HybridGatewayManifests")
    assert cleanup_id in _depends_on(manifest)
    objects = cfn.manifest_objects(template, "HybridGatewayManifests")
    [namespace] = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["metadata"]["namespace"] == namespace
    [cluster_role] = [o for o in objects if o["kind"] == "ClusterRole"]
    namespace_rules = [r for r in cluster_role["rules"] if "namespaces" in r["resources"]]
    assert namespace_rules == [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": [namespace],
            "verbs": ["get"],
        }
    ]
    vtep_verbs = {
        verb
        for rule in cluster_role["rules"]
        if "ciliumvtepconfigs" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert "delete" not in vtep_verbs


def test_cleanup_properties_name_the_owned_tables_pod_networks_and_gateway_nodes(
    extras: Assembly,
) -> None:
    template = extras.templates["ExtrasImportedAutoMode"]
    _, cleanup = _one(template, RESOURCE_TYPE)
    sg_id, _ = _one(template, "AWS::EC2::SecurityGroup", "HybridGatewaySecurityGroup")
    props = cleanup["Properties"]
    assert props["RouteTableIds"] == ["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"]
    assert props["PodCidrs"] == POD_NETWORKS
    assert props["InstanceFilters"] == [
        {"Name": "instance.group-id", "Values": [{"Fn::GetAtt": [sg_id, "GroupId"]}]}
    ]
    assert (props["SettleSeconds"], props["MaxPasses"]) == ("30", "4")


def test_cleanup_may_delete_routes_only_in_the_owned_tables(extras: Assembly, cfn: Any) -> None:
    template = extras.templates["ExtrasImportedAutoMode"]
    policies = [
        v
        for k, v in _of_type(template, "AWS::IAM::Policy").items()
        if k.startswith("HybridGatewayRouteCleanupHandlerRole")
    ]
    [policy] = policies
    statements = {
        s.get("Sid", s["Action"][0]): s for s in policy["Properties"]["PolicyDocument"]["Statement"]
    }
    delete = statements["DeleteGatewayRoutes"]
    assert delete["Action"] == "ec2:DeleteRoute"
    assert cfn.render(delete["Resource"]) == [
        f"arn:<Ref:AWS::Partition>:ec2:{REGION}:{ACCOUNT}:route-table/rtb-0123456789abcdef0",
        f"arn:<Ref:AWS::Partition>:ec2:{REGION}:{ACCOUNT}:route-table/rtb-0123456789abcdef1",
    ]
    describe = statements["DescribeRoutingState"]
    assert sorted(describe["Action"]) == ["ec2:DescribeInstances", "ec2:DescribeRouteTables"]
    assert statements["OnlyOnStackDeletion"]["Resource"] == {"Ref": "AWS::StackId"}
    every_action = {
        a
        for s in statements.values()
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert every_action == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ec2:DescribeInstances",
        "ec2:DescribeRouteTables",
        "ec2:DeleteRoute",
        "cloudformation:DescribeStacks",
    }


def test_cleanup_handler_is_the_bundled_python_function(extras: Assembly) -> None:
    template = extras.templates["ExtrasNewCluster"]
    [fn] = [
        v
        for k, v in _of_type(template, "AWS::Lambda::Function").items()
        if k.startswith("HybridGatewayRouteCleanupHandler")
    ]
    assert fn["Properties"]["Handler"] == "index.on_event"
    assert fn["Properties"]["Runtime"].startswith("python3.")
    asset_hash = fn["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset = extras.outdir / f"asset.{asset_hash}"
    assert (asset / "index.py").is_file()
    assert (asset / "hybrid_gateway_contract" / "route_cleanup.py").is_file()


def test_without_the_prop_there_is_no_cleanup(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    template = cdk.assertions.Template.from_stack(cdk.Stack.of(gateway))
    assert template.find_resources(RESOURCE_TYPE) == {}
    assert gateway.route_cleanup is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"settle": cdk.Duration.minutes(5), "passes": 1},
            r"settle: 300 s x 1 passes is outside 0-240 s; .* 5-minute timeout",
        ),
        (
            {"settle": cdk.Duration.seconds(61)},
            r"settle: 61 s x 4 passes is outside 0-240 s",
        ),
        ({"passes": 0}, "passes: 0 is not between 1 and 5"),
        # The handler could not plan the shard prefixes at deletion: refused at synth.
        ({"shards": 3}, "^shards 3: must be a power of two from 2 to 64"),
    ],
)
def test_cleanup_timing_and_shards_are_validated(kwargs: dict[str, Any], message: str) -> None:
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(HybridGatewayConfigError, match=message):
        GatewayRouteCleanup(
            stack,
            "Cleanup",
            cluster_name="c",
            route_table_ids=["rtb-0123456789abcdef0"],
            pod_cidrs=POD_NETWORKS,
            instance_filters=[{"Name": "instance.group-id", "Values": ["sg-1"]}],
            **kwargs,
        )


def test_a_cleanup_log_key_deleted_with_the_stack_is_refused(
    make_gateway: GatewayFactory,
) -> None:
    """The cleanup's log group is retained: its key must outlive the stack too, else the logs
    a failed deletion leaves are unreadable. The gateway refuses before joining the tree."""
    from aws_cdk import aws_kms as kms

    stacks: list[cdk.Stack] = []
    with pytest.raises(
        HybridGatewayConfigError,
        match=r"^S/Gateway: log_encryption_key: S/Doomed is deleted with its stack "
        r"\(RemovalPolicy.DESTROY\), but the route cleanup's log group is retained",
    ):
        make_gateway(
            stacks,
            remove_routes_on_delete=True,
            log_encryption_key=kms.Key(
                cdk.Stack(cdk.App(), "S"), "Doomed", removal_policy=cdk.RemovalPolicy.DESTROY
            ),
        )
    assert stacks[0].node.try_find_child("Gateway") is None


def test_a_retained_or_imported_cleanup_log_key_is_used(make_gateway: GatewayFactory) -> None:
    from aws_cdk import aws_kms as kms

    retained = make_gateway(
        remove_routes_on_delete=True,
        log_encryption_key=kms.Key(cdk.Stack(cdk.App(), "K"), "Kept"),  # RETAIN is the default
    )
    imported = make_gateway(
        remove_routes_on_delete=True,
        log_encryption_key=kms.Key.from_key_arn(
            cdk.Stack(cdk.App(), "K"),
            "Imported",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/12345678-1234-1234-1234-123456789012",
        ),
    )
    assert retained.route_cleanup is not None and imported.route_cleanup is not None


# --- Active-active ------------------------------------------------------------------------------


def test_active_active_nodes_follow_the_replicas(extras: Assembly) -> None:
    _, nodegroup = _one(extras.templates[ACTIVE_ACTIVE], "AWS::EKS::Nodegroup", "HybridGateway")
    scaling = nodegroup["Properties"]["ScalingConfig"]
    assert (scaling["MinSize"], scaling["DesiredSize"], scaling["MaxSize"]) == (3, 3, 3)


def test_active_active_manifest_validates_and_carries_the_mode(extras: Assembly, cfn: Any) -> None:
    import kubernetes_validate

    objects = cfn.manifest_objects(extras.templates[ACTIVE_ACTIVE], "HybridGatewayManifests")
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert (env["MODE"], env["SHARDS"], env["POD_CIDRS"]) == (
        "active-active",
        "8",
        ",".join(ACTIVE_POD_NETWORKS),
    )
    assert "MAX_ROUTES_PER_TABLE" not in env
    assert env["POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    [role] = [  # the Lease Role (the other one reads kube-system/cilium-config by name)
        o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] != "kube-system"
    ]
    assert all("resourceNames" not in rule for rule in role["rules"])


def test_active_active_cleanup_also_deletes_the_shard_prefixes(extras: Assembly) -> None:
    _, cleanup = _one(extras.templates[ACTIVE_ACTIVE], RESOURCE_TYPE)
    assert cleanup["Properties"]["PodCidrs"] == ACTIVE_POD_NETWORKS
    assert cleanup["Properties"]["Shards"] == "8"
    # Active-standby gateways keep the properties they always had.
    for stack in ("ExtrasNewCluster", "ExtrasImportedAutoMode"):
        _, standby = _one(extras.templates[stack], RESOURCE_TYPE)
        assert "Shards" not in standby["Properties"]


# --- Cilium on the hybrid nodes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "version", "operator_replicas"),
    [("ExtrasNewCluster", "1.18.8-1", 1), ("ExtrasImportedAutoMode", "1.19.2-1", 2)],
)
def test_cilium_release_is_the_eks_chart_with_the_vtep_values(
    extras: Assembly, stack: str, version: str, operator_replicas: int
) -> None:
    template = extras.templates[stack]
    helm_id, helm = _one(template, HELM_TYPE, "HybridGatewayHybridCilium")
    props = helm["Properties"]
    assert (
        props["Repository"]
        == EKS_CILIUM_CHART_REPOSITORY
        == "oci://public.ecr.aws/eks/cilium/cilium"
    )
    assert (props["Chart"], props["Release"], props["Namespace"]) == (
        "cilium",
        "cilium",
        "kube-system",
    )
    assert props["Version"] == version
    assert props.get("Wait") in (None, False)
    # The agents' one VTEP mask as long as the VPC's /16: its one endpoint matches all of it.
    expected = cilium_helm_values(
        POD_NETWORKS, operator_replicas=operator_replicas, vtep_mask_length=16
    )
    assert json.loads(props["Values"]) == expected
    assert json.loads(props["Values"])["vtep"] == {"enabled": True, "mask": "255.255.0.0"}
    # Cilium is every hybrid node's CNI: deleting the gateway's stack keeps it.
    assert helm["DeletionPolicy"] == "Retain"
    _, manifest = _one(template, MANIFEST_TYPE, "HybridGatewayManifests")
    assert helm_id in _depends_on(manifest)


def test_extra_cilium_values_merge_but_cannot_change_vtep(make_gateway: GatewayFactory) -> None:
    options = HybridCiliumOptions(
        extra_values={"bgpControlPlane": {"enabled": True}, "operator": {"replicas": 2}}
    )
    values = options.helm_values(POD_NETWORKS)
    assert values["bgpControlPlane"] == {"enabled": True}
    assert values["operator"]["replicas"] == 2
    assert values["operator"]["affinity"]  # merged, not replaced
    with pytest.raises(
        HybridGatewayConfigError,
        match=r"hybrid_cilium.extra_values: l7Proxy=True would change False",
    ):
        make_gateway(hybrid_cilium=HybridCiliumOptions(extra_values={"l7Proxy": True}))


@pytest.mark.parametrize("version", ["1.17.13-1", "1.18.8-1", "1.18.9-1", "1.19.2-1", "1.20.0-1"])
def test_cilium_versions_with_vtep_support_are_accepted(
    make_gateway: GatewayFactory, version: str
) -> None:
    gateway = make_gateway(hybrid_cilium=HybridCiliumOptions(version=version))
    assert gateway.hybrid_cilium is not None


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("1.18.8-0", "hybrid_cilium.version: '1.18.8-0' has no CiliumVTEPConfig support"),
        ("1.17.12-1", "hybrid_cilium.version: '1.17.12-1' has no CiliumVTEPConfig support"),
        ("1.16.6-1", "hybrid_cilium.version: '1.16.6-1' has no CiliumVTEPConfig support"),
        ("1.18.8", "hybrid_cilium.version: '1.18.8' is not an EKS Cilium chart version"),
        ("latest", "hybrid_cilium.version: 'latest' is not an EKS Cilium chart version"),
    ],
)
def test_cilium_versions_without_vtep_support_are_rejected(
    make_gateway: GatewayFactory, version: str, message: str
) -> None:
    stacks: list[Any] = []
    with pytest.raises(HybridGatewayConfigError, match=message):
        make_gateway(stacks, hybrid_cilium=HybridCiliumOptions(version=version))
    assert stacks[0].node.try_find_child("Gateway") is None  # the scope is left as it was


# --- VPC CNI SNAT exclusion ---------------------------------------------------------------------


def test_snat_exclusion_is_merged_into_the_v2_addon_configuration(extras: Assembly) -> None:
    _, addon = _one(extras.templates["ExtrasNewCluster"], "AWS::EKS::Addon", "VpcCni")
    rendered = addon["Properties"]["ConfigurationValues"]
    assert json.loads(rendered) == {
        "env": {"ENABLE_PREFIX_DELEGATION": "true", SNAT: "10.85.0.0/16"}
    }


def test_snat_exclusion_on_an_l1_addon_without_configuration(extras: Assembly) -> None:
    _, addon = _one(extras.templates["ExtrasImportedAutoMode"], "AWS::EKS::Addon", "VpcCni")
    assert addon["Properties"]["ConfigurationValues"] == json.dumps(
        {"env": {SNAT: "10.85.0.0/16"}}, sort_keys=True
    )


def test_snat_exclusion_on_an_aws_eks_addon_keeps_its_other_values(
    imported_vpc_and_cluster: Callable[[Any], tuple[Any, Any]],
) -> None:
    from eks_hybrid_gateway.vpc_cni import apply_snat_exclusion

    stack = cdk.Stack(cdk.App(), "S")
    _, cluster = imported_vpc_and_cluster(stack)
    addon = eks.Addon(
        stack,
        "VpcCni",
        addon_name="vpc-cni",
        cluster=cluster,
        configuration_values={"init": {"env": {"DISABLE_TCP_EARLY_DEMUX": "true"}}},
    )
    apply_snat_exclusion(addon, POD_NETWORKS)
    template = cdk.assertions.Template.from_stack(stack)
    [resource] = template.find_resources("AWS::EKS::Addon").values()
    assert json.loads(resource["Properties"]["ConfigurationValues"]) == {
        "init": {"env": {"DISABLE_TCP_EARLY_DEMUX": "true"}},
        "env": {SNAT: "10.85.0.0/16"},
    }


def _l1_addon(stack: cdk.Stack, **props: Any) -> eks.CfnAddon:
    return eks.CfnAddon(stack, "Addon", **{"addon_name": "vpc-cni", "cluster_name": "c", **props})


def test_existing_exclusions_are_kept_and_extended(make_gateway: GatewayFactory) -> None:
    stacks: list[Any] = []
    gateway = make_gateway(
        stacks,
        remote_pod_networks=["10.85.0.0/16", "10.95.0.0/16"],
        vpc_cni_addon=None,
    )
    addon = _l1_addon(
        stacks[0],
        configuration_values=json.dumps({"env": {SNAT: "172.16.0.0/12,10.85.0.0/16"}}),
    )
    from eks_hybrid_gateway.vpc_cni import apply_snat_exclusion

    apply_snat_exclusion(addon, gateway.remote_pod_networks)
    rendered = cdk.Stack.of(addon).resolve(addon.configuration_values)
    assert json.loads(rendered) == {"env": {SNAT: "172.16.0.0/12,10.85.0.0/16,10.95.0.0/16"}}


@pytest.mark.parametrize(
    ("addon_props", "message"),
    [
        ({"addon_name": "coredns"}, r"vpc_cni_addon: S/Addon is the 'coredns' add-on"),
        (
            {"configuration_values": "{not json"},
            r"vpc_cni_addon: configurationValues of S/Addon is not JSON",
        ),
        ({"configuration_values": "[1]"}, r"configurationValues of S/Addon is not a JSON object"),
    ],
)
def test_unusable_addons_are_rejected_by_name(
    make_gateway: GatewayFactory, addon_props: dict[str, Any], message: str
) -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "S")
    addon = _l1_addon(stack, **addon_props)
    with pytest.raises(HybridGatewayConfigError, match=message):
        make_gateway(vpc_cni_addon=addon)


def test_deploy_time_configuration_cannot_be_merged(make_gateway: GatewayFactory) -> None:
    stack = cdk.Stack(cdk.App(), "S")
    param = cdk.CfnParameter(stack, "CniConfig")
    addon = _l1_addon(stack, configuration_values=param.value_as_string)
    with pytest.raises(HybridGatewayConfigError, match=r"only known at deploy time"):
        make_gateway(vpc_cni_addon=addon)


def test_the_guides_example_enabling_the_extras_runs_as_written(
    imported_vpc_and_cluster: Callable[[Any], tuple[Any, Any]],
) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "construct.md").read_text()
    [code] = [
        block
        for block in re.findall(r"```python\n(.*?)```", guide, flags=re.S)
        if "remove_routes_on_delete=True" in block
    ]
    stack = cdk.Stack(cdk.App(), "Readme", env=cdk.Environment(account=ACCOUNT, region=REGION))
    vpc, cluster = imported_vpc_and_cluster(stack)
    namespace: dict[str, Any] = {
        "stack": stack,
        "vpc": vpc,
        "cluster": cluster,
        "eks": eks,
        "HybridNodesGateway": HybridNodesGateway,
        "HybridCiliumOptions": HybridCiliumOptions,
    }
    exec(compile(code, "docs/construct.md", "exec"), namespace)
    template = cdk.assertions.Template.from_stack(stack)
    template.resource_count_is(RESOURCE_TYPE, 1)
    template.has_resource_properties(HELM_TYPE, {"Version": "1.18.8-1"})
    [addon] = template.find_resources("AWS::EKS::Addon").values()
    assert json.loads(addon["Properties"]["ConfigurationValues"]) == {"env": {SNAT: "10.85.0.0/16"}}
