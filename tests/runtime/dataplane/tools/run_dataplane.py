"""Run the DataPlane service as its own process for restart tests.

The process stays in the root network namespace (so it reaches the test API server on loopback)
and programs the kernel of the namespace given by --netns. It logs to stderr, prints READY once
`ready()` is true, and runs until killed.

    python run_dataplane.py --netns NS --kubeconfig PATH --node-ip IP --vpc-cidr CIDR
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import subprocess
import sys
import threading
import time

from kubernetes import client, config

from hybrid_gateway.adapters.kube_events import EventRecorder
from hybrid_gateway.adapters.netlink import Netlink
from hybrid_gateway.dataplane import DataPlane
from hybrid_gateway.metrics import GatewayMetrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--netns", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--vpc-cidr", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    api = config.new_client_from_config(config_file=args.kubeconfig)

    def ip_forward() -> str:
        argv = ["ip", "netns", "exec", args.netns, "cat", "/proc/sys/net/ipv4/ip_forward"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    plane = DataPlane(
        node_ip=args.node_ip,
        vpc_cidrs=[ipaddress.IPv4Network(args.vpc_cidr)],
        mtu=1450,
        resync_period_s=30.0,
        api_client=api,
        events=EventRecorder(client.CoreV1Api(api), host="restart-test"),
        metrics=GatewayMetrics(),
        netlink=Netlink(args.netns),
        ip_forward=ip_forward,
        watch_timeout_s=5,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    plane.setup()
    worker = threading.Thread(target=plane.run, args=(stop,), daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while not plane.ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    print("READY" if plane.ready() else "NOT READY", flush=True)
    stop.wait()
    worker.join(timeout=5)


if __name__ == "__main__":
    main()
