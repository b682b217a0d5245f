"""Active-active with the real path's node layout, two real daemons, in steady state.

Cilium's cluster-pool IPAM hands node pod CIDRs out in order from the start of the pool
(cilium/cilium pkg/ipam/cidrset/cidr_set.go `AllocateNext`), so the four hybrid nodes here hold
10.100.0.0/24 .. 10.100.3.0/24: all inside shard 0 of the plan's equal cut, whose owner alone
would carry every packet to their pods. The daemons route the spread of the allocated CIDRs
instead (contract/hybrid_gateway_contract/spread.py, read from the CiliumNodes the lab agents
register). Checked on the kernel/VPC path, with kube-proxy's INVALID drop on every gateway host
and the stateful per-ENI filters in place (`lab.strict`):

- the lab only calls the shards settled when the EC2 routes are exactly the spread's prefixes,
  each named by its Lease holder, and the VPC router forwards them (`Lab.shard_owners`);
- the cloud-to-hybrid probes went through BOTH gateways (each gateway's own forward-hook
  counters, summed over every shard rule, so the count does not depend on the lab's
  bookkeeping), and each shard's through its owner only;
- no probe lost, and TCP between mismatched pairs (forward and return paths on different
  gateways) works opened from either side, per call and on long-lived connections.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab.active_active import counters_follow
from hybrid_gateway_testkit.lab.analysis import flow_stats, parse_probe_lines
from hybrid_gateway_testkit.lab.lab import LabOptions, running_lab
from hybrid_gateway_testkit.lab.shards import shard_losses, tcp_classes
from hybrid_gateway_testkit.lab.topology import sequential_plan
from hybrid_gateway_testkit.netns import leftover_namespaces

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PLAN = sequential_plan(nodes=4, shards=4, gateways=2)
MISMATCHED = (
    "call/cloud/mismatched",
    "call/hybrid/mismatched",
    "conn/cloud/mismatched",
    "conn/hybrid/mismatched",
)


def test_forward_load_spreads_over_both_gateways_when_ipam_fills_the_pool_from_the_start(
    tmp_path: Path,
) -> None:
    equal, forward = PLAN.equal_cut_plan(), PLAN.shard_plan()
    assert {PLAN.node_shard(n, equal) for n in PLAN.nodes} == {0}  # the unkind layout
    hosts = [g.name for g in PLAN.gateways]
    options = LabOptions(out_dir=tmp_path, log=lambda _: None)
    with running_lab(options, PLAN) as lab:
        names = [ns.name for ns in lab.w.world.namespaces]
        owners = lab.monitor.shard_owners(hosts)  # settled on the spread's routes, spread evenly
        assert owners is not None and sorted(set(owners.values())) == hosts, owners
        # some mismatched pair's two directions cross the two gateways
        assert any(owners[i] != owners[j] for i, _, j, _ in PLAN.mismatched_pairs())
        held = {h: lab.daemons.shards_held(h) for h in hosts}
        assert held == {h: sorted(i for i, o in owners.items() if o == h) for h in hosts}
        before = lab.world.read_counters()
        lab.probes.start()
        time.sleep(3.0)
        after = lab.world.read_counters()
        raw = lab.probes.stop()
        assert lab.monitor.shard_owners(hosts) == owners  # steady state throughout
    assert not set(leftover_namespaces()) & set(names)

    forwarded = {
        host: sum(after[host].get(key, 0) - before[host].get(key, 0) for key in after[host]
                  if key[0] == counters.TO_HYBRID)
        for host in hosts
    }  # fmt: skip
    assert all(n >= 100 for n in forwarded.values()), forwarded  # both gateways carry pods
    carried = counters.carried(before, after, forward.count)
    assert counters_follow(carried, owners), carried
    log = parse_probe_lines(raw)
    losses = shard_losses(forward, flow_stats(log))
    assert [loss.total_lost for loss in losses] == [0] * forward.count, losses
    assert all(sum(loss.sent.values()) >= 2 * 100 for loss in losses), losses
    classes = tcp_classes(forward, log.tcp, {PLAN.cloud_pod_ip, *PLAN.cloud_targets}, set())
    for name in ("call/cloud/matched", *MISMATCHED):
        assert classes[name]["calls"] > 0 and classes[name]["failed"] == 0, (name, classes)
