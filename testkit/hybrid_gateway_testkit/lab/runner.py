"""Run one drill end to end: bring the lab up, probe, act, converge, report, clean up.

One runner for both gateway modes. What differs between them is a `Mode` strategy
(`active_standby.ActiveStandby`, `active_active.ActiveActive`): which drills it runs, who owns
what before the action, what it reads around the action (leaders, or shard owners, packet
counters and /metrics), and what its report, picture title, table and last line say. The
sequence itself (probes, baseline, the action, the window after it, the optional bulk load
across it, the raw probe log, the report and the picture) is this module's, and the same for
every mode.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hybrid_gateway_testkit.lab.analysis import ProbeLog, parse_probe_lines, summarize
from hybrid_gateway_testkit.lab.drills import DrillOutcome
from hybrid_gateway_testkit.lab.events import read_events
from hybrid_gateway_testkit.lab.lab import Lab, LabError, LabOptions, running_lab, write_json
from hybrid_gateway_testkit.lab.load import DrillLoad, LoadSettings
from hybrid_gateway_testkit.lab.report import timeline_png
from hybrid_gateway_testkit.lab.topology import LabPlan

Mark = tuple[float, str, str]  # (monotonic time, kind, label) on the timeline picture


@dataclass
class DrillSettings:
    drill: str
    baseline_s: float = 3.0
    after_s: float = 3.0
    converge_timeout_s: float = 30.0
    load: LoadSettings | None = None  # `--load iperf3`: bulk TCP load, steady and across the drill


@dataclass
class DrillRun:
    """What one run gathered, for its mode's report: the times that cut it into phases, the
    parsed probe log and the event logs of the monitor, the VPC router and every agent."""

    options: LabOptions
    settings: DrillSettings
    plan: LabPlan
    outcome: DrillOutcome
    t_start: float  # probes start
    t_after: float  # the action has converged
    t_stop: float  # the window after it is over
    t_end: float  # probes stopped
    log: ProbeLog
    summary: dict[str, Any]
    cloud_ips: set[str]
    router_events: list[dict[str, Any]]
    monitor_events: list[dict[str, Any]]
    agent_events: dict[str, list[dict[str, Any]]]
    ec2proxy_events: list[dict[str, Any]]
    stop_warnings: list[str]
    load: DrillLoad | None
    paths: dict[str, Path] = field(default_factory=dict)  # raw_log, report, plot

    @property
    def gw_ips(self) -> dict[str, str]:
        return {g.ip: g.name for g in self.plan.gateways}


class Mode(Protocol):
    """One gateway mode's part of a drill; an instance serves one run and keeps its state."""

    name: str
    drills: tuple[str, ...]
    probe_unit: str  # "per hybrid pod", "per shard": how the probes' rate is counted

    def plan(self) -> LabPlan | None: ...

    def before(self, lab: Lab) -> None:
        """Read who owns what once the lab is up, before any probe."""

    def probes_started(self, lab: Lab) -> None:
        """Right after the probes start."""

    def act(self, lab: Lab, settings: DrillSettings) -> DrillOutcome:
        """After the baseline: check nothing moved meanwhile, then run the drill."""

    def acted(self, lab: Lab) -> None:
        """Right after the drill converged, before the window after it."""

    def load_groups(self) -> dict[str, set[str]]:
        """Hybrid nodes whose bulk load the report also shows apart, by group name."""

    def window_closed(self, lab: Lab) -> None:
        """At the end of the window after the action, with the probes still running."""

    def collect(self, lab: Lab) -> None:
        """After the probes stopped, before the lab goes down (the API server's audit)."""

    def report(self, run: DrillRun) -> dict[str, Any]:
        """The mode's part of the report (the runner adds what every mode reports)."""

    def marks(self, run: DrillRun) -> list[Mark]:
        """What the timeline marks besides the drill's own actions and the load's recovery."""

    def title(self, report: dict[str, Any]) -> str: ...

    def table(self, report: dict[str, Any]) -> str: ...

    def last_line(self, report: dict[str, Any]) -> dict[str, Any]: ...


