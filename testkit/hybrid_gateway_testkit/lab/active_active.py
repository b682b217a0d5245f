"""The active-active part of a drill: every gateway up with its shards, probes per shard,
per-gateway packet counters around the action, per-shard loss and time to move.

The report says, per shard: its owner before and after, which gateways' counters grew with its
probes before the action and after convergence (each direction), the probes it lost and its
longest loss window, and for a moved shard how long its Lease, EC2 routes, VPC router, VTEP
config endpoints and hybrid nodes took to follow the new owner.
"""

from __future__ import annotations

from typing import Any

from hybrid_gateway_contract import DEFAULT_LEASE_NAME
from hybrid_gateway_contract.sharding import shard_lease_name
from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab.analysis import flow_stats
from hybrid_gateway_testkit.lab.drills import SHARDED_DRILLS, DrillOutcome
from hybrid_gateway_testkit.lab.lab import Lab, LabError
from hybrid_gateway_testkit.lab.load import load_last_line
from hybrid_gateway_testkit.lab.report import load_rows
from hybrid_gateway_testkit.lab.runner import DrillRun, DrillSettings, Mark, flowing, leader_writes
from hybrid_gateway_testkit.lab.shards import flow_shard, move_timings, shard_losses, tcp_classes
from hybrid_gateway_testkit.lab.topology import LabPlan

MOVE_STEPS = (
    "lease_taken",
    "ec2_routes_moved",
    "vpc_router_switched",
    "vtep_config_moved",
    "hybrid_nodes_switched",
)

Counts = dict[str, dict[counters.CounterKey, int]]


def _carried_view(carried: list[counters.Carried], shard: int) -> dict[str, dict[str, int]]:
    return {c.direction: c.by_gateway for c in carried if c.shard == shard}


def counters_follow(carried: list[counters.Carried], owners: dict[int, str]) -> bool:
    """Pure: every shard's probes, both directions, were carried by its owner and only it."""
    return all(c.carriers() == [owners[c.shard]] for c in carried)


