"""A healthy world for `hybrid-gateway preflight`, `status` and `cleanup`: EC2 and EKS in the
emulator (moto server over HTTP), the Kubernetes objects in the test API server.

Two gateway instances (a: the leader, b: the standby) with their primary ENIs in a gateway
security group that allows UDP 8472 both ways with the remote node network; two owned route
tables whose pod-CIDR routes target the leader's ENI; a main table nobody owns that also routes
a pod CIDR (cleanup must leave it alone) and a transit-gateway route to another CIDR. In
Kubernetes: the gateway Deployment, its two ready pods on labelled and tainted nodes, a fresh
Lease held by pod a, the VTEP CRD, a cilium-config with VTEP on, the L7 proxy off and the agents'
VTEP mask as long as the VPC CIDR, a hybrid
CiliumNode, the CiliumVTEPConfig pointing at the leader, and aws-node excluding the pod networks
from SNAT. Every preflight check passes on it; tests then break one thing at a time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.core.vtep import dotted_mask
from hybrid_gateway_contract import (
    APP_NAME,
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    CONTAINER_NAME,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    GATEWAY_NODE_LABEL_KEY,
    GATEWAY_NODE_TAINT_EFFECT,
    GATEWAY_NODE_TAINT_KEY,
    HYBRID_NODE_LABEL_KEY,
    HYBRID_NODE_LABEL_VALUE,
    VTEP_CONFIG_KIND,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
    VXLAN_PORT,
    Env,
)
from hybrid_gateway_contract.security_groups import return_path_rules
from hybrid_gateway_contract.sharding import (
    LEASE_GROUP_LABEL,
    GatewayMode,
    ShardPlan,
    member_lease_name,
    plan_shards,
    shard_lease_name,
)

from .ec2emu import seed_world

VPC_CIDR = "10.0.0.0/16"
REMOTE_NODE_CIDR = "10.200.0.0/16"
POD_CIDRS = ("10.100.0.0/16", "10.102.0.0/16")
SERVICE_CIDR = "172.20.0.0/16"
OTHER_CIDR = "10.101.0.0/16"  # routed to a transit gateway in an owned table: never ours
REGION = "us-east-1"
SELECTOR = {"app.kubernetes.io/name": APP_NAME}
# UDP 8472 with the remote node network: the gateway group allows it inbound and outbound.
VXLAN_PERMISSION = {
    "IpProtocol": "udp",
    "FromPort": VXLAN_PORT,
    "ToPort": VXLAN_PORT,
    "IpRanges": [{"CidrIp": REMOTE_NODE_CIDR}],
}
#: The construct's rules for replies that come back through another gateway's ENI.
RETURN_PATH_PERMISSIONS = [
    {
        "IpProtocol": rule.protocol,
        "FromPort": rule.from_port,
        "ToPort": rule.to_port,
        "IpRanges": [{"CidrIp": rule.cidr}],
    }
    for rule in return_path_rules([VPC_CIDR])
]


@dataclass
class OpsWorld:
    cluster: str
    vpc_id: str
    subnet_ids: list[str]
    owned_tables: list[str]
    main_table: str
    instances: dict[str, str]  # "a" (leader) / "b" (standby) -> instance id
    enis: dict[str, str]
    ips: dict[str, str]
    nodes: dict[str, str]  # -> Kubernetes node name
    pods: dict[str, str]  # -> pod name
    security_group: str
    transit_gateway: str

    @property
    def namespace(self) -> str:
        return DEFAULT_NAMESPACE


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_world(ec2: Any, eks: Any, kube: client.ApiClient) -> OpsWorld:
    vpc = seed_world(ec2, tables=2, pod_cidrs=list(POD_CIDRS))
    second_subnet = ec2.create_subnet(VpcId=vpc.vpc_id, CidrBlock="10.0.2.0/24")["Subnet"][
        "SubnetId"
    ]
    subnets = [vpc.subnet_id, second_subnet]
    for table, subnet in zip(vpc.table_ids, subnets, strict=True):
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    main_table = next(
        t["RouteTableId"]
        for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc.vpc_id]}])[
            "RouteTables"
        ]
        if any(a.get("Main") for a in t.get("Associations") or [])
    )
    group = ec2.create_security_group(
        GroupName=f"gateway-{uuid.uuid4().hex[:8]}", Description="gateway nodes", VpcId=vpc.vpc_id
    )["GroupId"]
    vxlan = [VXLAN_PERMISSION]
    ec2.authorize_security_group_ingress(
        GroupId=group, IpPermissions=[*vxlan, *RETURN_PATH_PERMISSIONS]
    )
    ec2.revoke_security_group_egress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    ec2.authorize_security_group_egress(
        GroupId=group,
        IpPermissions=[
            *vxlan,
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
        ],
    )
    ips: dict[str, str] = {}
    for name, instance in vpc.instances.items():
        eni = vpc.enis[name]
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[group])
        ec2.modify_network_interface_attribute(
            NetworkInterfaceId=eni, SourceDestCheck={"Value": False}
        )
        ec2.modify_instance_metadata_options(InstanceId=instance, HttpTokens="required")
        reply = ec2.describe_instances(InstanceIds=[instance])
        ips[name] = reply["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    for table in [*vpc.table_ids, main_table]:
        for cidr in POD_CIDRS:
            ec2.create_route(
                RouteTableId=table, DestinationCidrBlock=cidr, NetworkInterfaceId=vpc.enis["a"]
            )
    tgw = ec2.create_transit_gateway()["TransitGateway"]["TransitGatewayId"]
    ec2.create_route(
        RouteTableId=vpc.table_ids[0], DestinationCidrBlock=OTHER_CIDR, TransitGatewayId=tgw
    )
    cluster = f"hybrid-{uuid.uuid4().hex[:8]}"
    create_cluster(eks, cluster, subnets, service_cidr=SERVICE_CIDR)
    world = OpsWorld(
        cluster=cluster,
        vpc_id=vpc.vpc_id,
        subnet_ids=subnets,
        owned_tables=list(vpc.table_ids),
        main_table=main_table,
        instances=dict(vpc.instances),
        enis=dict(vpc.enis),
        ips=ips,
        nodes={name: f"gateway-node-{name}" for name in vpc.instances},
        pods={name: f"{APP_NAME}-7d9f-{name}" for name in vpc.instances},
        security_group=group,
        transit_gateway=tgw,
    )
    seed_kubernetes(kube, world)
    return world


def create_cluster(eks: Any, name: str, subnets: list[str], *, service_cidr: str) -> None:
    eks.create_cluster(
        name=name,
        roleArn="arn:aws:iam::123456789012:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": subnets},
        kubernetesNetworkConfig={"serviceIpv4Cidr": service_cidr},
        remoteNetworkConfig={
            "remoteNodeNetworks": [{"cidrs": [REMOTE_NODE_CIDR]}],
            "remotePodNetworks": [{"cidrs": list(POD_CIDRS)}],
        },
    )


@dataclass(frozen=True)
class Replica:
    """One gateway replica as Kubernetes sees it: its pod, its node and that node's instance."""

    pod: str
    node: str
    instance_id: str
    host_ip: str


