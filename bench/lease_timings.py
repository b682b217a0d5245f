"""What the lease timings cost and buy: how much Lease API trouble a leader rides out, and how
long an unplanned failover takes, for several (LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD).

Two in-process `LeaseElector`s (the daemon's, with its `LeaseStore`) against the test Kubernetes
API server on loopback; leader `a`, standby `b`, one fresh Lease per trial. Disturbances, all on
`a`'s Lease requests only:

- latency L: every request answered L seconds late for 4 lease durations;
- stall S: `a` partitioned in "hang" mode (requests unanswered and never processed, as with
  lost packets) for S seconds from just before its next renewal; at the heal the held
  requests are dropped (the client sees a closed connection and retries);
- kill: `a` stops without releasing (as `kill -9`): how long until `b` leads.

Per trial: whether `a` lost its term (a failover), and how long its writes were paused (its
`valid()` false while still leading). Prints one line per trial, then one JSON object (last
line) with every figure. Figures are for docs/daemon.md; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import config

from hybrid_gateway.adapters.kube_lease import LeaseStore
from hybrid_gateway.leader.elector import LeaseElector, Term
from hybrid_gateway_testkit.kube_api import start_kube_api
from kube_test_apiserver import ApiServer

NAMESPACE = "default"
TIMINGS = [(3.0, 2.0, 1.0), (5.0, 3.0, 1.0), (15.0, 10.0, 2.0)]
LATENCIES = [0.5, 1.0, 1.5, 2.5]
STALLS = [0.5, 1.0, 2.0, 4.0, 8.0]
SAMPLE_S = 0.01


@dataclass
class Callbacks:
    started: int = 0
    stopped: int = 0

    def started_leading(self, term: Term) -> None:
        self.started += 1

    def stopped_leading(self) -> None:
        self.stopped += 1

    def new_leader(self, holder: str | None) -> None:
        pass


class Replica:
    def __init__(self, kube: ApiServer, identity: str, lease: str, timing: tuple[float, ...]):
        duration, deadline, retry = timing
        self.api = config.new_client_from_config(config_file=str(kube.kubeconfig(identity)))
        self.callbacks = Callbacks()
        self.elector = LeaseElector(
            LeaseStore(self.api, NAMESPACE, lease),
            identity=identity,
            lease_duration_s=duration,
            renew_deadline_s=deadline,
            retry_period_s=retry,
            callbacks=self.callbacks,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)

    def start(self) -> Replica:
        self.thread.start()
        return self

    def halt(self) -> None:
        """Stop without releasing the Lease (the process died)."""
        self.stop.set()
        self.elector.wake()
        self.thread.join(30.0)
        self.api.close()


def wait(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(SAMPLE_S)
    return False


def paused_while(a: Replica, seconds: float) -> float:
    """Seconds within the next `seconds` that `a` led with its writes paused."""
    paused, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        if a.elector.leading and not a.elector.valid():
            paused += SAMPLE_S
        time.sleep(SAMPLE_S)
    return paused


def trial(
    kube: ApiServer, timing: tuple[float, ...], kind: str, value: float, n: int
) -> dict[str, Any]:
    duration, _deadline, retry = timing
    lease = f"bench-{n}"
    a = Replica(kube, "a", lease, timing).start()
    if not wait(a.elector.valid, 10 * duration):
        raise RuntimeError("a did not lead")
    b = Replica(kube, "b", lease, timing).start()
    time.sleep(retry)
    result: dict[str, Any] = {"timing": "/".join(f"{t:g}" for t in timing), "kind": kind}
    try:
        if kind == "latency":
            kube.set_latency(value, "a", resource="leases")
            result["latency_s"] = value
            result["paused_s"] = round(paused_while(a, 4 * duration), 2)
            kube.set_latency(0.0, "a", resource="leases")
            time.sleep(duration)
        elif kind == "stall":
            result["stall_s"] = value
            # the next renewal is sent one retry period after the last one was: cover that moment
            last = a.elector._last_renew_sent or 0.0  # a bench may look inside
            wait(lambda: (a.elector._last_renew_sent or 0.0) > last, 3 * retry)
            sent = a.elector._last_renew_sent or 0.0
            time.sleep(max(0.0, sent + retry - 0.1 - time.monotonic()))
            kube.partition("a", hang=True)
            during = paused_while(a, value)
            kube.heal("a")
            result["paused_s"] = round(during + paused_while(a, 2 * duration), 2)
        else:  # kill
            started = time.monotonic()
            a.halt()
            took = wait(b.elector.valid, 5 * duration)
            result["failover_s"] = round(time.monotonic() - started, 2) if took else None
        result["term_lost"] = a.callbacks.stopped > 0 and kind != "kill"
        result["b_took_over"] = b.callbacks.started > 0
    finally:
        kube.heal("a")
        kube.set_latency(0.0, "a", resource="leases")
        for replica in (a, b):
            if not replica.stop.is_set():
                replica.halt()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=2, help="kill trials per timing")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="hgw-lease-") as tmp,
        start_kube_api(Path(tmp) / "api") as kube,
    ):
        n = 0
        for timing in TIMINGS:
            plan = [("latency", latency) for latency in LATENCIES]
            plan += [("stall", stall) for stall in STALLS] + [("kill", 0.0)] * args.kills
            for kind, value in plan:
                n += 1
                result = trial(kube, timing, kind, value, n)
                print(json.dumps(result), flush=True)
                results.append(result)
    print(json.dumps({"trials": results}))


if __name__ == "__main__":
    main()
