"""The active-active lab world, programmed by hand: shard routes over a covering route in the
VPC router (longest prefix wins), several VTEP endpoints on the hybrid nodes, and the gateways'
per-shard counters showing which gateway carried each shard's probes. The world is as strict as
a real gateway's path: kube-proxy's INVALID drop on every gateway host and a stateful filter
with the gateway security group's rules on every gateway ENI (`lab.strict`). So TCP between
mismatched pairs (pod of shard i, cloud address of shard i+1: the two directions cross the two
gateways) fails until the gateways carry the daemon's node filter (its notrack rules), and works
with it, opened from either side, per request or on a long-lived connection.

The gateways are set up exactly as docs/design.md#tunnel describes (the drill test runs the real
daemons); this proves the world steers each shard through the gateway its routes name, so a drill's
per-shard figures can only be the gateways' doing.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hybrid_gateway.adapters.nftables import Nft
from hybrid_gateway.core.nodefilter import ruleset
from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.agent import VtepEndpoint, VtepProgrammer
from hybrid_gateway_testkit.lab.analysis import flow_stats, parse_probe_lines
from hybrid_gateway_testkit.lab.events import EventLog
from hybrid_gateway_testkit.lab.handwired import program_gateway_by_hand
from hybrid_gateway_testkit.lab.lab import Lab, LabOptions
from hybrid_gateway_testkit.lab.load import IPERF3, LoadGenerator, LoadSettings
from hybrid_gateway_testkit.lab.nsexec import NetnsExecutor
from hybrid_gateway_testkit.lab.shards import shard_losses, tcp_classes
from hybrid_gateway_testkit.lab.strict import ENI_TABLE, KUBE_PROXY_TABLE
from hybrid_gateway_testkit.lab.topology import VTEP_DEVICE, active_active_plan
from hybrid_gateway_testkit.netns import Netns, leftover_namespaces
from hybrid_gateway_testkit.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

pytestmark = [pytest.mark.netns, pytest.mark.slow]

GW_MACS = {"gw-a": "02:11:22:33:44:0a", "gw-b": "02:11:22:33:44:0b"}
OWNER = {0: "gw-a", 1: "gw-b", 2: "gw-a", 3: "gw-b"}
#: Every TCP class the active-active probes make: webhook calls of the matched pairs, and for
#: the mismatched pairs calls and long-lived connections opened from either side.
EXPECTED_CLASSES = {
    "call/cloud/matched",
    "call/cloud/mismatched",
    "call/hybrid/mismatched",
    "conn/cloud/mismatched",
    "conn/hybrid/mismatched",
}


def dropped(ns: Netns, table: str) -> int:
    """Packets the counted drop rules of `table` in `ns` dropped."""
    listing = json.loads(ns.exec("nft", "-j", "list", "table", "ip", table))
    return sum(
        int(expr["counter"]["packets"])
        for item in listing["nftables"]
        if "rule" in item and any("drop" in expr for expr in item["rule"]["expr"])
        for expr in item["rule"]["expr"]
        if "counter" in expr
    )


def wire_by_hand(lab: Lab, tmp_path: Path) -> None:
    """Routes, tunnels and VTEP endpoints as the daemons would program them for OWNER."""
    plan, shard_plan = lab.plan, lab.plan.shard_plan()
    lab.control.start_ec2()
    lab.control.start_router()
    assert lab.control.ctl is not None
    ec2 = lab.control.e

    def client() -> EC2Client:
        return lab_ec2.ec2_client(lab.control.moto_url)

    def route(cidr: str, host: str) -> None:
        eni = ec2.instances[host].eni_id
        lab.control.ctl.call(lambda: client().create_route(  # type: ignore[union-attr]
            RouteTableId=ec2.route_table_id, DestinationCidrBlock=cidr, NetworkInterfaceId=eni
        ))  # fmt: skip

    # A covering route to gw-a, and the odd shards' prefixes to gw-b: the more specific
    # routes must win for their shards, the covering one for the rest.
    route(plan.pod_cidrs, "gw-a")
    for shard in shard_plan.shards:
        if OWNER[shard.index] == "gw-b":
            route(shard.pod_prefixes[0], "gw-b")
    wait_until(
        "three routes at the router",
        lambda: len(lab.monitor.router_state()) == 3,
        10,
        detail=lab.monitor.router_state,
    )

    for host, mac in GW_MACS.items():
        program_gateway_by_hand(lab, host, mac)
    endpoints = [
        VtepEndpoint(cidr, lab.world.gateway_ip(OWNER[s.index]), GW_MACS[OWNER[s.index]])
        for s in shard_plan.shards
        for _, cidr in s.vtep_endpoints
    ]
    mask = "255.255.192.0"  # the endpoints' own /18, as the agents' vtep-mask
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


def install_node_filters(lab: Lab) -> None:
    """What the daemon installs on its node: the product's own ruleset, as it renders it."""
    for host in GW_MACS:
        Nft(lab.w.gateways[host].exec_argv([])).apply(
            ruleset([lab.plan.pod_cidrs], [lab.plan.vpc_cidr], [])
        )


