"""`kill-owner` end to end: three real `hybrid-gateway run` daemons in active-active mode, four
shards, via the CLI exactly as `make lab DRILL=kill-owner LAB_ARGS="--mode active-active
--gateways 3"` runs it.

The world is the strict one (kube-proxy's INVALID drop on every gateway host, a stateful
filter with the gateway security group's rules on every gateway ENI), and the probes include
TCP between mismatched pairs (pod of shard i, cloud address of shard i+1: its two directions
cross two owners), opened from both sides, per call and on long-lived connections.

Checked from the report and, independently, from the raw probe log: before the kill every
shard's probes went through its owner only (the gateways' own packet counters, cross-checked
with the shard Leases and the daemons' /metrics); the node failure cost the survivors' shards
nothing; the failed replica's shards moved to survivors and lost traffic only until then.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hybrid_gateway_testkit.lab.analysis import flow_stats, parse_probe_lines
from hybrid_gateway_testkit.lab.lab import namespaces_of_run
from hybrid_gateway_testkit.lab.shards import shard_losses
from hybrid_gateway_testkit.lab.topology import active_active_plan

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PLAN = active_active_plan(shards=4, gateways=3)
MOVE_STEPS = ("lease_taken", "ec2_routes_moved", "vpc_router_switched", "vtep_config_moved",
              "hybrid_nodes_switched")  # fmt: skip


def _run_kill_owner(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_gateway_testkit.lab", "--drill", "kill-owner",
         "--mode", "active-active", "--gateways", "3", "--shards", "4", "--out", str(out),
         "--baseline", "2", "--after", "2"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not namespaces_of_run(proc.stdout), "the lab left namespaces behind"
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.loads(Path(last["report"]).read_text())
    assert Path(last["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return last, report


def test_kill_owner_moves_only_the_failed_replicas_shards(tmp_path: Path) -> None:
    last, report = _run_kill_owner(tmp_path)
    shards = report["per_shard"]
    owners_before = {int(i): s["owner_before"] for i, s in shards.items()}
    owners_after = {int(i): s["owner_after"] for i, s in shards.items()}
    victim = last["victim"]
    assert sorted(set(owners_before.values())) == ["gw-a", "gw-b", "gw-c"]  # spread over all
    moved = sorted(i for i, o in owners_before.items() if o == victim)
    kept = sorted(set(owners_before) - set(moved))
    assert moved and last["moved_shards"] == moved and report["kept_shards"] == kept

    # Before the kill: each shard's probes, both ways, went through its owner and no other
    # gateway (the gateways' counters), and the owners are the ones the daemons report.
    for i, s in shards.items():
        for direction, by_gateway in s["carried_before"].items():
            assert {g for g, n in by_gateway.items() if n > 0} == {s["owner_before"]}, (i, s)
            assert by_gateway[s["owner_before"]] >= 100, (i, direction, by_gateway)
    assert report["counters_follow_owners_before"] is True
    held = report["metrics_shards_held_before"]
    assert held == {g: sorted(i for i, o in owners_before.items() if o == g) for g in held}

    # The failed replica's shards moved to survivors (every step seen), the others stayed.
    assert all(owners_after[i] == owners_before[i] for i in kept)
    assert report["kept_shards_owner_changed"] == []  # in every sample of the monitor
    assert all(owners_after[i] in report["survivors"] for i in moved)
    for i in moved:
        steps = shards[str(i)]["time_to_move_s"]
        assert all(steps[k] is not None for k in MOVE_STEPS), steps
        # The Lease had to change hands before the shard's routes could move, and only after
        # the dead owner's last renewal had expired (API server audit); nothing written by the
        # dead owner afterwards.
        assert steps["lease_taken"] <= steps["ec2_routes_moved"] <= steps["vpc_router_switched"]
        writes = shards[str(i)]["api_writes"]
        assert writes is not None, report["audit_error"]
        gap = writes["new_leader_first_lease_write_s"] - writes["old_leader_last_lease_write_s"]
        assert gap >= 0.9 * report["settings"]["lease_duration_s"], writes
        assert writes["old_leader_vtep_writes_after_takeover"] == 0
    assert report["counters_follow_owners_after"] is True
    assert report["metrics_shards_held_after"] == {
        g: sorted(i for i, o in owners_after.items() if o == g) for g in report["survivors"]
    }

    # Loss per shard, recomputed from the raw probe log: none for the survivors' shards (not
    # a probe, not a webhook call), a real gap for the failed replica's (its link went down).
    lines = Path(report["raw_log"]).read_text().splitlines()
    losses = shard_losses(PLAN.shard_plan(), flow_stats(parse_probe_lines(lines)))
    for loss in losses:
        s = shards[str(loss.shard)]
        assert s["probes_lost"] == loss.total_lost
        assert s["loss_window_s"] == round(loss.longest_window_s, 4)
        assert s["probes_sent"] >= 2 * 100 * (2 + 2)  # both ways, baseline + after at least
    assert [loss.total_lost for loss in losses if loss.shard in kept] == [0] * len(kept)
    assert all(shards[str(i)]["webhook_calls_failed"] == 0 for i in kept)
    assert last["survivor_shards_probes_lost"] == 0
    assert all(losses[i].total_lost > 0 for i in moved)
    assert all(report["flowing_after"].values()) and len(report["flowing_after"]) == 8

    # TCP: every class ran, and no call or long-lived request between two kept shards failed
    # (a mismatched pair of two survivors' shards crosses two live gateways the whole time).
    classes = report["tcp_by_class"]
    assert set(classes) == {
        "call/cloud/matched",
        "call/cloud/mismatched",
        "call/hybrid/mismatched",
        "conn/cloud/mismatched",
        "conn/hybrid/mismatched",
    }, classes
    assert all(c["calls"] > 0 for c in classes.values()), classes
    assert report["tcp_failed_on_kept_shards"] == 0, classes
    # Long-lived connections (both directions of each crossing a moved shard's owner for two
    # of the four pairs) outlive the failover: TCP retransmits once the new owner forwards.
    assert all(classes[k]["connections_reopened"] == 0 for k in classes if k.startswith("conn/"))
    assert last["tcp_failed_on_kept_shards"] == 0
    assert last["per_shard"][str(moved[0])]["owner_after"] == owners_after[moved[0]]
