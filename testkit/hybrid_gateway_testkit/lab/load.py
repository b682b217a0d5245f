"""Bulk east-west load in the lab: many parallel TCP flows both ways with a size mix (iperf3).

The probes (`probe`) measure loss with small packets; this measures what bulk traffic sees:
goodput, retransmits and short-transfer completion times, with iperf3 (Debian's package) between
the lab's own namespaces only. Per hybrid node and direction it runs one long transfer of
`streams` parallel TCP streams (`-t`) and, beside it, a loop of short transfers of a few sizes
(`-n`, `short_streams` streams each): most transfers are short, most bytes are in long ones.
"Cloud to hybrid" is a client in the cloud pod sending to a server in the hybrid pod (the
connection opened from the VPC side, admitted by the ENI's `remote_pod_access` rule for
`POD_LOAD_PORTS`); "hybrid to cloud" is a client in the hybrid pod sending to a server in the cloud.

The same load runs over two paths of one lab, one after the other (on a shared machine,
concurrent runs would take CPU from each other):
- `underlay`: the hybrid node's own address <-> the cloud pod through the VPC router, no tunnel
  and no gateway (what the enterprise network carries today);
- `tunnel`: the hybrid pod <-> the cloud pod through the VXLAN tunnel and the leader gateway;
  in active-active mode each hybrid pod <-> the cloud address of its shard (`cloud_address`),
  through that shard's owner, so the flows of shards owned by different gateways cross
  different gateways.
Across a drill, the tunnel load runs while the drill acts; the per-interval receiver goodput of
the long transfers (`--get-server-output`, the server reporting every `interval_s`) gives the
dip, the retransmits (sender side) and the time until goodput is back (`failover_impact`).

iperf3 facts this relies on (esnet/iperf, src/iperf_api.c and docs/invoking.rst, 3.12 as in
Debian 12): a server runs one test at a time (a second client is refused "busy"), so every
concurrent client has a server port of its own; with `-J` the client writes one JSON document
whose `intervals[].sum` are the sender's intervals (with `retransmits`), `end.sum_received`
the receiver's total, and with `--get-server-output` the server's own JSON under
`server_output_json` (its `intervals[].sum` are the receiver's bytes per interval of the
server's `-i`); an error is an `error` string in the document. Interval times count from the
test's start, which is the client's launch plus its connection set-up (milliseconds here): the
timeline is aligned to the launch.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The load's own ports live with the topology (whose ENI filters admit them); callers of the
# load module still find them here.
from hybrid_gateway_testkit.lab.topology import POD_LOAD_PORTS as POD_LOAD_PORTS  # noqa: PLC0414
from hybrid_gateway_testkit.lab.topology import LabPlan

if TYPE_CHECKING:
    from hybrid_gateway_testkit.lab.lab import Lab
    from hybrid_gateway_testkit.lab.procs import LabProcess
    from hybrid_gateway_testkit.netns import Netns

IPERF3 = "iperf3"
CLOUD_LOAD_PORT_BASE = 5210
"""Servers in the cloud pod: hybrid node i sends its long transfer to base + 2 i, its short
transfers to base + 2 i + 1 (one server per concurrent client)."""
DIRECTIONS = ("cloud_to_hybrid", "hybrid_to_cloud")
PATHS = ("underlay", "tunnel")
BUSY = "the server is busy running a test"
"""iperf3's refusal while its server still winds the previous test down (its `IEACCESSDENIED`
text, src/iperf_error.c): not a transfer, the loop tries again."""
REFUSED = "Connection refused"
"""The server host answering with a reset: no listener in the instant between two of the
server's tests (seen here in a quick loop of short transfers between two namespaces). A broken
path never answers with a reset, so this is not a transfer either: the loop tries again."""
RESET = "Connection reset by peer"
"""The server host resetting a connection it had queued but not accepted: at the end of each
test the server closes its listening socket (esnet/iperf src/iperf_server_api.c,
`cleanup_server`) and listens again for the next, and Linux resets the connections still in the
closed socket's accept queue. The client then fails its first read ("unable to receive control
message: Connection reset by peer", seen once in a loaded run, 4 ms after it started). Only a
host that answers can reset, so, as with REFUSED, the path worked: not a transfer."""


def between_tests(error: str) -> bool:
    """Whether a short transfer's error is the server winding one test down before the next
    (BUSY, REFUSED, RESET): the loop tries again instead of recording a failed transfer."""
    return any(text in error for text in (BUSY, REFUSED, RESET))


SHORT_TIMEOUT_S = 30.0
"""A short transfer that has not finished by then (a path that stays broken) is an error."""


@dataclass(frozen=True)
class LoadSettings:
    """What `--load iperf3` runs; the defaults are the figures in docs/lab.md."""

    steady_s: float = 5.0  # each steady phase (underlay, then tunnel)
    failover_s: float = 15.0  # load after the drill's baseline, across the drill
    streams: int = 4  # parallel TCP streams of each long transfer
    short_sizes: tuple[int, ...] = (128 * 1024, 1024 * 1024, 16 * 1024 * 1024)
    short_streams: int = 2
    interval_s: float = 0.1
    recovered_fraction: float = 0.9  # goodput back to this share of the pre-failure median
    settle_s: float = 1.0  # slow start: not part of the pre-failure median


# ---- pure: iperf3 JSON -> figures -----------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    start: float  # seconds since the test started
    end: float
    bytes: int
    retransmits: int = 0


@dataclass(frozen=True)
class IperfResult:
    """One iperf3 client's JSON document (the client is the sender)."""

    sent_bytes: int
    received_bytes: int
    seconds: float  # the receiver's data-phase duration
    retransmits: int
    streams: int
    sender_intervals: tuple[Interval, ...]
    receiver_intervals: tuple[Interval, ...]  # empty without --get-server-output
    error: str | None = None
    sender_end_s: float = 0.0  # when the sender's test ended, from its start

    @property
    def goodput_bps(self) -> float:
        return self.received_bytes * 8 / self.seconds if self.seconds > 0 else 0.0


