"""The active-standby part of a drill: one leader and one standby; the report says who led
before and after, how long each step of the failover took after the action (Lease, EC2 routes,
VPC router, VTEP config, the last hybrid node) and what the API server's audit saw."""

from __future__ import annotations

from typing import Any

from hybrid_gateway_testkit.lab.drills import DRILLS, DrillOutcome
from hybrid_gateway_testkit.lab.events import first_after
from hybrid_gateway_testkit.lab.lab import Lab, LabError
from hybrid_gateway_testkit.lab.load import load_last_line
from hybrid_gateway_testkit.lab.report import summary_table
from hybrid_gateway_testkit.lab.runner import (
    DrillRun,
    DrillSettings,
    Mark,
    flowing,
    leader_writes,
    request_rates,
)
from hybrid_gateway_testkit.lab.topology import LabPlan


class ActiveStandby:
    name = "active-standby"
    drills = tuple(DRILLS)
    probe_unit = "per hybrid pod"

    def __init__(self) -> None:
        self.leader = ""
        self.standby = ""
        self.leader_after: str | None = None
        self.audit: list[dict[str, Any]] = []

    def plan(self) -> LabPlan | None:
        return None  # the lab's default plan: two gateways, two hybrid nodes

    def before(self, lab: Lab) -> None:
        leader = lab.monitor.leader()
        if leader is None:
            raise LabError("no leader after start-up")
        self.leader = leader
        self.standby = next(g.name for g in lab.plan.gateways if g.name != leader)

    def probes_started(self, lab: Lab) -> None:
        pass

    def act(self, lab: Lab, settings: DrillSettings) -> DrillOutcome:
        lab.options.log(f"drill {settings.drill}: leader {self.leader}, standby {self.standby}")
        return DRILLS[settings.drill](lab, self.leader, self.standby, settings.converge_timeout_s)

    def acted(self, lab: Lab) -> None:
        pass

    def load_groups(self) -> dict[str, set[str]]:
        return {}  # one leader carries every flow

    def window_closed(self, lab: Lab) -> None:
        self.leader_after = lab.monitor.leader()

    def collect(self, lab: Lab) -> None:
        self.audit = lab.control.api.audit()

    def report(self, run: DrillRun) -> dict[str, Any]:
        outcome, leader, standby = run.outcome, self.leader, self.standby
        t_action = outcome.t_action
        new = standby if outcome.expect_leader_change else leader
        new_ip = next(ip for ip, name in run.gw_ips.items() if name == new)
        monitor, router = run.monitor_events, run.router_events
        timings = {
            "lease_acquired": first_after(
                monitor, t_action, lambda e: e.get("holder") == new and new != leader
            ),
            "ec2_routes_moved": first_after(
                monitor,
                t_action,
                lambda e: (
                    bool(e.get("route_hosts"))
                    and all(h == new for h in e["route_hosts"])
                    and new != leader
                ),
            ),
            "vpc_router_switched": first_after(
                router,
                t_action,
                lambda e: e["kind"] == "router-switch" and e.get("via") == new_ip and new != leader,
            ),
            "vtep_config_moved": first_after(
                monitor, t_action, lambda e: e.get("vtep") == new_ip and new != leader
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
                for events in run.agent_events.values()
            ]
            known = [t for t in per_node if t is not None]
            timings["hybrid_nodes_switched"] = max(known) if len(known) == len(per_node) else None
        skip = outcome.affected_pods
        throttled = [e for e in run.ec2proxy_events if e["kind"] == "ec2-throttled"]
        unaffected_lost = sum(
            f["lost"] for f in run.summary["flows"] if f["src"] not in skip and f["dst"] not in skip
        )
        report: dict[str, Any] = {
            "leader_before": leader,
            "leader_after": self.leader_after,
            "expect_leader_change": outcome.expect_leader_change,
            "flowing_before": flowing(run.log, run.t_start, t_action, skip),
            "flowing_after": flowing(run.log, run.t_after, run.t_stop, skip),
            "unaffected_probes_lost": unaffected_lost,
            "timings_s": {k: (None if v is None else round(v, 4)) for k, v in timings.items()},
            "ec2_calls_throttled": len(throttled),
            "api_writes": leader_writes(self.audit, leader, new, t_action),
            "notes": {
                k: v for k, v in outcome.notes.items() if k not in ("converged_t", "healed_t")
            },
        }
        if "healed_t" in outcome.notes:  # an API outage: how hard did each replica knock?
            report["api_requests_during_outage"] = request_rates(
                self.audit, t_action, outcome.notes["healed_t"], [leader, standby]
            )
        return report

    def marks(self, run: DrillRun) -> list[Mark]:
        t_start, gw_ips = run.t_start, run.gw_ips
        marks: list[Mark] = []
        prev_holder: Any = object()
        for e in run.monitor_events:
            if e.get("holder") != prev_holder and e["t"] >= t_start:
                marks.append((e["t"], "leader", f"leader {e.get('holder')}"))
            prev_holder = e.get("holder")
        for e in run.router_events:
            if e["kind"] == "router-switch" and e["t"] >= t_start:
                via = gw_ips.get(e.get("via") or "", e.get("via"))
                marks.append((e["t"], "router", f"VPC route -> {via}"))
        prev_routes: Any = None
        for e in run.monitor_events:
            routes = e.get("route_hosts")
            if routes and routes != prev_routes and e["t"] >= t_start:
                marks.append((e["t"], "ec2-route", f"EC2 routes -> {','.join(map(str, routes))}"))
            prev_routes = routes or prev_routes
        for e in (e for events in run.agent_events.values() for e in events):
            if e["kind"] == "vtep-switch" and e["t"] >= t_start and e["endpoints"]:
                via = e["endpoints"][0]["tunnelEndpoint"]
                marks.append((e["t"], "vtep", f"hybrid node -> {gw_ips.get(via, via)}"))
        return marks

    def title(self, report: dict[str, Any]) -> str:
        return (
            f"drill {report['drill']}: loss window {report['loss_window_s']} s, "
            f"{report['probes_lost']}/{report['probes_sent']} probes lost"
        )

    def table(self, report: dict[str, Any]) -> str:
        return summary_table(report)

    def last_line(self, report: dict[str, Any]) -> dict[str, Any]:
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
