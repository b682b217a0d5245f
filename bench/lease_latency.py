"""The API round-trip latency at which needless failovers start, per lease timing.

Two real `hybrid-gateway run --no-dataplane` daemons (the daemon's own elector, Lease watch,
fence and leader work) against the test Kubernetes API server and an EC2 emulator on loopback.
Nothing fails: every API request of both daemons (every resource, watches when they open) is
answered L seconds late (plus up to `--jitter` x L more, uniform), the test server's latency
injection, and L is stepped up. Per step, over a window of `--window-leases` lease durations
after one lease duration to settle, from the API server's audit and the daemons' logs:

- changes: successful Lease writes whose holder differs from the one before (failovers);
- lost: terms a daemon ended itself ("lost leadership" in its log): leader work stopped and
  restarted, even when the same daemon wins the Lease back;
- led: the share of samples (every 0.25 s, from both daemons' /metrics) in which one of them
  reported `hybrid_gateway_leader_is_active` 1. A term can be running with its writes paused
  (a renewal answered later than half the renew deadline leaves gaps in its validity), so this
  is an upper bound of the time leader work could act.

With `--baseline REF`, a second pair runs the runtime of git revision REF (its
`runtime/hybrid_gateway`, first on PYTHONPATH) beside this tree's, at the same time, on its
own API server and VPC, with the same latency: before/after in one run. Prints one line per
step, then a Markdown table, then (last line) one JSON object with every figure. Bounded: about
(1 + window) lease durations per step. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from hybrid_gateway_contract import DEFAULT_LEASE_NAME, Env
from hybrid_gateway_testkit.daemon import DaemonProcess, daemon_env
from hybrid_gateway_testkit.ec2emu import ec2_client, moto_ec2, seed_world
from hybrid_gateway_testkit.kube_api import start_kube_api
from kube_test_apiserver import ApiServer, lease_writes

NAMESPACE = "hybrid-gateway"
POD_CIDRS = ["10.80.0.0/16"]
NODE_IPS = {"a": "10.0.1.10", "b": "10.0.1.11"}
#: (lease duration, renew deadline, retry period) -> latencies to step through, seconds.
LADDERS: dict[tuple[float, float, float], list[float]] = {
    (1.0, 0.6, 0.15): [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8],
    (3.0, 2.0, 1.0): [0.0, 0.5, 1.0, 1.4, 1.6, 1.8, 2.0, 2.2, 2.5],
}
REPO = Path(__file__).resolve().parent.parent
SAMPLE_S = 0.25


@dataclass
class Pair:
    """Two daemons of one runtime on their own API server and VPC world."""

    label: str
    kube: ApiServer
    daemons: dict[str, DaemonProcess] = field(default_factory=dict)

    def lost_terms(self, offsets: dict[str, int]) -> int:
        return sum(
            d.log_path.read_bytes()[offsets[name] :].count(b"lost leadership")
            for name, d in self.daemons.items()
        )

    def leading(self) -> bool:
        """One of the daemons reports a running term (a daemon not answering counts as not)."""
        for daemon in self.daemons.values():
            try:
                if daemon.metric("hybrid_gateway_leader_is_active") == 1.0:
                    return True
            except OSError:
                continue
        return False

    def log_offsets(self) -> dict[str, int]:
        return {name: d.log_path.stat().st_size for name, d in self.daemons.items()}

    def holder_changes(self, start: float, end: float) -> int:
        writes = lease_writes(self.kube.audit(), NAMESPACE, name=DEFAULT_LEASE_NAME)
        changes, previous = 0, None
        for when, who in writes:
            if previous is not None and who != previous and start <= when < end:
                changes += 1
            previous = who
        return changes


def baseline_tree(ref: str, into: Path) -> Path:
    """`runtime/` of git revision `ref`, extracted under `into`; its path for PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "runtime/hybrid_gateway"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "runtime"


