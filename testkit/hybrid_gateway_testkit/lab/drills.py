"""The failover drills. Each acts on a running lab while the probes run, and says what it did.

- kill-leader: SIGKILL the leader's daemon AND take its host link down (node failure, SPEC
  §12). Unplanned failover: the standby waits for the lease to expire, then moves the routes.
- term-leader: SIGTERM the leader (rolling update), then start it again as standby. Planned
  failover: the lease is released at once.
- restart-standby: SIGTERM the standby and start it again. Nothing is lost.
- partition-leader: cut the leader off from the API server, heal afterwards. A leader that cannot
  renew stops leader work; the standby takes over.
- ec2-throttle: every 2nd EC2 call throttled, then node failure of the leader.
- node-churn: node failure of the leader while a hybrid node joins, its CiliumNode's InternalIP
  changes, and it leaves.
  The new leader converges to the final node set with no stale entries.
- hybrid-side-down: one hybrid node's link down for a while; the other nodes are unaffected.
- eni-check-on: an operator turns the source/destination check back on for the leader's
  instance (ModifyInstanceAttribute, during traffic). The lab's VPC side then drops what that
  ENI forwards, as EC2 does (`vpc_router`); the leader notices on its next read of the flag,
  stops writing routes to that ENI and hands the Lease over; the standby moves everything.
- control-plane-upgrade: the Kubernetes API unreachable for every gateway and hybrid node for
  `--api-outage` seconds (60 by default, as during an EKS control-plane upgrade), then back.
  Nothing may move: the leader's data plane keeps forwarding (0 probes lost, webhook calls
  over TLS included), the standby's request rate stays bounded (measured per identity from the
  API server's audit), and the leader is still the leader after the heal.

Active-active mode (`--mode active-active`) has its own drill:

- kill-owner: node failure (as kill-leader) of the gateway owning the most shards (the lowest
  shard breaks a tie). The survivors keep their shards; the failed replica's shards move to
  them once their Leases expire.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hybrid_gateway_contract import VXLAN_DEVICE
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.events import read_events
from hybrid_gateway_testkit.lab.lab import Lab, LabError


@dataclass
class DrillOutcome:
    t_action: float
    expect_leader_change: bool
    marks: list[tuple[float, str]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    affected_pods: set[str] = field(default_factory=set)  # probes to these may be lost by design


DrillFn = Callable[[Lab, str, str, float], DrillOutcome]


def _node_failure(lab: Lab, host: str) -> float:
    t = time.monotonic()
    lab.daemons[host].signal(signal.SIGKILL)
    lab.w.gateways[host].ip("link", "set", lab.w.gateway_ifaces[host], "down")
    lab.options.log(f"  {host}: daemon SIGKILLed and host link down")
    return t


def kill_leader(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    t = _node_failure(lab, leader)
    out = DrillOutcome(t, True, [(t, f"{leader} node failure")])
    out.notes["converged_t"] = lab.monitor.wait_converged(standby, timeout_s)
    return out


def term_leader(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    t = time.monotonic()
    lab.daemons[leader].signal(signal.SIGTERM)
    lab.options.log(f"  {leader}: SIGTERM (rolling update)")
    out = DrillOutcome(t, True, [(t, f"{leader} SIGTERM")])
    out.notes["converged_t"] = lab.monitor.wait_converged(standby, timeout_s)
    code = lab.daemons[leader].wait(10)
    out.notes["exit_code"] = code
    if code is None:
        raise LabError(f"{leader} did not exit within 10 s of SIGTERM")
    lab.daemons.start(leader)
    lab.daemons.wait_ready(leader)
    out.marks.append((time.monotonic(), f"{leader} back as standby"))
    return out


def restart_standby(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    t = time.monotonic()
    lab.daemons[standby].signal(signal.SIGTERM)
    code = lab.daemons[standby].wait(10)
    if code is None:
        raise LabError(f"{standby} did not exit within 10 s of SIGTERM")
    lab.options.log(f"  {standby}: stopped ({code}), starting again")
    lab.daemons.start(standby)
    lab.daemons.wait_ready(standby, timeout_s)
    out = DrillOutcome(
        t, False, [(t, f"{standby} restart"), (time.monotonic(), f"{standby} ready")]
    )
    out.notes["exit_code"] = code
    if not lab.monitor.converged_on(leader):
        raise LabError(f"after restarting {standby}, {leader} is no longer in charge")
    return out


def partition_leader(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    t = time.monotonic()
    lab.control.api.partition(leader)
    lab.options.log(f"  {leader}: cut off from the API server")
    out = DrillOutcome(t, True, [(t, f"{leader} partitioned")])
    out.notes["converged_t"] = lab.monitor.wait_converged(standby, timeout_s)
    time.sleep(1.0)
    lab.control.api.heal(leader)
    out.marks.append((time.monotonic(), f"{leader} healed"))
    return out


def ec2_throttle(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    lab.control.throttle_file.write_text("0.5\n")
    lab.options.log("  EC2: every 2nd call throttled (RequestLimitExceeded)")
    t = _node_failure(lab, leader)
    out = DrillOutcome(t, True, [(t, f"{leader} node failure, EC2 throttled")])
    try:
        out.notes["converged_t"] = lab.monitor.wait_converged(standby, timeout_s)
    finally:
        lab.control.throttle_file.write_text("0\n")
    return out


def tunnel_peers(lab: Lab, host: str) -> set[str]:
    """Hybrid node IPs the gateway on `host` has tunnel routes to (kernel state)."""
    text = lab.w.gateways[host].ip("route", "show", "dev", VXLAN_DEVICE)
    # `P via N ...`, or `P nhid K via N ...` for a route through a nexthop object
    words = [line.split() for line in text.splitlines() if " via " in line]
    return {w[w.index("via") + 1] for w in words}


def _wait_peers(lab: Lab, host: str, expected: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while tunnel_peers(lab, host) != expected:
        if time.monotonic() > deadline:
            raise LabError(
                f"{host} tunnel peers {sorted(tunnel_peers(lab, host))} != {sorted(expected)}"
            )
        time.sleep(0.1)


def node_churn(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    """Node failure of the leader while hn3 joins, changes its IP and leaves."""
    spare = lab.plan.spare_node(0)
    base = {n.node_ip for n in lab.plan.nodes}
    t = _node_failure(lab, leader)
    out = DrillOutcome(t, True, [(t, f"{leader} node failure + churn")])
    lab.control.add_node(spare)
    deadline = time.monotonic() + timeout_s
    while spare.name not in lab.control.cilium_node_names():
        if time.monotonic() > deadline:
            raise LabError(f"{spare.name} never registered its CiliumNode")
        time.sleep(0.1)
    out.marks.append((time.monotonic(), f"{spare.name} joined"))
    _wait_peers(lab, standby, base | {spare.node_ip}, timeout_s)
    moved_ip = "192.168.100.99"
    lab.control.agents.pop(spare.name).stop()  # its agent would put the old address back
    address = {"type": "InternalIP", "ip": moved_ip}
    lab.control.patch_cilium_node(spare.name, {"spec": {"addresses": [address]}})
    out.marks.append((time.monotonic(), f"{spare.name} re-addressed"))
    _wait_peers(lab, standby, base | {moved_ip}, timeout_s)
    out.notes["converged_t"] = lab.monitor.wait_converged(standby, timeout_s)
    lab.control.delete_cilium_node(spare.name)
    out.marks.append((time.monotonic(), f"{spare.name} removed"))
    _wait_peers(lab, standby, base, timeout_s)
    out.notes["tunnel_peers_after"] = sorted(tunnel_peers(lab, standby))
    return out


def hybrid_side_down(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    """The last hybrid node drops off the on-prem network (its switch port goes down) for 3 s."""
    node = lab.plan.nodes[-1]
    port = lab.w.node_switch_ports[node.name]
    t = time.monotonic()
    lab.w.router.ip("link", "set", port, "down")
    lab.options.log(f"  {node.name}: off the network for 3 s")
    out = DrillOutcome(t, False, [(t, f"{node.name} down")], affected_pods={node.pod_ip})
    time.sleep(3.0)
    lab.w.router.ip("link", "set", port, "up")
    out.marks.append((time.monotonic(), f"{node.name} up"))
    return out


def eni_check_on(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    """The leader instance's source/destination check turned back on, as an operator would."""
    instance = lab.control.e.instances[leader].instance_id
    if lab.control.ctl is None:
        raise LabError("the lab's control namespace is not up")
    t = time.monotonic()
    lab.control.ctl.call(
        lambda: lab_ec2.ec2_client(lab.control.moto_url).modify_instance_attribute(
            InstanceId=instance, SourceDestCheck={"Value": True}
        )
    )
    lab.options.log(f"  {leader}: source/destination check turned ON ({instance})")
    out = DrillOutcome(t, True, [(t, f"{leader} source/dest check on")])
    out.notes["converged_t"] = lab.monitor.wait_converged(standby, timeout_s)
    enforced = [
        e["t"]
        for e in read_events(lab.run_dir / "router.jsonl")
        if e["kind"] == "sdc-check" and leader in e.get("hosts", []) and e["t"] >= t
    ]
    out.notes["vpc_drops_from_s"] = round(enforced[0] - t, 4) if enforced else None
    if enforced:
        out.marks.append((enforced[0], f"VPC drops {leader}'s forwarding"))
    return out


