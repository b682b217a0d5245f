"""`preflight` an operator can trust: no silent pass on a real misconfiguration, no false alarm
on a healthy cluster, and outcomes a pipeline can branch on.

The cases follow the EKS user guide's hybrid nodes gateway pages (two gateway nodes and pods,
the Auto Mode NodePool taint `hybrid-gateway-node:NoSchedule` without a value, UDP 8472 both
ways with the remote node network, VPC_CIDR / POD_CIDRS) and the reference gateway
aws/eks-hybrid-nodes-gateway (deploy/auto.yaml, charts/.../deployment.yaml: `operator: Exists`;
its controller-runtime Lease identity `<hostname>_<uuid>`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from hybrid_gateway_contract import (
    APP_NAME,
    CILIUM_GROUP,
    CILIUM_VERSION,
    DEFAULT_LEASE_NAME,
    GATEWAY_NODE_LABEL_KEY,
    GATEWAY_NODE_TAINT_EFFECT,
    GATEWAY_NODE_TAINT_KEY,
    VTEP_CONFIGS_PLURAL,
    VXLAN_PORT,
)
from hybrid_gateway_testkit.ec2emu import Ec2Proxy
from hybrid_gateway_testkit.ops_world import (
    POD_CIDRS,
    REMOTE_NODE_CIDR,
    SERVICE_CIDR,
    VXLAN_PERMISSION,
    OpsWorld,
    add_hybrid_node,
    make_active_active,
)

from .conftest import ALL_CHECKS, Clients, Run
from .test_failures import DENIED_BODY


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def not_ok(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in report["checks"] if c["verdict"] != "ok"}


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def ec2_proxy(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ec2Proxy]:
    host, port = moto_url.removeprefix("http://").split(":")
    proxy = Ec2Proxy((host, int(port)), label="preflight").start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
    yield proxy
    proxy.stop()


def _cilium_config(kube: client.ApiClient, **data: str | None) -> None:
    client.CoreV1Api(kube).patch_namespaced_config_map(
        "cilium-config", "kube-system", {"data": data}
    )


# --- silent passes -------------------------------------------------------------------------------


def test_a_pod_network_the_gateway_is_not_told_about_fails(
    run: Run, world: OpsWorld, clients: Clients
) -> None:
    """remotePodNetworks and a hybrid node's pod CIDR hold 10.103.0.0/16; POD_CIDRS lacks it."""
    _ec2, eks, kube = clients
    cluster = f"{world.cluster}-more-pods"
    eks.create_cluster(
        name=cluster,
        roleArn="arn:aws:iam::123456789012:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": world.subnet_ids},
        kubernetesNetworkConfig={"serviceIpv4Cidr": SERVICE_CIDR},
        remoteNetworkConfig={
            "remoteNodeNetworks": [{"cidrs": [REMOTE_NODE_CIDR]}],
            "remotePodNetworks": [{"cidrs": [*POD_CIDRS, "10.103.0.0/16"]}],
        },
    )
    add_hybrid_node(kube, "hybrid-node-2", "10.200.0.12", ["10.103.1.0/24"])
    ran = run("preflight", "--output", "json", cluster=cluster)
    found = checks_of(ran.json())["GATEWAY-CIDRS"]
    assert found["verdict"] == "fail", found
    assert any(
        "remotePodNetworks 10.103.0.0/16 is not in POD_CIDRS" in e for e in found["evidence"]
    )
    assert any("hybrid-node-2 pod CIDR(s) 10.103.1.0/24" in e for e in found["evidence"])
    assert "POD_CIDRS" in found["fix"]
    assert ran.code == 2


def test_a_vpc_cidr_the_gateway_is_not_told_about_fails(
    run: Run, world: OpsWorld, clients: Clients
) -> None:
    """A secondary VPC CIDR outside VPC_CIDR and outside every VTEP endpoint."""
    ec2 = clients[0]
    ec2.associate_vpc_cidr_block(VpcId=world.vpc_id, CidrBlock="10.1.0.0/16")
    ran = run("preflight", "--output", "json")
    report = ran.json()
    assert not_ok(report) == {"GATEWAY-CIDRS": "fail", "VTEP-CONFIG": "fail"}, report
    cidrs, vtep = checks_of(report)["GATEWAY-CIDRS"], checks_of(report)["VTEP-CONFIG"]
    assert any("VPC CIDR 10.1.0.0/16 is not in VPC_CIDR" in e for e in cidrs["evidence"])
    assert any("10.1.0.0/16 have no VTEP endpoint" in e for e in vtep["evidence"]), vtep
    assert "10.1.0.0/16" in checks_of(report)["CIDR-PLAN"]["evidence"][0]
    assert ran.code == 2


