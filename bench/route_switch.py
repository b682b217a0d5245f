"""How long a new leader takes to move every hybrid pod CIDR route to its ENI.

Runs the EC2 emulator (moto server) on loopback behind a proxy that adds `--latency-ms` to every
call (EC2 API calls take tens to hundreds of milliseconds in reality; the emulator answers in
about one). `--tables` route tables each hold `--cidrs` pod-CIDR routes pointing at gateway A;
then, in the same run:

- ours: gateway B's route owner, prepared at start like every replica (primary ENI and tables
  resolved before the timer starts), then the failover itself: ONE DescribeRouteTables for all
  tables and only the wrong routes replaced, in parallel;
- reference: the reference implementation's algorithm, describe + replace per table per CIDR,
  one call at a time.

Prints a few lines, then as its LAST line one JSON object with tables, cidrs, latency_ms,
switch_s, ec2_calls, sequential_s, sequential_calls.

`--takeover LEASE,...` measures instead what a node failure costs after the Lease: two real
`hybrid-gateway run --no-dataplane` daemons (active-standby) against the test API server and the
emulator, the leader killed with SIGKILL `--kills` times per lease timing (D/R/P seconds, e.g.
`1/0.6/0.15,3/2/1`), and per kill, on the system-wide monotonic clock, from the new leader's
acquiring Lease write as the API server received it: its first DescribeRouteTables, first and
last route write as its EC2 proxy received them, and its CiliumVTEPConfig write. With
`--compare DIR` every kill is run twice, once by daemons importing the runtime from DIR (e.g. a
`git worktree` of an earlier commit) and once by this tree's, so both are measured side by side
under the same machine load. Medians per timing and code, then one JSON object (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hybrid_gateway.adapters.ec2 import Ec2Routes, make_client
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_contract import READYZ_PATH, Env
from hybrid_gateway_testkit.daemon import DaemonProcess, daemon_env
from hybrid_gateway_testkit.ec2emu import (
    Ec2Proxy,
    VpcWorld,
    ec2_client,
    moto_ec2,
    point_all,
    seed_world,
)
from hybrid_gateway_testkit.kube_api import start_kube_api
from kube_test_apiserver import ApiServer, lease_writes

NAMESPACE = "eks-hybrid-nodes-gateway"
NODE_IPS = {"a": "10.0.1.10", "b": "10.0.1.11"}
ROUTE_WRITES = ("CreateRoute", "ReplaceRoute")


def reference_switch(client: Any, tables: list[str], cidrs: list[str], eni: str) -> None:
    """The reference's loop: for each table, for each CIDR, describe the table, then replace."""
    for table in tables:
        for cidr in cidrs:
            client.describe_route_tables(RouteTableIds=[table])
            client.replace_route(
                RouteTableId=table, DestinationCidrBlock=cidr, NetworkInterfaceId=eni
            )


class Gateway:
    """One daemon of the pair, with its own EC2 proxy; `source` (a tree) replaces the runtime."""

    def __init__(
        self,
        name: str,
        *,
        kube: ApiServer,
        world: VpcWorld,
        moto: tuple[str, int],
        cidrs: list[str],
        lease: tuple[str, str, str],
        log_dir: Path,
        latency_s: float,
        source: Path | None,
    ) -> None:
        self.name, self.identity = name, f"gw-{name}"
        self.proxy = Ec2Proxy(moto, label=self.identity, latency_s=latency_s).start()
        extra = {}
        if source is not None:  # the daemon imports the runtime and contract of that tree
            extra["PYTHONPATH"] = f"{source / 'runtime'}:{source / 'contract'}"
        self.env = daemon_env(
            kubeconfig=kube.kubeconfig(self.identity),
            identity=self.identity,
            namespace=NAMESPACE,
            node_ip=NODE_IPS[name],
            pod_cidrs=cidrs,
            route_table_ids=world.table_ids,
            instance_id=world.instances[name],
            ec2_url=self.proxy.url,
            lease=dict(
                zip((Env.LEASE_DURATION, Env.RENEW_DEADLINE, Env.RETRY_PERIOD), lease, strict=True)
            ),
            extra=extra,
        )
        self.log_path = log_dir / f"{self.identity}.log"
        self.daemon: DaemonProcess | None = None

    def start(self) -> None:
        self.daemon = DaemonProcess(env=self.env, log_path=self.log_path, args=("--no-dataplane",))
        self.daemon.start()
        self.daemon.wait_serving()

    def ready(self) -> bool:
        if self.daemon is None:
            return False
        try:
            return self.daemon.get(self.daemon.health_port, READYZ_PATH)[0] == 200
        except OSError:
            return False

    def kill(self) -> None:
        if self.daemon is not None and self.daemon.running:
            self.daemon.signal(signal.SIGKILL)
            self.daemon.wait()

    def close(self) -> None:
        self.kill()
        self.proxy.stop()


