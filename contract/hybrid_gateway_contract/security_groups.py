"""The gateway nodes' security group rules, shared by the construct (which creates them),
`preflight` (which checks an existing group for them) and the lab (which filters each gateway
ENI with them).

Security groups are stateful per network interface: a response is allowed because the request
was tracked on THE SAME interface ("Amazon EC2 security group connection tracking", EC2 user
guide: responses to inbound traffic may leave regardless of outbound rules, and vice versa).
A flow between a VPC address and a hybrid pod may cross two gateway ENIs: in active-active mode
the pod's shard picks the ENI of the forward path (VPC -> pod, the VPC route tables) and the VPC
address's VTEP endpoint picks the return path (pod -> VPC); in active-standby mode both are the
leader's except during a switch, when the routes and the CiliumVTEPConfig move at different
moments. A connection a hybrid pod opens to a VPC service (RDS, an internal load balancer, a VPC
endpoint) leaves through one ENI (outbound, tracked there) and its replies come back through the
other, where nothing was tracked: they are judged as new inbound traffic and dropped unless a
rule admits them. The narrowest rules that admit them: from the VPC CIDRs only (the return path
only carries traffic to VPC addresses: the VTEP endpoints are the VPC CIDRs), TCP and UDP only,
to the hybrid pods' client ports only. A security group rule cannot name the destination, so
these also admit VPC addresses to the gateway node itself on those ports (Kubernetes NodePorts,
30000-32767 by default, lie below them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hybrid_gateway_contract import VXLAN_PORT

#: The source ports Linux gives a client socket unless the pod sets the safe sysctl
#: net.ipv4.ip_local_port_range: 32768-60999 in every network namespace (linux
#: net/ipv4/af_inet.c, inet_init_net). The return-path rules admit replies to these ports.
HYBRID_POD_CLIENT_PORTS: Final = (32768, 60999)
RETURN_PATH_PROTOCOLS: Final = ("tcp", "udp")


@dataclass(frozen=True)
class SgRuleSpec:
    """One security group rule: `direction` ingress or egress, a protocol, a port range and
    the peer CIDR (the source of an ingress rule, the destination of an egress rule)."""

    direction: str
    protocol: str
    from_port: int
    to_port: int
    cidr: str
    description: str


def vxlan_rules(remote_node_networks: Sequence[str]) -> list[SgRuleSpec]:
    """UDP 8472 in and out with every remote node network (EKS user guide, hybrid nodes
    gateway: "inbound and outbound UDP traffic on port 8472")."""
    rules: list[SgRuleSpec] = []
    for cidr in remote_node_networks:
        rules.append(
            SgRuleSpec(
                "ingress", "udp", VXLAN_PORT, VXLAN_PORT, cidr, f"VXLAN from hybrid nodes {cidr}"
            )
        )
        rules.append(
            SgRuleSpec(
                "egress", "udp", VXLAN_PORT, VXLAN_PORT, cidr, f"VXLAN to hybrid nodes {cidr}"
            )
        )
    return rules


def return_path_rules(vpc_cidrs: Sequence[str]) -> list[SgRuleSpec]:
    """Ingress TCP and UDP from every VPC CIDR to the hybrid pods' client ports: replies to
    connections hybrid pods opened, arriving on a gateway ENI the request did not leave by."""
    low, high = HYBRID_POD_CLIENT_PORTS
    return [
        SgRuleSpec(
            "ingress",
            protocol,
            low,
            high,
            cidr,
            # EC2 rule descriptions allow no apostrophe (a-zA-Z0-9 and ._-:/()#,@[]+=&;{}!$*)
            f"{protocol.upper()} replies from {cidr} to connections of hybrid pods (request "
            "sent through another gateway ENI)",
        )
        for cidr in vpc_cidrs
        for protocol in RETURN_PATH_PROTOCOLS
    ]
