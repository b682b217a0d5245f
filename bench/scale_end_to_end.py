"""End to end at scale: N CiliumNodes in the API server -> the real daemon -> the kernel.

Everything runs in network namespaces the bench creates and always deletes: the test API server
and `hybrid-gateway run` (data plane included, no route tables: no EC2, no IMDS) in one, the
`ip`/`bridge -batch` yardstick in another. The bench talks to the API server from threads that
entered the daemon's namespace (a namespace cannot reach the root namespace's loopback).

Figures (seconds unless named otherwise):
- load_s: creating the N realistic (~0.9 KB) CiliumNodes (8 parallel clients; context only);
- list_s: the daemon's own paged list of the N objects into its cache (CiliumNodeCache.relist);
- batch_tools_s: `bridge -batch` + `ip -batch` programming the same 3N entries on a fresh device;
- first_pass_s: daemon start -> its log says all N nodes' entries are in the kernel (checked
  against the kernel afterwards); pass_s: the daemon's own duration of that first pass;
- noop_resync_s: the daemon's own duration of its periodic full pass (RESYNC_PERIOD after the
  first), which changes nothing (from its DEBUG log);
- watch_event_s: one CiliumNode's pod CIDR replaced -> the kernel routes the new CIDR (measured
  right after the no-op pass, so no full pass runs meanwhile);
- rss_mib: the daemon's peak resident set (VmHWM in /proc/<pid>/status) at the end;
- probe_max_ms (readyz / metrics): the slowest answer of `/readyz` and `/metrics`, asked every
  50 ms from daemon start until the first pass is in the kernel (a probe that gets no answer
  within 5 s counts as 5000 ms), with the number of probes; ready_s: start -> `/readyz` 200.
The LAST line printed is one JSON object.

    sudo .venv/bin/python bench/scale_end_to_end.py --nodes 20000
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from kubernetes import client, config
from pyroute2.netns import setns

from hybrid_gateway.adapters.kube_nodes import CiliumNodeCache
from hybrid_gateway_testkit.kube_api import start_kube_api
from hybrid_gateway_testkit.netns import Netns, netns_world
from hybrid_gateway_testkit.scale import DEV, batch_tools, nodes, realistic_cilium_node

GW_IP = "10.0.1.10"
PEER_IP = "10.0.1.20"
NODES = ("cilium.io", "v2", "ciliumnodes")
MOVED_CIDR = "10.99.250.0/24"  # outside 10.128/9, where `nodes` puts the pod CIDRs
T = TypeVar("T")


def in_netns(netns: str, work: Callable[[], T]) -> T:
    """Run `work` on a thread that entered `netns` (setns moves only the calling thread)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            setns(netns, flags=0)
            result.append(work())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"in-{netns}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def load(kubeconfig: Path, netns: str, entries: list[tuple[str, str, str]]) -> float:
    """Create every CiliumNode with 8 parallel clients in `netns`; seconds taken."""
    local = threading.local()

    def enter() -> None:
        setns(netns, flags=0)
        local.api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))

    def create(entry: tuple[str, str, str]) -> None:
        local.api.create_cluster_custom_object(*NODES, realistic_cilium_node(*entry))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8, initializer=enter) as pool:
        for _ in pool.map(create, entries, chunksize=64):
            pass
    return time.perf_counter() - started


def timed_list(kubeconfig: Path, count: int) -> float:
    api = config.new_client_from_config(str(kubeconfig))
    try:
        cache = CiliumNodeCache(api)
        started = time.perf_counter()
        cache.relist()
        elapsed = time.perf_counter() - started
    finally:
        api.close()
    if len(cache) != count:
        raise RuntimeError(f"listed {len(cache)} CiliumNodes, expected {count}")
    return elapsed


def move_pod_cidr(kubeconfig: Path, name: str, cidr: str) -> None:
    api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    obj = api.get_cluster_custom_object(*NODES, name)
    obj["spec"]["ipam"]["podCIDRs"] = [cidr]
    api.replace_cluster_custom_object(*NODES, name, obj)