def publish_gateway(
    kube: client.ApiClient, namespace: str, env: dict[str, str], replicas: list[Replica]
) -> None:
    """What a cluster holds around the gateway: its nodes (labelled, tainted, with the AWS
    provider ID), the Deployment with `env` in the gateway container, and its ready pods."""
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    container = {
        "name": CONTAINER_NAME,
        "image": "gateway:test",
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    taint = {"key": GATEWAY_NODE_TAINT_KEY, "value": "true", "effect": GATEWAY_NODE_TAINT_EFFECT}
    for replica in replicas:
        core.create_node(
            {
                "metadata": {"name": replica.node, "labels": {GATEWAY_NODE_LABEL_KEY: "true"}},
                "spec": {
                    "providerID": f"aws:///{REGION}a/{replica.instance_id}",
                    "taints": [taint],
                },
            }
        )
        core.patch_node_status(
            replica.node,
            {"status": {"addresses": [{"type": "InternalIP", "address": replica.host_ip}]}},
        )
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": APP_NAME},
            "spec": {
                "replicas": len(replicas),
                "selector": {"matchLabels": SELECTOR},
                "template": {"metadata": {"labels": SELECTOR}, "spec": {"containers": [container]}},
            },
        },
    )
    for replica in replicas:
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": replica.pod, "labels": SELECTOR},
                "spec": {"nodeName": replica.node, "hostNetwork": True, "containers": [container]},
            },
        )
        set_pod_ready(kube, namespace, replica.pod, replica.host_ip, ready=True)


def publish_cilium(kube: client.ApiClient, **config: str) -> None:
    """Hybrid-side Cilium as the gateway needs it: the VTEP CRD and a cilium-config with VTEP
    on and the L7 proxy off (`config` adds or overrides keys)."""
    client.ApiextensionsV1Api(kube).create_custom_resource_definition(
        {
            "metadata": {"name": f"{VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}"},
            "spec": {
                "group": CILIUM_GROUP,
                "scope": "Cluster",
                "names": {"plural": VTEP_CONFIGS_PLURAL, "kind": VTEP_CONFIG_KIND},
                "versions": [{"name": CILIUM_VERSION, "served": True, "storage": True}],
            },
        }
    )
    data = {"enable-vtep": "true", "enable-l7-proxy": "false", **config}
    body = {"metadata": {"name": "cilium-config"}, "data": data}
    core = client.CoreV1Api(kube)
    try:
        core.create_namespaced_config_map("kube-system", body)
    except ApiException as exc:  # the lab publishes the agents' cilium-config at start
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map("cilium-config", "kube-system", body)