def control_plane_upgrade(lab: Lab, leader: str, standby: str, timeout_s: float) -> DrillOutcome:
    """Every gateway and hybrid node cut off from the API server (connections dropped without
    an answer) for `api_outage_s`, then healed; the lab's monitor still reads (it observes)."""
    outage = lab.options.api_outage_s
    cut = [g.name for g in lab.plan.gateways] + [f"agent-{n}" for n in lab.control.agents]
    t = time.monotonic()
    for identity in cut:
        lab.control.api.partition(identity)
    lab.options.log(f"  API server unreachable for {', '.join(cut)} for {outage:g} s")
    out = DrillOutcome(t, False, [(t, "API unreachable")])
    end = t + outage
    while (left := end - time.monotonic()) > 0:
        obs = lab.monitor.observed
        lab.options.log(f"  [outage] {left:4.1f} s left, leader={obs.holder if obs else None}")
        time.sleep(min(5.0, left))
    healed = time.monotonic()
    for identity in cut:
        lab.control.api.heal(identity)
    out.marks.append((healed, "API back"))
    lab.options.log("  API server reachable again")
    out.notes.update(outage_s=round(healed - t, 3), healed_t=healed, cut_off=cut)
    # No leader change after the heal: the leader renews, the standby keeps following. The
    # report's leader_after and this note say whether it held (the drill does not stop early).
    lease = lab.options.lease_duration_s or 3.0
    settle = time.monotonic() + max(10.0, 3 * lease)
    in_charge = True
    while time.monotonic() < settle:
        in_charge = in_charge and lab.monitor.converged_on(leader)
        time.sleep(0.2)
    out.notes["leader_in_charge_after_heal"] = in_charge
    out.marks.append((time.monotonic(), f"{leader} {'still' if in_charge else 'NOT'} in charge"))
    return out


