"""The short drills end to end: the real `hybrid-gateway run` daemons in the lab, via the CLI.

Each test runs `python -m hybrid_gateway_testkit.lab --drill NAME` as a subprocess (exactly what
`make lab` runs), reads the last printed line and the JSON report, and checks the outcome
against the raw probe log.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hybrid_gateway_testkit.lab.analysis import parse_probe_lines, summarize
from hybrid_gateway_testkit.lab.lab import namespaces_of_run
from hybrid_gateway_testkit.netns import leftover_namespaces

pytestmark = [pytest.mark.netns, pytest.mark.slow]

LAB_ROLES = (
    "-vpcr", "-ctl", "-cloud", "-gw-a", "-gw-b", "-eni-gw-a", "-eni-gw-b",
    "-hn1", "-hn2", "-hn1-pod", "-hn2-pod",
)  # fmt: skip
LAST_LINE_KEYS = {"drill", "loss_window_s", "probes_sent", "probes_lost", "leader_before",
                  "leader_after", "report", "plot"}  # fmt: skip


def run_drill(
    drill: str, out: Path, extra: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_gateway_testkit.lab", "--drill", drill, "--out", str(out),
         "--baseline", "2", "--after", "2.5", *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(last) >= LAST_LINE_KEYS
    assert last["drill"] == drill
    report = json.loads(Path(last["report"]).read_text())
    assert Path(last["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not namespaces_of_run(proc.stdout), "the lab left namespaces behind"
    _check_against_raw_log(last, report)
    return last, report


def _check_against_raw_log(last: dict[str, Any], report: dict[str, Any]) -> None:
    lines = Path(report["raw_log"]).read_text().splitlines()
    # Independent count straight from the CSV: every tx is a probe; lost = tx without an rx.
    tx = {tuple(line.split(",")[1:4]) for line in lines if line.startswith("tx,")}
    rx = {tuple(line.split(",")[1:4]) for line in lines if line.startswith("rx,")}
    assert last["probes_sent"] == report["probes_sent"] == len(tx)
    assert last["probes_lost"] == report["probes_lost"] == len(tx - rx)
    recomputed = summarize(parse_probe_lines(lines), {"10.0.0.20"})
    for key in ("loss_window_s", "directions", "flows", "tcp"):
        assert report[key] == recomputed[key], key
    assert last["loss_window_s"] == report["loss_window_s"]
    # Four UDP flows (cloud <-> 2 hybrid pods) at about the same count each.
    per_flow = Counter((src, dst) for src, dst, _ in tx)
    assert len(per_flow) == 4
    assert max(per_flow.values()) - min(per_flow.values()) <= 5


def _flowing(report: dict[str, Any]) -> None:
    assert len(report["flowing_before"]) == 4 and all(report["flowing_before"].values())
    assert len(report["flowing_after"]) == 4 and all(report["flowing_after"].values())


def test_kill_leader_node_failure_moves_everything_to_the_standby(tmp_path: Path) -> None:
    last, report = run_drill("kill-leader", tmp_path)
    assert (last["leader_before"], last["leader_after"]) == ("gw-a", "gw-b")
    _flowing(report)
    # The old node is gone (link down): traffic sent meanwhile is really lost, and recovers.
    assert last["probes_lost"] > 0 and last["loss_window_s"] > 0
    for key in (
        "lease_acquired",
        "ec2_routes_moved",
        "vpc_router_switched",
        "vtep_config_moved",
        "hybrid_nodes_switched",
    ):
        assert report["timings_s"][key] is not None, key
    # The lease had to expire first: the routes moved only after the new leader held it.
    assert report["timings_s"]["ec2_routes_moved"] >= report["timings_s"]["lease_acquired"]
    # From the API server's audit: the standby took the Lease only after the dead leader's last
    # renewal had expired, and the dead leader wrote nothing afterwards.
    writes = report["api_writes"]
    gap = writes["new_leader_first_lease_write_s"] - writes["old_leader_last_lease_write_s"]
    assert gap >= 0.9 * report["settings"]["lease_duration_s"]
    assert writes["old_leader_vtep_writes_after_takeover"] == 0


def test_term_leader_hands_over_and_the_old_leader_returns_as_standby(tmp_path: Path) -> None:
    last, report = run_drill("term-leader", tmp_path)
    assert (last["leader_before"], last["leader_after"]) == ("gw-a", "gw-b")
    _flowing(report)
    assert report["notes"]["exit_code"] == 0
    assert report["timings_s"]["vtep_config_moved"] is not None
    # The old node kept forwarding until the routes moved: no webhook call failed.
    assert report["tcp"]["failed"] == 0
    # The lease was released, not left to expire: the old leader wrote it after SIGTERM (the
    # release), and the standby took it after that.
    writes = report["api_writes"]
    assert writes["old_leader_last_lease_write_s"] >= 0
    assert writes["new_leader_first_lease_write_s"] >= writes["old_leader_last_lease_write_s"]
    assert writes["old_leader_vtep_writes_after_takeover"] == 0


def test_restart_standby_loses_no_probe(tmp_path: Path) -> None:
    last, report = run_drill("restart-standby", tmp_path)
    assert last["leader_before"] == last["leader_after"] == "gw-a"
    _flowing(report)
    assert last["probes_lost"] == 0
    assert report["tcp"]["failed"] == 0
    assert report["notes"]["exit_code"] == 0


def test_eni_check_on_hands_over_while_the_vpc_drops_the_old_leaders_forwarding(
    tmp_path: Path,
) -> None:
    """The leader's source/destination check turned back on during traffic: the lab's VPC side
    drops what that ENI forwards (as EC2 does), the leader hands over, the standby owns it all."""
    last, report = run_drill("eni-check-on", tmp_path)
    assert (last["leader_before"], last["leader_after"]) == ("gw-a", "gw-b")
    _flowing(report)
    # the lab's EC2 side really dropped the old leader's forwarding (else nothing was tested)
    assert report["notes"]["vpc_drops_from_s"] is not None
    for key in ("lease_acquired", "ec2_routes_moved", "vtep_config_moved", "hybrid_nodes_switched"):
        assert report["timings_s"][key] is not None, key
    assert report["timings_s"]["ec2_routes_moved"] >= report["timings_s"]["lease_acquired"]
    writes = report["api_writes"]
    # handed over (released), not left to expire: taken before the old lease could run out
    assert writes["new_leader_first_lease_write_s"] is not None
    assert writes["old_leader_vtep_writes_after_takeover"] == 0
    assert last["loss_window_s"] is not None


#: The standby's requests per second during an API outage (answered or dropped), at most: a
#: follower retries a failed round after at least a quarter retry period, each watch backs off.
STANDBY_OUTAGE_RATE_BOUND = 20.0


def test_control_plane_upgrade_loses_nothing_and_keeps_the_leader(tmp_path: Path) -> None:
    """The API unreachable for every gateway and hybrid node (10 s here, 60 s by default): no
    probe lost (UDP and TLS webhook calls), no leader change after the heal, and the standby's
    request rate bounded (from the API server's audit)."""
    last, report = run_drill("control-plane-upgrade", tmp_path, ("--api-outage", "10"))
    assert last["leader_before"] == last["leader_after"] == "gw-a"
    assert report["notes"]["leader_in_charge_after_heal"] is True
    assert report["notes"]["outage_s"] >= 10
    _flowing(report)
    assert last["probes_lost"] == 0, report["flows"]
    assert report["tcp"]["failed"] == 0 and report["tcp"]["calls"] > 0
    rates = report["api_requests_during_outage"]
    assert rates["gw-a"]["requests"] > 0 and rates["gw-b"]["requests"] > 0
    assert rates["gw-b"]["mean_per_s"] <= STANDBY_OUTAGE_RATE_BOUND, rates


#: Starts argv[1:] with SIGINT ignored, as a shell starts a background job (bash(1) SIGNALS:
#: "asynchronous commands ignore SIGINT"): exec keeps an ignored disposition (execve(2)).
START_WITH_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_ctrl_c_mid_drill_stops_everything_and_removes_the_world(tmp_path: Path) -> None:
    """Ctrl-C during the baseline stops the lab (130), its processes and namespaces, and the
    drill never runs: the baseline is longer than any wait here, so only the signal can end
    the run. The lab starts with SIGINT ignored, as a background job of a script (CI) would
    start it: Ctrl-C must work there too (it exited 0 after the whole drill)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", START_WITH_SIGINT_IGNORED, sys.executable,
         "-m", "hybrid_gateway_testkit.lab", "--drill", "restart-standby", "--out", str(tmp_path),
         "--baseline", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:  # bounded: the lab comes up or fails within its start timeout
            seen.append(line)
            if line.startswith("probes running"):
                break
        assert seen and seen[-1].startswith("probes running"), "".join(seen)
        during = namespaces_of_run("".join(seen))
        assert {"-" + n.split("-", 2)[2] for n in during} == set(LAB_ROLES)
        children = _children(proc.pid)
        assert children, "the lab runs its processes as children"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the lab's SIGTERM handler cleans up as Ctrl-C does
            proc.terminate()
            proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "starting again" not in out and not (tmp_path / "report.json").exists(), out
    assert not (set(leftover_namespaces()) & during)
    assert not [pid for pid in children if _alive(pid)]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True,
                         check=False).stdout  # fmt: skip
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