def _intervals(doc: Mapping[str, Any]) -> tuple[Interval, ...]:
    out = []
    for item in doc.get("intervals") or []:
        s = item["sum"]
        if s.get("omitted"):
            continue
        out.append(
            Interval(
                float(s["start"]), float(s["end"]), int(s["bytes"]), int(s.get("retransmits", 0))
            )
        )
    return tuple(out)


def parse_iperf3(doc: Mapping[str, Any]) -> IperfResult:
    """The figures of one `iperf3 -c ... -J [--get-server-output]` document; a document with
    an `error` (refused, interrupted) keeps what it measured and says why."""
    error = doc.get("error")
    end = doc.get("end") or {}
    sent, received = end.get("sum_sent") or {}, end.get("sum_received") or {}
    server = doc.get("server_output_json") or {}
    return IperfResult(
        sent_bytes=int(sent.get("bytes", 0)),
        received_bytes=int(received.get("bytes", 0)),
        seconds=float(received.get("seconds", 0.0)),
        retransmits=int(sent.get("retransmits", 0)),
        streams=int(((doc.get("start") or {}).get("test_start") or {}).get("num_streams", 0)),
        sender_intervals=_intervals(doc),
        receiver_intervals=_intervals(server),
        error=str(error) if error else None,
        sender_end_s=float(sent.get("end", 0.0)),
    )


def interval_origin(t_exec: float) -> float:
    """When a client's test started (monotonic), for aligning its intervals with the drill:
    its exec. iperf3's JSON counts from the test's start but names no sub-second clock time;
    the test starts once the control connection and the streams are connected (a few round
    trips inside the lab, milliseconds), while its exit comes after the results exchange,
    which on this machine took up to 0.3 s (`alignment_slack`), so the exec is the closer
    bound. Checked on recorded runs: goodput falls in the bucket of the link going down."""
    return t_exec


def alignment_slack(t_exec: float, t_exit: float, result: IperfResult) -> float:
    """How late the test could have started after its exec: the exit less the test's length
    (an upper bound: the results exchange before the exit is part of it)."""
    return max(0.0, t_exit - result.sender_end_s - t_exec) if result.sender_end_s > 0 else 0.0


