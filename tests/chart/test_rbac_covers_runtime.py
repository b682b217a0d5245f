"""The chart's RBAC grants exactly what the running daemon uses, no less.

A real `hybrid-gateway run` (data plane included, in a network namespace of its own) works
against the test API server as leader: it programs a hybrid node, skips an invalid one with an
Event, publishes the CiliumVTEPConfig, and releases its Lease on SIGTERM, which a standby
(watching the Lease) takes over. Every request both made, read from the server's audit log, is
then checked against the Role and ClusterRole the chart renders, with Kubernetes' RBAC rules
(resourceNames match requests that name an object, and a list or watch only through a
`metadata.name` field selector; never a create).
The test API server itself does not enforce RBAC, so this is where a missing verb shows up
before a cluster answers 403.

Active-active: two real `hybrid-gateway run --no-dataplane` replicas, with the active-active
settings the chart renders, share the shards against the test API server and the EC2 emulator;
one stops and the other takes its shards over. Their requests are checked against the
active-active chart's Role and ClusterRole the same way, and the Lease requests are replayed in
another namespace and as deletes to show what the Role does not grant.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from hybrid_gateway_contract import (
    CILIUM_CONFIG_NAMESPACE,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    HYBRID_NODE_LABEL_KEY,
    Env,
)
from hybrid_gateway_contract.sharding import (
    LEASE_GROUP_LABEL,
    member_lease_name,
    shard_lease_name,
)
from hybrid_gateway_testkit.daemon import DaemonProcess, daemon_env
from hybrid_gateway_testkit.ec2emu import ec2_client, moto_ec2, seed_world
from hybrid_gateway_testkit.kube_api import start_kube_api
from hybrid_gateway_testkit.netns import netns_world
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

Manifest = dict[str, Any]
GW_IP = "10.0.1.10"
LEADER, STANDBY = "gw-a", "gw-b"

SEED = """
import json, sys
from kubernetes import client, config
api = client.CustomObjectsApi(config.new_client_from_config(config_file=sys.argv[1]))
for node in json.loads(sys.argv[2]):
    api.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", node)
"""
VTEP = """
import sys
from kubernetes import client, config
api = client.CustomObjectsApi(config.new_client_from_config(config_file=sys.argv[1]))
try:
    api.get_cluster_custom_object("cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway")
    print("present")
except client.ApiException as exc:
    print(exc.status)
