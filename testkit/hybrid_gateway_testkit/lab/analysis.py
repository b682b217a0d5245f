"""Pure computations over the raw probe logs: loss windows, delivery timelines, report numbers.

No I/O besides `parse_probe_lines`' input; every number in the lab's JSON report comes from here,
so the tests can recompute them from the raw log and compare.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sent:
    src: str
    dst: str
    seq: int
    t_send: float


@dataclass(frozen=True)
class Received:
    src: str
    dst: str
    seq: int
    t_send: float
    t_recv: float


@dataclass(frozen=True)
class TcpCall:
    src: str
    dst: str
    seq: int
    t_start: float
    t_end: float
    ok: bool
    kind: str = "call"  # call: a connection per request; conn: one long-lived connection


@dataclass
class ProbeLog:
    sent: list[Sent] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    tcp: list[TcpCall] = field(default_factory=list)


def parse_probe_lines(lines: Iterable[str]) -> ProbeLog:
    """Parse the CSV lines written by `probe` (blank lines ignored, bad lines rejected)."""
    log = ProbeLog()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(",")
        try:
            if parts[0] == "tx" and len(parts) == 5:
                log.sent.append(Sent(parts[1], parts[2], int(parts[3]), float(parts[4])))
            elif parts[0] == "rx" and len(parts) == 6:
                log.received.append(
                    Received(parts[1], parts[2], int(parts[3]), float(parts[4]), float(parts[5]))
                )
            elif parts[0] == "tcp" and len(parts) in (7, 8):
                log.tcp.append(
                    TcpCall(
                        parts[1],
                        parts[2],
                        int(parts[3]),
                        float(parts[4]),
                        float(parts[5]),
                        parts[6] == "1",
                        parts[7] if len(parts) == 8 else "call",
                    )
                )
            else:
                raise ValueError("unknown record")
        except ValueError as exc:
            raise ValueError(f"probe log line {number} is malformed: {line!r} ({exc})") from None
    return log


@dataclass(frozen=True)
class LossWindow:
    """A run of consecutive lost probes of one flow."""

    first_seq: int
    last_seq: int
    start: float  # send time of the first lost probe
    end: float  # send time of the next delivered probe (or last lost + interval at the end)

    @property
    def lost(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def duration(self) -> float:
        return self.end - self.start


def loss_windows(
    sent: Sequence[tuple[int, float]], delivered: set[int], interval_s: float | None = None
) -> list[LossWindow]:
    """Runs of consecutive undelivered sequence numbers of ONE flow, with their time spans.

    `sent` is (seq, send time) per probe. A window lasts from the send time of its first lost
    probe to the send time of the first probe delivered after it, i.e. it measures how long
    traffic sent into the network vanished: n lost probes at interval i give n * i. A window
    still open at the end of the log is closed one nominal interval after its last probe
    (`interval_s`, else the median spacing of the sends).
    """
    ordered = sorted(sent)
    if not ordered:
        return []
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(ordered)]
    interval = (
        interval_s if interval_s is not None else (sorted(gaps)[len(gaps) // 2] if gaps else 0.0)
    )
    windows: list[LossWindow] = []
    open_start: tuple[int, float] | None = None
    last_lost: tuple[int, float] | None = None
    for seq, t in ordered:
        if seq in delivered:
            if open_start is not None and last_lost is not None:
                windows.append(LossWindow(open_start[0], last_lost[0], open_start[1], t))
            open_start = last_lost = None
        else:
            if open_start is None:
                open_start = (seq, t)
            last_lost = (seq, t)
    if open_start is not None and last_lost is not None:
        windows.append(
            LossWindow(open_start[0], last_lost[0], open_start[1], last_lost[1] + interval)
        )
    return windows


@dataclass(frozen=True)
class FlowStats:
    src: str
    dst: str
    sent: int
    delivered: int
    lost: int
    longest_window_s: float
    windows: tuple[LossWindow, ...]


def flow_stats(log: ProbeLog) -> list[FlowStats]:
    """Per (src, dst) flow: what was sent, what arrived (each seq counted once), loss windows."""
    sent: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    got: dict[tuple[str, str], set[int]] = defaultdict(set)
    for s in log.sent:
        sent[(s.src, s.dst)].append((s.seq, s.t_send))
    for r in log.received:
        got[(r.src, r.dst)].add(r.seq)
    out = []
    for (src, dst), probes in sorted(sent.items()):
        seqs = {seq for seq, _ in probes}
        delivered = got[(src, dst)] & seqs
        windows = loss_windows(probes, delivered)
        out.append(
            FlowStats(
                src,
                dst,
                len(seqs),
                len(delivered),
                len(seqs) - len(delivered),
                max((w.duration for w in windows), default=0.0),
                tuple(windows),
            )
        )
    return out


def direction_of(src: str, cloud_ips: set[str]) -> str:
    return "cloud_to_hybrid" if src in cloud_ips else "hybrid_to_cloud"


@dataclass(frozen=True)
class TcpStats:
    calls: int
    failed: int
    max_latency_s: float
    longest_failure_s: float


def tcp_stats(calls: Sequence[TcpCall]) -> TcpStats:
    """Failed calls, and the longest time any target answered nothing (first failure start to
    the start of the next success)."""
    longest = 0.0
    by_target: dict[tuple[str, str, str], list[TcpCall]] = defaultdict(list)
    for c in calls:
        by_target[(c.src, c.dst, c.kind.partition("+")[0])].append(c)
    for target_calls in by_target.values():
        fail_start: float | None = None
        for c in sorted(target_calls, key=lambda c: c.t_start):
            if not c.ok and fail_start is None:
                fail_start = c.t_start
            elif c.ok and fail_start is not None:
                longest = max(longest, c.t_start - fail_start)
                fail_start = None
        if fail_start is not None:
            last = max(c.t_end for c in target_calls)
            longest = max(longest, last - fail_start)
    return TcpStats(
        calls=len(calls),
        failed=sum(1 for c in calls if not c.ok),
        max_latency_s=max((c.t_end - c.t_start for c in calls if c.ok), default=0.0),
        longest_failure_s=longest,
    )


def summarize(log: ProbeLog, cloud_ips: set[str]) -> dict[str, Any]:
    """The probe numbers of the lab report (JSON-ready)."""
    flows = flow_stats(log)
    directions: dict[str, dict[str, float]] = {}
    for name in ("cloud_to_hybrid", "hybrid_to_cloud"):
        mine = [f for f in flows if direction_of(f.src, cloud_ips) == name]
        directions[name] = {
            "sent": sum(f.sent for f in mine),
            "delivered": sum(f.delivered for f in mine),
            "lost": sum(f.lost for f in mine),
            "loss_window_s": round(max((f.longest_window_s for f in mine), default=0.0), 4),
        }
    tcp = tcp_stats(log.tcp)
    return {
        "loss_window_s": max(d["loss_window_s"] for d in directions.values()),
        "probes_sent": sum(f.sent for f in flows),
        "probes_lost": sum(f.lost for f in flows),
        "directions": directions,
        "flows": [
            {
                "src": f.src,
                "dst": f.dst,
                "sent": f.sent,
                "delivered": f.delivered,
                "lost": f.lost,
                "loss_window_s": round(f.longest_window_s, 4),
                "windows": [
                    {
                        "first_seq": w.first_seq,
                        "last_seq": w.last_seq,
                        "lost": w.lost,
                        "start": round(w.start, 6),
                        "duration_s": round(w.duration, 4),
                    }
                    for w in f.windows
                ],
            }
            for f in flows
        ],
        "tcp": {
            "calls": tcp.calls,
            "failed": tcp.failed,
            "max_latency_s": round(tcp.max_latency_s, 4),
            "longest_failure_s": round(tcp.longest_failure_s, 4),
        },
    }


def delivery_buckets(
    log: ProbeLog, cloud_ips: set[str], t0: float, t1: float, bucket_s: float = 0.01
) -> Mapping[str, list[int]]:
    """Packets delivered per `bucket_s` bucket between t0 and t1, by receive time, per direction."""
    n = max(1, int((t1 - t0) / bucket_s) + 1)
    out = {"cloud_to_hybrid": [0] * n, "hybrid_to_cloud": [0] * n}
    for r in log.received:
        i = int((r.t_recv - t0) / bucket_s)
        if 0 <= i < n:
            out[direction_of(r.src, cloud_ips)][i] += 1
    return out