def probe_classes(lab: Lab, seconds: float = 2.5) -> dict[str, dict[str, Any]]:
    lab.probes.start()
    time.sleep(seconds)
    raw = lab.probes.stop()
    plan = lab.plan
    cloud_ips = {plan.cloud_pod_ip, *plan.cloud_targets}
    return tcp_classes(plan.shard_plan(), parse_probe_lines(raw).tcp, cloud_ips, set())


def test_each_shard_flows_through_the_gateway_its_routes_name(tmp_path: Path) -> None:
    plan = active_active_plan(shards=4, gateways=2)
    shard_plan = plan.shard_plan()
    options = LabOptions(out_dir=tmp_path, propagation_delay_s=0.0, log=lambda _: None)
    with Lab(options, plan) as lab:
        names = [ns.name for ns in lab.w.world.namespaces]
        # router, control, cloud; 2 gateways and their ENIs; 4 nodes + pods
        assert len(names) == 3 + 2 * 2 + 2 * 4
        cloud = lab.w.cloud.ip("-4", "addr")
        assert all(f"inet {t}/24" in cloud for t in plan.cloud_targets)
        wire_by_hand(lab, tmp_path)

        before = lab.world.read_counters()
        assert all(n == 0 for c in before.values() for n in c.values())
        lab.probes.start()
        time.sleep(2.5)
        raw = lab.probes.stop()
        after = lab.world.read_counters()
        dropped_invalid = {h: dropped(ns, KUBE_PROXY_TABLE) for h, ns in lab.w.gateways.items()}

        install_node_filters(lab)
        filtered = probe_classes(lab)

    log = parse_probe_lines(raw)
    losses = shard_losses(shard_plan, flow_stats(log))
    assert [loss.total_lost for loss in losses] == [0, 0, 0, 0], losses
    for c in counters.carried(before, after, shard_plan.count):
        # Only the owner carried the shard, and it carried every probe of it (none lost).
        assert c.carriers() == [OWNER[c.shard]], c
        direction = "cloud_to_hybrid" if c.direction == counters.TO_HYBRID else "hybrid_to_cloud"
        assert c.by_gateway[OWNER[c.shard]] == losses[c.shard].sent[direction] >= 100, c
    cloud_ips = {plan.cloud_pod_ip, *plan.cloud_targets}
    classes = tcp_classes(shard_plan, log.tcp, cloud_ips, set())
    assert set(classes) == EXPECTED_CLASSES, classes
    # Matched pairs: both directions through one gateway, its conntrack sees the whole flow.
    assert classes["call/cloud/matched"]["failed"] == 0, classes
    # Mismatched pairs without the node filter: every SYN/ACK reaches the other gateway
    # without its SYN, and that gateway's kube-proxy rule drops it.
    for name in EXPECTED_CLASSES - {"call/cloud/matched"}:
        stats = classes[name]
        assert stats["calls"] > 0 and stats["failed"] == stats["calls"], (name, classes)
    assert all(n > 0 for n in dropped_invalid.values()), dropped_invalid
    # With the daemon's node filter on both gateways: every class works.
    assert set(filtered) == EXPECTED_CLASSES
    for name, stats in filtered.items():
        assert stats["calls"] > 0 and stats["failed"] == 0, (name, filtered)
    assert not set(leftover_namespaces()) & set(names)


