"""TCP goodput cloud pod -> hybrid pod through the gateway tunnel vs. a direct veth path.

Brings the lab up (real `hybrid-gateway run` daemons, see `hybrid_gateway_testkit.lab`), then in
the same namespaces measures one TCP stream from the cloud pod to hybrid pod hn1:

- tunnel: cloud pod -> VPC router -> leader gateway -> VXLAN (VNI 2, 8472) -> hn1 -> pod, with
  the replies back through hn1's VTEP route and the gateway;
- direct: a veth pair added straight between the same two namespaces.

MTU: the underlay (every VPC and on-prem link) is 1500; the tunnel devices are 1450 (1500 - 50
bytes of VXLAN/UDP/IP/Ethernet overhead, Cilium's and the gateway's default), and the pods use
1450 too (the hybrid pod's link, the cloud pod's route), so no segment is ever fragmented or
dropped for size on the way through the tunnel. The direct veth uses the same 1450 so both paths
carry the same segment sizes and the ratio measures the tunnel's cost alone.

Each figure is the median of `--repeat` runs of `--seconds`, tunnel and direct alternating. The
LAST line printed is one JSON object: tunnel_mbps, direct_mbps, ratio, mtu.

    sudo .venv/bin/python bench/throughput.py
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 256 * 1024
PORT = 5201
DIRECT = ("172.31.255.1", "172.31.255.2")  # cloud end, pod end of the direct veth


def serve(bind: str, port: int, limit_s: float) -> None:
    """Accept one connection, count bytes until it closes; print bytes and seconds."""
    with socket.create_server((bind, port)) as srv:
        srv.settimeout(limit_s)
        print("READY", flush=True)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(limit_s)
            total, first, last = 0, 0.0, 0.0
            while True:
                data = conn.recv(CHUNK)
                if not data:
                    break
                now = time.monotonic()
                if not first:
                    first = now
                total += len(data)
                last = now
    print(json.dumps({"bytes": total, "seconds": max(last - first, 1e-9)}), flush=True)


def send(bind: str, target: str, port: int, seconds: float) -> None:
    payload = b"\0" * CHUNK
    with socket.create_connection((target, port), timeout=10, source_address=(bind, 0)) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            c.sendall(payload)


def measure(server_ns: str, client_ns: str, src: str, dst: str, secs: float) -> float:
    """Mbit/s of one TCP stream src -> dst, server and client as separate processes."""
    me = [sys.executable, __file__]
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, *me, "serve", "--bind", dst, "--limit", str(secs + 20)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "READY":
            raise RuntimeError("throughput server did not start")
        subprocess.run(
            ["ip", "netns", "exec", client_ns, *me, "send", "--bind", src, "--target", dst,
             "--seconds", str(secs)],
            check=True, timeout=secs + 30,
        )  # fmt: skip
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["bytes"]) * 8 / float(result["seconds"]) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--limit", type=float, required=True)
    c = sub.add_parser("send")
    c.add_argument("--bind", required=True)
    c.add_argument("--target", required=True)
    c.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=5.0, dest="run_seconds")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.bind, PORT, args.limit)
        return 0
    if args.cmd == "send":
        send(args.bind, args.target, PORT, args.seconds)
        return 0

    from hybrid_gateway_testkit.lab.lab import LabOptions, running_lab
    from hybrid_gateway_testkit.lab.topology import POD_MTU

    with (
        tempfile.TemporaryDirectory(prefix="hgw-throughput-") as tmp,
        running_lab(
            LabOptions(out_dir=Path(tmp), log=lambda line: print(line, file=sys.stderr))
        ) as lab,
    ):
        w = lab.w
        cloud, pod = w.cloud, w.pods["hn1"]
        node = w.node_plans["hn1"]
        w.world.link(cloud, f"{DIRECT[0]}/30", pod, f"{DIRECT[1]}/30", mtu=POD_MTU)
        tunnel, direct = [], []
        for i in range(args.repeat):
            tunnel.append(measure(pod.name, cloud.name, lab.plan.cloud_pod_ip, node.pod_ip,
                                  args.run_seconds))  # fmt: skip
            direct.append(measure(pod.name, cloud.name, DIRECT[0], DIRECT[1],
                                  args.run_seconds))  # fmt: skip
            print(f"run {i + 1}: tunnel {tunnel[-1]:.0f} Mbit/s, direct {direct[-1]:.0f} Mbit/s",
                  file=sys.stderr)  # fmt: skip
        leader = lab.monitor.leader()
    tunnel_mbps, direct_mbps = statistics.median(tunnel), statistics.median(direct)
    print(json.dumps({
        "tunnel_mbps": round(tunnel_mbps, 1),
        "direct_mbps": round(direct_mbps, 1),
        "ratio": round(tunnel_mbps / direct_mbps, 3),
        "mtu": POD_MTU,
        "mtu_note": "1500 underlay - 50 VXLAN overhead; pods and the direct veth use it too",
        "seconds": args.run_seconds,
        "repeat": args.repeat,
        "leader": leader,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