def _wait(condition: Any, timeout_s: float, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return False


def _vtep_node(kube_admin: Any) -> str | None:
    try:
        obj = kube_admin.get_cluster_custom_object(
            "cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway"
        )
    except Exception:
        return None
    endpoints = obj["spec"]["endpoints"]
    return str(endpoints[0]["tunnelEndpoint"]) if endpoints else None


def _owner(direct: Any, world: VpcWorld, kube_admin: Any) -> str | None:
    node = _vtep_node(kube_admin)
    for name, ip in NODE_IPS.items():
        if world.all_point_at(direct, name) and node == ip:
            return name
    return None


def _kill_trial(
    kube: ApiServer,
    kube_admin: Any,
    direct: Any,
    world: VpcWorld,
    gws: dict[str, Gateway],
    *,
    duration_s: float,
) -> dict[str, float] | None:
    """Kill the current owner; the other's takeover as (stage -> seconds after it acquired)."""
    if not _wait(lambda: _owner(direct, world, kube_admin) is not None, 10 * duration_s + 10):
        return None
    old = _owner(direct, world, kube_admin)
    if old is None:
        return None
    new = next(n for n in gws if n != old)
    # the standby ready (its route owner prepared), then settled as a standby of long standing
    if not _wait(gws[new].ready, 30.0, step_s=0.1):
        return None
    time.sleep(max(2.0, 2 * duration_s))
    gws[new].proxy.reset()
    killed = time.monotonic()
    gws[old].kill()
    if not _wait(lambda: _owner(direct, world, kube_admin) == new, 10 * duration_s + 10):
        return None
    audit = kube.audit()
    taker = gws[new].identity
    acquired = [t for t, who in lease_writes(audit, NAMESPACE) if t > killed and who == taker]
    if not acquired:
        return None
    start = acquired[0]
    calls = [c for c in gws[new].proxy.snapshot() if c.started_mono >= killed]
    writes = [c for c in calls if c.action in ROUTE_WRITES]
    describes = [c for c in calls if c.action == "DescribeRouteTables" and c.started_mono >= start]
    vtep = [
        float(e["mono"])
        for e in audit
        if "ciliumvtepconfigs" in e["path"]
        and e["verb"] in ("create", "update", "patch")
        and e["identity"] == gws[new].identity
        and float(e["mono"]) > killed
    ]
    if not writes:
        return None
    result = {
        "lease_taken_s": start - killed,
        "first_describe_s": (describes[0].started_mono - start) if describes else float("nan"),
        "first_write_s": min(c.started_mono for c in writes) - start,
        "last_write_done_s": max(c.started_mono + (c.finished - c.started) for c in writes) - start,
        "vtep_s": (min(vtep) - start) if vtep else float("nan"),
    }
    gws[old].start()  # back as the standby for the next kill
    return result


def takeover(args: argparse.Namespace, cidrs: list[str]) -> int:
    from kubernetes import client, config

    leases = [tuple(t.split("/")) for t in args.takeover.split(",")]
    variants: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.compare is not None:
        variants.insert(0, (f"{args.compare}", args.compare))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="hgw-takeover-") as tmp,
        start_kube_api(Path(tmp) / "api") as kube,
        moto_ec2() as moto,
    ):
        admin = client.CustomObjectsApi(
            config.new_client_from_config(config_file=str(kube.kubeconfig("bench")))
        )
        direct = ec2_client(f"http://{moto[0]}:{moto[1]}")
        world = seed_world(direct, tables=args.tables, pod_cidrs=cidrs)
        for lease in leases:
            label = "/".join(lease)
            duration = float(lease[0])
            pairs: dict[str, dict[str, Gateway]] = {}
            try:
                for variant, source in variants:
                    log_dir = Path(tmp) / f"{label.replace('/', '_')}-{len(pairs)}"
                    log_dir.mkdir()
                    pairs[variant] = {
                        n: Gateway(
                            n,
                            kube=kube,
                            world=world,
                            moto=moto,
                            cidrs=cidrs,
                            lease=lease,
                            log_dir=log_dir,
                            latency_s=args.latency_ms / 1000,
                            source=source,
                        )
                        for n in NODE_IPS
                    }
                for kill in range(args.kills):
                    for variant, gws in pairs.items():
                        for other, others in pairs.items():  # one pair runs at a time
                            if other != variant:
                                for gw in others.values():
                                    gw.kill()
                        for gw in gws.values():
                            if gw.daemon is None or not gw.daemon.running:
                                gw.start()
                        trial = _kill_trial(kube, admin, direct, world, gws, duration_s=duration)
                        line = {k: round(v, 3) for k, v in (trial or {}).items()}
                        print(json.dumps({"lease": label, "code": variant, "kill": kill, **line}))
                        if trial is not None:
                            results.setdefault(label, {}).setdefault(variant, []).append(trial)
            finally:
                for gws in pairs.values():
                    for gw in gws.values():
                        gw.close()
    summary: dict[str, Any] = {}
    for label, by_variant in results.items():
        for variant, trials in by_variant.items():
            medians = {k: round(statistics.median(t[k] for t in trials), 3) for k in trials[0]}
            spread = {
                k: [round(min(t[k] for t in trials), 3), round(max(t[k] for t in trials), 3)]
                for k in ("first_write_s", "last_write_done_s")
            }
            summary.setdefault(label, {})[variant] = {"n": len(trials), **medians, "range": spread}
            figures = " ".join(f"{k}={v}" for k, v in medians.items())
            print(f"{label:>12} {variant:>30}: n={len(trials)} {figures}")
    print(
        json.dumps(
            {
                "tables": args.tables,
                "cidrs": args.cidrs,
                "latency_ms": args.latency_ms,
                "takeover": summary,
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--cidrs", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--takeover", help="lease timings D/R/P,... : measure a leader kill")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="with --takeover: a tree to run beside")
    args = parser.parse_args(argv)
    if not (1 <= args.tables <= 200 and 1 <= args.cidrs <= 50 and 0 <= args.latency_ms <= 5000):
        parser.error("--tables 1-200, --cidrs 1-50, --latency-ms 0-5000")
    if args.takeover is not None:
        return takeover(args, [f"10.{64 + i}.0.0/16" for i in range(args.cidrs)])

    cidrs = [f"10.{64 + i}.0.0/16" for i in range(args.cidrs)]
    with moto_ec2() as (host, port):
        direct = ec2_client(f"http://{host}:{port}")
        world = seed_world(direct, tables=args.tables, pod_cidrs=cidrs)
        proxy = Ec2Proxy((host, port), label="bench", latency_s=args.latency_ms / 1000).start()
        os.environ.update(
            AWS_ENDPOINT_URL_EC2=proxy.url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_EC2_METADATA_DISABLED="true",
        )
        try:
            # ours: leadership acquired by B -> every route points at B's ENI
            point_all(direct, world, world.enis["a"])
            owner = RouteOwner(
                Ec2Routes(make_client("us-east-1")),
                instance_id=world.instances["b"],
                table_ids=world.table_ids,
                pod_cidrs=cidrs,
                allow_takeover=False,
                metrics=GatewayMetrics(),
            )
            owner.prepare()  # at start, on every replica: not part of the failover
            proxy.reset()
            started = time.perf_counter()
            result = owner.sync(lambda: True)
            switch_s = time.perf_counter() - started
            ours_calls = proxy.count()
            if not (result.converged and world.all_point_at(direct, "b")):
                print("ours did not converge", file=sys.stderr)
                return 1

            # the reference's algorithm, same emulator, same latency
            point_all(direct, world, world.enis["a"])
            client = make_client("us-east-1")
            proxy.reset()
            started = time.perf_counter()
            reference_switch(client, world.table_ids, cidrs, world.enis["b"])
            sequential_s = time.perf_counter() - started
            sequential_calls = proxy.count()
            if not world.all_point_at(direct, "b"):
                print("reference loop did not converge", file=sys.stderr)
                return 1
        finally:
            proxy.stop()

    print(
        f"routes moved: {args.tables} tables x {args.cidrs} CIDRs, {args.latency_ms:g} ms per call"
    )
    print(f"ours:      {switch_s:.3f} s, {ours_calls} EC2 calls")
    print(f"reference: {sequential_s:.3f} s, {sequential_calls} EC2 calls (sequential)")
    print(
        json.dumps(
            {
                "tables": args.tables,
                "cidrs": args.cidrs,
                "latency_ms": args.latency_ms,
                "switch_s": round(switch_s, 3),
                "ec2_calls": ours_calls,
                "sequential_s": round(sequential_s, 3),
                "sequential_calls": sequential_calls,
                "speedup": round(sequential_s / switch_s, 1) if switch_s else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
