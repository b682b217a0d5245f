"""Run one drill end to end: bring the lab up, probe, act, converge, report, clean up."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_gateway_testkit.lab.analysis import ProbeLog, parse_probe_lines, summarize
from hybrid_gateway_testkit.lab.drills import DRILLS, DrillOutcome
from hybrid_gateway_testkit.lab.events import first_after, read_events
from hybrid_gateway_testkit.lab.lab import Lab, LabError, LabOptions, running_lab, write_json
from hybrid_gateway_testkit.lab.load import DrillLoad, LoadSettings, load_last_line
from hybrid_gateway_testkit.lab.report import summary_table, timeline_png


@dataclass
class DrillSettings:
    drill: str
    baseline_s: float = 3.0
    after_s: float = 3.0
    converge_timeout_s: float = 30.0
    load: LoadSettings | None = None  # `--load iperf3`: bulk TCP load, steady and across the drill


def sleep_with_progress(lab: Lab, seconds: float, label: str) -> None:
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        obs = lab.observed
        who = (
            f"shard holders={list(obs.shard_holders)}"
            if obs and obs.shard_holders
            else f"leader={obs.holder if obs else None}"
        )
        lab.options.log(f"  [{label}] {left:4.1f} s left, {who}")
        time.sleep(min(1.0, left))


def flowing(log: ProbeLog, t0: float, t1: float, skip: set[str]) -> dict[str, bool]:
    """Per flow (src->dst): was at least one probe sent in [t0, t1) delivered?"""
    got = {(r.src, r.dst, r.seq) for r in log.received}
    out: dict[str, bool] = {}
    for s in log.sent:
        if s.src in skip or s.dst in skip or not t0 <= s.t_send < t1:
            continue
        key = f"{s.src}->{s.dst}"
        out[key] = out.get(key, False) or (s.src, s.dst, s.seq) in got
    return out


def report_settings(options: LabOptions, settings: DrillSettings) -> dict[str, Any]:
    """The run's settings as the report states them."""
    return {
        "lease_duration_s": options.lease_duration_s or 3.0,
        "propagation_delay_s": options.propagation_delay_s,
        "rate_pkt_s": options.rate,
        "baseline_s": settings.baseline_s,
        "after_s": settings.after_s,
        "vtep_match": options.vtep_match,
    }


WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


def leader_writes(
    audit: list[dict[str, Any]],
    old: str,
    new: str,
    t_action: float,
    lease_name: str | None = None,
) -> dict[str, Any]:
    """From the API server's audit log: who wrote the Lease (any, or the one named
    `lease_name`) and the CiliumVTEPConfig, and when (seconds after the action). After the new
    leader's first Lease write, the old leader must not have written the VTEP config again."""

    def ok_writes(identity: str, resource: str, name: str | None = None) -> list[float]:
        return sorted(
            float(r["mono"])
            for r in audit
            if r.get("identity") == identity
            and r.get("resource") == resource
            and (name is None or r.get("name") == name)
            and r.get("verb") in WRITE_VERBS
            and isinstance(r.get("status"), int)
            and 200 <= r["status"] < 300
        )

    old_lease = [t for t in ok_writes(old, "leases", lease_name) if t >= t_action - 60]
    new_lease = [t for t in ok_writes(new, "leases", lease_name) if t >= t_action]
    takeover = new_lease[0] if new != old and new_lease else None
    old_vtep_after = (
        [t for t in ok_writes(old, "ciliumvtepconfigs") if t > takeover] if takeover else []
    )
    return {
        "old_leader_last_lease_write_s": round(max(old_lease) - t_action, 4) if old_lease else None,
        "new_leader_first_lease_write_s": round(takeover - t_action, 4) if takeover else None,
        "old_leader_vtep_writes_after_takeover": len(old_vtep_after),
    }


