"""Every synth-time validation error names the prop and the value; tokens are never rejected."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eks_hybrid_gateway import (
    GatewayImage,
    GatewayMode,
    HybridGatewayConfigError,
    HybridNodesGateway,
    LeaderElectionTimings,
)

GatewayFactory = Callable[..., HybridNodesGateway]
AA = GatewayMode.ACTIVE_ACTIVE


CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "vpc_cidr_unparsable",
        {"vpc_cidrs": ["10.0.0.0/99"]},
        "vpc_cidrs[0]: '10.0.0.0/99' is not a valid IPv4 CIDR",
    ),
    (
        "node_network_unparsable",
        {"remote_node_networks": ["192.168.100.0/24", "on-prem"]},
        "remote_node_networks[1]: 'on-prem' is not a valid IPv4 CIDR",
    ),
    (
        "pod_network_unparsable",
        {"remote_pod_networks": ["10.85.0.300/16"]},
        "remote_pod_networks[0]: '10.85.0.300/16' is not a valid IPv4 CIDR",
    ),
    (
        "cidr_without_prefix",
        {"remote_pod_networks": ["10.85.0.0"]},
        "remote_pod_networks[0]: '10.85.0.0' is not a valid IPv4 CIDR (missing /prefix length)",
    ),
    (
        "cidr_with_host_bits",
        {"remote_node_networks": ["192.168.100.1/24"]},
        "remote_node_networks[0]: '192.168.100.1/24' has host bits set; "
        "did you mean '192.168.100.0/24'?",
    ),
    (
        "service_cidr_unparsable",
        {"service_cidr": "172.20.0.0/40"},
        "service_cidr: '172.20.0.0/40' is not a valid IPv4 CIDR",
    ),
    (
        "pod_overlaps_vpc",
        {"remote_pod_networks": ["10.0.128.0/17"]},
        "remote_pod_networks[0]: '10.0.128.0/17' overlaps vpc_cidrs[0]: '10.0.0.0/16'",
    ),
    (
        "node_overlaps_pod",
        {"remote_node_networks": ["10.85.1.0/24"]},
        "remote_pod_networks[0]: '10.85.0.0/16' overlaps remote_node_networks[0]: '10.85.1.0/24'",
    ),
    (
        "service_overlaps_vpc",
        {"service_cidr": "10.0.200.0/24"},
        "service_cidr: '10.0.200.0/24' overlaps vpc_cidrs[0]: '10.0.0.0/16'",
    ),
    (
        "overlap_within_one_prop",
        {"remote_pod_networks": ["10.85.0.0/16", "10.85.4.0/22"]},
        "remote_pod_networks[1]: '10.85.4.0/22' overlaps remote_pod_networks[0]: '10.85.0.0/16'",
    ),
    (
        "more_than_8_vpc_cidrs",
        {"vpc_cidrs": [f"10.{i}.0.0/16" for i in range(9)]},
        "vpc_cidrs: 9 CIDRs given (10.0.0.0/16, 10.1.0.0/16,",
    ),
    ("fewer_than_2_replicas", {"replicas": 1}, "replicas: 1 is fewer than 2"),
    (
        "no_remote_node_networks",
        {"remote_node_networks": []},
        "remote_node_networks: at least one remote node network is required, got []",
    ),
    (
        "no_remote_pod_networks",
        {"remote_pod_networks": []},
        "remote_pod_networks: at least one remote pod network is required, got []",
    ),
    (
        "bad_route_table_id",
        {"route_table_ids": ["rtb-0123456789abcdef0", "main"]},
        "route_table_ids[1]: 'main' is not a route table ID",
    ),
    (
        "bad_namespace",
        {"namespace": "Hybrid_GW"},
        "namespace: 'Hybrid_GW' is not a valid Kubernetes name",
    ),
    (
        "lease_timings_out_of_order",
        {"leader_election": LeaderElectionTimings(renew_deadline_s=5)},
        "leader_election.renew_deadline_s: 5: must be shorter than the lease duration (3s), or "
        "a holder could act after others may acquire (need retry_period_s < renew_deadline_s < "
        "lease_duration_s)",
    ),
    (
        "lease_timing_not_positive",
        {"leader_election": LeaderElectionTimings(retry_period_s=-1)},
        "leader_election.retry_period_s: -1: must be positive",
    ),
    ("vxlan_mtu_out_of_range", {"vxlan_mtu": 9001}, "vxlan_mtu: 9001 must be an integer 576-8951"),
    ("bad_mode", {"mode": "active"}, "mode: 'active' is not a gateway mode"),
    (
        "shards_not_a_power_of_two",
        {"mode": AA, "shards": 6},
        "shards: 6: must be a power of two from 2 to 64",
    ),
    (
        "shard_routes_over_the_route_quota",
        {"mode": AA, "shards": 64, "max_routes_per_table": 50},
        "max_routes_per_table: 50: 64 shards x 1 remote pod network(s) = 64 routes per route "
        "table, plus 1 local route(s), are more than a table may hold",
    ),
    (
        "pod_network_too_small_to_cut",
        {"mode": AA, "shards": 8, "remote_pod_networks": ["10.85.0.0/30"]},
        "shards: 8: remote pod network 10.85.0.0/30 cannot be cut into that many prefixes "
        "(they would be /33)",
    ),
    (
        "shards_in_active_standby",
        {"shards": 8},
        "shards: 8 is only used in active-active mode, and mode is 'active-standby'; use "
        "mode=GatewayMode.active_active(shards=...) or drop shards",
    ),
    (
        "max_routes_in_active_standby",
        {"max_routes_per_table": 100},
        "max_routes_per_table: 100 is only used in active-active mode",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_prop_is_rejected_by_name_and_value(
    make_gateway: GatewayFactory, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(HybridGatewayConfigError, match=re.escape(message)):
        make_gateway(**overrides)


def test_node_subnets_in_one_zone_are_rejected(make_gateway: GatewayFactory) -> None:
    from aws_cdk import aws_ec2 as ec2

    def one_zone(gateway_scope: Any) -> list[ec2.ISubnet]:
        return [
            ec2.Subnet.from_subnet_attributes(
                gateway_scope,
                f"S{i}",
                subnet_id=f"subnet-0123456789abcdef{i}",
                availability_zone="us-west-2a",
            )
            for i in range(2)
        ]

    import aws_cdk as cdk

    scope = cdk.Stack(cdk.App(), "Subnets")
    with pytest.raises(
        HybridGatewayConfigError,
        match=re.escape("node_subnets: the selected subnets span ['us-west-2a']"),
    ):
        make_gateway(node_subnets=one_zone(scope))


def test_missing_dockerfile_names_the_path(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    with pytest.raises(
        HybridGatewayConfigError,
        match=re.escape(
            "image: GatewayImage.from_asset() needs the Dockerfile "
            f"'{tmp_path / 'runtime' / 'Dockerfile'}'"
        ),
    ):
        make_gateway(image=GatewayImage.from_asset(tmp_path))


def test_empty_image_reference_is_rejected() -> None:
    with pytest.raises(HybridGatewayConfigError, match="image: '' is not an image reference"):
        GatewayImage.from_registry("")


def test_unresolved_tokens_are_not_validated(make_gateway: GatewayFactory) -> None:
    """Values known only at deploy time pass; literal neighbours are still checked."""
    import aws_cdk as cdk

    gateway = make_gateway(
        vpc_cidrs=[cdk.Fn.import_value("VpcCidr")],
        remote_pod_networks=[cdk.Fn.import_value("PodCidr"), "10.85.0.0/16"],
        route_table_ids=[cdk.Fn.import_value("RouteTable")],
    )
    assert len(gateway.route_table_ids) == 1
    with pytest.raises(HybridGatewayConfigError, match=re.escape("remote_pod_networks[1]: 'x'")):
        make_gateway(remote_pod_networks=[cdk.Fn.import_value("PodCidr"), "x"])


def test_valid_props_pass_and_literal_vpc_cidr_is_used(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(vpc_cidrs=None, service_cidr="172.20.0.0/16")
    assert gateway.vpc_cidrs == ["10.0.0.0/16"]
    assert gateway.route_table_ids == ["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"]


def test_a_rejected_prop_leaves_the_scope_untouched(make_gateway: GatewayFactory) -> None:
    stacks: list[Any] = []
    with pytest.raises(HybridGatewayConfigError, match="replicas: 1"):
        make_gateway(stacks=stacks, replicas=1)
    [stack] = stacks
    assert "Gateway" not in [child.node.id for child in stack.node.children]
    # The same id is free for a corrected attempt in the same scope.
    from eks_hybrid_gateway import GatewayImage, HybridNodesGateway

    vpc, cluster = stack.node.find_child("Vpc"), stack.node.find_child("Cluster")
    gateway = HybridNodesGateway(
        stack,
        "Gateway",
        cluster=cluster,
        vpc=vpc,
        remote_node_networks=["192.168.100.0/24"],
        remote_pod_networks=["10.85.0.0/16"],
        image=GatewayImage.from_registry("registry.example/gw:1"),
    )
    assert gateway.node.path == "S/Gateway"


@pytest.mark.parametrize("kind", ["NODEGROUP", "EC2"])
def test_auto_mode_capacity_on_a_cluster_without_auto_mode_is_rejected(
    kind: str, owned_cluster: Any, gateway_on: Any
) -> None:
    from aws_cdk import aws_eks_v2 as eks

    from eks_hybrid_gateway import CapacityType

    stack, vpc, cluster = owned_cluster(capacity_type=getattr(eks.DefaultCapacityType, kind))
    with pytest.raises(
        HybridGatewayConfigError,
        match=re.escape("capacity_type: CapacityType.AUTO_MODE needs an EKS Auto Mode cluster"),
    ):
        gateway_on(stack, vpc, cluster, capacity_type=CapacityType.AUTO_MODE)
    assert stack.node.try_find_child("Gateway") is None


def test_auto_mode_capacity_on_an_aws_eks_v1_cluster_is_rejected(
    owned_cluster: Any, gateway_on: Any
) -> None:
    from eks_hybrid_gateway import CapacityType

    stack, vpc, cluster = owned_cluster("v1")
    with pytest.raises(
        HybridGatewayConfigError, match=re.escape("capacity_type: CapacityType.AUTO_MODE")
    ):
        gateway_on(stack, vpc, cluster, capacity_type=CapacityType.AUTO_MODE)


def test_auto_mode_capacity_is_accepted_on_auto_mode_and_imported_clusters(
    make_gateway: GatewayFactory, owned_cluster: Any, gateway_on: Any
) -> None:
    from eks_hybrid_gateway import CapacityType

    stack, vpc, cluster = owned_cluster()
    assert gateway_on(stack, vpc, cluster, capacity_type=CapacityType.AUTO_MODE).nodegroup is None
    # An imported cluster's compute is unknown here: accepted.
    assert make_gateway(capacity_type=CapacityType.AUTO_MODE).capacity_type is (
        CapacityType.AUTO_MODE
    )


@pytest.mark.parametrize("metrics", ["POD_MONITOR", "SERVICE_AND_POD_MONITOR"])
def test_a_pod_monitor_is_never_part_of_the_gateway_stack(
    make_gateway: GatewayFactory, metrics: str
) -> None:
    from eks_hybrid_gateway import MetricsExposure

    with pytest.raises(HybridGatewayConfigError, match=r"metrics: .*GatewayPodMonitor"):
        make_gateway(metrics=getattr(MetricsExposure, metrics))


def test_an_imported_cluster_without_a_vpc_is_rejected_for_a_node_group(gateway_on: Any) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_eks as eks

    stack = cdk.Stack(cdk.App(), "S")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, ip_addresses=ec2.IpAddresses.cidr("10.0.0.0/16"))
    cluster = eks.Cluster.from_cluster_attributes(
        stack, "Cluster", cluster_name="c", cluster_security_group_id="sg-0123456789abcdef0"
    )
    with pytest.raises(HybridGatewayConfigError, match="cluster: imported without a VPC"):
        gateway_on(stack, vpc, cluster)


def test_a_v2_cluster_without_kubectl_provider_is_rejected(
    owned_cluster: Any, gateway_on: Any
) -> None:
    stack, vpc, cluster = owned_cluster(kubectl=False)
    with pytest.raises(HybridGatewayConfigError, match="cluster: has no kubectl provider"):
        gateway_on(stack, vpc, cluster)
    assert stack.node.try_find_child("Gateway") is None


def test_errors_are_bound_to_the_construct_path(make_gateway: GatewayFactory) -> None:
    """Like aws-cdk-lib's ValidationError: the message says which construct rejected what."""
    with pytest.raises(HybridGatewayConfigError) as raised:
        make_gateway(replicas=1)
    assert str(raised.value).startswith("S/Gateway: replicas: 1 is fewer than 2")


