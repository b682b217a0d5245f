"""How long a fresh pair of gateways takes to converge: both started at once, until the VPC
routes AND the CiliumVTEPConfig point at one of them.

Two real `hybrid-gateway run --no-dataplane` processes against the test Kubernetes API server
and the EC2 emulator (moto server) on loopback, with the reference's lease timings (3/2/1 s)
unless `--lease-duration` etc. say otherwise. Each of `--runs` runs starts a new API server and
VPC world. Prints one line per run, then as its LAST line one JSON object with the medians:
serving_s (both answer /healthz), owned_s (routes + VTEP config on one gateway), ready_s (both
/readyz 200).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
    Env,
)
from hybrid_gateway_testkit.daemon import DaemonProcess, daemon_env
from hybrid_gateway_testkit.ec2emu import Ec2Proxy, ec2_client, moto_ec2, seed_world
from hybrid_gateway_testkit.kube_api import start_kube_api

POD_CIDRS = ["10.80.0.0/16", "10.81.0.0/16"]
NODE_IPS = {"a": "10.0.1.10", "b": "10.0.1.11"}


def vtep_endpoint(api: Any) -> tuple[str, str] | None:
    try:
        obj = api.get_cluster_custom_object(
            CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, VTEP_CONFIG_NAME
        )
    except client.ApiException:
        return None
    first = obj["spec"]["endpoints"][0]
    return str(first["tunnelEndpoint"]), str(first["mac"])


def one_run(moto: tuple[str, int], workdir: Path, lease: dict[str, str]) -> dict[str, float]:
    direct = ec2_client(f"http://{moto[0]}:{moto[1]}")
    world = seed_world(direct, tables=3, pod_cidrs=POD_CIDRS)
    with start_kube_api(workdir / "api") as kube:
        vtep_api = client.CustomObjectsApi(
            config.new_client_from_config(config_file=str(kube.kubeconfig("bench")))
        )
        proxy = Ec2Proxy(moto, label="bench").start()
        daemons = {
            name: DaemonProcess(
                env=daemon_env(
                    kubeconfig=kube.kubeconfig(f"gw-{name}"),
                    identity=f"gw-{name}",
                    node_ip=NODE_IPS[name],
                    pod_cidrs=POD_CIDRS,
                    route_table_ids=world.table_ids,
                    instance_id=world.instances[name],
                    ec2_url=proxy.url,
                    lease=lease,
                ),
                args=("--no-dataplane",),
                log_path=workdir / f"gw-{name}.log",
            )
            for name in ("a", "b")
        }
        try:
            started = time.monotonic()
            for daemon in daemons.values():
                daemon.start()
            serving = max(d.wait_serving(60.0) for d in daemons.values())
            owned = ready = None
            deadline = started + 60.0
            while (owned is None or ready is None) and time.monotonic() < deadline:
                now = time.monotonic() - started
                if owned is None:
                    targets = set(world.routes(direct).values())
                    endpoint = vtep_endpoint(vtep_api)
                    for name in daemons:
                        mine = (NODE_IPS[name], vxlan_device_mac(NODE_IPS[name]))
                        if targets == {world.enis[name]} and endpoint == mine:
                            owned = now
                if ready is None and all(d.readyz()[0] == 200 for d in daemons.values()):
                    ready = now
                time.sleep(0.02)
            if owned is None or ready is None:
                raise SystemExit(f"no convergence in 60 s; logs in {workdir}")
            return {"serving_s": serving, "owned_s": owned, "ready_s": ready}
        finally:
            for daemon in daemons.values():
                daemon.stop()
            proxy.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease-duration", default="3")
    parser.add_argument("--renew-deadline", default="2")
    parser.add_argument("--retry-period", default="1")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs 1-20")
    lease = {
        Env.LEASE_DURATION: args.lease_duration,
        Env.RENEW_DEADLINE: args.renew_deadline,
        Env.RETRY_PERIOD: args.retry_period,
    }
    results = []
    with moto_ec2() as moto, tempfile.TemporaryDirectory(prefix="hgw-start-") as tmp:
        for i in range(args.runs):
            run = one_run(moto, Path(tmp) / f"run{i}", lease)
            results.append(run)
            print(" ".join(f"{k}={v:.2f}" for k, v in run.items()), flush=True)
    summary = {k: round(statistics.median(r[k] for r in results), 3) for k in results[0]}
    print(json.dumps({"runs": args.runs, **lease, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