def test_replies_to_hybrid_pods_need_the_return_path_rules_on_the_other_eni(
    tmp_path: Path,
) -> None:
    """The ENI filters without the construct's return-path rules (everything else the same,
    node filters installed): connections the cloud opens still work, connections hybrid pods
    open to the cloud do not (the reply enters the other gateway's ENI untracked, and nothing
    admits it there)."""
    plan = dataclasses.replace(active_active_plan(shards=4, gateways=2), return_path_rules=False)
    options = LabOptions(out_dir=tmp_path, propagation_delay_s=0.0, log=lambda _: None)
    with Lab(options, plan) as lab:
        wire_by_hand(lab, tmp_path)
        install_node_filters(lab)
        classes = probe_classes(lab)
        eni_drops = {h: dropped(ns, ENI_TABLE) for h, ns in lab.w.enis.items()}
    for name in ("call/cloud/matched", "call/cloud/mismatched", "conn/cloud/mismatched"):
        assert classes[name]["failed"] == 0, (name, classes)
    for name in ("call/hybrid/mismatched", "conn/hybrid/mismatched"):
        assert classes[name]["failed"] == classes[name]["calls"] > 0, (name, classes)
    assert all(n > 0 for n in eni_drops.values()), eni_drops


def _received(ns: Netns, iface: str) -> int:
    return int(
        json.loads(ns.ip("-j", "-s", "link", "show", "dev", iface))[0]["stats64"]["rx"]["bytes"]
    )


@pytest.mark.skipif(shutil.which(IPERF3) is None, reason="iperf3 is a system dependency")
def test_each_shards_bulk_load_crosses_the_gateway_that_owns_it(tmp_path: Path) -> None:
    """`--load iperf3` in active-active mode, on the hand-wired world (shards 0 and 2 on gw-a,
    1 and 3 on gw-b, the daemon's node filters installed): one 1.5 s tunnel phase of the lab's
    load, every hybrid node both ways with its shard's cloud address. Every long transfer
    completes, and each gateway received at least the bytes of its own shards' transfers: the
    flows of shards owned by different gateways crossed different gateways."""
    plan = active_active_plan(shards=4, gateways=2)
    options = LabOptions(out_dir=tmp_path, propagation_delay_s=0.0, log=lambda _: None)
    settings = LoadSettings(streams=2, short_sizes=(128 * 1024,), short_streams=1)
    with Lab(options, plan) as lab:
        wire_by_hand(lab, tmp_path)
        install_node_filters(lab)
        gen = LoadGenerator(lab, settings)
        gen.start_servers()
        before = {h: _received(lab.w.gateways[h], lab.w.gateway_ifaces[h]) for h in GW_MACS}
        phase = gen.start_phase("aa", "tunnel", 1.5)
        gen.finish(phase)
        after = {h: _received(lab.w.gateways[h], lab.w.gateway_ifaces[h]) for h in GW_MACS}
        per_node = {n.name: gen.results(phase, {n.name}) for n in plan.nodes}
        gen.stop_servers()
    owned = dict.fromkeys(GW_MACS, 0)
    for node in plan.nodes:
        for direction, (long, short) in per_node[node.name].items():
            assert len(long) == 1, (node.name, direction)
            result = long[0][1]
            assert result.error is None and result.goodput_bps > 1e6, (node.name, result)
            failed = [t for t in short if t.error is not None]
            assert short and not failed, (node.name, direction, len(short), failed)
            owned[OWNER[plan.node_shard(node)]] += result.received_bytes
    assert all(owned.values()), owned
    for host, carried in owned.items():
        assert after[host] - before[host] >= carried, (host, after[host] - before[host], owned)
