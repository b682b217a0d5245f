"""The lab world itself: namespaces, VPC router following the EC2 route table, data path, cleanup.

The gateway here is programmed by hand exactly as docs/design.md#tunnel describes (the daemon's own
tests and the drill tests cover the daemon); this proves the world carries tunnelled traffic both
ways, so a drill failure can only be the gateway's.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hybrid_gateway_contract import VXLAN_DEVICE
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.agent import VtepEndpoint, VtepProgrammer
from hybrid_gateway_testkit.lab.analysis import parse_probe_lines, summarize
from hybrid_gateway_testkit.lab.events import EventLog
from hybrid_gateway_testkit.lab.handwired import program_gateway_by_hand
from hybrid_gateway_testkit.lab.lab import Lab, LabOptions
from hybrid_gateway_testkit.lab.load import CLOUD_LOAD_PORT_BASE, POD_LOAD_PORTS
from hybrid_gateway_testkit.lab.topology import VTEP_DEVICE, HybridNodePlan, LabPlan
from hybrid_gateway_testkit.netns import Netns, leftover_namespaces
from hybrid_gateway_testkit.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

pytestmark = [pytest.mark.netns, pytest.mark.slow]

GW_MAC = "02:11:22:33:44:55"


def test_world_routes_tunnel_and_cleanup(tmp_path: Path) -> None:
    lines: list[str] = []
    options = LabOptions(out_dir=tmp_path, propagation_delay_s=0.3, log=lines.append)
    with Lab(options) as lab:
        names = [ns.name for ns in lab.w.world.namespaces]
        # router, control, cloud; 2 gateways and their ENIs; 2 nodes + pods
        assert len(names) == 3 + 2 * 2 + 2 * 2
        for host in ("gw-a", "gw-b"):  # kube-proxy's rule on the host, the SG filter outside
            assert "ct state invalid" in lab.w.gateways[host].exec("nft", "list", "ruleset")
            assert "ct state established,related accept" in lab.w.enis[host].exec(
                "nft", "list", "ruleset"
            )
        hn1 = lab.w.nodes["hn1"]
        assert "from 10.100.1.0/24 lookup 101" in hn1.ip("rule")
        assert "blackhole 10.0.0.0/16" in hn1.ip("route", "show", "table", "101")
        assert "10.100.0.0/16" not in lab.w.router.ip("route")

        lab.control.start_ec2()
        lab.control.start_router()
        assert lab.control.ctl is not None
        ec2 = lab.control.e

        def client() -> EC2Client:
            return lab_ec2.ec2_client(lab.control.moto_url)

        lab.control.ctl.call(
            lambda: client().create_route(
                RouteTableId=ec2.route_table_id,
                DestinationCidrBlock=lab.plan.pod_cidrs,
                NetworkInterfaceId=ec2.instances["gw-a"].eni_id,
            )
        )
        wait_until(
            "the router's route to gw-a",
            lambda: "10.100.0.0/16 via 10.0.0.11" in lab.w.router.ip("route"),
            10,
        )

        # Hand-programmed tunnel (docs/design.md#tunnel on the gateway, Cilium-VTEP style on
        # the nodes).
        gw_ip = program_gateway_by_hand(lab, "gw-a", GW_MAC)
        for name, node in lab.w.node_plans.items():
            log = EventLog(tmp_path / f"vtep-{name}.jsonl")
            prog = VtepProgrammer(VTEP_DEVICE, node.table, lab.plan.vpc_cidr, log)
            # The programmer runs `ip`/`bridge` in the current namespace: enter the node's.
            from hybrid_gateway_testkit.lab.nsexec import NetnsExecutor

            ex = NetnsExecutor(lab.w.nodes[name].name)
            ex.call(prog.apply, [VtepEndpoint(lab.plan.vpc_cidr, gw_ip, GW_MAC)])
            ex.close()
            log.close()
            # Cilium's hash lookup under the agents' default vtep-mask (/24): one endpoint for
            # the whole VPC CIDR steers its first /24, where the cloud pod is.
            assert f"10.0.0.0/24 via {gw_ip} dev {VTEP_DEVICE}" in lab.w.nodes[name].ip(
                "route", "show", "table", str(node.table)
            )

        lab.probes.start()
        time.sleep(1.5)
        raw = lab.probes.stop()
        summary = summarize(parse_probe_lines(raw), {lab.plan.cloud_pod_ip})
        for direction in ("cloud_to_hybrid", "hybrid_to_cloud"):
            d = summary["directions"][direction]
            assert d["sent"] >= 2 * 100, direction
            assert d["lost"] == 0, summary
        assert summary["tcp"]["calls"] >= 10 and summary["tcp"]["failed"] == 0

        # Bulk TCP both ways: the receiving VTEP gets the sender's VXLAN bursts whole, as a
        # real receiver's GRO hands them over; cut into 1,500-byte packets on the way (the VPC
        # router's bridges did), no datagram could carry more than the 1,500-byte underlay MTU.
        w, node = lab.w, lab.w.node_plans["hn1"]
        cloud_ip = lab.plan.cloud_pod_ip
        for receiver, sender, src, dst, port, vtep, device in (
            (w.pods["hn1"], w.cloud, cloud_ip, node.pod_ip, POD_LOAD_PORTS[0],
             w.nodes["hn1"], VTEP_DEVICE),
            (w.cloud, w.pods["hn1"], node.pod_ip, cloud_ip, CLOUD_LOAD_PORT_BASE,
             w.gateways["gw-a"], VXLAN_DEVICE),
        ):  # fmt: skip
            before = _vtep_rx(vtep, device)
            _bulk_tcp(receiver, sender, src=src, dst=dst, port=port, size=8 * 1024 * 1024)
            after = _vtep_rx(vtep, device)
            rx_bytes, datagrams = after[0] - before[0], after[1] - before[1]
            assert datagrams > 0 and rx_bytes / datagrams > 2 * 1500, (dst, rx_bytes, datagrams)

        # A route move in EC2 reaches the router only after the propagation delay.
        t_move = time.monotonic()
        lab.control.ctl.call(
            lambda: client().replace_route(
                RouteTableId=ec2.route_table_id,
                DestinationCidrBlock=lab.plan.pod_cidrs,
                NetworkInterfaceId=ec2.instances["gw-b"].eni_id,
            )
        )
        wait_until(
            "the router's route to gw-b", lambda: "via 10.0.0.12" in lab.w.router.ip("route"), 10
        )
        switches = [e for e in lab.monitor.router_state().items()]
        assert switches == [(lab.plan.pod_cidrs, "10.0.0.12")]
        from hybrid_gateway_testkit.lab.events import read_events

        last = [
            e for e in read_events(lab.run_dir / "router.jsonl") if e["kind"] == "router-switch"
        ][-1]
        assert last["t"] - t_move >= 0.3
        pids = [p.pid for p in lab.procs.procs]
    assert not set(leftover_namespaces()) & set(names)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"process {pid} survived"


def _vtep_rx(ns: Netns, device: str) -> tuple[int, int]:
    """(bytes the VXLAN device received, UDP datagrams the namespace received): each counts
    one per decapsulated packet, so their ratio is the size of what arrived."""
    link = json.loads(ns.ip("-s", "-j", "link", "show", "dev", device))[0]
    snmp = [line.split() for line in ns.exec("cat", "/proc/net/snmp").splitlines()]
    head, values = [row for row in snmp if row[0] == "Udp:"][:2]
    return int(link["stats64"]["rx"]["bytes"]), int(values[head.index("InDatagrams")])


def _bulk_tcp(server: Netns, client: Netns, *, src: str, dst: str, port: int, size: int) -> None:
    """One iperf3 transfer of `size` bytes from `client` to `server`."""
    argv = server.exec_argv(["iperf3", "-s", "-1", "-B", dst, "-p", str(port)])
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(
            f"iperf3 on {dst}:{port}",
            lambda: bool(server.exec("ss", "-Hltn", "src", f"{dst}:{port}").strip()),
            10,
        )
        client.exec("iperf3", "-c", dst, "-B", src, "-p", str(port), "-n", str(size),
                    timeout=60)  # fmt: skip
    finally:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_interrupted_lab_still_cleans_up(tmp_path: Path) -> None:
    names: list[str] = []
    with (
        pytest.raises(KeyboardInterrupt),
        Lab(LabOptions(out_dir=tmp_path, log=lambda _: None)) as lab,
    ):
        names = [ns.name for ns in lab.w.world.namespaces]
        lab.control.start_ec2()
        raise KeyboardInterrupt
    assert names
    assert not set(leftover_namespaces()) & set(names)
    assert os.geteuid() == 0


def test_a_world_that_fails_half_built_is_removed(tmp_path: Path) -> None:
    bad = HybridNodePlan("hn1", "192.168.100.11", "10.100.1.0/33", 101)  # invalid prefix
    before = set(leftover_namespaces())
    with pytest.raises(ValueError, match="is not a valid netmask"):
        Lab(LabOptions(out_dir=tmp_path, log=lambda _: None), LabPlan(nodes=(bad,))).__enter__()
    assert set(leftover_namespaces()) <= before