"""


def _cilium_node(name: str, ip: str | None, pod_cidr: str) -> Manifest:
    addresses = [{"type": "InternalIP", "ip": ip}] if ip else []
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNode",
        "metadata": {"name": name, "labels": {HYBRID_NODE_LABEL_KEY: "hybrid"}},
        "spec": {"addresses": addresses, "ipam": {"podCIDRs": [pod_cidr]}},
    }


def _api_group(path: str) -> str:
    parts = path.strip("/").split("/")
    return "" if parts[0] == "api" else parts[1]


def _allowed(record: dict[str, Any], rules: list[tuple[str | None, Manifest]]) -> bool:
    """RBAC: some rule (from a ClusterRole, or a Role in the request's namespace) matches."""
    group, resource = _api_group(record["path"]), record["resource"]
    if record.get("subresource"):
        resource = f"{resource}/{record['subresource']}"
    for namespace, rule in rules:
        if namespace is not None and record.get("namespace") != namespace:
            continue
        if group not in rule["apiGroups"] or resource not in rule["resources"]:
            continue
        if record["verb"] not in rule["verbs"]:
            continue
        names = rule.get("resourceNames")
        if names and _requested_name(record) not in names:
            continue
        return True
    return False


def _requested_name(record: dict[str, Any]) -> str | None:
    """The object name RBAC sees: from the URL, or a list/watch's `metadata.name` selector."""
    if record["verb"] == "create":  # the name is in the body, unknown to the authorizer
        return None
    if record["verb"] in ("list", "watch"):
        selector = str(parse_qs(record.get("query") or "").get("fieldSelector", [""])[-1])
        if selector.startswith("metadata.name="):
            return selector.removeprefix("metadata.name=")
        return None
    name = record.get("name")
    return str(name) if name else None


def _rules(objects: list[Manifest]) -> list[tuple[str | None, Manifest]]:
    rules: list[tuple[str | None, Manifest]] = []
    for obj in objects:
        if obj["kind"] == "ClusterRole":
            rules += [(None, rule) for rule in obj["rules"]]
        elif obj["kind"] == "Role":
            rules += [(obj["metadata"]["namespace"], rule) for rule in obj["rules"]]
    return rules


@pytest.mark.netns
def test_every_request_of_a_running_daemon_is_granted_by_the_chart(
    chart_objects: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    objects = chart_objects["default"]
    roles = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"}
    assert roles == {DEFAULT_NAMESPACE, CILIUM_CONFIG_NAMESPACE}
    rules = _rules(objects)

    with netns_world() as world:
        gw = world.add("gw")
        hybrid = world.add("hy")
        world.link(gw, f"{GW_IP}/24", hybrid, "10.0.1.20/24")
        gw.sysctl("net.ipv4.ip_forward", "1")
        with start_kube_api(tmp_path / "api", netns=gw.name) as api:
            admin = str(api.kubeconfig("admin"))
            nodes = [
                _cilium_node("hybrid-1", "10.0.1.20", "10.85.1.0/24"),
                _cilium_node("hybrid-broken", None, "10.85.2.0/24"),  # no InternalIP: an Event
            ]
            gw.exec(sys.executable, "-c", SEED, admin, json.dumps(nodes))
            base_env = {
                "PATH": os.environ.get("PATH", ""),
                "POD_NAMESPACE": DEFAULT_NAMESPACE,
                "NODE_IP": GW_IP,
                "VPC_CIDR": "10.0.0.0/16",
                "POD_CIDRS": "10.85.0.0/16",
                "AWS_REGION": "us-east-1",
                "AWS_INSTANCE_ID": "i-0123456789abcdef0",
                "AWS_EC2_METADATA_DISABLED": "true",
                "LEASE_DURATION": "1",
                "RENEW_DEADLINE": "0.6",
                "RETRY_PERIOD": "0.15",
            }
            daemons: dict[str, subprocess.Popen[bytes]] = {}

            def start(identity: str, port: int, *flags: str) -> None:
                env = {
                    **base_env,
                    "KUBECONFIG": str(api.kubeconfig(identity)),
                    "POD_NAME": identity,
                    "HEALTH_ADDR": f"127.0.0.1:{port}",
                    "METRICS_ADDR": f"127.0.0.1:{port + 1}",
                }
                with (tmp_path / f"{identity}.log").open("wb") as log:
                    daemons[identity] = subprocess.Popen(
                        gw.exec_argv([sys.executable, "-m", "hybrid_gateway", "run", *flags]),
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )

            def holder() -> str | None:
                renewals = [
                    r["identity"]
                    for r in api.audit()
                    if r["resource"] == "leases"
                    and r["verb"] in ("create", "update")
                    and r["status"] in (200, 201)
                ]
                return renewals[-1] if renewals else None

            try:
                start(LEADER, 18088)
                wait_until(
                    "the VTEP config",
                    lambda: gw.exec(sys.executable, "-c", VTEP, admin).strip() == "present",
                    30.0,
                    poll_s=0.2,
                )
                start(STANDBY, 18188, "--no-dataplane")
                wait_until(
                    "the hybrid node's tunnel route",
                    lambda: "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0"),
                    30.0,
                    poll_s=0.2,
                )
                wait_until(
                    "an Event from the leader",
                    lambda: any(
                        r["verb"] == "create" and r["resource"] == "events"
                        for r in api.audit()
                        if r["identity"] == LEADER
                    ),
                    30.0,
                    poll_s=0.2,
                )
                wait_until(
                    "the standby's Lease watch",
                    lambda: any(
                        r["verb"] == "watch" and r["resource"] == "leases"
                        for r in api.audit()
                        if r["identity"] == STANDBY
                    ),
                    30.0,
                    poll_s=0.2,
                )
                daemons[LEADER].send_signal(signal.SIGTERM)
                daemons[LEADER].wait(timeout=15)
                wait_until(
                    "the standby holding the lease", lambda: holder() == STANDBY, 30.0, poll_s=0.2
                )
            finally:
                for daemon in daemons.values():
                    if daemon.poll() is None:
                        daemon.send_signal(signal.SIGTERM)
                        daemon.wait(timeout=15)
            records = [r for r in api.audit() if r["identity"] in (LEADER, STANDBY)]

    used = {(r["verb"], _api_group(r["path"]), r["resource"]) for r in records}
    # The run exercised both halves and the release, so the check below means something.
    assert ("watch", "cilium.io", "ciliumnodes") in used
    assert ("create", "cilium.io", "ciliumvtepconfigs") in used
    assert ("create", "", "events") in used
    assert ("update", "coordination.k8s.io", "leases") in used
    assert ("watch", "coordination.k8s.io", "leases") in used
    assert ("get", "", "configmaps") in used  # the Cilium agents' vtep-mask
    assert ("get", "apiextensions.k8s.io", "customresourcedefinitions") in used
    denied = [
        f"{r['identity']}: {r['verb']} {r['path']}?{r.get('query')} (name {r.get('name')})"
        for r in records
        if not _allowed(r, rules)
    ]
    assert denied == [], "requests the chart's RBAC would deny:\n" + "\n".join(denied)


REPLICAS = {"gw-a": "10.0.1.10", "gw-b": "10.0.1.11"}
#: The downward API's metadata.uid of each replica's Pod (POD_UID in the chart).
POD_UIDS = {
    "gw-a": "0f3c8a52-6a1e-4c8e-9a51-3b1f0d5e2c77",
    "gw-b": "6b1d4e0a-93f2-4c1e-8d7a-2e5f9c3b1a40",
}
ACTIVE_ACTIVE_ENV = (Env.MODE, Env.SHARDS, Env.MAX_ROUTES_PER_TABLE)


@pytest.mark.slow
def test_every_request_of_active_active_replicas_is_granted_by_the_chart(
    active_active_objects: dict[str, list[Manifest]], kube_api: ApiServer, tmp_path: Path
) -> None:
    from kubernetes import client, config

    objects = active_active_objects["aa-8"]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    chart_env = {e["name"]: e for e in container["env"]}
    assert chart_env[Env.POD_UID]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    settings = {name: chart_env[name]["value"] for name in ACTIVE_ACTIVE_ENV}
    shards = int(settings[Env.SHARDS])
    pod_cidrs = chart_env[Env.POD_CIDRS]["value"].split(",")
    tester = client.CoordinationV1Api(
        config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    )

    def holders() -> dict[str, str | None]:
        found = {
            lease.metadata.name: lease.spec.holder_identity
            for lease in tester.list_namespaced_lease(DEFAULT_NAMESPACE).items
        }
        return {
            shard_lease_name(DEFAULT_LEASE_NAME, i): found.get(
                shard_lease_name(DEFAULT_LEASE_NAME, i)
            )
            for i in range(shards)
        }

    with moto_ec2() as (host, port):
        world = seed_world(
            ec2_client(f"http://{host}:{port}"),
            tables=2,
            pod_cidrs=pod_cidrs,
            instance_names=tuple(REPLICAS),
        )
        replicas: dict[str, DaemonProcess] = {}
        try:
            for identity, node_ip in REPLICAS.items():
                env = daemon_env(
                    kubeconfig=kube_api.kubeconfig(identity),
                    identity=identity,
                    namespace=DEFAULT_NAMESPACE,
                    node_ip=node_ip,
                    pod_cidrs=pod_cidrs,
                    route_table_ids=world.table_ids,
                    instance_id=world.instances[identity],
                    ec2_url=f"http://{host}:{port}",
                    extra={**settings, Env.POD_UID: POD_UIDS[identity]},
                )
                replicas[identity] = DaemonProcess(
                    env=env, log_path=tmp_path / f"{identity}.log", args=("--no-dataplane",)
                ).start()
            wait_until(
                "every shard held, by both replicas",
                lambda: set(holders().values()) == set(REPLICAS),
                30.0,
            )
            # Each membership Lease is owned by its replica's Pod (garbage-collected with it).
            for identity, uid in POD_UIDS.items():
                member = tester.read_namespaced_lease(
                    member_lease_name(DEFAULT_LEASE_NAME, identity), DEFAULT_NAMESPACE
                )
                [owner] = member.metadata.owner_references
                assert (owner.kind, owner.name, owner.uid) == ("Pod", identity, uid)
                assert member.metadata.labels[LEASE_GROUP_LABEL] == DEFAULT_LEASE_NAME
            replicas["gw-a"].signal(signal.SIGTERM)
            replicas["gw-a"].wait()
            wait_until(
                "gw-b holding every shard", lambda: set(holders().values()) == {"gw-b"}, 30.0
            )
        finally:
            for replica in replicas.values():
                replica.stop()
    records = [r for r in kube_api.audit() if r["identity"] in REPLICAS]

    used = {(r["verb"], _api_group(r["path"]), r["resource"]) for r in records}
    for verb in ("get", "create", "update", "list", "watch"):
        assert (verb, "coordination.k8s.io", "leases") in used, verb
    assert ("create", "cilium.io", "ciliumvtepconfigs") in used
    rules = _rules(objects)
    denied = [
        f"{r['identity']}: {r['verb']} {r['path']}?{r.get('query')} (name {r.get('name')})"
        for r in records
        if not _allowed(r, rules)
    ]
    assert denied == [], "requests the active-active chart would deny:\n" + "\n".join(denied)
    # The Lease grants stop at the gateway's namespace, and never include a delete.
    lease_requests = [r for r in records if r["resource"] == "leases"]
    assert not any(_allowed({**r, "namespace": "kube-system"}, rules) for r in lease_requests)
    assert not any(_allowed({**r, "verb": "delete"}, rules) for r in lease_requests)
    # The active-standby Role would refuse them: the active-active rules are needed. (It
    # lists and watches the group too, read-only: its leader fences itself against shard owners.)
    standby = _rules(active_active_objects["as-same-inputs"])
    refused = {(r["verb"], r.get("name")) for r in lease_requests if not _allowed(r, standby)}
    assert ("update", shard_lease_name(DEFAULT_LEASE_NAME, 0)) in refused
    assert ("list", None) not in refused and ("watch", None) not in refused