def test_one_replica_fails(run: Run, world: OpsWorld, kube: client.ApiClient) -> None:
    apps = client.AppsV1Api(kube)
    apps.patch_namespaced_deployment(APP_NAME, world.namespace, {"spec": {"replicas": 1}})
    client.CoreV1Api(kube).delete_namespaced_pod(world.pods["b"], world.namespace)
    ran = run("preflight", "--output", "json")
    found = checks_of(ran.json())["GATEWAY-REPLICAS"]
    assert found["verdict"] == "fail", found
    assert "replicas 1" in found["evidence"][0]
    assert "at least 2 replicas" in found["fix"]
    assert ran.code == 2


def test_with_ec2_denied_no_check_that_needs_it_passes(
    run: Run, world: OpsWorld, ec2_proxy: Ec2Proxy
) -> None:
    """CIDR-PLAN has no VPC CIDRs without EC2: it says so instead of passing on EKS data."""
    ec2_proxy.fault = lambda action, seq: (403, DENIED_BODY)
    report = run("preflight", "--output", "json").json()
    plan = checks_of(report)["CIDR-PLAN"]
    assert plan["verdict"] == "skipped", plan
    assert "VPC's CIDRs could not be read" in plan["evidence"][0]
    assert "UnauthorizedOperation" in plan["evidence"][0]
    assert "VPC CIDRs from the gateway's VPC_CIDR (the VPC was not read)" in plan["evidence"][0]
    assert checks_of(report)["GATEWAY-CIDRS"]["verdict"] == "skipped"
    assert "ok" not in {
        checks_of(report)[c]["verdict"]
        for c in ("CIDR-PLAN", "ROUTE-TARGETS", "SG-VXLAN", "GATEWAY-CIDRS")
    }


