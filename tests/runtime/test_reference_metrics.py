"""`/metrics` of a running daemon carries every series of the reference gateway, with its type,
labels and buckets, so dashboards and alerts written for it work unchanged.

The daemon runs with its data plane in a network namespace of its own (a veth holds NODE_IP, so
the primary NIC is found as on a node), and the exposition it serves is compared with the
reference's metric list below, written from its source. Our own metrics may come on top under
their own names; they never change a reference series.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_gateway_testkit.kube_api import start_kube_api
from hybrid_gateway_testkit.netns import netns_world
from hybrid_gateway_testkit.waiting import wait_until

pytestmark = pytest.mark.netns

GW_IP = "10.0.1.10"
PEER_IP = "10.0.1.20"
VPC_CIDR = "10.0.0.0/16"
POD_CIDRS = "10.85.0.0/16"

# aws/eks-hybrid-nodes-gateway, internal/metrics/metrics.go (registered metrics) and
# internal/metrics/collector.go (NetworkStatsCollector, read at scrape time):
# exposed name -> (Prometheus type, label names, histogram buckets).
ROUTE_UPDATE_BUCKETS = ("0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0")
LEADER_SETUP_BUCKETS = ("0.5", "1.0", "2.0", "5.0", "10.0", "15.0", "30.0")
REFERENCE: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # metrics.go
    "hybrid_gateway_hybrid_nodes_configured": ("gauge", (), ()),
    "hybrid_gateway_vtep_add_total": ("counter", (), ()),
    "hybrid_gateway_vtep_add_errors_total": ("counter", (), ()),
    "hybrid_gateway_vtep_remove_total": ("counter", (), ()),
    "hybrid_gateway_vtep_remove_errors_total": ("counter", (), ()),
    "hybrid_gateway_aws_route_table_update_total": ("counter", (), ()),
    "hybrid_gateway_aws_route_table_update_errors_total": ("counter", (), ()),
    "hybrid_gateway_aws_route_table_update_duration_seconds": (
        "histogram",
        (),
        ROUTE_UPDATE_BUCKETS,
    ),
    "hybrid_gateway_leader_is_active": ("gauge", (), ()),
    "hybrid_gateway_leader_setup_duration_seconds": ("histogram", (), LEADER_SETUP_BUCKETS),
    "hybrid_gateway_info": (
        "gauge",
        ("node_ip", "node_name", "vxlan_interface", "vpc_cidr", "pod_cidr"),
        (),
    ),
    # collector.go
    **{
        f"hybrid_gateway_{device}_{direction}_{what}_total": ("counter", (), ())
        for device in ("vxlan", "primary_nic")
        for direction in ("rx", "tx")
        for what in ("bytes", "packets", "dropped", "errors")
    },
    "hybrid_gateway_vxlan_interface_up": ("gauge", (), ()),
    "hybrid_gateway_vxlan_fdb_entries": ("gauge", (), ()),
    "hybrid_gateway_vxlan_route_count": ("gauge", (), ()),
    "hybrid_gateway_primary_nic_info": ("gauge", ("interface_name",), ()),
}

GET = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode())
except OSError as e:  # not listening yet
    sys.stdout.write(f"# failed: {e}")
"""
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    """(family name -> type from `# TYPE`, samples as (name, labels)) of a text exposition."""
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            samples.append((match.group(1), dict(_LABEL.findall(match.group(2) or ""))))
    return types, samples


def family_of(sample: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count", ""):
        base = sample.removesuffix(suffix) if suffix else sample
        if base in types:
            return base
    raise AssertionError(f"sample {sample} has no # TYPE line")


def test_exposition_has_every_reference_series_exactly(tmp_path: Path) -> None:
    with netns_world() as world:
        gw = world.add("gw")
        peer = world.add("pe")
        world.link(gw, f"{GW_IP}/24", peer, f"{PEER_IP}/24")
        gw.sysctl("net.ipv4.ip_forward", "1")
        with start_kube_api(tmp_path / "api", netns=gw.name) as api:
            env = {
                "PATH": os.environ.get("PATH", ""),
                "POD_NAME": "gw-a",
                "NODE_NAME": "node-a",
                "NODE_IP": GW_IP,
                "VPC_CIDR": VPC_CIDR,
                "POD_CIDRS": POD_CIDRS,
                "AWS_REGION": "us-east-1",
                "AWS_INSTANCE_ID": "i-0123456789abcdef0",
                "AWS_EC2_METADATA_DISABLED": "true",
                "LEASE_DURATION": "1",
                "RENEW_DEADLINE": "0.6",
                "RETRY_PERIOD": "0.15",
                "RESYNC_PERIOD": "2",
            }
            # The reference's own flags: its two listeners and controller-runtime's kubeconfig.
            argv = [
                "--health-probe-bind-address=127.0.0.1:18088",
                "--metrics-bind-address",
                "127.0.0.1:18080",
                f"-kubeconfig={api.kubeconfig('gw-a')}",
            ]
            log_path = tmp_path / "gw.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    gw.exec_argv([sys.executable, "-m", "hybrid_gateway", "run", *argv]),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:

                def get(url: str) -> str:
                    if proc.poll() is not None:
                        raise AssertionError(log_path.read_text()[-2000:])
                    return gw.exec(sys.executable, "-c", GET, url)

                # Ready as leader: the leader setup has converged and been measured.
                wait_until(
                    "ready as leader",
                    lambda: get("http://127.0.0.1:18088/readyz").startswith("ready (leader)"),
                    20.0,
                    poll_s=0.2,
                )
                types, samples = parse(get("http://127.0.0.1:18080/metrics"))
            finally:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)

    missing = sorted(set(REFERENCE) - set(types))
    assert not missing, f"reference series missing: {missing}"
    for name, (kind, _labels, _buckets) in REFERENCE.items():
        assert types[name] == kind, f"{name}: ours is a {types[name]}, the reference's a {kind}"

    seen: dict[str, int] = {}
    for sample, labels in samples:
        assert not sample.endswith("_created"), f"{sample}: the Go client has no _created series"
        family = family_of(sample, types)
        if family not in REFERENCE:
            continue  # ours: any labels
        seen[family] = seen.get(family, 0) + 1
        _kind, want_labels, buckets = REFERENCE[family]
        if sample.endswith("_bucket") and buckets:
            assert set(labels) == {"le"}, (sample, labels)
        else:
            assert set(labels) == set(want_labels), (sample, labels)
    assert set(seen) == set(REFERENCE)

    for family, (_kind, _labels, buckets) in REFERENCE.items():
        if buckets:
            les = [lab["le"] for name, lab in samples if name == f"{family}_bucket"]
            assert les == [*buckets, "+Inf"], (family, les)

    [info] = [labels for name, labels in samples if name == "hybrid_gateway_info"]
    assert info == {
        "node_ip": GW_IP,
        "node_name": "node-a",
        "vxlan_interface": "hybrid_vxlan0",
        "vpc_cidr": VPC_CIDR,
        "pod_cidr": POD_CIDRS,
    }
    [nic] = [labels for name, labels in samples if name == "hybrid_gateway_primary_nic_info"]
    assert nic["interface_name"].startswith("v"), nic  # the veth holding NODE_IP in the world