class ActiveActive:
    name = "active-active"
    drills = tuple(SHARDED_DRILLS)
    probe_unit = "per shard"

    def __init__(self, plan: LabPlan) -> None:
        self._plan = plan
        self.hosts = [g.name for g in plan.gateways]
        self.owners_before: dict[int, str] = {}
        self.metrics_before: dict[str, list[int] | None] = {}
        self.metrics_after: dict[str, list[int] | None] = {}
        self.counts: list[Counts] = []  # probes started, action, converged, window closed
        self.audit: list[dict[str, Any]] | None = None
        self.audit_error: str | None = None
        self.outcome = DrillOutcome(0.0, True)

    def plan(self) -> LabPlan | None:
        return self._plan

    def _metrics(self, lab: Lab, hosts: list[str]) -> dict[str, list[int] | None]:
        return {host: lab.daemons.shards_held(host) for host in hosts}

    def before(self, lab: Lab) -> None:
        owners = lab.monitor.shard_owners(self.hosts)
        if owners is None:
            raise LabError("the shards are not settled after start-up")
        self.owners_before = owners
        self.metrics_before = self._metrics(lab, self.hosts)

    def probes_started(self, lab: Lab) -> None:
        self.counts.append(lab.world.read_counters())

    def act(self, lab: Lab, settings: DrillSettings) -> DrillOutcome:
        self.counts.append(lab.world.read_counters())
        _, owners_at_action = lab.monitor.wait_shards_settled(self.hosts, 10, spread=False)
        if owners_at_action != self.owners_before:
            raise LabError(f"shard owners changed during the baseline: {owners_at_action}")
        lab.options.log(f"drill {settings.drill}: shard owners {self.owners_before}")
        self.outcome = SHARDED_DRILLS[settings.drill](
            lab, self.owners_before, settings.converge_timeout_s
        )
        return self.outcome

    def acted(self, lab: Lab) -> None:
        self.counts.append(lab.world.read_counters())

    def load_groups(self) -> dict[str, set[str]]:
        """The hybrid nodes of the shards that moved, and of those that stayed: a failure
        should dent the first group's goodput only."""
        plan = self._plan.shard_plan()
        after = self.outcome.notes["owners_after"]
        groups: dict[str, set[str]] = {"moved_shards": set(), "kept_shards": set()}
        for node in self._plan.nodes:
            shard = self._plan.node_shard(node, plan)
            moved = after[shard] != self.owners_before[shard]
            groups["moved_shards" if moved else "kept_shards"].add(node.name)
        return groups

    def window_closed(self, lab: Lab) -> None:
        """The counters at the window's end; the survivors still hold what they took, and
        their /metrics say so."""
        self.counts.append(lab.world.read_counters())
        survivors = [h for h in self.hosts if h != self.outcome.notes["victim"]]
        _, settled = lab.monitor.wait_shards_settled(survivors, 10, spread=False)
        if settled != self.outcome.notes["owners_after"]:
            raise LabError(f"shard owners moved again after the drill: {settled}")
        self.metrics_after = self._metrics(lab, survivors)

    def collect(self, lab: Lab) -> None:
        try:
            self.audit = lab.control.api.audit()
        except Exception as exc:  # a slow API server must not cost the run's figures
            self.audit_error = f"{type(exc).__name__}: {exc}"
            lab.options.log(f"API server audit unavailable: {self.audit_error}")

    def report(self, run: DrillRun) -> dict[str, Any]:
        plan, shard_plan = run.plan, run.plan.shard_plan()
        outcome, owners_before = run.outcome, self.owners_before
        victim: str = outcome.notes["victim"]
        owners_after: dict[int, str] = outcome.notes["owners_after"]
        survivors = [h for h in self.hosts if h != victim]
        log = run.log
        losses = {loss.shard: loss for loss in shard_losses(shard_plan, flow_stats(log))}
        c0, c1, c2, c3 = self.counts
        carried_before = counters.carried(c0, c1, shard_plan.count)
        carried_after = counters.carried(c2, c3, shard_plan.count)
        webhook_failed = dict.fromkeys(losses, 0)
        for call in log.tcp:  # the matched pairs' webhook calls (cloud address i -> pod i)
            where = flow_shard(shard_plan, call.dst)
            src = flow_shard(shard_plan, call.src)
            matched = where is not None and src is not None and src[0] == where[0]
            if where is not None and matched and call.kind == "call" and not call.ok:
                webhook_failed[where[0]] += 1
        t_action = outcome.t_action
        gateway_ip = {g.name: g.ip for g in plan.gateways}
        per_shard: dict[str, Any] = {}
        for shard in shard_plan.shards:
            i, loss = shard.index, losses[shard.index]
            moved = owners_before[i] != owners_after[i]
            timings = (
                move_timings(
                    shard,
                    owners_after[i],
                    gateway_ip[owners_after[i]],
                    t_action,
                    monitor=run.monitor_events,
                    router=run.router_events,
                    agents=run.agent_events,
                )
                if moved
                else None
            )
            per_shard[str(i)] = {
                "owner_before": owners_before[i],
                "owner_after": owners_after[i],
                "moved": moved,
                "pod_prefixes": list(shard.pod_prefixes),
                "vtep_endpoints": [cidr for _, cidr in shard.vtep_endpoints],
                "probes_sent": sum(loss.sent.values()),
                "probes_lost": loss.total_lost,
                "loss_window_s": round(loss.longest_window_s, 4),
                "directions": {
                    d: {
                        "sent": loss.sent[d],
                        "lost": loss.lost[d],
                        "loss_window_s": round(loss.loss_window_s[d], 4),
                    }
                    for d in loss.sent
                },
                "webhook_calls_failed": webhook_failed[i],
                "carried_before": _carried_view(carried_before, i),
                "carried_after": _carried_view(carried_after, i),
                "time_to_move_s": (
                    None
                    if timings is None
                    else {k: (None if v is None else round(v, 4)) for k, v in timings.items()}
                ),
                # The shard Lease's writes around the action (API server audit): the new owner's
                # first one after the victim's last, and no VTEP write of the victim afterwards.
                "api_writes": None
                if self.audit is None
                else leader_writes(
                    self.audit,
                    owners_before[i],
                    owners_after[i],
                    t_action,
                    shard_lease_name(DEFAULT_LEASE_NAME, i),
                ),
            }
        moved_shards = [i for i in sorted(owners_before) if owners_before[i] != owners_after[i]]
        kept_shards = [i for i in sorted(owners_before) if i not in moved_shards]
        tcp_by_class = tcp_classes(shard_plan, log.tcp, run.cloud_ips, set(moved_shards))
        # A survivor's shard must keep its owner in every sample of the monitor, not just at
        # the end.
        wavered = sorted(
            {
                i
                for e in run.monitor_events
                if e["t"] >= run.t_start and e.get("shard_holders")
                for i in kept_shards
                if e["shard_holders"][i] != owners_before[i]
            }
        )

        def worst(step: str) -> float | None:
            values = [per_shard[str(i)]["time_to_move_s"][step] for i in moved_shards]
            return None if not values or None in values else max(values)

        return {
            "mode": "active-active",
            "shards": shard_plan.count,
            "gateways": self.hosts,
            "victim": victim,
            "survivors": survivors,
            "owners_before": {str(k): v for k, v in owners_before.items()},
            "owners_after": {str(k): v for k, v in owners_after.items()},
            "moved_shards": moved_shards,
            "kept_shards": kept_shards,
            "kept_shards_owner_changed": wavered,
            "audit_error": self.audit_error,
            "survivor_shards_probes_lost": sum(losses[i].total_lost for i in kept_shards),
            # TCP by kind / opened by / matched pair; mismatched pairs cross two owners.
            "tcp_by_class": tcp_by_class,
            "tcp_failed_on_kept_shards": sum(
                c["failed_on_kept_shards"] for c in tcp_by_class.values()
            ),
            "moved_shards_loss_window_s": round(
                max((losses[i].longest_window_s for i in moved_shards), default=0.0), 4
            ),
            "moved_shards_time_to_move_s": {step: worst(step) for step in MOVE_STEPS},
            "per_shard": per_shard,
            "counters_follow_owners_before": counters_follow(carried_before, owners_before),
            "counters_follow_owners_after": counters_follow(carried_after, owners_after),
            "metrics_shards_held_before": self.metrics_before,
            "metrics_shards_held_after": self.metrics_after,
            "flowing_before": flowing(log, run.t_start, t_action, set()),
            "flowing_after": flowing(log, run.t_after, run.t_stop, set()),
        }

    def marks(self, run: DrillRun) -> list[Mark]:
        marks: list[Mark] = []
        for e in run.router_events:
            if e["kind"] == "router-switch" and e["t"] >= run.t_start:
                via = run.gw_ips.get(e.get("via") or "", e.get("via"))
                marks.append((e["t"], "router", f"{e['cidr']} -> {via}"))
        return marks

    def title(self, report: dict[str, Any]) -> str:
        return (
            f"{report['drill']} ({len(self.hosts)} gateways, {report['shards']} shards): "
            f"{report['victim']}'s shards {report['moved_shards']} lost up to "
            f"{report['moved_shards_loss_window_s']} s, "
            f"the others {report['survivor_shards_probes_lost']} probes"
        )

    def table(self, report: dict[str, Any]) -> str:
        return shard_table(report)

    def last_line(self, report: dict[str, Any]) -> dict[str, Any]:
        """The one-line JSON summary: totals, and per shard owners, loss and time to move."""
        out = {
            "drill": report["drill"],
            "mode": report["mode"],
            "shards": report["shards"],
            "gateways": len(report["gateways"]),
            "victim": report["victim"],
            "loss_window_s": report["loss_window_s"],
            "probes_sent": report["probes_sent"],
            "probes_lost": report["probes_lost"],
            "survivor_shards_probes_lost": report["survivor_shards_probes_lost"],
            "moved_shards": report["moved_shards"],
            "moved_shards_loss_window_s": report["moved_shards_loss_window_s"],
            "per_shard": {
                i: {
                    "owner_before": s["owner_before"],
                    "owner_after": s["owner_after"],
                    "lost": s["probes_lost"],
                    "loss_window_s": s["loss_window_s"],
                    "router_switched_s": (s["time_to_move_s"] or {}).get("vpc_router_switched"),
                    "nodes_switched_s": (s["time_to_move_s"] or {}).get("hybrid_nodes_switched"),
                }
                for i, s in report["per_shard"].items()
            },
            "counters_follow_owners_before": report["counters_follow_owners_before"],
            "tcp_failed": report["tcp"]["failed"],
            "tcp_failed_on_kept_shards": report["tcp_failed_on_kept_shards"],
            "tcp_by_class": report["tcp_by_class"],
            "lease_duration_s": report["settings"]["lease_duration_s"],
            "report": report["report"],
            "plot": report["plot"],
        }
        if "load" in report:
            out["load"] = load_last_line(report["load"])
        return out


def shard_table(report: dict[str, Any]) -> str:
    """A short human table: one line per shard."""
    out = [
        f"{report['drill']}: {report['victim']} failed; "
        f"probes lost {report['probes_lost']} / {report['probes_sent']}",
        "shard  owner before -> after  lost  loss window  router switched  nodes switched",
    ]
    for i, s in sorted(report["per_shard"].items(), key=lambda kv: int(kv[0])):
        ttm = s["time_to_move_s"] or {}

        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f} s"

        out.append(
            f"{i:>5}  {s['owner_before']:>6} -> {s['owner_after']:<8}  {s['probes_lost']:>4}  "
            f"{s['loss_window_s']:>9.3f} s  {fmt(ttm.get('vpc_router_switched')):>15}  "
            f"{fmt(ttm.get('hybrid_nodes_switched')):>14}"
        )
    for key, value in load_rows(report.get("load")):
        out.append(f"{key}: {value}")
    for group, directions in report.get("load", {}).get("failover_by_group", {}).items():
        for key, value in load_rows({"failover": directions}, steady=False):
            out.append(f"{group.replace('_', ' ')}, {key.strip()}: {value}")
    out.append(f"report: {report['report']}")
    out.append(f"plot:   {report['plot']}")
    return "\n".join(out)