def request_rates(
    audit: list[dict[str, Any]], t0: float, t1: float, identities: list[str]
) -> dict[str, dict[str, float]]:
    """Pure: per identity, API requests that reached the server in [t0, t1) (answered or
    dropped by a partition): the mean per second and the busiest whole second."""
    out: dict[str, dict[str, float]] = {}
    span = max(t1 - t0, 1e-9)
    for identity in identities:
        times = [
            float(r["mono"])
            for r in audit
            if r.get("identity") == identity and t0 <= float(r["mono"]) < t1
        ]
        per_second = Counter(int(t - t0) for t in times)
        out[identity] = {
            "requests": len(times),
            "mean_per_s": round(len(times) / span, 2),
            "peak_per_s": max(per_second.values(), default=0),
        }
    return out


def run_drill(options: LabOptions, settings: DrillSettings) -> dict[str, Any]:
    if settings.drill not in DRILLS:
        raise LabError(f"unknown drill {settings.drill!r}; choose one of {', '.join(DRILLS)}")
    options.out_dir = options.out_dir.resolve()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    with running_lab(options) as lab:
        leader = lab.leader()
        if leader is None:
            raise LabError("no leader after start-up")
        standby = next(g.name for g in lab.plan.gateways if g.name != leader)
        cloud_ips = {lab.plan.cloud_pod_ip}
        load = DrillLoad(lab, settings.load, settings.baseline_s) if settings.load else None
        if load is not None:  # steady underlay and tunnel phases, then the load across the drill
            load.start()
        t_start = time.monotonic()
        lab.start_probes()
        options.log(f"probes running ({options.rate:g} pkt/s each way per hybrid pod)")
        sleep_with_progress(lab, settings.baseline_s, "baseline")
        options.log(f"drill {settings.drill}: leader {leader}, standby {standby}")
        outcome: DrillOutcome = DRILLS[settings.drill](
            lab, leader, standby, settings.converge_timeout_s
        )
        t_after = time.monotonic()
        sleep_with_progress(lab, settings.after_s, "after")
        if load is not None:  # the probes run on until the load's end, so the plot has both
            load.finish(t_start, outcome.t_action)
        t_stop = time.monotonic()
        leader_after = lab.leader()
        lines = lab.stop_probes()
        stop_warnings = list(lab.stop_warnings)
        t_end = time.monotonic()
        run_dir = lab.run_dir
        gw_ips = {g.ip: g.name for g in lab.plan.gateways}
        router_events = read_events(run_dir / "router.jsonl")
        monitor_events = read_events(run_dir / "monitor.jsonl")
        agent_events = {n: read_events(run_dir / f"agent-{n}.jsonl") for n in lab.agents}
        throttled = [
            e for e in read_events(run_dir / "ec2proxy.jsonl") if e["kind"] == "ec2-throttled"
        ]
        audit = lab.api.audit()

    raw_path = options.out_dir / "probes.csv"
    raw_path.write_text("\n".join(lines) + "\n")
    log = parse_probe_lines(lines)
    summary = summarize(log, cloud_ips)
    t_action = outcome.t_action
    new = standby if outcome.expect_leader_change else leader
    new_ip = next(ip for ip, name in gw_ips.items() if name == new)
    timings = {
        "lease_acquired": first_after(
            monitor_events, t_action, lambda e: e.get("holder") == new and new != leader
        ),
        "ec2_routes_moved": first_after(
            monitor_events,
            t_action,
            lambda e: (
                bool(e.get("route_hosts"))
                and all(h == new for h in e["route_hosts"])
                and new != leader
            ),
        ),
        "vpc_router_switched": first_after(
            router_events,
            t_action,
            lambda e: e["kind"] == "router-switch" and e.get("via") == new_ip and new != leader,
        ),
        "vtep_config_moved": first_after(
            monitor_events, t_action, lambda e: e.get("vtep") == new_ip and new != leader
        ),
        "hybrid_nodes_switched": None,
    }
    if new != leader:  # the moment the LAST hybrid node followed the new leader
        per_node = [
            first_after(
                events,
                t_action,
                lambda e: (
                    e["kind"] == "vtep-switch"
                    and any(ep["tunnelEndpoint"] == new_ip for ep in e["endpoints"])
                ),
            )
            for events in agent_events.values()
        ]
        known = [t for t in per_node if t is not None]
        timings["hybrid_nodes_switched"] = max(known) if len(known) == len(per_node) else None
    skip = outcome.affected_pods
    before = flowing(log, t_start, t_action, skip)
    after = flowing(log, t_after, t_stop, skip)
    marks: list[tuple[float, str, str]] = [(t, "action", label) for t, label in outcome.marks]
    prev_holder: Any = object()
    for e in monitor_events:
        if e.get("holder") != prev_holder and e["t"] >= t_start:
            marks.append((e["t"], "leader", f"leader {e.get('holder')}"))
        prev_holder = e.get("holder")
    for e in router_events:
        if e["kind"] == "router-switch" and e["t"] >= t_start:
            marks.append(
                (e["t"], "router", f"VPC route -> {gw_ips.get(e.get('via') or '', e.get('via'))}")
            )
    prev_routes: Any = None
    for e in monitor_events:
        routes = e.get("route_hosts")
        if routes and routes != prev_routes and e["t"] >= t_start:
            marks.append((e["t"], "ec2-route", f"EC2 routes -> {','.join(map(str, routes))}"))
        prev_routes = routes or prev_routes
    for e in (e for events in agent_events.values() for e in events):
        if e["kind"] == "vtep-switch" and e["t"] >= t_start and e["endpoints"]:
            via = e["endpoints"][0]["tunnelEndpoint"]
            marks.append((e["t"], "vtep", f"hybrid node -> {gw_ips.get(via, via)}"))
    if load is not None:
        for direction, result in load.report["failover"].items():
            back = result["impact"].get("recovery_s")
            if back:
                marks.append(
                    (t_action + back, "load", f"{direction.replace('_', ' ')} goodput back")
                )
    plot_path = options.out_dir / "timeline.png"
    report_path = options.out_dir / "report.json"
    unaffected_lost = sum(
        f["lost"] for f in summary["flows"] if f["src"] not in skip and f["dst"] not in skip
    )
    report: dict[str, Any] = {
        "drill": settings.drill,
        **summary,
        "leader_before": leader,
        "leader_after": leader_after,
        "expect_leader_change": outcome.expect_leader_change,
        "flowing_before": before,
        "flowing_after": after,
        "unaffected_probes_lost": unaffected_lost,
        "timings_s": {k: (None if v is None else round(v, 4)) for k, v in timings.items()},
        "ec2_calls_throttled": len(throttled),
        "api_writes": leader_writes(audit, leader, new, outcome.t_action),
        "notes": {k: v for k, v in outcome.notes.items() if k not in ("converged_t", "healed_t")},
        "settings": report_settings(options, settings),
        "probe_stop_warnings": stop_warnings,
        "raw_log": str(raw_path),
        "report": str(report_path),
        "plot": str(plot_path),
    }
    if load is not None:
        report["load"] = load.report
    if "healed_t" in outcome.notes:  # an API outage: how hard did each replica knock?
        report["api_requests_during_outage"] = request_rates(
            audit, t_action, outcome.notes["healed_t"], [leader, standby]
        )
    write_json(report_path, report)
    timeline_png(
        plot_path,
        log=log,
        cloud_ips=cloud_ips,
        t0=t_start,
        t1=t_end,
        marks=marks,
        load=None if load is None else load.series,
        title=f"drill {settings.drill}: loss window {summary['loss_window_s']} s, "
        f"{summary['probes_lost']}/{summary['probes_sent']} probes lost",
    )
    options.log(summary_table(report))
    return report


def last_line(report: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "drill",
        "loss_window_s",
        "probes_sent",
        "probes_lost",
        "leader_before",
        "leader_after",
        "report",
        "plot",
    )
    out = {k: report[k] for k in keys}
    out["tcp_failed"] = report["tcp"]["failed"]
    out["unaffected_probes_lost"] = report["unaffected_probes_lost"]
    out["failover_s"] = report["timings_s"].get("hybrid_nodes_switched")
    out["lease_duration_s"] = report["settings"]["lease_duration_s"]
    if "load" in report:
        out["load"] = load_last_line(report["load"])
    return out


def default_out_dir(drill: str) -> Path:
    return Path("lab-out") / f"{drill}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