def seed_kubernetes(kube: client.ApiClient, world: OpsWorld) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    custom = client.CustomObjectsApi(kube)
    ns = world.namespace
    env = {
        Env.VPC_CIDR: VPC_CIDR,
        Env.POD_CIDRS: ",".join(POD_CIDRS),
        Env.ROUTE_TABLE_IDS: ",".join(world.owned_tables),
    }
    publish_gateway(
        kube,
        ns,
        env,
        [
            Replica(world.pods[name], world.nodes[name], instance, world.ips[name])
            for name, instance in world.instances.items()
        ],
    )
    core.create_node(
        {"metadata": {"name": "cloud-node-1"}, "spec": {"providerID": f"aws:///{REGION}a/i-0cafe"}}
    )
    now = dt.datetime.now(dt.UTC)
    client.CoordinationV1Api(kube).create_namespaced_lease(
        ns,
        {
            "metadata": {"name": DEFAULT_LEASE_NAME},
            "spec": {
                "holderIdentity": world.pods["a"],
                # Long, so the check never depends on how fast a loaded machine runs the test.
                "leaseDurationSeconds": 3600,
                "acquireTime": _rfc3339(now - dt.timedelta(minutes=5)),
                "renewTime": _rfc3339(now),
                "leaseTransitions": 1,
            },
        },
    )
    # The agents' one VTEP mask as long as the VPC CIDR, so its endpoint matches all of it
    # (upstream Cilium keys its VTEP map by destination & vtep-mask: core.vtep).
    publish_cilium(
        kube,
        **{
            "routing-mode": "tunnel",
            "tunnel-protocol": "vxlan",
            "vtep-mask": dotted_mask(ipaddress.IPv4Network(VPC_CIDR).prefixlen),
        },
    )
    add_hybrid_node(kube, "hybrid-node-1", "10.200.0.10", ["10.100.1.0/24"])
    custom.create_cluster_custom_object(
        CILIUM_GROUP,
        CILIUM_VERSION,
        VTEP_CONFIGS_PLURAL,
        vtep_config(world.ips["a"]),
    )
    apps.create_namespaced_daemon_set(
        "kube-system",
        {
            "metadata": {"name": "aws-node"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "aws-node"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "aws-node"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "aws-node",
                                "image": "amazon-k8s-cni:test",
                                "env": [
                                    {
                                        "name": "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
                                        "value": ",".join(POD_CIDRS),
                                    }
                                ],
                            }
                        ]
                    },
                },
            },
        },
    )
    core.create_namespaced_event(
        ns,
        {
            "metadata": {"name": f"{APP_NAME}.leader"},
            "involvedObject": {"kind": "Pod", "name": world.pods["a"], "namespace": ns},
            "reason": "LeaderElected",
            "message": f"{world.pods['a']} became leader",
            "type": "Normal",
            "lastTimestamp": _rfc3339(now).split(".")[0] + "Z",
        },
    )


def vtep_config(node_ip: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{CILIUM_GROUP}/{CILIUM_VERSION}",
        "kind": VTEP_CONFIG_KIND,
        "metadata": {"name": VTEP_CONFIG_NAME},
        "spec": {
            "endpoints": [
                {
                    "name": "vpc-gateway",
                    "tunnelEndpoint": node_ip,
                    "cidr": VPC_CIDR,
                    "mac": vxlan_device_mac(node_ip),
                }
            ]
        },
    }


def add_hybrid_node(kube: client.ApiClient, name: str, ip: str, pod_cidrs: list[str]) -> None:
    client.CustomObjectsApi(kube).create_cluster_custom_object(
        CILIUM_GROUP,
        CILIUM_VERSION,
        CILIUM_NODES_PLURAL,
        {
            "apiVersion": f"{CILIUM_GROUP}/{CILIUM_VERSION}",
            "kind": "CiliumNode",
            "metadata": {"name": name, "labels": {HYBRID_NODE_LABEL_KEY: HYBRID_NODE_LABEL_VALUE}},
            "spec": {
                "addresses": [{"type": "InternalIP", "ip": ip}],
                "ipam": {"podCIDRs": pod_cidrs},
            },
        },
    )


