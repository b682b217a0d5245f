"""East-west TCP goodput per direction, and where each direction's packets are handled one by one.

Brings the lab up (real `hybrid-gateway run` daemons, see `hybrid_gateway_testkit.lab`) and
runs iperf3 (Debian's) between the lab's own namespaces only: from each hybrid node (hn1, hn2)
`--streams` parallel TCP streams for `--seconds`, per path (`underlay`: the node's own address
<-> the cloud pod through the VPC router; `tunnel`: the hybrid pod <-> the cloud pod through the
VXLAN tunnel and the leader gateway) and per mode (`cloud_to_hybrid` alone, `hybrid_to_cloud`
alone, `both` at once, as the lab's `--load iperf3` steady phase runs them).

Beside each goodput it prints the kernel's own counts over the same transfer: packets the ENI
namespace of the leader forwarded (`eni_forwarded`), UDP datagrams the receiving VTEPs took in
and the bytes their VXLAN devices received per datagram (`bytes_per_vxlan_datagram`: at most
the 1,500-byte underlay MTU when the tunnel's bursts arrive cut into packets, tens of KB when
they arrive whole, as a real receiver's GRO hands them over).
See docs/dataplane.md#east-west-traffic.

The LAST line printed is one JSON object with every figure.

    sudo .venv/bin/python bench/east_west.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hybrid_gateway_contract import VXLAN_DEVICE
from hybrid_gateway_testkit.lab.lab import Lab, LabOptions, running_lab
from hybrid_gateway_testkit.lab.load import CLOUD_LOAD_PORT_BASE, POD_LOAD_PORTS
from hybrid_gateway_testkit.lab.topology import VTEP_DEVICE
from hybrid_gateway_testkit.netns import Netns

MODES = ("cloud_to_hybrid", "hybrid_to_cloud", "both")


def snmp(ns: Netns) -> dict[str, int]:
    """/proc/net/snmp of a namespace as {'IpForwDatagrams': n, 'UdpInDatagrams': n, ...}."""
    rows = [line.split() for line in ns.exec("cat", "/proc/net/snmp").splitlines()]
    out: dict[str, int] = {}
    for head, values in zip(rows[::2], rows[1::2], strict=True):
        for key, value in zip(head[1:], values[1:], strict=True):
            out[head[0].rstrip(":") + key] = int(value)
    return out


def rx_bytes(ns: Netns, device: str) -> int:
    link = json.loads(ns.ip("-s", "-j", "link", "show", "dev", device))[0]
    return int(link["stats64"]["rx"]["bytes"])


def counters(lab: Lab, leader: str) -> dict[str, int]:
    w = lab.w
    out = {"eni_forwarded": snmp(w.enis[leader])["IpForwDatagrams"]}
    for side, vteps in (
        ("gateway", [(w.gateways[leader], VXLAN_DEVICE)]),
        ("hybrid", [(w.nodes[n], VTEP_DEVICE) for n in sorted(w.nodes)]),
    ):
        out[f"{side}_udp_in"] = sum(snmp(ns)["UdpInDatagrams"] for ns, _ in vteps)
        out[f"{side}_vxlan_rx_bytes"] = sum(rx_bytes(ns, dev) for ns, dev in vteps)
    return out


def run_mode(
    lab: Lab, leader: str, path: str, mode: str, *, seconds: float, streams: int
) -> dict[str, Any]:
    """One transfer per node and wanted direction, all at once; goodput per direction and the
    counters' change over it."""
    w, cloud_ip = lab.w, lab.plan.cloud_pod_ip
    wanted = [d for d in MODES[:2] if mode in (d, "both")]
    servers, clients = [], []
    for i, name in enumerate(sorted(w.node_plans)):
        node = w.node_plans[name]
        ns, ip = (w.pods[name], node.pod_ip) if path == "tunnel" else (w.nodes[name], node.node_ip)
        flows = {
            "cloud_to_hybrid": (ns, w.cloud, ip, cloud_ip, POD_LOAD_PORTS[0]),
            "hybrid_to_cloud": (w.cloud, ns, cloud_ip, ip, CLOUD_LOAD_PORT_BASE + 2 * i),
        }
        for direction in wanted:
            server_ns, client_ns, dst, src, port = flows[direction]
            servers.append(subprocess.Popen(
                server_ns.exec_argv(["iperf3", "-s", "-1", "-B", dst, "-p", str(port)]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            clients.append((direction, client_ns, [
                "iperf3", "-c", dst, "-B", src, "-p", str(port), "-P", str(streams),
                "-t", f"{seconds:g}", "-J",
            ]))  # fmt: skip
    time.sleep(1.0)  # the servers listen
    before = counters(lab, leader)
    procs = [
        (d, subprocess.Popen(ns.exec_argv(argv), stdout=subprocess.PIPE, text=True))
        for d, ns, argv in clients
    ]
    goodput = dict.fromkeys(wanted, 0.0)
    retransmits = dict.fromkeys(wanted, 0)
    for direction, proc in procs:
        doc = json.loads(proc.communicate(timeout=seconds + 60)[0])
        if "error" in doc:
            raise RuntimeError(f"{path} {direction}: iperf3: {doc['error']}")
        goodput[direction] += doc["end"]["sum_received"]["bits_per_second"] / 1e6
        retransmits[direction] += int(doc["end"]["sum_sent"].get("retransmits", 0))
    after = counters(lab, leader)
    for server in servers:
        server.wait(30)
    delta = {k: after[k] - before[k] for k in after}
    out: dict[str, Any] = {
        "goodput_mbit_s": {d: round(v, 1) for d, v in goodput.items()},
        "retransmits": retransmits,
        "eni_forwarded": delta["eni_forwarded"],
    }
    if path == "tunnel":
        for side in ("gateway", "hybrid"):
            udp = delta[f"{side}_udp_in"]
            out[f"{side}_vxlan_datagrams"] = udp
            out[f"{side}_bytes_per_vxlan_datagram"] = (
                round(delta[f"{side}_vxlan_rx_bytes"] / udp) if udp else None
            )
    return out


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=4, help="per node and direction")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"seconds": args.seconds, "streams": args.streams}
    with (
        tempfile.TemporaryDirectory(prefix="hgw-east-west-") as tmp,
        running_lab(
            LabOptions(out_dir=Path(tmp), log=lambda line: print(line, file=sys.stderr))
        ) as lab,
    ):
        leader = lab.monitor.leader()
        if leader is None:
            raise RuntimeError("no leader")
        for path in ("underlay", "tunnel"):
            for mode in MODES:
                figures = run_mode(
                    lab, leader, path, mode, seconds=args.seconds, streams=args.streams
                )
                result[f"{path}_{mode}"] = figures
                print(f"{path:8} {mode:16} {json.dumps(figures)}", file=sys.stderr, flush=True)
    for mode in MODES:
        u, t = result[f"underlay_{mode}"], result[f"tunnel_{mode}"]
        result[f"ratio_{mode}"] = {
            d: round(t["goodput_mbit_s"][d] / u["goodput_mbit_s"][d], 3)
            for d in t["goodput_mbit_s"]
            if u["goodput_mbit_s"].get(d)
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
