"""Loss windows and report numbers, computed from sequence numbers (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybrid_gateway_testkit.lab.analysis import (
    delivery_buckets,
    loss_windows,
    parse_probe_lines,
    summarize,
    tcp_stats,
)

CLOUD, POD = "10.0.0.20", "10.100.1.5"


def _sent(n: int, interval: float = 0.01, t0: float = 100.0) -> list[tuple[int, float]]:
    return [(i, t0 + i * interval) for i in range(n)]


def test_no_loss_gives_no_window() -> None:
    assert loss_windows(_sent(50), set(range(50))) == []


def test_a_gap_in_the_middle_lasts_lost_times_interval() -> None:
    delivered = set(range(50)) - set(range(10, 35))
    [window] = loss_windows(_sent(50), delivered)
    assert (window.first_seq, window.last_seq, window.lost) == (10, 34, 25)
    assert window.duration == pytest.approx(0.25)
    assert window.start == pytest.approx(100.10)


def test_separate_gaps_are_separate_windows() -> None:
    delivered = set(range(30)) - {3, 4, 20}
    windows = loss_windows(_sent(30), delivered)
    assert [(w.first_seq, w.last_seq) for w in windows] == [(3, 4), (20, 20)]
    assert [round(w.duration, 6) for w in windows] == [0.02, 0.01]


def test_a_window_open_at_the_end_is_closed_one_interval_after_its_last_probe() -> None:
    [window] = loss_windows(_sent(20), set(range(15)))
    assert (window.first_seq, window.last_seq) == (15, 19)
    assert window.duration == pytest.approx(0.05)


def test_loss_from_the_first_probe_is_a_window_too() -> None:
    [window] = loss_windows(_sent(10), set(range(4, 10)))
    assert (window.first_seq, window.last_seq, window.lost) == (0, 3, 4)


def test_send_times_not_seq_order_decide_the_span() -> None:
    # An irregular sender (a scheduling hiccup) stretches the window in real time.
    sent = [(0, 0.0), (1, 0.01), (2, 0.5), (3, 0.51)]
    [window] = loss_windows(sent, {0, 3})
    assert window.duration == pytest.approx(0.5)


@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_windows_account_for_every_lost_probe(delivered_flags: list[bool]) -> None:
    sent = _sent(len(delivered_flags))
    delivered = {i for i, ok in enumerate(delivered_flags) if ok}
    windows = loss_windows(sent, delivered, interval_s=0.01)
    assert sum(w.lost for w in windows) == len(sent) - len(delivered)
    for w in windows:
        assert w.duration == pytest.approx(w.lost * 0.01)
        assert not any(s in delivered for s in range(w.first_seq, w.last_seq + 1))


def _log_lines() -> list[str]:
    lines = []
    for seq in range(100):
        t = 10.0 + seq * 0.01
        lines.append(f"tx,{CLOUD},{POD},{seq},{t:.6f}")
        lines.append(f"tx,{POD},{CLOUD},{seq},{t:.6f}")
        if not 40 <= seq < 60:  # 20 lost cloud -> pod
            lines.append(f"rx,{CLOUD},{POD},{seq},{t:.6f},{t + 0.001:.6f}")
        if not 45 <= seq < 50:  # 5 lost pod -> cloud
            lines.append(f"rx,{POD},{CLOUD},{seq},{t:.6f},{t + 0.001:.6f}")
    lines.append(f"rx,{POD},{CLOUD},7,10.07,10.09")  # a duplicate counts once
    lines += [
        f"tcp,{CLOUD},{POD},0,10.0,10.01,1",
        f"tcp,{CLOUD},{POD},1,10.1,11.1,0",
        f"tcp,{CLOUD},{POD},2,11.1,12.1,0",
        f"tcp,{CLOUD},{POD},3,12.2,12.25,1",
    ]
    return lines


def test_summary_numbers_per_direction() -> None:
    summary = summarize(parse_probe_lines(_log_lines()), {CLOUD})
    c2h, h2c = summary["directions"]["cloud_to_hybrid"], summary["directions"]["hybrid_to_cloud"]
    assert (c2h["sent"], c2h["lost"], c2h["loss_window_s"]) == (100, 20, 0.2)
    assert (h2c["sent"], h2c["lost"], h2c["loss_window_s"]) == (100, 5, 0.05)
    assert summary["loss_window_s"] == 0.2
    assert (summary["probes_sent"], summary["probes_lost"]) == (200, 25)
    assert summary["tcp"]["failed"] == 2
    assert summary["tcp"]["longest_failure_s"] == pytest.approx(2.1)


def test_tcp_outage_still_open_at_the_end_runs_to_the_last_call() -> None:
    log = parse_probe_lines([f"tcp,{CLOUD},{POD},0,1.0,1.1,1", f"tcp,{CLOUD},{POD},1,2.0,3.0,0"])
    assert tcp_stats(log.tcp).longest_failure_s == pytest.approx(1.0)


def test_buckets_count_deliveries_by_receive_time() -> None:
    log = parse_probe_lines(_log_lines())
    buckets = delivery_buckets(log, {CLOUD}, 10.0, 11.0, 0.01)
    assert sum(buckets["cloud_to_hybrid"]) == 80
    assert sum(buckets["hybrid_to_cloud"]) == 96  # 95 distinct + 1 duplicate delivery
    assert buckets["cloud_to_hybrid"][45] == 0


def test_malformed_lines_are_rejected_with_their_number() -> None:
    with pytest.raises(ValueError, match=r"line 2 is malformed: 'rx,1,2'"):
        parse_probe_lines([f"tx,{CLOUD},{POD},0,1.0", "rx,1,2"])