DRILLS: dict[str, DrillFn] = {
    "kill-leader": kill_leader,
    "term-leader": term_leader,
    "restart-standby": restart_standby,
    "partition-leader": partition_leader,
    "ec2-throttle": ec2_throttle,
    "node-churn": node_churn,
    "hybrid-side-down": hybrid_side_down,
    "eni-check-on": eni_check_on,
    "control-plane-upgrade": control_plane_upgrade,
}


ShardedDrillFn = Callable[[Lab, dict[int, str], float], DrillOutcome]


def pick_victim(owners: dict[int, str]) -> str:
    """Pure: the owner of the most shards; on a tie, the one owning the lowest shard."""
    first = {}
    for shard in sorted(owners, reverse=True):
        first[owners[shard]] = shard
    load = Counter(owners.values())
    return min(load, key=lambda host: (-load[host], first[host]))


def kill_owner(lab: Lab, owners: dict[int, str], timeout_s: float) -> DrillOutcome:
    """Node failure of the gateway owning the most shards; waits until every shard is settled
    on a survivor."""
    victim = pick_victim(owners)
    t = _node_failure(lab, victim)
    out = DrillOutcome(t, True, [(t, f"{victim} node failure")])
    survivors = [g.name for g in lab.plan.gateways if g.name != victim]
    converged, after = lab.monitor.wait_shards_settled(survivors, timeout_s, spread=False)
    out.notes.update(victim=victim, converged_t=converged, owners_after=after)
    return out


SHARDED_DRILLS: dict[str, ShardedDrillFn] = {"kill-owner": kill_owner}
