"""What makes the lab as strict as a real gateway's path: kube-proxy's INVALID drop on every
gateway host, and a stateful per-ENI filter with the construct's security group rules in front
of every gateway host.

- kube-proxy (iptables mode, the EKS default) drops forwarded packets conntrack calls INVALID:
  `-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP` (kubernetes
  pkg/proxy/iptables/proxier.go; installed while net.netfilter.nf_conntrack_tcp_be_liberal is 0,
  the kernel's default, since kubernetes PR 120412). `kube_proxy_ruleset` is its nftables form
  on the gateway host's forward hook, counted.
- A security group is stateful per network interface ("Amazon EC2 security group connection
  tracking", EC2 user guide): a packet is allowed if it belongs to a flow tracked on THIS ENI or
  if a rule of its direction admits it. The lab puts every gateway host behind a namespace of
  its own (`eni-<host>`, a proxy-ARP router: the host keeps its address on the VPC segment) whose
  conntrack is that ENI's, and whose forward hook admits exactly that: established/related on
  its own conntrack, else the rules (`eni_ruleset`). The rules are the construct's gateway
  security group (`hybrid_gateway_contract.security_groups`), the EKS cluster security group the
  gateway nodes also carry (all traffic from its members, here the control plane and the
  gateway hosts; all traffic out) and the operator's `remote_pod_access` for the lab's probe
  ports. Cloud addresses are NOT cluster security group members: they stand for VPC services
  (RDS, internal load balancers), whose replies to hybrid pods need the return-path rules.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from hybrid_gateway_contract.security_groups import (
    SgRuleSpec,
    return_path_rules,
    vxlan_rules,
)
from hybrid_gateway_testkit.netns import Netns

KUBE_PROXY_TABLE = "kube_proxy"
ENI_TABLE = "eni_sg"


def load_nft(ns: Netns, script: str) -> None:
    """Load an nftables script into `ns` (one transaction)."""
    proc = subprocess.run(
        ns.exec_argv(["nft", "-f", "-"]),
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft in {ns.name} failed: {proc.stderr.strip()}")


def kube_proxy_ruleset() -> str:
    """kube-proxy's KUBE-FORWARD INVALID drop, as nftables on the forward hook."""
    return (
        f"table ip {KUBE_PROXY_TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        '    ct state invalid counter drop comment "KUBE-FORWARD INVALID"\n'
        "  }\n"
        "}\n"
    )


@dataclass(frozen=True)
class EniRules:
    """The allow list of one gateway ENI."""

    ingress: tuple[SgRuleSpec, ...]
    cluster_members: tuple[str, ...]  # addresses of the cluster security group's members


def lab_eni_rules(
    *,
    vpc_cidr: str,
    remote_node_networks: Sequence[str],
    cluster_members: Sequence[str],
    probe_ports: Sequence[tuple[str, int]],
    return_path: bool = True,
) -> EniRules:
    """The construct's gateway security group (VXLAN, return path) plus `remote_pod_access`
    for the probe ports from the VPC CIDR (what an operator adds for a webhook or a service);
    `return_path=False` is the group without the return-path rules (for a test that shows
    what they are for)."""
    rules = [r for r in vxlan_rules(remote_node_networks) if r.direction == "ingress"]
    if return_path:
        rules += return_path_rules([vpc_cidr])
    rules += [
        SgRuleSpec("ingress", proto, port, port, vpc_cidr, f"probe {proto} {port}")
        for proto, port in probe_ports
    ]
    return EniRules(tuple(rules), tuple(cluster_members))


def _match(rule: SgRuleSpec) -> str:
    ports = f"{rule.from_port}-{rule.to_port}"
    if rule.from_port == rule.to_port:
        ports = str(rule.from_port)
    return f"ip saddr {rule.cidr} {rule.protocol} dport {ports}"


def eni_ruleset(host_if: str, vpc_if: str, rules: EniRules) -> str:
    """The stateful filter of one ENI namespace: `host_if` faces the gateway host (outbound
    traffic enters there), `vpc_if` faces the VPC (inbound traffic enters there)."""
    inbound = [f"    {_match(r)} accept" for r in rules.ingress]
    inbound += [f"    ip saddr {member} accept" for member in rules.cluster_members]
    return (
        "\n".join(
            [
                f"table ip {ENI_TABLE} {{",
                "  chain forward {",
                "    type filter hook forward priority filter; policy drop;",
                "    ct state established,related accept",
                f'    iifname "{host_if}" jump outbound',
                f'    iifname "{vpc_if}" jump inbound',
                "  }",
                "  chain inbound {",
                *inbound,
                '    counter drop comment "inbound not admitted"',
                "  }",
                "  chain outbound {",
                "    accept",  # the cluster security group admits all outbound traffic
                "  }",
                "}",
            ]
        )
        + "\n"
    )
