"""The gateway nodes' own security group: VXLAN with the remote node networks, replies to
hybrid pods' connections from the VPC, and what may reach the remote pod networks through the
gateway. The rules themselves are the contract's (`hybrid_gateway_contract.security_groups`),
which `preflight` and the lab use too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import constructs
from aws_cdk import aws_ec2 as ec2

from hybrid_gateway_contract.security_groups import SgRuleSpec, return_path_rules, vxlan_rules


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


def _port(rule: SgRuleSpec) -> ec2.Port:
    if rule.protocol == "udp":
        if rule.from_port == rule.to_port:
            return ec2.Port.udp(rule.from_port)
        return ec2.Port.udp_range(rule.from_port, rule.to_port)
    if rule.protocol == "tcp":
        return ec2.Port.tcp_range(rule.from_port, rule.to_port)
    raise ValueError(f"security group rule protocol {rule.protocol!r}: not tcp or udp")


def gateway_security_group(
    scope: constructs.Construct,
    *,
    vpc: ec2.IVpc,
    remote_node_networks: Sequence[str],
    vpc_cidrs: Sequence[str],
    remote_pod_access: Sequence[RemotePodAccess],
) -> ec2.SecurityGroup:
    """UDP 8472 in and out with every remote node network (AWS getting-started page: "inbound
    and outbound UDP traffic on port 8472"); TCP and UDP in from the VPC CIDRs to the hybrid
    pods' client ports (replies that come back through another gateway's ENI than the request
    left by: security groups track per ENI, see the contract module); the `remote_pod_access`
    rules; nothing else."""
    security_group = ec2.SecurityGroup(
        scope,
        "SecurityGroup",
        vpc=vpc,
        allow_all_outbound=False,
        description="EKS Hybrid Nodes gateway: VXLAN (UDP 8472) with the remote node networks",
    )
    for rule in [*vxlan_rules(remote_node_networks), *return_path_rules(vpc_cidrs)]:
        if rule.direction == "ingress":
            security_group.add_ingress_rule(ec2.Peer.ipv4(rule.cidr), _port(rule), rule.description)
        else:
            security_group.add_egress_rule(ec2.Peer.ipv4(rule.cidr), _port(rule), rule.description)
    for access in remote_pod_access:
        security_group.add_ingress_rule(
            access.peer,
            access.port,
            access.description or f"{access.port} to remote pods via the gateway",
        )
    return security_group
