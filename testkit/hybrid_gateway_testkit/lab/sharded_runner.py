"""Run one active-active drill end to end: every gateway up with its shards, probes per shard,
per-gateway counters around the action, per-shard loss and time to move, clean up.

The report says, per shard: its owner before and after, which gateways' counters grew with its
probes before the action and after convergence (each direction), the probes it lost and its
longest loss window, and for a moved shard how long its Lease, EC2 routes, VPC router, VTEP
config endpoints and hybrid nodes took to follow the new owner.
"""

from __future__ import annotations

import time
from typing import Any

from hybrid_gateway_contract import DEFAULT_LEASE_NAME
from hybrid_gateway_contract.sharding import shard_lease_name
from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab.analysis import flow_stats, parse_probe_lines, summarize
from hybrid_gateway_testkit.lab.drills import SHARDED_DRILLS
from hybrid_gateway_testkit.lab.events import read_events
from hybrid_gateway_testkit.lab.lab import Lab, LabError, LabOptions, running_lab, write_json
from hybrid_gateway_testkit.lab.report import timeline_png
from hybrid_gateway_testkit.lab.runner import (
    DrillSettings,
    flowing,
    leader_writes,
    report_settings,
    sleep_with_progress,
)
from hybrid_gateway_testkit.lab.shards import (
    flow_shard,
    move_timings,
    shard_losses,
    tcp_classes,
)
from hybrid_gateway_testkit.lab.topology import LabPlan

MOVE_STEPS = (
    "lease_taken",
    "ec2_routes_moved",
    "vpc_router_switched",
    "vtep_config_moved",
    "hybrid_nodes_switched",
)


def _carried_view(carried: list[counters.Carried], shard: int) -> dict[str, dict[str, int]]:
    return {c.direction: c.by_gateway for c in carried if c.shard == shard}


def counters_follow(carried: list[counters.Carried], owners: dict[int, str]) -> bool:
    """Pure: every shard's probes, both directions, were carried by its owner and only it."""
    return all(c.carriers() == [owners[c.shard]] for c in carried)


def _metrics(lab: Lab, hosts: list[str]) -> dict[str, list[int] | None]:
    return {host: lab.metrics_shards_held(host) for host in hosts}