def sleep_with_progress(lab: Lab, seconds: float, label: str) -> None:
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        obs = lab.monitor.observed
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


def load_marks(load: DrillLoad | None, t_action: float) -> list[Mark]:
    """When each direction's bulk goodput was back after the action (none without load)."""
    if load is None:
        return []
    marks: list[Mark] = []
    for direction, result in load.report["failover"].items():
        back = result["impact"].get("recovery_s")
        if back:
            marks.append((t_action + back, "load", f"{direction.replace('_', ' ')} goodput back"))
    return marks


def run_drill(options: LabOptions, settings: DrillSettings, mode: Mode) -> dict[str, Any]:
    """Run `settings.drill` in `mode`'s lab and write its report, raw log and picture."""
    if settings.drill not in mode.drills:
        raise LabError(
            f"drill {settings.drill!r} is not an {mode.name} drill; "
            f"choose one of {', '.join(mode.drills)}"
        )
    options.out_dir = options.out_dir.resolve()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    with running_lab(options, mode.plan()) as lab:
        plan = lab.plan
        mode.before(lab)
        load = DrillLoad(lab, settings.load, settings.baseline_s) if settings.load else None
        if load is not None:  # steady underlay and tunnel phases, then the load across the drill
            load.start()
        t_start = time.monotonic()
        lab.probes.start()
        mode.probes_started(lab)
        options.log(f"probes running ({options.rate:g} pkt/s each way {mode.probe_unit})")
        sleep_with_progress(lab, settings.baseline_s, "baseline")
        outcome = mode.act(lab, settings)
        t_after = time.monotonic()
        mode.acted(lab)
        sleep_with_progress(lab, settings.after_s, "after")
        if load is not None:  # the probes run on until the load's end, so the plot has both
            load.finish(t_start, outcome.t_action, mode.load_groups())
        t_stop = time.monotonic()
        mode.window_closed(lab)
        lines = lab.probes.stop()
        stop_warnings = list(lab.probes.stop_warnings)
        t_end = time.monotonic()
        run_dir = lab.run_dir
        router_events = read_events(run_dir / "router.jsonl")
        monitor_events = read_events(run_dir / "monitor.jsonl")
        agent_events = {n: read_events(run_dir / f"agent-{n}.jsonl") for n in lab.control.agents}
        ec2proxy_events = read_events(run_dir / "ec2proxy.jsonl")
        mode.collect(lab)

    raw_path = options.out_dir / "probes.csv"
    raw_path.write_text("\n".join(lines) + "\n")
    log = parse_probe_lines(lines)
    cloud_ips = {plan.cloud_pod_ip, *plan.cloud_targets}
    run = DrillRun(
        options=options,
        settings=settings,
        plan=plan,
        outcome=outcome,
        t_start=t_start,
        t_after=t_after,
        t_stop=t_stop,
        t_end=t_end,
        log=log,
        summary=summarize(log, cloud_ips),
        cloud_ips=cloud_ips,
        router_events=router_events,
        monitor_events=monitor_events,
        agent_events=agent_events,
        ec2proxy_events=ec2proxy_events,
        stop_warnings=stop_warnings,
        load=load,
        paths={
            "raw_log": raw_path,
            "report": options.out_dir / "report.json",
            "plot": options.out_dir / "timeline.png",
        },
    )
    report: dict[str, Any] = {
        "drill": settings.drill,
        **run.summary,
        **mode.report(run),
        "settings": report_settings(options, settings),
        "probe_stop_warnings": stop_warnings,
        **{name: str(path) for name, path in run.paths.items()},
    }
    if load is not None:
        report["load"] = load.report
    write_json(run.paths["report"], report)
    timeline_png(
        run.paths["plot"],
        log=log,
        cloud_ips=cloud_ips,
        t0=t_start,
        t1=t_end,
        marks=[(t, "action", label) for t, label in outcome.marks]
        + mode.marks(run)
        + load_marks(load, outcome.t_action),
        load=None if load is None else load.series,
        title=mode.title(report),
    )
    options.log(mode.table(report))
    return report


def default_out_dir(drill: str) -> Path:
    return Path("lab-out") / f"{drill}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