def test_an_aws_eks_v1_cluster_of_another_stack_is_rejected(
    owned_cluster: Any, gateway_on: Any
) -> None:
    """Its v1 Nodegroup would write the node role into the cluster stack's aws-auth."""
    import aws_cdk as cdk

    stack, vpc, cluster = owned_cluster("v1")
    other = cdk.Stack(stack.node.scope, "Other")
    with pytest.raises(HybridGatewayConfigError, match=r"cluster: an aws_eks \(v1\) Cluster"):
        gateway_on(other, vpc, cluster)
    assert other.node.try_find_child("Gateway") is None


def test_shard_errors_are_bound_to_the_construct_path(make_gateway: GatewayFactory) -> None:
    with pytest.raises(HybridGatewayConfigError) as raised:
        make_gateway(mode=AA, shards=3)  # the deprecated props: the path is named too
    assert str(raised.value) == "S/Gateway: shards: 3: must be a power of two from 2 to 64"


def test_shard_quota_counts_pod_networks_known_only_at_deploy_time(
    make_gateway: GatewayFactory,
) -> None:
    """A token's size is unknown (the runtime checks the cut at start-up), but it is still one
    pod network: one route per shard in every table."""
    import aws_cdk as cdk

    unknown = [cdk.Fn.import_value("PodCidrA"), cdk.Fn.import_value("PodCidrB")]
    mode = GatewayMode.active_active(shards=64, max_routes_per_table=129)
    gateway = make_gateway(mode=mode, remote_pod_networks=unknown)
    assert (gateway.mode.shards, gateway.mode.max_routes_per_table) == (64, 129)
    with pytest.raises(
        HybridGatewayConfigError,
        match=re.escape("max_routes_per_table: 128: 64 shards x 2 remote pod network(s)"),
    ):
        make_gateway(
            mode=GatewayMode.active_active(shards=64, max_routes_per_table=128),
            remote_pod_networks=unknown,
        )
    # A literal neighbour is still checked for the cut.
    with pytest.raises(HybridGatewayConfigError, match=re.escape("10.85.0.0/28 cannot be cut")):
        make_gateway(
            mode=GatewayMode.active_active(shards=32),
            remote_pod_networks=[unknown[0], "10.85.0.0/28"],
        )