def run_sharded_drill(
    options: LabOptions, settings: DrillSettings, plan: LabPlan
) -> dict[str, Any]:
    if settings.drill not in SHARDED_DRILLS:
        raise LabError(
            f"drill {settings.drill!r} is not an active-active drill; "
            f"choose one of {', '.join(SHARDED_DRILLS)}"
        )
    options.out_dir = options.out_dir.resolve()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    hosts = [g.name for g in plan.gateways]
    shard_plan = plan.shard_plan()
    with running_lab(options, plan) as lab:
        owners_before = lab.shard_owners(hosts)
        if owners_before is None:
            raise LabError("the shards are not settled after start-up")
        metrics_before = _metrics(lab, hosts)
        t_start = time.monotonic()
        lab.start_probes()
        c0 = lab.read_counters()
        options.log(f"probes running ({options.rate:g} pkt/s each way per shard)")
        sleep_with_progress(lab, settings.baseline_s, "baseline")
        c1 = lab.read_counters()
        _, owners_at_action = lab.wait_shards_settled(hosts, 10, spread=False)
        if owners_at_action != owners_before:
            raise LabError(f"shard owners changed during the baseline: {owners_at_action}")
        options.log(f"drill {settings.drill}: shard owners {owners_before}")
        outcome = SHARDED_DRILLS[settings.drill](lab, owners_before, settings.converge_timeout_s)
        victim: str = outcome.notes["victim"]
        owners_after: dict[int, str] = outcome.notes["owners_after"]
        survivors = [h for h in hosts if h != victim]
        t_after = time.monotonic()
        c2 = lab.read_counters()
        sleep_with_progress(lab, settings.after_s, "after")
        c3 = lab.read_counters()
        t_stop = time.monotonic()
        _, settled = lab.wait_shards_settled(survivors, 10, spread=False)
        if settled != owners_after:
            raise LabError(f"shard owners moved again after the drill: {settled}")
        metrics_after = _metrics(lab, survivors)
        lines = lab.stop_probes()
        stop_warnings = list(lab.stop_warnings)
        t_end = time.monotonic()
        run_dir = lab.run_dir
        router_events = read_events(run_dir / "router.jsonl")
        monitor_events = read_events(run_dir / "monitor.jsonl")
        agent_events = {n: read_events(run_dir / f"agent-{n}.jsonl") for n in lab.agents}
        try:
            audit: list[dict[str, Any]] | None = lab.api.audit()
            audit_error = None
        except Exception as exc:  # a slow API server must not cost the run's figures
            audit, audit_error = None, f"{type(exc).__name__}: {exc}"
            options.log(f"API server audit unavailable: {audit_error}")

    raw_path = options.out_dir / "probes.csv"
    raw_path.write_text("\n".join(lines) + "\n")
    log = parse_probe_lines(lines)
    cloud_ips = {plan.cloud_pod_ip, *plan.cloud_targets}
    summary = summarize(log, cloud_ips)
    losses = {loss.shard: loss for loss in shard_losses(shard_plan, flow_stats(log))}
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
    per_shard: dict[str, Any] = {}
    for shard in shard_plan.shards:
        i, loss = shard.index, losses[shard.index]
        moved = owners_before[i] != owners_after[i]
        new_ip = lab.gateway_ip(owners_after[i])
        timings = (
            move_timings(
                shard,
                owners_after[i],
                new_ip,
                t_action,
                monitor=monitor_events,
                router=router_events,
                agents=agent_events,
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
            if audit is None
            else leader_writes(
                audit,
                owners_before[i],
                owners_after[i],
                t_action,
                shard_lease_name(DEFAULT_LEASE_NAME, i),
            ),
        }
    moved_shards = [i for i in sorted(owners_before) if owners_before[i] != owners_after[i]]
    kept_shards = [i for i in sorted(owners_before) if i not in moved_shards]
    tcp_by_class = tcp_classes(shard_plan, log.tcp, cloud_ips, set(moved_shards))
    # A survivor's shard must keep its owner in every sample of the monitor, not just at the end.
    wavered = sorted(
        {
            i
            for e in monitor_events
            if e["t"] >= t_start and e.get("shard_holders")
            for i in kept_shards
            if e["shard_holders"][i] != owners_before[i]
        }
    )

    def worst(step: str) -> float | None:
        values = [per_shard[str(i)]["time_to_move_s"][step] for i in moved_shards]
        return None if not values or None in values else max(values)

    plot_path = options.out_dir / "timeline.png"
    report_path = options.out_dir / "report.json"
    report: dict[str, Any] = {
        "drill": settings.drill,
        "mode": "active-active",
        "shards": shard_plan.count,
        "gateways": hosts,
        "victim": victim,
        "survivors": survivors,
        **summary,
        "owners_before": {str(k): v for k, v in owners_before.items()},
        "owners_after": {str(k): v for k, v in owners_after.items()},
        "moved_shards": moved_shards,
        "kept_shards": kept_shards,
        "kept_shards_owner_changed": wavered,
        "audit_error": audit_error,
        "survivor_shards_probes_lost": sum(losses[i].total_lost for i in kept_shards),
        # TCP by kind / opened by / matched pair; mismatched pairs cross two owners.
        "tcp_by_class": tcp_by_class,
        "tcp_failed_on_kept_shards": sum(c["failed_on_kept_shards"] for c in tcp_by_class.values()),
        "moved_shards_loss_window_s": round(
            max((losses[i].longest_window_s for i in moved_shards), default=0.0), 4
        ),
        "moved_shards_time_to_move_s": {step: worst(step) for step in MOVE_STEPS},
        "per_shard": per_shard,
        "counters_follow_owners_before": counters_follow(carried_before, owners_before),
        "counters_follow_owners_after": counters_follow(carried_after, owners_after),
        "metrics_shards_held_before": metrics_before,
        "metrics_shards_held_after": metrics_after,
        "flowing_before": flowing(log, t_start, t_action, set()),
        "flowing_after": flowing(log, t_after, t_stop, set()),
        "settings": report_settings(options, settings),
        "probe_stop_warnings": stop_warnings,
        "raw_log": str(raw_path),
        "report": str(report_path),
        "plot": str(plot_path),
    }
    write_json(report_path, report)
    gw_ips = {g.ip: g.name for g in plan.gateways}
    marks: list[tuple[float, str, str]] = [(t, "action", label) for t, label in outcome.marks]
    for e in router_events:
        if e["kind"] == "router-switch" and e["t"] >= t_start:
            via = gw_ips.get(e.get("via") or "", e.get("via"))
            marks.append((e["t"], "router", f"{e['cidr']} -> {via}"))
    timeline_png(
        plot_path,
        log=log,
        cloud_ips=cloud_ips,
        t0=t_start,
        t1=t_end,
        marks=marks,
        title=f"{settings.drill} ({len(hosts)} gateways, {shard_plan.count} shards): "
        f"{victim}'s shards {moved_shards} lost up to {report['moved_shards_loss_window_s']} s, "
        f"the others {report['survivor_shards_probes_lost']} probes",
    )
    options.log(shard_table(report))
    return report


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
    out.append(f"report: {report['report']}")
    out.append(f"plot:   {report['plot']}")
    return "\n".join(out)


def sharded_last_line(report: dict[str, Any]) -> dict[str, Any]:
    """The one-line JSON summary: totals, and per shard owners, loss and time to move."""
    return {
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