class DaemonLog:
    """The daemon's log file, read line by line as it grows; each line is seen once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self._lines: list[str] = []

    def _next_line(self) -> str | None:
        if not self._lines:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
            self._offset += len(chunk)
            *complete, self._partial = (self._partial + chunk.decode(errors="replace")).split("\n")
            self._lines.extend(complete)
        return self._lines.pop(0) if self._lines else None

    def wait_for(self, pattern: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> str:
        """The next line matching `pattern` (lines before it are skipped)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self._next_line()
            if line is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited ({proc.returncode}) before {pattern!r}")
                time.sleep(0.02)
            elif regex.search(line):
                return line
        raise RuntimeError(f"no {pattern!r} in the daemon log within {timeout_s:g} s")


class Prober:
    """Asks `/readyz` and `/metrics` every 50 ms from a thread in the daemon's namespace and
    keeps the slowest answer of each (connection refused before the daemon listens is no
    answer and not counted)."""

    PATHS = (("readyz", 18088, "/readyz"), ("metrics", 18080, "/metrics"))

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.max_ms = {name: 0.0 for name, _, _ in self.PATHS}
        self.count = {name: 0 for name, _, _ in self.PATHS}
        self.ready_at: float | None = None
        self.slow: list[tuple[float, str, float]] = []  # (monotonic time, name, ms) over 100 ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        setns(self.netns, flags=0)
        while not self._stop.wait(0.05):
            for name, port, path in self.PATHS:
                started = time.monotonic()
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", path)
                    status = conn.getresponse()
                    status.read()
                    conn.close()
                except ConnectionRefusedError:
                    continue
                except OSError:
                    status = None
                took = (time.monotonic() - started) * 1000
                self.max_ms[name] = max(self.max_ms[name], took if status else 5000.0)
                if took > 100:
                    self.slow.append((started, name, took))
                self.count[name] += 1
                if name == "readyz" and status is not None and status.status == 200:
                    self.ready_at = self.ready_at or time.monotonic()