def test_active_active_accepts_the_mode_by_value_and_more_replicas(
    make_gateway: GatewayFactory, cfn: Any
) -> None:
    """Replicas above 2 get one dedicated node each on both capacity types."""
    import aws_cdk as cdk

    from eks_hybrid_gateway import CapacityType

    gateway = make_gateway(mode="active-active", replicas=4)
    assert gateway.mode == AA == GatewayMode.active_active()
    assert (gateway.mode.shards, gateway.mode.max_routes_per_table) == (4, 500)
    template = cdk.assertions.Template.from_stack(cdk.Stack.of(gateway)).to_json()
    [nodegroup] = cfn.resources_of_type(template, "AWS::EKS::Nodegroup")
    scaling = nodegroup[1]["Properties"]["ScalingConfig"]
    assert (scaling["MinSize"], scaling["DesiredSize"], scaling["MaxSize"]) == (4, 4, 4)

    auto = make_gateway(mode=AA, replicas=4, capacity_type=CapacityType.AUTO_MODE)
    template = cdk.assertions.Template.from_stack(cdk.Stack.of(auto)).to_json()
    capacity = cfn.manifest_objects(template, "GatewayCapacity")
    [pool] = [o for o in capacity if o["kind"] == "NodePool"]
    assert pool["spec"]["limits"] == {"nodes": "5"}  # one per replica, plus a surge node
    [deployment] = [
        o for o in cfn.manifest_objects(template, "GatewayManifests") if o["kind"] == "Deployment"
    ]
    assert deployment["spec"]["replicas"] == 4