def read_iperf3(path: Path) -> IperfResult:
    """Parse a client's --logfile; a missing or cut-off file is an error result, not a crash."""
    try:
        return parse_iperf3(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        return IperfResult(0, 0, 0.0, 0, 0, (), (), error=f"{path.name}: {exc}")


@dataclass(frozen=True)
class ShortTransfer:
    """One short transfer: its size, wall-clock span (monotonic, the client process's whole
    life: connect, transfer, results), and what iperf3 reported.

    Complete means the sender wrote all `size` bytes and the test ended without an error. Not
    the receiver's count: iperf3 ends a `-n` test when the sender has written its bytes and
    tells the receiver on the control connection, and the receiver stops counting there, with
    data still in flight (esnet/iperf issue 382, maintainer's explanation), so `received_bytes`
    of a short transfer is often below its size on a healthy path."""

    size: int
    t_start: float
    t_end: float
    sent_bytes: int
    received_bytes: int
    retransmits: int
    error: str | None = None

    @property
    def completion_s(self) -> float:
        return self.t_end - self.t_start


def parse_short_lines(lines: Sequence[str]) -> list[ShortTransfer]:
    out = []
    for line in lines:
        if line.strip():
            d = json.loads(line)
            out.append(
                ShortTransfer(
                    int(d["size"]),
                    float(d["t_start"]),
                    float(d["t_end"]),
                    int(d["sent_bytes"]),
                    int(d["received_bytes"]),
                    int(d["retransmits"]),
                    d.get("error"),
                )
            )
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def steady_summary(long: Sequence[IperfResult], short: Sequence[ShortTransfer]) -> dict[str, Any]:
    """One direction of one steady phase: the long transfers' goodput together (they ran at
    the same time), their retransmits, and the short transfers' completion times per size."""
    ok = [r for r in long if r.error is None and r.seconds > 0]
    per_size: dict[str, Any] = {}
    for size in sorted({t.size for t in short}):
        done = [t.completion_s for t in short if t.size == size and t.error is None]
        failed = sum(1 for t in short if t.size == size and t.error is not None)
        per_size[str(size)] = {
            "transfers": len(done),
            "failed": failed,
            "median_s": round(statistics.median(done), 4) if done else None,
            "p95_s": round(_percentile(done, 0.95), 4) if done else None,
        }
    return {
        "goodput_mbit_s": round(sum(r.goodput_bps for r in ok) / 1e6, 1),
        "long_transfers": len(ok),
        "long_errors": [r.error for r in long if r.error is not None],
        "streams": sum(r.streams for r in ok),
        "retransmits": sum(r.retransmits for r in ok),
        "short": per_size,
    }


def compare_paths(underlay: Mapping[str, Any], tunnel: Mapping[str, Any]) -> dict[str, Any]:
    """Per direction: tunnel goodput / underlay goodput, and per short size the ratio of the
    median completion times (tunnel / underlay; above 1 is slower through the tunnel)."""
    out: dict[str, Any] = {}
    for direction in DIRECTIONS:
        u, t = underlay[direction], tunnel[direction]
        ratio = t["goodput_mbit_s"] / u["goodput_mbit_s"] if u["goodput_mbit_s"] else None
        fct: dict[str, float | None] = {}
        for size, us in u["short"].items():
            ts = t["short"].get(size, {})
            um, tm = us.get("median_s"), ts.get("median_s")
            fct[size] = round(tm / um, 2) if um and tm else None
        out[direction] = {
            "goodput_ratio": None if ratio is None else round(ratio, 3),
            "short_median_ratio": fct,
        }
    return out


def spread(
    flows: Sequence[tuple[float, Sequence[Interval]]],
    t0: float,
    t1: float,
    bucket_s: float,
    *,
    field_name: str = "bytes",
) -> list[float]:
    """Sum of `field_name` per bucket of [t0, t1), over flows given as (launch time, intervals):
    each interval's amount is shared among the buckets it overlaps, in proportion."""
    n = max(0, math.ceil((t1 - t0) / bucket_s - 1e-9))
    out = [0.0] * n
    for launch, intervals in flows:
        for iv in intervals:
            a, b = launch + iv.start - t0, launch + iv.end - t0
            amount = float(getattr(iv, field_name))
            if b <= a:
                continue
            # one bucket of margin each side: float division may land just below a boundary
            first, last = max(0, int(a // bucket_s) - 1), min(n - 1, int(b // bucket_s) + 1)
            for i in range(first, last + 1):
                overlap = min(b, (i + 1) * bucket_s) - max(a, i * bucket_s)
                if overlap > 0:
                    out[i] += amount * overlap / (b - a)
    return out


def failover_impact(
    goodput_bps: Sequence[float],
    retransmits: Sequence[float],
    bucket_s: float,
    action_s: float,
    *,
    settle_s: float = 1.0,
    recovered_fraction: float = 0.9,
    hold: int = 3,
) -> dict[str, Any]:
    """What a failure at `action_s` (seconds from the series' start) did to bulk goodput.

    The reference is the median goodput of the whole buckets in [settle_s, action_s). The dip
    starts at the first bucket from the action on below half of it (none: the failure did not
    dent goodput); goodput is back at the first bucket after that which reaches
    `recovered_fraction` of it, with the `hold` buckets from there averaging that too.
    `recovery_s` counts from the action to that bucket's start; `deficit_mbit` is what fell
    short of the reference meanwhile; `retransmits_failure` counts from the action to one
    second after the recovery (the retransmits of the lost flight come after the path is back),
    `retransmits_after_action` to the end of the series."""
    first_pre = math.ceil(settle_s / bucket_s - 1e-9)
    action_bucket = math.floor(action_s / bucket_s + 1e-9)  # 2.0 // 0.1 is 19.0
    pre = list(goodput_bps[first_pre:action_bucket])
    if not pre or statistics.median(pre) <= 0:
        return {"error": "no goodput before the failure to compare with"}
    ref = statistics.median(pre)
    after = range(action_bucket, len(goodput_bps))
    dip = next((i for i in after if goodput_bps[i] < ref / 2), None)
    recovered: int | None = None
    if dip is not None:
        recovered = next(
            (
                i
                for i in range(dip, len(goodput_bps) - hold + 1)
                if goodput_bps[i] >= recovered_fraction * ref
                and sum(goodput_bps[i : i + hold]) / hold >= recovered_fraction * ref
            ),
            None,
        )
    end = len(goodput_bps) if dip is not None and recovered is None else (recovered or dip or 0)
    window = range(action_bucket, end) if dip is not None else range(0)
    deficit = sum(max(0.0, ref - goodput_bps[i]) * bucket_s for i in window)
    pre_retx = sum(retransmits[first_pre:action_bucket])
    pre_span = (action_bucket - first_pre) * bucket_s
    span_end = min(len(retransmits), end + round(1.0 / bucket_s)) if dip is not None else 0
    return {
        "pre_failure_median_mbit_s": round(ref / 1e6, 1),
        "lowest_mbit_s": round(min(goodput_bps[action_bucket:], default=0.0) / 1e6, 1),
        "dip_start_s": None if dip is None else round(max(0.0, dip * bucket_s - action_s), 3),
        "below_half_s": round(sum(bucket_s for i in window if goodput_bps[i] < ref / 2), 3),
        "recovery_s": (
            0.0
            if dip is None
            else (None if recovered is None else round(recovered * bucket_s - action_s, 3))
        ),
        "deficit_mbit": round(deficit / 1e6, 1),
        "retransmits_pre_per_s": round(pre_retx / pre_span, 1) if pre_span > 0 else None,
        "retransmits_failure": round(sum(retransmits[action_bucket:span_end])),
        "retransmits_after_action": round(sum(retransmits[action_bucket:])),
        "retransmits_total": round(sum(retransmits)),
    }


# ---- processes ------------------------------------------------------------------------------
@dataclass
class Endpoint:
    """The hybrid side of one node's flows on one path: its namespace and address, and the
    cloud address its flows go to and come from (`cloud_address`)."""

    node: str
    index: int
    netns: Netns
    ip: str
    cloud_ip: str


def cloud_address(plan: LabPlan, node: str) -> str:
    """The cloud address a hybrid node's load talks to: in active-active mode the cloud address
    of the node's shard (`LabPlan.shard_pairs`), so both directions of its flows cross that
    shard's owner and the flows of shards owned by different gateways cross different
    gateways; the cloud pod's own address in active-standby mode."""
    pairs = {n.name: target for _, n, target in plan.shard_pairs()}
    return pairs.get(node, plan.cloud_pod_ip)


@dataclass
class RunningPhase:
    name: str
    path: str
    duration_s: float
    launched: dict[str, float] = field(default_factory=dict)  # long client -> launch time
    slack_s: float = 0.0  # the largest `alignment_slack` of its long clients
    procs: list[LabProcess] = field(default_factory=list)


class LoadGenerator:
    """Starts the iperf3 servers once, then runs phases of the load; every process goes
    through the lab's `ProcessSet`, so the lab's cleanup stops it."""

    def __init__(self, lab: Lab, settings: LoadSettings) -> None:
        self.lab = lab
        self.settings = settings
        self.dir = lab.run_dir / "load"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.servers: list[LabProcess] = []

    def endpoints(self, path: str, nodes: Collection[str] | None = None) -> list[Endpoint]:
        """Every hybrid node's endpoint on `path` (only those of `nodes`, when given)."""
        w, plan = self.lab.w, self.lab.plan
        out = []
        for i, (name, node) in enumerate(sorted(w.node_plans.items())):
            if nodes is not None and name not in nodes:
                continue
            cloud = cloud_address(plan, name)
            if path == "tunnel":
                out.append(Endpoint(name, i, w.pods[name], node.pod_ip, cloud))
            else:
                out.append(Endpoint(name, i, w.nodes[name], node.node_ip, cloud))
        return out

    def start_servers(self) -> None:
        w, s = self.lab.w, self.settings
        wanted: list[tuple[str, Netns, str, int]] = []
        for path in PATHS:
            for ep in self.endpoints(path):
                for port in POD_LOAD_PORTS:
                    wanted.append((f"iperf3-server-{path}-{ep.node}-{port}", ep.netns, ep.ip, port))
        for ep in self.endpoints("tunnel"):  # the cloud's servers take either path's clients
            for port in (
                CLOUD_LOAD_PORT_BASE + 2 * ep.index,
                CLOUD_LOAD_PORT_BASE + 2 * ep.index + 1,
            ):
                wanted.append((f"iperf3-server-cloud-{port}", w.cloud, ep.cloud_ip, port))
        for name, ns, ip, port in wanted:
            argv = [IPERF3, "-s", "-B", ip, "-p", str(port), "-i", f"{s.interval_s:g}", "-J"]
            argv += ["--logfile", str(self.dir / f"{name}.json")]
            self.servers.append(self.lab.procs.start(name, ns, argv))
        deadline = time.monotonic() + 30
        for name, ns, ip, port in wanted:
            while not _listening(ns, ip, port):
                proc = next(p for p in self.servers if p.name == name)
                if not proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"iperf3 server {name} not listening on {ip}:{port}")
                time.sleep(0.05)

    def start_phase(self, name: str, path: str, duration_s: float) -> RunningPhase:
        """Launch every client of one phase: per node, both directions, long and short."""
        w, s = self.lab.w, self.settings
        phase = RunningPhase(name, path, duration_s)
        for ep in self.endpoints(path):
            cloud_long, cloud_ip = CLOUD_LOAD_PORT_BASE + 2 * ep.index, ep.cloud_ip
            flows = (
                ("cloud_to_hybrid", w.cloud, cloud_ip, ep.ip, POD_LOAD_PORTS),
                ("hybrid_to_cloud", ep.netns, ep.ip, cloud_ip, (cloud_long, cloud_long + 1)),
            )
            for direction, ns, src, dst, (long_port, short_port) in flows:
                tag = f"{name}-{direction}-{ep.node}"
                long_argv = [
                    sys.executable, "-m", "hybrid_gateway_testkit.lab.load", "long",
                    "--timing", str(self.dir / f"long-{tag}.timing.json"), "--",
                    IPERF3, "-c", dst, "-B", src, "-p", str(long_port), "-P", str(s.streams),
                    "-t", f"{duration_s:g}", "-i", f"{s.interval_s:g}", "-J",
                    "--get-server-output", "--logfile", str(self.dir / f"long-{tag}.json"),
                ]  # fmt: skip
                phase.launched[f"long-{tag}"] = time.monotonic()
                phase.procs.append(self.lab.procs.start(f"iperf3-long-{tag}", ns, long_argv))
                short_argv = [
                    sys.executable, "-m", "hybrid_gateway_testkit.lab.load", "short",
                    "--server", dst,
                    "--bind", src, "--port", str(short_port), "--duration", f"{duration_s:g}",
                    "--sizes", ",".join(map(str, s.short_sizes)),
                    "--streams", str(s.short_streams),
                    "--out", str(self.dir / f"short-{tag}.jsonl"),
                ]  # fmt: skip
                phase.procs.append(self.lab.procs.start(f"iperf3-short-{tag}", ns, short_argv))
        return phase

    def finish(self, phase: RunningPhase, grace_s: float = 30.0) -> None:
        """Wait for a phase's clients to end by themselves (their duration), killing any that
        outlive it by `grace_s` (a stuck transfer; its result then says so)."""
        deadline = min(phase.launched.values()) + phase.duration_s + grace_s
        for proc in phase.procs:
            if proc.wait(max(0.1, deadline - time.monotonic())) is None:
                self.lab.options.log(f"  {proc.name} still running {grace_s:g} s late: stopped")
                proc.stop(2.0)

    def results(
        self, phase: RunningPhase, nodes: Collection[str] | None = None
    ) -> dict[str, tuple[list[tuple[float, IperfResult]], list[ShortTransfer]]]:
        """Per direction: (launch time, long result) of every node (of `nodes`, when given),
        and every short transfer."""
        out: dict[str, tuple[list[tuple[float, IperfResult]], list[ShortTransfer]]] = {}
        for direction in DIRECTIONS:
            long: list[tuple[float, IperfResult]] = []
            short: list[ShortTransfer] = []
            for ep in self.endpoints(phase.path, nodes):
                tag = f"{phase.name}-{direction}-{ep.node}"
                result = read_iperf3(self.dir / f"long-{tag}.json")
                start = phase.launched[f"long-{tag}"]  # without its wrapper's clock
                timing_path = self.dir / f"long-{tag}.timing.json"
                if timing_path.exists():
                    timing = json.loads(timing_path.read_text())
                    start = interval_origin(timing["t_exec"])
                    slack = alignment_slack(timing["t_exec"], timing["t_exit"], result)
                    phase.slack_s = max(phase.slack_s, slack)
                long.append((start, result))
                short_path = self.dir / f"short-{tag}.jsonl"
                if short_path.exists():
                    short += parse_short_lines(short_path.read_text().splitlines())
            out[direction] = (long, short)
        return out

    def run_steady(self) -> dict[str, Any]:
        """The underlay phase, then the tunnel phase, with the same load; their comparison."""
        phases: dict[str, Any] = {}
        for path in PATHS:
            self.lab.options.log(f"load: {path}, {self.settings.steady_s:g} s")
            phase = self.start_phase(f"steady-{path}", path, self.settings.steady_s)
            self.finish(phase)
            phases[path] = {
                d: steady_summary([r for _, r in long], short)
                for d, (long, short) in self.results(phase).items()
            }
        return {**phases, "tunnel_vs_underlay": compare_paths(phases["underlay"], phases["tunnel"])}

    def failover_report(
        self,
        phase: RunningPhase,
        t0: float,
        t1: float,
        t_action: float,
        nodes: Collection[str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, list[float]], dict[str, list[float]]]:
        """Per direction: steady figures over the whole run and the failure's impact; and the
        goodput (bit/s) and retransmit series per `interval_s` bucket of [t0, t1) for the plot.
        With `nodes`, of those hybrid nodes' flows only."""
        bucket = self.settings.interval_s
        report: dict[str, Any] = {}
        goodput: dict[str, list[float]] = {}
        retx: dict[str, list[float]] = {}
        for direction, (long, short) in self.results(phase, nodes).items():
            received = spread([(t, r.receiver_intervals) for t, r in long], t0, t1, bucket)
            goodput[direction] = [b * 8 / bucket for b in received]
            retx[direction] = spread(
                [(t, r.sender_intervals) for t, r in long], t0, t1, bucket, field_name="retransmits"
            )
            report[direction] = {
                "impact": failover_impact(
                    goodput[direction],
                    retx[direction],
                    bucket,
                    t_action - t0,
                    settle_s=self.settings.settle_s + max(0.0, min(t for t, _ in long) - t0),
                    recovered_fraction=self.settings.recovered_fraction,
                ),
                **steady_summary([r for _, r in long], short),
                "short_during_failure": _short_across(short, t_action),
                "alignment_slack_s": round(phase.slack_s, 3),
            }
        return report, goodput, retx

    def stop_servers(self) -> None:
        for proc in self.servers:
            proc.stop(2.0)
        self.servers.clear()


LoadSeries = tuple[dict[str, list[float]], dict[str, list[float]], float]
"""Goodput (bit/s) and retransmits per direction, per bucket of the given seconds."""


class DrillLoad:
    """The load of one drill run: `start` (steady phases, then the load that spans the drill),
    `finish` once the drill is over; then `report` and `series` (for the plot)."""

    def __init__(self, lab: Lab, settings: LoadSettings, baseline_s: float) -> None:
        self.gen = LoadGenerator(lab, settings)
        self.baseline_s = baseline_s
        self.steady: dict[str, Any] = {}
        self.phase: RunningPhase | None = None
        self.report: dict[str, Any] = {}
        self.series: LoadSeries = ({}, {}, settings.interval_s)

    def start(self) -> None:
        self.gen.start_servers()
        self.steady = self.gen.run_steady()
        duration = self.baseline_s + self.gen.settings.failover_s
        self.gen.lab.options.log(f"load: tunnel, {duration:g} s, across the drill")
        self.phase = self.gen.start_phase("failover", "tunnel", duration)

    def finish(
        self, t0: float, t_action: float, groups: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Wait for the load to end and report it; `groups` (name -> hybrid nodes) are also
        reported apart, under `failover_by_group` (in active-active mode: the flows of the
        shards that moved, and of those that stayed)."""
        if self.phase is None:
            raise RuntimeError("DrillLoad.finish before start")
        self.gen.lab.options.log("waiting for the load to end")
        self.gen.finish(self.phase)
        # The series end with the long transfers' time, not with the wait for their clients'
        # exit: the buckets after it are empty, and would read as a dip of every flow.
        t1 = min(time.monotonic(), min(self.phase.launched.values()) + self.phase.duration_s)
        failover, goodput, retx = self.gen.failover_report(self.phase, t0, t1, t_action)
        by_group = {
            name: self.gen.failover_report(self.phase, t0, t1, t_action, nodes)[0]
            for name, nodes in (groups or {}).items()
            if nodes
        }
        self.gen.stop_servers()
        timing = {"t0": t0, "t1": t1, "t_action": t_action, "launched": self.phase.launched}
        (self.gen.dir / "failover-timing.json").write_text(json.dumps(timing, indent=1) + "\n")
        self.report = {
            "settings": asdict(self.gen.settings),
            "steady": self.steady,
            "failover": failover,
        }
        if by_group:
            self.report["failover_by_group"] = by_group
        self.series = (goodput, retx, self.gen.settings.interval_s)


def load_last_line(report: Mapping[str, Any]) -> dict[str, Any]:
    """The load's headline figures, per direction, for the lab's last printed line."""
    out: dict[str, Any] = {}
    for direction in DIRECTIONS:
        impact = report["failover"][direction]["impact"]
        out[direction] = {
            "goodput_ratio": report["steady"]["tunnel_vs_underlay"][direction]["goodput_ratio"],
            "recovery_s": impact.get("recovery_s"),
            "below_half_s": impact.get("below_half_s"),
            "retransmits_failure": impact.get("retransmits_failure"),
        }
    return out


def _short_across(short: Sequence[ShortTransfer], t_action: float) -> dict[str, Any]:
    """The short transfers in flight at the failure: how long they took, how many failed."""
    hit = [t for t in short if t.t_start <= t_action < t.t_end]
    return {
        "in_flight": len(hit),
        "failed": sum(1 for t in hit if t.error is not None),
        "longest_s": round(max((t.completion_s for t in hit), default=0.0), 3),
    }


def _listening(ns: Netns, ip: str, port: int) -> bool:
    out = ns.exec("ss", "-Hltn", "src", f"{ip}:{port}", check=False)
    return bool(out.strip())


# ---- the short-transfer loop (runs inside a lab namespace) ------------------------------------
def short_loop(
    *,
    server: str,
    bind: str,
    port: int,
    sizes: Sequence[int],
    streams: int,
    duration_s: float,
    out: Path,
) -> None:
    """Transfers of `sizes` in turn, one at a time, until `duration_s` is over; one JSON line
    each (size, monotonic start/end, received bytes, retransmits, error)."""
    deadline = time.monotonic() + duration_s
    i = 0
    with out.open("a") as f:
        while time.monotonic() < deadline:
            size = sizes[i % len(sizes)]
            i += 1
            argv = [IPERF3, "-c", server, "-B", bind, "-p", str(port), "-n", str(size)]
            argv += ["-P", str(streams), "-J", "--connect-timeout", "3000"]
            t_start = time.monotonic()
            try:
                proc = subprocess.run(
                    argv, capture_output=True, text=True, timeout=SHORT_TIMEOUT_S, check=False
                )
                result = parse_iperf3(json.loads(proc.stdout))
            except subprocess.TimeoutExpired:
                result = IperfResult(0, 0, 0.0, 0, 0, (), (), error="timed out")
            except ValueError as exc:
                result = IperfResult(0, 0, 0.0, 0, 0, (), (), error=f"no JSON: {exc}")
            t_end = time.monotonic()
            error = result.error
            if error is not None and between_tests(error):
                time.sleep(0.05)
                continue
            if error is None and result.sent_bytes < size:  # whole blocks: may send more
                error = f"sent {result.sent_bytes} of {size} bytes"
            line = {
                "size": size,
                "t_start": t_start,
                "t_end": t_end,
                "sent_bytes": result.sent_bytes,
                "received_bytes": result.received_bytes,
                "retransmits": result.retransmits,
                "error": error,
            }
            f.write(json.dumps(line) + "\n")
            f.flush()
            if error is not None:
                time.sleep(0.1)  # a refused connection must not spin


def timed_run(argv: Sequence[str], timing: Path) -> int:
    """Run one iperf3 client, writing the monotonic times of its exec and exit beside it
    (see `interval_origin`)."""
    t_exec = time.monotonic()
    code = subprocess.run(list(argv), check=False).returncode
    t_exit = time.monotonic()
    timing.write_text(json.dumps({"t_exec": t_exec, "t_exit": t_exit, "code": code}) + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the lab's iperf3 clients")
    sub = parser.add_subparsers(dest="mode", required=True)
    long = sub.add_parser("long", help="one client, its exec and exit times recorded")
    long.add_argument("--timing", type=Path, required=True)
    long.add_argument("argv", nargs="+", help="the iperf3 command, after --")
    short = sub.add_parser("short", help="short transfers in a loop")
    short.add_argument("--server", required=True)
    short.add_argument("--bind", required=True)
    short.add_argument("--port", type=int, required=True)
    short.add_argument("--sizes", required=True, help="bytes, comma separated")
    short.add_argument("--streams", type=int, default=1)
    short.add_argument("--duration", type=float, required=True)
    short.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mode == "long":
        return timed_run(args.argv, args.timing)
    sizes = [int(x) for x in args.sizes.split(",")]
    short_loop(
        server=args.server,
        bind=args.bind,
        port=args.port,
        sizes=sizes,
        streams=args.streams,
        duration_s=args.duration,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
