"""The lab's bulk load (`--load iperf3`): parsing iperf3's JSON, the goodput timeline, the
failure's impact, and one short real iperf3 run between two namespaces this test creates.

The fixtures in `data/` are iperf3 3.12 (Debian 12) output captured from a real
`make lab DRILL=kill-leader LAB_ARGS="--load iperf3"` run: the two long cloud-to-hybrid
clients across the leader's node failure (per-stream entries and system info cut out to keep
them small; the `sum` entries the parser reads are as iperf3 wrote them), their exec/exit
times, and the drill's action time on the same monotonic clock.
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hybrid_gateway_testkit.lab.__main__ import configure
from hybrid_gateway_testkit.lab.__main__ import main as lab_main
from hybrid_gateway_testkit.lab.active_active import ActiveActive
from hybrid_gateway_testkit.lab.analysis import ProbeLog
from hybrid_gateway_testkit.lab.load import (
    IPERF3,
    Interval,
    IperfResult,
    ShortTransfer,
    alignment_slack,
    between_tests,
    cloud_address,
    compare_paths,
    failover_impact,
    interval_origin,
    parse_iperf3,
    parse_short_lines,
    read_iperf3,
    spread,
    steady_summary,
)
from hybrid_gateway_testkit.lab.report import load_rows, timeline_png
from hybrid_gateway_testkit.lab.shards import flow_shard
from hybrid_gateway_testkit.lab.topology import LabPlan
from hybrid_gateway_testkit.netns import netns_world

DATA = Path(__file__).parent / "data"
NODES = ("hn1", "hn2")


def _fixture(node: str) -> tuple[IperfResult, float]:
    result = read_iperf3(DATA / f"iperf3-failover-c2h-{node}.json")
    timing = json.loads((DATA / f"iperf3-failover-c2h-{node}.timing.json").read_text())
    return result, interval_origin(timing["t_exec"])


def _drill() -> dict[str, float]:
    return dict(json.loads((DATA / "iperf3-failover-drill.json").read_text()))


def test_a_recorded_client_document_parses_into_sender_and_receiver_intervals() -> None:
    result, _ = _fixture("hn1")
    assert result.error is None
    assert result.streams == 4
    # 0.1 s intervals over the whole test, on both sides
    assert len(result.sender_intervals) >= 150
    assert len(result.receiver_intervals) >= 150
    # contiguous, about 0.1 s each (the server's own -i): a busy machine stretches some
    for intervals in (result.sender_intervals, result.receiver_intervals):
        assert all(abs(b.start - a.end) < 1e-3 for a, b in itertools.pairwise(intervals))
        assert 0.09 < statistics.median(iv.end - iv.start for iv in intervals) < 0.13
    # the receiver's intervals add up to its total, the sender's retransmits to theirs
    assert sum(iv.bytes for iv in result.receiver_intervals) == pytest.approx(
        result.received_bytes, rel=0.01
    )
    assert sum(iv.retransmits for iv in result.sender_intervals) == result.retransmits
    assert 0 < result.received_bytes <= result.sent_bytes


def test_an_error_document_keeps_its_message_and_measures_nothing() -> None:
    doc = {
        "start": {"connected": [], "version": "iperf 3.12"},
        "intervals": [],
        "end": {},
        "error": "unable to connect to server: Connection refused",
    }
    result = parse_iperf3(doc)
    assert result.error == "unable to connect to server: Connection refused"
    assert (result.received_bytes, result.goodput_bps, result.receiver_intervals) == (0, 0.0, ())


def test_a_cut_off_file_is_an_error_result(tmp_path: Path) -> None:
    path = tmp_path / "long.json"
    path.write_text('{"start": {')
    assert read_iperf3(path).error is not None
    assert read_iperf3(tmp_path / "absent.json").error is not None


def test_the_alignment_slack_is_the_exit_less_the_test_and_the_exec() -> None:
    result = parse_iperf3({"end": {"sum_sent": {"end": 18.0, "bytes": 1}}})
    assert alignment_slack(100.0, 118.25, result) == pytest.approx(0.25)
    assert alignment_slack(100.0, 117.0, result) == 0.0  # impossible: none
    assert alignment_slack(100.0, 101.0, parse_iperf3({"error": "refused"})) == 0.0


def test_spread_shares_each_interval_among_the_buckets_it_overlaps() -> None:
    flows = [(10.0, (Interval(0.0, 0.1, 100), Interval(0.1, 0.25, 300)))]
    out = spread(flows, 10.0, 10.3, 0.1)
    assert out == pytest.approx([100.0, 200.0, 100.0])
    # a window starting inside an interval: only the parts inside it count (half of the
    # first interval, a third of the second)
    assert spread(flows, 10.05, 10.15, 0.1) == pytest.approx([50.0 + 100.0])
    retx = [(0.0, (Interval(0.0, 0.1, 0, retransmits=7),))]
    assert spread(retx, 0.0, 0.1, 0.1, field_name="retransmits") == [7.0]


def _series(values: Sequence[float]) -> list[float]:
    return [v * 1e6 for v in values]


def test_a_dip_and_its_recovery() -> None:
    # 1 s settle, reference 100 Mbit/s, action at 2.0 s, 0.5 s at 0, one weak bucket, back
    good = _series([50] * 10 + [100] * 10 + [0] * 5 + [80, 95, 100, 100, 100])
    retx = [3.0] * 20 + [0.0] * 5 + [40.0, 5.0, 0, 0, 0] + [0.0] * 10 + [9.0]
    good += _series([100] * 11)
    impact = failover_impact(good, retx, 0.1, 2.0)
    assert impact["pre_failure_median_mbit_s"] == 100.0
    assert impact["dip_start_s"] == 0.0
    assert impact["below_half_s"] == pytest.approx(0.5)
    # 80 is below 90 %: back at the bucket of 95 (2.6 s), 0.6 s after the action
    assert impact["recovery_s"] == pytest.approx(0.6)
    assert impact["deficit_mbit"] == pytest.approx(5 * 10 + 2)  # 0.5 s x 100 + 0.1 s x 20
    assert impact["retransmits_failure"] == 45  # from the action to 1 s after the recovery
    assert impact["retransmits_after_action"] == 54
    assert impact["retransmits_pre_per_s"] == 30.0  # 3 per 0.1 s bucket
    assert impact["retransmits_total"] == 60 + 54
    assert impact["lowest_mbit_s"] == 0.0


def test_no_dip_is_recovery_zero_and_no_recovery_is_none() -> None:
    flat = _series([100] * 40)
    assert failover_impact(flat, [0.0] * 40, 0.1, 2.0)["recovery_s"] == 0.0
    dead = _series([100] * 20 + [0] * 20)
    impact = failover_impact(dead, [0.0] * 40, 0.1, 2.0)
    assert impact["recovery_s"] is None
    assert impact["below_half_s"] == pytest.approx(2.0)
    assert "error" in failover_impact(_series([0] * 40), [0.0] * 40, 0.1, 2.0)


def test_the_recorded_failover_dips_at_the_action_and_recovers_after_the_new_path() -> None:
    drill = _drill()
    flows = [_fixture(node) for node in NODES]
    t0, t1 = drill["t0"], drill["t1"]
    received = spread([(start, r.receiver_intervals) for r, start in flows], t0, t1, 0.1)
    goodput = [b * 8 / 0.1 for b in received]
    retx = spread(
        [(start, r.sender_intervals) for r, start in flows],
        t0,
        t1,
        0.1,
        field_name="retransmits",
    )
    impact = failover_impact(goodput, retx, 0.1, drill["t_action"] - t0)
    # The pre-failure median lies near the clients' own average over the test.
    mean_mbit = sum(r.goodput_bps for r, _ in flows) / 1e6
    assert 0.4 * mean_mbit < impact["pre_failure_median_mbit_s"] < 2.5 * mean_mbit
    # Goodput fell at the action (the old leader's link went down), not before it: the
    # intervals are aligned to the clients' exec, which these figures check (aligned to the
    # launch of their wrapper, the dip would come before the action; to their exit less the
    # test's length, goodput would go on 0.2 s over a link that is down).
    action_bucket = int((drill["t_action"] - t0) // 0.1)
    reference = impact["pre_failure_median_mbit_s"] * 1e6
    assert min(goodput[action_bucket - 5 : action_bucket]) > reference / 2
    assert impact["dip_start_s"] is not None and impact["dip_start_s"] < 0.2
    assert impact["lowest_mbit_s"] == 0.0
    # ... and came back no earlier than the VPC router moved the cloud side's route to the
    # new leader (the path of this direction), within the run.
    assert impact["recovery_s"] is not None
    assert drill["vpc_router_switched_s"] - 0.2 <= impact["recovery_s"] < 15
    assert impact["below_half_s"] <= impact["recovery_s"] + 0.1
    # The flight lost in the outage is sent again once the path is back.
    assert impact["retransmits_failure"] > 10 * impact["retransmits_pre_per_s"]


def test_the_lab_refuses_load_without_iperf3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no iperf3 anywhere
    with pytest.raises(SystemExit) as exc:
        lab_main(["--drill", "kill-leader", "--load", "iperf3"])
    assert exc.value.code == 2
    assert "iperf3 is not installed (make system-deps installs it)" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which(IPERF3) is None, reason="iperf3 is a system dependency")
def test_active_active_load_pairs_each_node_with_its_shards_cloud_address() -> None:
    """`--load iperf3` in active-active mode (refused before): each hybrid node's flows go to
    and come from its shard's cloud address, so both directions of a flow cross that shard's
    owner, and the flows of the shards, spread over the gateways, cross every gateway."""
    _, settings, mode = configure(
        ["--drill", "kill-owner", "--mode", "active-active", "--gateways", "3", "--load",
         "iperf3", "--load-seconds", "2"]
    )  # fmt: skip
    assert isinstance(mode, ActiveActive) and settings.load is not None
    assert settings.load.steady_s == 2
    plan = mode.plan()
    assert plan is not None
    forward = plan.shard_plan()
    shards = set()
    for node in plan.nodes:
        cloud = cloud_address(plan, node.name)
        here, there = flow_shard(forward, node.pod_ip), flow_shard(forward, cloud)
        assert here is not None and there is not None
        assert here[0] == there[0], (node, cloud)  # forward and return path: one shard
        shards.add(here[0])
    assert shards == set(range(plan.shards))  # every shard, so every gateway, carries load
    standby = LabPlan()
    assert {cloud_address(standby, n.name) for n in standby.nodes} == {standby.cloud_pod_ip}


def _short(size: int, took: float, error: str | None = None) -> ShortTransfer:
    return ShortTransfer(size, 10.0, 10.0 + took, size, size, 0, error)


def test_steady_summary_and_the_tunnel_over_underlay_ratios() -> None:
    long = [
        IperfResult(10**9, 10**9, 8.0, 3, 4, (), ()),  # 1000 Mbit/s
        IperfResult(10**9, 5 * 10**8, 8.0, 2, 4, (), ()),  # 500 Mbit/s
        IperfResult(0, 0, 0.0, 0, 0, (), (), error="refused"),
    ]
    short = [_short(1000, 0.1), _short(1000, 0.3), _short(1000, 0.2), _short(1000, 9, "x")]
    s = steady_summary(long, short)
    assert s["goodput_mbit_s"] == 1500.0
    assert (s["long_transfers"], s["streams"], s["retransmits"]) == (2, 8, 5)
    assert s["long_errors"] == ["refused"]
    assert s["short"]["1000"] == {"transfers": 3, "failed": 1, "median_s": 0.2, "p95_s": 0.3}
    under = {"cloud_to_hybrid": s, "hybrid_to_cloud": s}
    tunnel_dir = {**s, "goodput_mbit_s": 750.0, "short": {"1000": {"median_s": 0.3}}}
    tunnel = {"cloud_to_hybrid": tunnel_dir, "hybrid_to_cloud": s}
    cmp = compare_paths(under, tunnel)
    assert cmp["cloud_to_hybrid"] == {"goodput_ratio": 0.5, "short_median_ratio": {"1000": 1.5}}
    assert cmp["hybrid_to_cloud"]["goodput_ratio"] == 1.0


@pytest.mark.netns
def test_a_real_iperf3_run_between_two_namespaces(tmp_path: Path) -> None:
    """Two namespaces joined by a veth pair (addresses only inside them): a 2 s long transfer
    of 2 streams as the lab runs it, and the short-transfer loop for 1 s beside it."""
    with netns_world() as world:
        a, b = world.add("load-a"), world.add("load-b")
        world.link(a, "10.199.0.1/30", b, "10.199.0.2/30")
        servers = [
            subprocess.Popen(
                b.exec_argv([IPERF3, "-s", "-B", "10.199.0.2", "-p", str(port), "-i", "0.1", "-J"]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in (5201, 5202)
        ]
        try:
            deadline = time.monotonic() + 10
            while "5202" not in b.exec("ss", "-Hltn") or "5201" not in b.exec("ss", "-Hltn"):
                assert time.monotonic() < deadline, "iperf3 servers did not listen"
                time.sleep(0.05)
            loader = [sys.executable, "-m", "hybrid_gateway_testkit.lab.load"]
            long_json, timing = tmp_path / "long.json", tmp_path / "long.timing.json"
            long_argv = [
                *loader, "long", "--timing", str(timing), "--",
                IPERF3, "-c", "10.199.0.2", "-B", "10.199.0.1", "-p", "5201", "-P", "2",
                "-t", "2", "-i", "0.1", "-J", "--get-server-output", "--logfile", str(long_json),
            ]  # fmt: skip
            long = subprocess.Popen(a.exec_argv(long_argv))
            short_out = tmp_path / "short.jsonl"
            short_argv = [
                *loader, "short", "--server", "10.199.0.2", "--bind", "10.199.0.1",
                "--port", "5202", "--duration", "1", "--sizes", "131072,1048576",
                "--streams", "2", "--out", str(short_out),
            ]  # fmt: skip
            subprocess.run(a.exec_argv(short_argv), check=True, timeout=60)
            assert long.wait(timeout=60) == 0
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
    result = read_iperf3(long_json)
    assert result.error is None
    assert result.streams == 2
    assert result.goodput_bps > 1e6  # a veth pair carries far more than 1 Mbit/s
    assert 1.9 < result.seconds < 2.5
    assert 15 <= len(result.receiver_intervals) <= 25  # 0.1 s intervals over 2 s
    assert sum(iv.bytes for iv in result.receiver_intervals) == pytest.approx(
        result.received_bytes, rel=0.01
    )
    times = json.loads(timing.read_text())
    slack = alignment_slack(times["t_exec"], times["t_exit"], result)
    assert 0 < slack < times["t_exit"] - times["t_exec"] - 1.9
    transfers = parse_short_lines(short_out.read_text().splitlines())
    assert len(transfers) >= 2
    assert {t.size for t in transfers} == {131072, 1048576}
    # every short transfer completed: the sender wrote all of it and the test ended cleanly
    # (what the receiver counted may be less: iperf3 stops counting at the test's end)
    assert [t.error for t in transfers] == [None] * len(transfers)
    assert all(t.sent_bytes >= t.size and t.completion_s > 0 for t in transfers)


def test_the_report_shows_the_load_in_its_table_and_picture(tmp_path: Path) -> None:
    good = _series([100] * 20 + [0] * 5 + [100] * 15)
    impact = failover_impact(good, [0.0] * 40, 0.1, 2.0)
    direction = {"impact": impact}
    steady = {"goodput_mbit_s": 100.0, "retransmits": 1, "short": {}}
    load = {
        "steady": {
            "underlay": {"cloud_to_hybrid": steady, "hybrid_to_cloud": steady},
            "tunnel": {"cloud_to_hybrid": steady, "hybrid_to_cloud": steady},
            "tunnel_vs_underlay": compare_paths(
                {"cloud_to_hybrid": steady, "hybrid_to_cloud": steady},
                {"cloud_to_hybrid": steady, "hybrid_to_cloud": steady},
            ),
        },
        "failover": {
            "cloud_to_hybrid": direction,
            "hybrid_to_cloud": {"impact": {"error": "no goodput before the failure"}},
        },
    }
    rows = dict(load_rows(load))
    assert rows["load cloud to hybrid"].endswith("= 1.0, retx 1/1")
    assert "90 % at +0.5 s" in rows["  across the drill, cloud_to_hybrid"]
    assert rows["  across the drill, hybrid_to_cloud"] == "no goodput before the failure"
    assert load_rows(None) == []
    plot = tmp_path / "timeline.png"
    series = {"cloud_to_hybrid": good, "hybrid_to_cloud": good}
    retx = {"cloud_to_hybrid": [0.0] * 40, "hybrid_to_cloud": [0.0] * 40}
    timeline_png(
        plot,
        log=ProbeLog(),
        cloud_ips={"10.0.0.20"},
        t0=0.0,
        t1=4.0,
        marks=[(2.0, "action", "kill"), (2.5, "load", "goodput back")],
        title="t",
        load=(series, retx, 0.1),
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("error", "again"),
    [
        ("error - the server is busy running a test. try again later", True),
        (
            "error - unable to connect to server - server may have stopped running or use a "
            "different port, firewall issue, etc.: Connection refused",
            True,
        ),
        ("unable to receive control message: Connection reset by peer", True),
        (
            "error - unable to connect to server - server may have stopped running or use a "
            "different port, firewall issue, etc.: Connection timed out",
            False,
        ),
        ("timed out", False),
        ("sent 65536 of 131072 bytes", False),
    ],
)
def test_only_the_server_winding_a_test_down_is_tried_again(error: str, again: bool) -> None:
    """A busy server, a refused connection and a reset of a queued one all mean the server's
    host answered between two tests: tried again, not recorded. A path that does not answer
    (a connect timeout, a transfer that never ends) or a short transfer is a failure."""
    assert between_tests(error) is again