def test_a_hybrid_node_outside_the_remote_node_networks_fails(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    """Its VXLAN packets come from an address the security group and remoteNodeNetworks do not
    name (EKS user guide: hybrid nodes' IPs must be in remoteNodeNetworks)."""
    add_hybrid_node(kube, "hybrid-node-elsewhere", "192.168.7.20", ["10.100.2.0/24"])
    report = run("preflight", "--output", "json").json()
    assert not_ok(report) == {"CILIUM-HYBRID-NODES": "fail"}, not_ok(report)
    found = checks_of(report)["CILIUM-HYBRID-NODES"]
    assert any(
        "InternalIP 192.168.7.20 outside the remote node networks" in e for e in found["evidence"]
    )


def test_a_cilium_tunnel_port_other_than_8472_fails(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    _cilium_config(kube, **{"tunnel-port": "8473"})
    report = run("preflight", "--output", "json").json()
    assert not_ok(report) == {"CILIUM-VTEP-ENABLED": "fail"}, not_ok(report)
    assert "tunnel-port=8473" in checks_of(report)["CILIUM-VTEP-ENABLED"]["evidence"][0]
    _cilium_config(kube, **{"tunnel-port": "0"})  # the chart's default: VXLAN's 8472
    assert not_ok(run("preflight", "--output", "json").json()) == {}


def test_a_more_specific_route_inside_a_pod_cidr_fails(
    run: Run, world: OpsWorld, clients: Clients
) -> None:
    """The longest prefix wins in a VPC route table: a /24 of a pod CIDR to a transit gateway
    takes those pods' traffic away from the gateway's /16 route."""
    ec2 = clients[0]
    ec2.create_route(
        RouteTableId=world.owned_tables[0],
        DestinationCidrBlock="10.100.5.0/24",
        TransitGatewayId=world.transit_gateway,
    )
    report = run("preflight", "--output", "json").json()
    assert not_ok(report) == {"ROUTE-TARGETS": "fail"}, not_ok(report)
    targets = checks_of(report)["ROUTE-TARGETS"]
    assert any(
        "10.100.5.0/24: transit-gateway" in e and "more specific than 10.100.0.0/16" in e
        for e in targets["evidence"]
    ), targets


# --- false alarms --------------------------------------------------------------------------------


def test_a_live_lease_is_judged_when_it_was_read_not_after_slow_reads(
    run: Run, world: OpsWorld, kube: client.ApiClient, ec2_proxy: Ec2Proxy
) -> None:
    """A 6 s Lease renewed just now; every EC2 call then takes 1 s (about ten of them), so the
    run ends well after the Lease's duration. Read first, it was fresh: no alarm."""
    client.CoordinationV1Api(kube).patch_namespaced_lease(
        DEFAULT_LEASE_NAME,
        world.namespace,
        {
            "spec": {
                "leaseDurationSeconds": 6,
                "renewTime": rfc3339(dt.datetime.now(dt.UTC)),
            }
        },
    )
    ec2_proxy.latency_s = 1.0
    ran = run("preflight", "--output", "json")
    assert ec2_proxy.count() >= 7, ec2_proxy.count()  # the run really outlasted the Lease
    lease = checks_of(ran.json())["GATEWAY-LEASE"]
    assert lease["verdict"] == "ok", lease
    assert ran.code == 0, not_ok(ran.json())


def test_vxlan_allowed_by_a_customer_managed_prefix_list_passes(
    run: Run, world: OpsWorld, clients: Clients
) -> None:
    """UDP 8472 both ways from a prefix list whose two /17 entries hold the remote node /16."""
    ec2 = clients[0]
    prefix_list = ec2.create_managed_prefix_list(
        PrefixListName=f"on-prem-{uuid.uuid4().hex[:6]}",
        AddressFamily="IPv4",
        MaxEntries=5,
        Entries=[{"Cidr": "10.200.0.0/17"}, {"Cidr": "10.200.128.0/17"}],
    )["PrefixList"]["PrefixListId"]
    by_list = {
        "IpProtocol": "udp",
        "FromPort": VXLAN_PORT,
        "ToPort": VXLAN_PORT,
        "PrefixListIds": [{"PrefixListId": prefix_list}],
    }
    group = world.security_group
    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[VXLAN_PERMISSION])
    ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[VXLAN_PERMISSION])
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[by_list])
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=[by_list])
    ran = run("preflight", "--output", "json")
    sg = checks_of(ran.json())["SG-VXLAN"]
    assert sg["verdict"] == "ok", sg
    assert f"via prefix list {prefix_list}" in sg["evidence"][0]
    # A rule naming another security group admits only ENIs in it, never on-prem nodes.
    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[by_list])
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "udp",
                "FromPort": VXLAN_PORT,
                "ToPort": VXLAN_PORT,
                "UserIdGroupPairs": [{"GroupId": group}],
            }
        ],
    )
    sg = checks_of(run("preflight", "--output", "json").json())["SG-VXLAN"]
    assert sg["verdict"] == "fail", sg
    assert any("admit only ENIs in those groups" in e for e in sg["evidence"]), sg