def set_pod_ready(
    kube: client.ApiClient, namespace: str, pod: str, host_ip: str, *, ready: bool
) -> None:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    if not ready:
        condition.update(reason="ContainersNotReady", message="readyz: no route tables reachable")
    client.CoreV1Api(kube).patch_namespaced_pod_status(
        pod,
        namespace,
        {"status": {"phase": "Running", "hostIP": host_ip, "conditions": [condition]}},
    )


# --- active-active -------------------------------------------------------------------------------


@dataclass
class ShardWorld:
    """The healthy world turned active-active: shard i is owned by replica `owners[i]`."""

    plan: ShardPlan
    owners: dict[int, str]  # shard index -> "a" / "b"


def lease_body(
    name: str, holder: str | None, *, renewed: dt.datetime, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 3600,  # long: no check depends on the machine's speed
            "acquireTime": _rfc3339(renewed - dt.timedelta(minutes=5)),
            "renewTime": _rfc3339(renewed),
            "leaseTransitions": 0,
        },
    }


def make_active_active(
    world: OpsWorld, ec2: Any, kube: client.ApiClient, *, shards: int = 4
) -> ShardWorld:
    """What two active-active replicas leave once settled: MODE/SHARDS in the Deployment, no
    leader Lease, one fresh Lease per shard (even shards held by a, odd by b) and one
    membership Lease per replica, all labelled with the group; in the owned tables the shard
    prefixes routed to their owner's ENI instead of the whole pod CIDRs; the CiliumVTEPConfig
    holding the plan's endpoints at their owners with the common `cidrMask`."""
    plan = plan_shards(
        [ipaddress.IPv4Network(c) for c in POD_CIDRS], [ipaddress.IPv4Network(VPC_CIDR)], shards
    )
    owners = {shard.index: "ab"[shard.index % 2] for shard in plan.shards}
    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment(APP_NAME, world.namespace)
    container = deployment.spec.template.spec.containers[0]
    container.env = [
        *(container.env or []),
        client.V1EnvVar(name=Env.MODE, value=GatewayMode.ACTIVE_ACTIVE.value),
        client.V1EnvVar(name=Env.SHARDS, value=str(shards)),
    ]
    apps.replace_namespaced_deployment(APP_NAME, world.namespace, deployment)
    leases = client.CoordinationV1Api(kube)
    leases.delete_namespaced_lease(DEFAULT_LEASE_NAME, world.namespace)
    now = dt.datetime.now(dt.UTC)
    group = {LEASE_GROUP_LABEL: DEFAULT_LEASE_NAME}
    for index, owner in owners.items():
        leases.create_namespaced_lease(
            world.namespace,
            lease_body(
                shard_lease_name(DEFAULT_LEASE_NAME, index),
                world.pods[owner],
                renewed=now,
                labels=group,
            ),
        )
    for pod in world.pods.values():
        leases.create_namespaced_lease(
            world.namespace,
            lease_body(member_lease_name(DEFAULT_LEASE_NAME, pod), pod, renewed=now, labels=group),
        )
    for table in world.owned_tables:
        for cidr in POD_CIDRS:
            ec2.delete_route(RouteTableId=table, DestinationCidrBlock=cidr)
        for shard in plan.shards:
            for prefix in shard.pod_prefixes:
                ec2.create_route(
                    RouteTableId=table,
                    DestinationCidrBlock=prefix,
                    NetworkInterfaceId=world.enis[owners[shard.index]],
                )
    custom = client.CustomObjectsApi(kube)
    current = custom.get_cluster_custom_object(
        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, VTEP_CONFIG_NAME
    )
    endpoints = [
        {
            "name": name,
            "tunnelEndpoint": world.ips[owners[shard.index]],
            "cidr": cidr,
            "mac": vxlan_device_mac(world.ips[owners[shard.index]]),
        }
        for shard in plan.shards
        for name, cidr in shard.vtep_endpoints
    ]
    spec: dict[str, Any] = {"endpoints": sorted(endpoints, key=lambda e: e["name"])}
    if plan.vtep_prefix_length is not None:
        spec["cidrMask"] = dotted_mask(plan.vtep_prefix_length)
    custom.replace_cluster_custom_object(
        CILIUM_GROUP,
        CILIUM_VERSION,
        VTEP_CONFIGS_PLURAL,
        VTEP_CONFIG_NAME,
        {**current, "spec": spec},
    )
    if plan.vtep_prefix_length is not None:  # the agents' mask set to the plan's length
        client.CoreV1Api(kube).patch_namespaced_config_map(
            "cilium-config",
            "kube-system",
            {"data": {"vtep-mask": dotted_mask(plan.vtep_prefix_length)}},
        )
    return ShardWorld(plan, owners)