def kernel_routes(ns: Netns) -> int:
    return ns.ip("-4", "route", "show", "dev", DEV, "proto", "static").count("\n")


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    if not found:
        raise RuntimeError(f"no VmHWM in /proc/{pid}/status")
    return int(found.group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=600.0, help="per step, seconds")
    parser.add_argument(
        "--resync", type=float, default=30.0, help="the daemon's RESYNC_PERIOD, seconds"
    )
    parser.add_argument(
        "--skip-batch", action="store_true", help="leave out the ip/bridge -batch yardstick"
    )
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the namespaces are always removed
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    count = args.nodes
    entries = nodes(count)
    with netns_world() as world, tempfile.TemporaryDirectory(prefix="hgw-scale-") as tmp:
        gw, peer = world.add("gw"), world.add("peer")
        world.link(gw, f"{GW_IP}/24", peer, f"{PEER_IP}/24")
        gw.sysctl("net.ipv4.ip_forward", "1")
        if args.skip_batch:  # minutes at 50,000 nodes: the routes' hash chain is quadratic
            batch_s = float("nan")
        else:
            batch_s = batch_tools(peer, entries, GW_IP)
            peer.ip("link", "del", DEV)
        print(f"ip/bridge -batch: {batch_s:.3f} s for {3 * count} entries", flush=True)

        with start_kube_api(Path(tmp) / "api", netns=gw.name) as api:
            admin = api.kubeconfig("bench")
            daemon_config = api.kubeconfig("gw-a")
            load_s = load(admin, gw.name, entries)
            print(f"loaded {count} CiliumNodes in {load_s:.1f} s", flush=True)
            list_s = in_netns(gw.name, lambda: timed_list(daemon_config, count))
            print(f"paged list of {count}: {list_s:.3f} s", flush=True)

            env = {
                "PATH": os.environ.get("PATH", ""),
                "KUBECONFIG": str(daemon_config),
                "POD_NAME": "gw-a",
                "NODE_IP": GW_IP,
                "VPC_CIDR": "10.0.0.0/16",
                "POD_CIDRS": "10.128.0.0/9,10.99.0.0/16",
                "AWS_REGION": "us-east-1",
                "AWS_INSTANCE_ID": "i-0123456789abcdef0",
                "AWS_EC2_METADATA_DISABLED": "true",
                "RESYNC_PERIOD": str(args.resync),
                "HEALTH_ADDR": "127.0.0.1:18088",
                "METRICS_ADDR": "127.0.0.1:18080",
                "DEBUG": "true",
            }
            log_path = Path(tmp) / "daemon.log"
            binary = str(Path(sys.executable).parent / "hybrid-gateway")
            with log_path.open("wb") as log_file:
                started = time.monotonic()
                proc = subprocess.Popen(
                    gw.exec_argv([binary, "run"]), env=env, stdout=log_file, stderr=log_file
                )
            log = DaemonLog(log_path)
            prober = Prober(gw.name)
            prober.start()
            try:
                log.wait_for(rf"reconciled {count} hybrid nodes", args.timeout, proc)
                first_pass_s = time.monotonic() - started
                ready_by = time.monotonic() + 15.0  # readiness also waits for the leader
                while prober.ready_at is None and time.monotonic() < ready_by:
                    time.sleep(0.02)
                prober.stop()
                ready_s = (prober.ready_at or float("nan")) - started
                print(
                    f"probes during the first pass: /readyz max {prober.max_ms['readyz']:.1f} ms "
                    f"({prober.count['readyz']} asked), /metrics max "
                    f"{prober.max_ms['metrics']:.1f} ms ({prober.count['metrics']} asked); "
                    f"ready {ready_s:.3f} s after start",
                    flush=True,
                )
                line = log.wait_for(r"reconcile pass took", args.timeout, proc)
                pass_s = float(re.findall(r"took ([\d.]+) s", line)[0])
                routes = kernel_routes(gw)
                nexthops = gw.ip("nexthop", "show", "dev", DEV).count("\n")
                if routes != count or nexthops != count:
                    raise RuntimeError(
                        f"kernel has {routes} routes, {nexthops} nexthops, expected {count}"
                    )
                print(
                    f"first pass: {first_pass_s:.3f} s (the pass itself {pass_s:.3f} s)", flush=True
                )
                # which phase the slow probes fell in: the pass ran its last pass_s seconds
                phase = [
                    f"{name} {ms:.0f} ms at {at - started:.1f} s "
                    + ("(pass)" if at - started >= first_pass_s - pass_s else "(start/list)")
                    for at, name, ms in sorted(prober.slow, key=lambda s: -s[2])[:6]
                ]
                print(f"probes over 100 ms: {len(prober.slow)}; slowest: {phase}", flush=True)

                # the periodic full pass, with nothing to change
                line = log.wait_for(r"reconcile pass took", args.resync + args.timeout, proc)
                noop_resync_s = float(re.findall(r"took ([\d.]+) s", line)[0])
                print(f"no-op resync: {noop_resync_s:.3f} s", flush=True)

                probe = str(ipaddress.ip_network(MOVED_CIDR).network_address + 1)
                changed = time.monotonic()
                in_netns(gw.name, lambda: move_pod_cidr(admin, entries[0][0], MOVED_CIDR))
                deadline = changed + args.timeout
                while DEV not in gw.ip("route", "get", probe, check=False):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{MOVED_CIDR} never routed through {DEV}")
                    time.sleep(0.005)
                watch_event_s = time.monotonic() - changed
                print(f"watch event -> kernel: {watch_event_s:.3f} s", flush=True)
                rss_mib = peak_rss_mib(proc.pid)
            finally:
                prober.stop()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    print(
        json.dumps(
            {
                "nodes": count,
                "first_pass_s": round(first_pass_s, 3),
                "pass_s": round(pass_s, 3),
                "list_s": round(list_s, 3),
                "batch_tools_s": round(batch_s, 3),
                "first_pass_vs_list_plus_batch": round(first_pass_s / (list_s + batch_s), 3),
                "noop_resync_s": round(noop_resync_s, 3),
                "watch_event_s": round(watch_event_s, 3),
                "rss_mib": round(rss_mib, 1),
                "ready_s": round(ready_s, 3),
                "probe_max_ms": {k: round(v, 1) for k, v in prober.max_ms.items()},
                "probes": prober.count,
                "probes_over_100ms": len(prober.slow),
                "load_s": round(load_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
