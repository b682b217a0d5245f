"""`hybrid-gateway run` WITH the data plane, in a network namespace of its own: the VTEP config
it publishes carries the MAC of the `hybrid_vxlan0` device it created, a hybrid CiliumNode gets
its tunnel route, readiness combines both halves, and SIGTERM leaves the tunnel in place.

The API server runs inside the same namespace (a process in a namespace cannot reach the root
namespace's loopback), so the test reads it from inside too. No route tables are configured:
this test is about the wiring, the EC2 side is covered by the moto tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.apiserver import ApiServer
from hybrid_gateway_testkit.netns import Netns, netns_world
from hybrid_gateway_testkit.waiting import wait_until

pytestmark = pytest.mark.netns

GW_IP = "10.0.1.10"
HYBRID_IP = "10.0.1.20"

KUBE = """
import json, sys
from kubernetes import client, config
api = client.CustomObjectsApi(config.new_client_from_config(config_file=sys.argv[1]))
if sys.argv[2] == "vtep":
    try:
        obj = api.get_cluster_custom_object(
            "cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway"
        )
        print(json.dumps(obj["spec"]["endpoints"]))
    except client.ApiException:
        print("null")
else:
    api.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", json.loads(sys.argv[3]))
"""
READYZ = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
except OSError as e:
    print(0, e)
"""


def device_mac(ns: Netns) -> str | None:
    out = ns.ip("-j", "link", "show", "hybrid_vxlan0", check=False)
    return str(json.loads(out)[0]["address"]) if out.strip() else None


def test_daemon_with_data_plane_publishes_its_device_mac(tmp_path: Path) -> None:
    with netns_world() as world:
        gw = world.add("gw")
        hybrid = world.add("hy")
        world.link(gw, f"{GW_IP}/24", hybrid, f"{HYBRID_IP}/24")
        gw.sysctl("net.ipv4.ip_forward", "1")
        with ApiServer.start(tmp_path / "api", netns=gw.name) as api:
            kubeconfig = str(api.kubeconfig("gw-a"))
            env = {
                "PATH": os.environ.get("PATH", ""),
                "KUBECONFIG": kubeconfig,
                "POD_NAME": "gw-a",
                "NODE_IP": GW_IP,
                "VPC_CIDR": "10.0.0.0/16",
                "POD_CIDRS": "10.85.0.0/16",
                "AWS_REGION": "us-east-1",
                "AWS_INSTANCE_ID": "i-0123456789abcdef0",
                "AWS_EC2_METADATA_DISABLED": "true",
                "LEASE_DURATION": "1",
                "RENEW_DEADLINE": "0.6",
                "RETRY_PERIOD": "0.15",
                "RESYNC_PERIOD": "2",
                "HEALTH_ADDR": "127.0.0.1:18088",
                "METRICS_ADDR": "127.0.0.1:18080",
            }
            log_path = tmp_path / "gw.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    gw.exec_argv([sys.executable, "-m", "hybrid_gateway", "run"]),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:

                def readyz() -> str:
                    return gw.exec(sys.executable, "-c", READYZ, "http://127.0.0.1:18088/readyz")

                wait_until(
                    "ready as leader",
                    lambda: readyz().startswith("200 ready (leader)"),
                    20.0,
                    poll_s=0.2,
                )
                mac = device_mac(gw)
                assert mac == vxlan_device_mac(GW_IP)
                endpoints = json.loads(gw.exec(sys.executable, "-c", KUBE, kubeconfig, "vtep"))
                assert endpoints == [
                    {
                        "name": "vpc-gateway",  # one VPC CIDR: the reference's name
                        "tunnelEndpoint": GW_IP,
                        "cidr": "10.0.0.0/16",
                        "mac": mac,
                    }
                ]

                node = {
                    "apiVersion": "cilium.io/v2",
                    "kind": "CiliumNode",
                    "metadata": {
                        "name": "hybrid-1",
                        "labels": {"eks.amazonaws.com/compute-type": "hybrid"},
                    },
                    "spec": {
                        "addresses": [{"type": "InternalIP", "ip": HYBRID_IP}],
                        "ipam": {"podCIDRs": ["10.85.1.0/24"]},
                    },
                }
                gw.exec(sys.executable, "-c", KUBE, kubeconfig, "node", json.dumps(node))
                wait_until(
                    "tunnel route of the hybrid node",
                    lambda: "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0"),
                    20.0,
                    poll_s=0.2,
                )

                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0, log_path.read_text()[-2000:]
                # the tunnel stays: this node keeps forwarding until the routes have moved
                assert device_mac(gw) == mac
                assert "10.85.1.0/24" in gw.ip("route", "show", "dev", "hybrid_vxlan0")
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
