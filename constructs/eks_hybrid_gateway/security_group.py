"""The gateway nodes' own security group: VXLAN with the remote node networks, and what may
reach the remote pod networks through the gateway."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import constructs
from aws_cdk import aws_ec2 as ec2

import hybrid_gateway_contract as contract


@dataclass(frozen=True)
class RemotePodAccess:
    """A peer allowed to reach pods on the remote pod networks, through the gateway, on `port`.

    With the source/destination check off, the gateway's primary ENI carries packets for the
    hybrid pods, and its security groups filter them like any other packet (security groups
    apply to all traffic of an ENI, forwarded or not). The cluster security group, also on the
    gateway nodes, already admits the control plane and pods on cloud nodes; an ALB or NLB in IP
    mode, or a VPC service outside the cluster security group, needs a rule here. A security
    group rule matches the source only, so the peer may also reach the gateway node itself on
    `port`: keep ports narrow.
    """

    peer: ec2.IPeer
    port: ec2.Port
    #: Rule description; default names the port and says "to remote pods via the gateway".
    description: str | None = None


def gateway_security_group(
    scope: constructs.Construct,
    *,
    vpc: ec2.IVpc,
    remote_node_networks: Sequence[str],
    remote_pod_access: Sequence[RemotePodAccess],
) -> ec2.SecurityGroup:
    """UDP 8472 in and out with every remote node network (AWS getting-started page: "inbound
    and outbound UDP traffic on port 8472"), the `remote_pod_access` rules, nothing else."""
    security_group = ec2.SecurityGroup(
        scope,
        "SecurityGroup",
        vpc=vpc,
        allow_all_outbound=False,
        description="EKS Hybrid Nodes gateway: VXLAN (UDP 8472) with the remote node networks",
    )
    vxlan = ec2.Port.udp(contract.VXLAN_PORT)
    for cidr in remote_node_networks:
        peer = ec2.Peer.ipv4(cidr)
        security_group.add_ingress_rule(peer, vxlan, f"VXLAN from hybrid nodes {cidr}")
        security_group.add_egress_rule(peer, vxlan, f"VXLAN to hybrid nodes {cidr}")
    for access in remote_pod_access:
        security_group.add_ingress_rule(
            access.peer,
            access.port,
            access.description or f"{access.port} to remote pods via the gateway",
        )
    return security_group
