"""`hybrid-gateway preflight` and `status` against the lab's own world: the real daemons, the
EC2 emulator and the test API server, run from the lab's control namespace.

The lab starts the daemons as processes, not as a Deployment: the test publishes the Kubernetes
objects a cluster would have around them (the gateway Deployment and its two pods on labelled,
tainted nodes, cilium-config, the VTEP CRD) and the EC2 settings the checks expect (the VXLAN
rule with the on-prem network, IMDSv2). What the daemons themselves maintain (the Lease, the VPC
route, the CiliumVTEPConfig, their metrics) is judged as they wrote it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from hybrid_gateway.core.vtep import dotted_mask
from hybrid_gateway_contract import DEFAULT_NAMESPACE, VXLAN_PORT, Env
from hybrid_gateway_contract.security_groups import return_path_rules
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.lab import Lab, LabOptions, running_lab
from hybrid_gateway_testkit.ops_world import Replica, publish_cilium, publish_gateway

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def _publish_kubernetes(lab: Lab, kubeconfig: str) -> None:
    def publish() -> None:
        api = config.new_client_from_config(config_file=kubeconfig)
        daemon_env = lab.daemons.env(lab.plan.gateways[0].name)
        env = {k: daemon_env[k] for k in (Env.VPC_CIDR, Env.POD_CIDRS, Env.ROUTE_TABLE_IDS)}
        replicas = [  # POD_NAME and NODE_NAME of the lab's daemons are the host's name
            Replica(gw.name, gw.name, lab.control.e.instances[gw.name].instance_id, gw.ip)
            for gw in lab.plan.gateways
        ]
        try:
            publish_gateway(api, DEFAULT_NAMESPACE, env, replicas)
            # The agents' one VTEP mask as long as the VPC CIDRs (what the construct sets), so
            # the endpoints the daemons publish match all of the VPC (core.vtep).
            longest = max(ipaddress.IPv4Network(c).prefixlen for c in env[Env.VPC_CIDR].split(","))
            publish_cilium(api, **{"vtep-mask": dotted_mask(longest)})
        finally:
            api.close()

    assert lab.control.ctl is not None
    lab.control.ctl.call(publish)


def _prepare_ec2(lab: Lab) -> None:
    def prepare() -> None:
        ec2 = lab_ec2.ec2_client(lab.control.moto_url)
        groups: set[str] = set()
        for instance in lab.control.e.instances.values():
            ec2.modify_instance_metadata_options(
                InstanceId=instance.instance_id, HttpTokens="required"
            )
            reply = ec2.describe_instances(InstanceIds=[instance.instance_id])
            for interface in reply["Reservations"][0]["Instances"][0]["NetworkInterfaces"]:
                groups.update(g["GroupId"] for g in interface["Groups"])
        permissions: list[Any] = [
            {
                "IpProtocol": "udp",
                "FromPort": VXLAN_PORT,
                "ToPort": VXLAN_PORT,
                "IpRanges": [{"CidrIp": lab.plan.onprem_cidr}],
            }
        ]
        for rule in return_path_rules([lab.plan.vpc_cidr]):  # and the construct's return path
            permissions.append(
                {
                    "IpProtocol": rule.protocol,
                    "FromPort": rule.from_port,
                    "ToPort": rule.to_port,
                    "IpRanges": [{"CidrIp": rule.cidr}],
                }
            )
        for group in sorted(groups):
            ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=permissions)

    assert lab.control.ctl is not None
    lab.control.ctl.call(prepare)


def _cli(lab: Lab, kubeconfig: str, *args: str) -> tuple[int, Any]:
    """The CLI as an operator would run it, from the control namespace (where the emulator and
    the API server listen; the gateways' metrics are on the same segment)."""
    exe = str(Path(sys.executable).parent / "hybrid-gateway")
    env = {
        **lab_ec2.FAKE_AWS_ENV,
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "AWS_ENDPOINT_URL": lab.control.moto_url,
        "KUBECONFIG": kubeconfig,
    }
    overrides = [
        "--vpc-id", lab.control.e.vpc_id,
        "--remote-node-cidrs", lab.plan.onprem_cidr,
        "--remote-pod-cidrs", lab.plan.pod_cidrs,
    ]  # fmt: skip
    result = subprocess.run(
        ["ip", "netns", "exec", lab.w.control.name, exe, *args, *overrides, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_preflight_and_status_against_the_lab(tmp_path: Path) -> None:
    options = LabOptions(out_dir=tmp_path, log=lambda _: None)
    with running_lab(options) as lab:
        kubeconfig = str(lab.control.api.kubeconfig("operator"))
        _publish_kubernetes(lab, kubeconfig)
        _prepare_ec2(lab)

        code, report = _cli(lab, kubeconfig, "preflight")
        verdicts = {c["id"]: c["verdict"] for c in report["checks"]}
        assert verdicts.pop("VPC-CNI-SNAT") == "skipped"  # the lab has no aws-node
        assert set(verdicts.values()) == {"ok"}, report
        assert code == 0
        vtep = next(c for c in report["checks"] if c["id"] == "VTEP-CONFIG")
        assert "via 10.0.0.11 (gw-a)" in vtep["evidence"][0]

        code, status = _cli(lab, kubeconfig, "status")
        assert code == 0, status["unavailable"]
        assert status["leader"] == "gw-a"
        assert {r["points_at"] for r in status["routes"]} == {"leader"}
        replicas = {r["pod"]: (r["hybridNodesConfigured"], r["source"]) for r in status["replicas"]}
        nodes = len(lab.plan.nodes)
        assert replicas == {"gw-a": (nodes, "metrics"), "gw-b": (nodes, "metrics")}
        readiness = {r["pod"]: (r["readiness"], r["readinessSource"]) for r in status["replicas"]}
        assert all(
            text.startswith("ready") and source == "replica" for text, source in readiness.values()
        ), readiness