@contextmanager
def pair(
    label: str,
    moto: tuple[str, int],
    workdir: Path,
    timing: tuple[float, float, float],
    pythonpath: Path | None,
) -> Iterator[Pair]:
    direct = ec2_client(f"http://{moto[0]}:{moto[1]}")
    world = seed_world(direct, tables=1, pod_cidrs=POD_CIDRS)
    duration, deadline, retry = timing
    lease = {
        Env.LEASE_DURATION: f"{duration:g}",
        Env.RENEW_DEADLINE: f"{deadline:g}",
        Env.RETRY_PERIOD: f"{retry:g}",
    }
    with start_kube_api(workdir / f"api-{label}") as kube:
        admin = config.new_client_from_config(config_file=str(kube.kubeconfig("bench")))
        client.CoreV1Api(admin).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
        admin.close()
        result = Pair(label, kube)
        try:
            for name in ("a", "b"):
                env = daemon_env(
                    kubeconfig=kube.kubeconfig(f"gw-{name}"),
                    identity=f"gw-{name}",
                    namespace=NAMESPACE,
                    node_ip=NODE_IPS[name],
                    pod_cidrs=POD_CIDRS,
                    route_table_ids=world.table_ids,
                    instance_id=world.instances[name],
                    ec2_url=f"http://{moto[0]}:{moto[1]}",
                    lease=lease,
                    extra={"PYTHONPATH": str(pythonpath)} if pythonpath else None,
                )
                result.daemons[name] = DaemonProcess(
                    env=env, log_path=workdir / f"{label}-gw-{name}.log", args=("--no-dataplane",)
                ).start()
            for daemon in result.daemons.values():
                daemon.wait_serving(60.0)
            if not wait_for(
                lambda: bool(lease_writes(kube.audit(), NAMESPACE, name=DEFAULT_LEASE_NAME)), 30.0
            ):
                raise RuntimeError(f"{label}: nobody took the Lease")
            yield result
        finally:
            for daemon in result.daemons.values():
                daemon.stop()


def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def run_timing(
    moto: tuple[str, int],
    workdir: Path,
    timing: tuple[float, float, float],
    latencies: Sequence[float],
    *,
    window_leases: float,
    jitter: float,
    baseline: Path | None,
) -> list[dict[str, Any]]:
    duration = timing[0]
    rows: list[dict[str, Any]] = []
    name = "/".join(f"{t:g}" for t in timing)
    with ExitStack() as stack:
        pairs = [stack.enter_context(pair("after", moto, workdir, timing, None))]
        if baseline is not None:
            pairs.append(stack.enter_context(pair("before", moto, workdir, timing, baseline)))
        time.sleep(duration)  # the first leader's setup settles
        for latency in latencies:
            for p in pairs:
                p.kube.set_latency(latency, jitter_s=latency * jitter)
            time.sleep(duration)  # requests in flight at the old latency end
            offsets = [p.log_offsets() for p in pairs]
            start = time.monotonic()
            samples, led = 0, [0] * len(pairs)
            while time.monotonic() < start + window_leases * duration:
                samples += 1
                for i, p in enumerate(pairs):
                    led[i] += p.leading()
                time.sleep(SAMPLE_S)
            end = time.monotonic()
            row: dict[str, Any] = {"timing": name, "latency_s": latency, "window_s": end - start}
            for i, (p, offset) in enumerate(zip(pairs, offsets, strict=True)):
                row[f"{p.label}_changes"] = p.holder_changes(start, end)
                row[f"{p.label}_lost"] = p.lost_terms(offset)
                row[f"{p.label}_led"] = round(led[i] / samples, 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
        for p in pairs:
            p.kube.set_latency(0.0)
    return rows


def table(rows: list[dict[str, Any]], baseline: bool) -> str:
    head = "| timing (s) | API latency (s) | leader changes | terms lost | led |"
    rule = "|---|---|---|---|---|"
    if baseline:
        head += " leader changes before | terms lost before | led before |"
        rule += "---|---|---|"
    lines = [head, rule]
    for r in rows:
        line = (
            f"| {r['timing']} | {r['latency_s']:g} | {r['after_changes']} | {r['after_lost']} "
            f"| {r['after_led']:.0%} |"
        )
        if baseline:
            line += f" {r['before_changes']} | {r['before_lost']} | {r['before_led']:.0%} |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timing",
        action="append",
        choices=["/".join(f"{t:g}" for t in timing) for timing in LADDERS],
        help="lease duration/renew deadline/retry period (repeatable; default: all)",
    )
    parser.add_argument("--window-leases", type=float, default=12.0)
    parser.add_argument("--jitter", type=float, default=0.0, help="extra delay, x latency")
    parser.add_argument("--baseline", help="git revision whose runtime runs beside this one")
    parser.add_argument(
        "--latencies", help="comma-separated seconds instead of each timing's ladder"
    )
    args = parser.parse_args()
    only = [float(x) for x in args.latencies.split(",")] if args.latencies else None
    chosen = [
        t for t in LADDERS if args.timing is None or "/".join(f"{x:g}" for x in t) in args.timing
    ]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hgw-lease-latency-") as tmp, moto_ec2() as moto:
        workdir = Path(tmp)
        base = None
        if args.baseline:
            (workdir / "baseline").mkdir()
            base = baseline_tree(args.baseline, workdir / "baseline")
        for timing in chosen:
            rows += run_timing(
                moto,
                workdir,
                timing,
                only or LADDERS[timing],
                window_leases=args.window_leases,
                jitter=args.jitter,
                baseline=base,
            )
    print(table(rows, base is not None))
    print(json.dumps({"jitter": args.jitter, "baseline": args.baseline, "rows": rows}))


if __name__ == "__main__":
    main()