def test_the_aws_guides_auto_mode_taint_without_a_value_passes(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    taint = {"key": GATEWAY_NODE_TAINT_KEY, "effect": GATEWAY_NODE_TAINT_EFFECT}
    for node in world.nodes.values():
        client.CoreV1Api(kube).patch_node(node, {"spec": {"taints": [taint]}})
    ran = run("preflight", "--output", "json")
    found = checks_of(ran.json())["NODE-LABEL-TAINT"]
    assert found["verdict"] == "ok", found
    assert "taint hybrid-gateway-node:NoSchedule present" in found["evidence"][0]
    assert ran.code == 0


def test_the_reference_gateways_lease_holder_is_recognised(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    """controller-runtime's identity: the hostNetwork pod's hostname (its node) + _ + a UUID."""
    holder = f"{world.nodes['a']}_{uuid.uuid4()}"
    client.CoordinationV1Api(kube).patch_namespaced_lease(
        DEFAULT_LEASE_NAME, world.namespace, {"spec": {"holderIdentity": holder}}
    )
    ran = run("preflight", "--output", "json")
    checks = checks_of(ran.json())
    assert checks["GATEWAY-LEASE"]["verdict"] == "ok", checks["GATEWAY-LEASE"]
    assert f"pod {world.pods['a']} on {world.nodes['a']}" in checks["GATEWAY-LEASE"]["evidence"][0]
    assert checks["VTEP-CONFIG"]["verdict"] == "ok", checks["VTEP-CONFIG"]
    assert checks["ROUTE-TARGETS"]["verdict"] == "ok", checks["ROUTE-TARGETS"]
    assert ran.code == 0


# --- output --------------------------------------------------------------------------------------


def test_outcomes_an_unread_source_and_a_usage_error_have_their_own_exit_codes(
    run: Run, world: OpsWorld, ec2_proxy: Ec2Proxy, capsys: Any
) -> None:
    healthy = run("preflight", "--output", "json")
    assert (healthy.code, healthy.json()["outcome"], healthy.json()["schemaVersion"]) == (
        0,
        "passed",
        1,
    )
    ec2_proxy.fault = lambda action, seq: (403, DENIED_BODY)
    incomplete = run("preflight", "--output", "json")
    report = incomplete.json()
    assert "fail" not in {c["verdict"] for c in report["checks"]}
    assert (incomplete.code, report["outcome"], report["exitCode"]) == (3, "incomplete", 3)
    assert list(report) == [
        "schemaVersion",
        "command",
        "outcome",
        "exitCode",
        "summary",
        "unavailable",
        "checks",
    ]
    with pytest.raises(SystemExit) as exited:
        run("preflight", "--output", "yaml")
    assert exited.value.code == 64
    assert "--output" in capsys.readouterr().err


def test_a_misconfiguration_found_wins_over_an_unread_source(
    run: Run, world: OpsWorld, kube: client.ApiClient, ec2_proxy: Ec2Proxy
) -> None:
    ec2_proxy.fault = lambda action, seq: (403, DENIED_BODY)
    _cilium_config(kube, **{"enable-vtep": "false"})
    ran = run("preflight", "--output", "json")
    assert ran.json()["unavailable"]["ec2"].startswith("UnauthorizedOperation")
    assert (ran.code, ran.json()["outcome"]) == (2, "failed")


def test_a_lease_held_by_a_vanished_pod_fails_and_says_how_to_unblock(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    gone = f"{APP_NAME}-7d9f-c"
    client.CoordinationV1Api(kube).patch_namespaced_lease(
        DEFAULT_LEASE_NAME, world.namespace, {"spec": {"holderIdentity": gone}}
    )
    ran = run("preflight", "--output", "json")
    lease = checks_of(ran.json())["GATEWAY-LEASE"]
    assert lease["verdict"] == "fail", lease
    assert any(f"holder {gone} is a pod that no longer exists" in e for e in lease["evidence"])
    assert f"delete lease {DEFAULT_LEASE_NAME}" in lease["fix"]
    assert ran.code == 2


def test_a_pending_replica_shows_the_schedulers_reason(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    message = (
        "0/3 nodes are available: 1 node(s) had untolerated taint {hybrid-gateway-node: }, "
        "2 node(s) didn't match Pod's node affinity/selector."
    )
    client.CoreV1Api(kube).patch_namespaced_pod_status(
        world.pods["b"],
        world.namespace,
        {
            "status": {
                "phase": "Pending",
                "hostIP": None,
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                    }
                ],
            }
        },
    )
    ran = run("preflight", "--output", "json")
    replicas = checks_of(ran.json())["GATEWAY-REPLICAS"]
    assert replicas["verdict"] == "warn", replicas
    assert any(f"not scheduled: Unschedulable: {message}" in e for e in replicas["evidence"])


def test_with_ec2_unreadable_the_node_checks_run_on_kubernetes_data(
    run: Run, world: OpsWorld, kube: client.ApiClient, ec2_proxy: Ec2Proxy
) -> None:
    ec2_proxy.fault = lambda action, seq: (403, DENIED_BODY)
    healthy = checks_of(run("preflight", "--output", "json").json())["NODE-LABEL-TAINT"]
    assert healthy["verdict"] == "ok", healthy
    client.CoreV1Api(kube).patch_node(
        world.nodes["b"], {"metadata": {"labels": {GATEWAY_NODE_LABEL_KEY: None}}}
    )
    found = checks_of(run("preflight", "--output", "json").json())["NODE-LABEL-TAINT"]
    assert found["verdict"] == "fail", found
    assert any(f"{world.nodes['b']} (" in e and "MISSING" in e for e in found["evidence"])


# --- the agents' VTEP mask -----------------------------------------------------------------------


def test_the_agents_default_mask_cannot_match_a_vpc_16(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    """No vtep-mask: the agents key endpoints by destination & /24, so a /16 endpoint is
    matched by its first /24 only, and 256 /24 endpoints exceed Cilium's 8."""
    _cilium_config(kube, **{"vtep-mask": None})
    ran = run("preflight", "--output", "json")
    match = checks_of(ran.json())["CILIUM-VTEP-MATCH"]
    assert match["verdict"] == "fail", match
    assert "<unset: agent default 255.255.255.0> (/24)" in match["evidence"][0]
    assert "need 256 endpoints of /24" in match["evidence"][1]
    assert "vtep.mask=255.255.0.0" in match["evidence"][1]
    assert ran.code == 2


def test_a_longer_agent_mask_is_met_by_cutting_the_vpc_cidr(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    """A /17 agent mask: two /17 endpoints match all of the /16; the one /16 endpoint the
    world holds does not, and VTEP-CONFIG says what the leader would publish instead."""
    _cilium_config(kube, **{"vtep-mask": "255.255.128.0"})
    report = run("preflight", "--output", "json").json()
    checks = checks_of(report)
    assert checks["CILIUM-VTEP-MATCH"]["verdict"] == "ok", checks["CILIUM-VTEP-MATCH"]
    assert checks["CILIUM-VTEP-MATCH"]["evidence"][1] == "endpoints 10.0.0.0/17, 10.0.128.0/17"
    assert not_ok(report) == {"VTEP-CONFIG": "fail"}
    assert "10.0.0.0/17, 10.0.128.0/17" in checks["VTEP-CONFIG"]["evidence"][0]


def test_a_crd_that_does_not_serve_v2_fails(
    run: Run, world: OpsWorld, kube: client.ApiClient
) -> None:
    extensions = client.ApiextensionsV1Api(kube)
    name = f"{VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}"
    crd = extensions.read_custom_resource_definition(name)
    for version in crd.spec.versions:
        version.served = version.name != CILIUM_VERSION
    crd.spec.versions.append(
        client.V1CustomResourceDefinitionVersion(name="v2alpha1", served=True, storage=False)
    )
    extensions.replace_custom_resource_definition(name, crd)
    match = checks_of(run("preflight", "--output", "json").json())["CILIUM-VTEP-MATCH"]
    assert match["verdict"] == "fail", match
    assert match["evidence"] == [f"{name} serves v2alpha1, not {CILIUM_VERSION}"]


def test_active_active_endpoints_must_be_as_long_as_the_agents_mask(
    run: Run, world: OpsWorld, clients: Clients
) -> None:
    ec2, _eks, kube = clients
    make_active_active(world, ec2, kube, shards=4)  # /18 endpoints, the mask set to /18
    report = run("preflight", "--output", "json").json()
    assert checks_of(report)["CILIUM-VTEP-MATCH"]["verdict"] == "ok", report
    _cilium_config(kube, **{"vtep-mask": "255.255.0.0"})
    match = checks_of(run("preflight", "--output", "json").json())["CILIUM-VTEP-MATCH"]
    assert match["verdict"] == "fail", match
    assert "endpoints of /18 under the Cilium agents' vtep-mask /16" in match["evidence"][1]
    assert "vtep.mask=255.255.192.0" in match["evidence"][1]


def test_every_check_still_passes_on_the_healthy_world(run: Run) -> None:
    report = run("preflight", "--output", "json").json()
    assert not_ok(report) == {}
    assert [c["id"] for c in report["checks"]] == ALL_CHECKS
