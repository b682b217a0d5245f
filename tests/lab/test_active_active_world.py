"""The active-active lab world, programmed by hand: shard routes over a covering route in the
VPC router (longest prefix wins), several VTEP endpoints on the hybrid nodes, and the gateways'
per-shard counters showing which gateway carried each shard's probes.

The gateways are set up exactly as SPEC §3 describes (the drill test runs the real daemons);
this proves the world steers each shard through the gateway its routes name, so a drill's
per-shard figures can only be the gateways' doing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.agent import VtepEndpoint, VtepProgrammer
from hybrid_gateway_testkit.lab.analysis import flow_stats, parse_probe_lines
from hybrid_gateway_testkit.lab.events import EventLog
from hybrid_gateway_testkit.lab.handwired import program_gateway_by_hand, wait_for
from hybrid_gateway_testkit.lab.lab import Lab, LabOptions
from hybrid_gateway_testkit.lab.nsexec import NetnsExecutor
from hybrid_gateway_testkit.lab.shards import shard_losses
from hybrid_gateway_testkit.lab.topology import VTEP_DEVICE, active_active_plan
from hybrid_gateway_testkit.netns import leftover_namespaces

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

pytestmark = [pytest.mark.netns, pytest.mark.slow]

GW_MACS = {"gw-a": "02:11:22:33:44:0a", "gw-b": "02:11:22:33:44:0b"}


def test_each_shard_flows_through_the_gateway_its_routes_name(tmp_path: Path) -> None:
    plan = active_active_plan(shards=4, gateways=2)
    shard_plan = plan.shard_plan()
    owner = {0: "gw-a", 1: "gw-b", 2: "gw-a", 3: "gw-b"}
    options = LabOptions(out_dir=tmp_path, propagation_delay_s=0.0, log=lambda _: None)
    with Lab(options, plan) as lab:
        names = [ns.name for ns in lab.w.world.namespaces]
        assert len(names) == 3 + 2 + 2 * 4  # router, control, cloud; 2 gateways; 4 nodes + pods
        cloud = lab.w.cloud.ip("-4", "addr")
        assert all(f"inet {t}/24" in cloud for t in plan.cloud_targets)

        lab.start_ec2()
        lab.start_router()
        assert lab.ctl is not None
        ec2 = lab.e

        def client() -> EC2Client:
            return lab_ec2.ec2_client(lab.moto_url)

        def route(cidr: str, host: str) -> None:
            eni = ec2.instances[host].eni_id
            lab.ctl.call(lambda: client().create_route(  # type: ignore[union-attr]
                RouteTableId=ec2.route_table_id, DestinationCidrBlock=cidr, NetworkInterfaceId=eni
            ))  # fmt: skip

        # A covering route to gw-a, and the odd shards' prefixes to gw-b: the more specific
        # routes must win for their shards, the covering one for the rest.
        route(plan.pod_cidrs, "gw-a")
        for shard in shard_plan.shards:
            if owner[shard.index] == "gw-b":
                route(shard.pod_prefixes[0], "gw-b")
        assert wait_for(lambda: len(lab.router_state()) == 3, 10), lab.router_state()

        for host, mac in GW_MACS.items():
            program_gateway_by_hand(lab, host, mac)
        endpoints = [
            VtepEndpoint(cidr, lab.gateway_ip(owner[s.index]), GW_MACS[owner[s.index]])
            for s in shard_plan.shards
            for _, cidr in s.vtep_endpoints
        ]
        mask = "255.255.192.0"  # the endpoints' own /18, as spec.cidrMask
        for name, node in lab.w.node_plans.items():
            events = EventLog(tmp_path / f"vtep-{name}.jsonl")
            prog = VtepProgrammer(VTEP_DEVICE, node.table, plan.vpc_cidr, events)
            ex = NetnsExecutor(lab.w.nodes[name].name)
            ex.call(prog.apply, endpoints, mask)
            ex.close()
            events.close()
            table = lab.w.nodes[name].ip("route", "show", "table", str(node.table))
            for ep in endpoints:
                assert f"{ep.cidr} via {ep.tunnel_endpoint} dev {VTEP_DEVICE}" in table

        before = lab.read_counters()
        assert all(n == 0 for c in before.values() for n in c.values())
        lab.start_probes()
        time.sleep(1.5)
        raw = lab.stop_probes()
        after = lab.read_counters()

    log = parse_probe_lines(raw)
    losses = shard_losses(shard_plan, flow_stats(log))
    assert [loss.total_lost for loss in losses] == [0, 0, 0, 0], losses
    for c in counters.carried(before, after, shard_plan.count):
        # Only the owner carried the shard, and it carried every probe of it (none lost).
        assert c.carriers() == [owner[c.shard]], c
        direction = "cloud_to_hybrid" if c.direction == counters.TO_HYBRID else "hybrid_to_cloud"
        assert c.by_gateway[owner[c.shard]] == losses[c.shard].sent[direction] >= 100, c
    tcp_targets = {(t.src, t.dst) for t in log.tcp}
    assert tcp_targets == {(target, node.pod_ip) for _, node, target in plan.shard_pairs()}
    assert all(t.ok for t in log.tcp)
    assert not set(leftover_namespaces()) & set(names)
