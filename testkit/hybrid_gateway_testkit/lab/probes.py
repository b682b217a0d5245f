"""The probes: sequence-numbered UDP both ways between the cloud pod and every hybrid pod,
webhook-like TCP calls, and in active-active mode TCP between mismatched pairs (per call and on
long-lived connections); each a `probe` process in its namespace, all sending from one moment
on (a go file), their raw logs read back when they stop."""

from __future__ import annotations

import signal as _signal
import sys
import time
from pathlib import Path

from hybrid_gateway_testkit.lab.options import LabError, LabOptions, wait_for
from hybrid_gateway_testkit.lab.procs import LabProcess, ProcessSet
from hybrid_gateway_testkit.lab.topology import CONN_PORT, TCP_PORT, UDP_PORT
from hybrid_gateway_testkit.lab.world import World
from hybrid_gateway_testkit.netns import Netns

#: Idle timeout of the long-lived connections' responders: longer than any failover, so a
#: connection only ends when the network lost it.
CONN_IDLE_TIMEOUT_S = 60.0


class Probes:
    def __init__(self, world: World, options: LabOptions, procs: ProcessSet, run_dir: Path) -> None:
        self.world = world
        self.plan = world.plan
        self.options = options
        self.procs = procs
        self.run_dir = run_dir
        self.probes: list[LabProcess] = []
        self.stop_warnings: list[str] = []  # probes that had to be killed (see stop)

    def _probe(self, name: str, netns: Netns, args: list[str], *, listens: bool) -> None:
        barrier = self.run_dir / "barrier"
        barrier.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "hybrid_gateway_testkit.lab.probe", *args]
        argv += ["--go-file", str(barrier / "go")] if args[0] != "tcp-server" else []
        if listens:
            argv += ["--ready-file", str(barrier / f"{name}.ready")]
        self.probes.append(self.procs.start(name, netns, argv))

    def start(self) -> None:
        """UDP both ways between the cloud pod and every hybrid pod, plus webhook-like TCP calls.

        In active-active mode hybrid pod i talks to cloud address i (its shard's pair), from
        the one cloud probe process sending from each pair's own address.
        Every probe binds first; sending starts for all at once (a go file) so start-up is
        never counted as loss."""
        w, plan = self.world.w, self.plan
        rate, port = str(self.options.rate), str(UDP_PORT)
        barrier = self.run_dir / "barrier"
        for stale in barrier.glob("*"):
            stale.unlink()
        self._tls_ca().unlink(missing_ok=True)  # a node added since: a certificate for all
        pair = {node.name: target for _, node, target in plan.shard_pairs()}

        def via(name: str) -> str:  # the cloud address paired with this node ("" = the pod's)
            return f"@{pair[name]}" if name in pair else ""

        for name, node in w.node_plans.items():
            cloud = pair.get(name, plan.cloud_pod_ip)
            self._probe(f"probe-{name}", w.pods[name], [
                "udp", "--bind", node.pod_ip, "--port", port, "--rate", rate,
                "--peer", f"{cloud}:{UDP_PORT}",
                "--log", str(self.run_dir / f"probe-{name}.csv"),
            ], listens=True)  # fmt: skip
            self._probe(f"webhook-{name}", w.pods[name], [
                "tcp-server", "--bind", node.pod_ip, "--port", str(TCP_PORT),
                *self._webhook_tls_args(),
            ], listens=True)  # fmt: skip
        peers = [
            a for name, n in w.node_plans.items()
            for a in ("--peer", f"{n.pod_ip}:{UDP_PORT}{via(name)}")
        ]  # fmt: skip
        self._probe("probe-cloud", w.cloud, [
            "udp", "--bind", plan.cloud_pod_ip, "--port", port, "--rate", rate, *peers,
            "--log", str(self.run_dir / "probe-cloud.csv"),
        ], listens=True)  # fmt: skip
        targets = [
            a for name, n in w.node_plans.items()
            for a in ("--target", f"{n.pod_ip}:{TCP_PORT}{via(name)}")
        ]  # fmt: skip
        if plan.active_active:
            self._mismatched_probes(targets)
        self._probe("probe-tcp", w.cloud, [
            "tcp-client", "--bind", plan.cloud_pod_ip, "--interval-s",
            str(self.options.tcp_interval_s), *targets,
            "--log", str(self.run_dir / "probe-tcp.csv"),
            *(["--tls-ca", str(self._tls_ca())] if self.options.webhook_tls else []),
        ], listens=False)  # fmt: skip
        expected = {p.name for p in self.probes if not _is_caller(p.name)}

        def all_ready() -> bool:
            for p in self.probes:
                if not p.alive():
                    raise LabError(f"probe {p.name} exited at start:\n{p.log_tail()}")
            return {f.stem for f in barrier.glob("*.ready")} >= expected

        wait_for("probes to bind", all_ready, 30, 0.02)
        (barrier / "go").touch()

    def _webhook_tls_args(self) -> list[str]:
        """The webhook responders' serving certificate and key (none without `webhook_tls`):
        one self-signed certificate for every hybrid pod's address, which the caller trusts
        as a webhook's caBundle names its CA. One, not one per pod: self-signed certificates
        with the same subject would shadow each other in the caller's trust store."""
        if not self.options.webhook_tls:
            return []
        directory = self._tls_ca().parent
        cert, key = directory / "serving.crt", directory / "serving.key"
        if not cert.exists():
            from kube_test_apiserver import make_certificate

            directory.mkdir(parents=True, exist_ok=True)
            pods = sorted(node.pod_ip for node in self.world.w.node_plans.values())
            make_certificate(pods[0], directory, tuple(pods[1:]))
        return ["--tls-cert", str(cert), "--tls-key", str(key)]

    def _tls_ca(self) -> Path:
        return self.run_dir / "tls" / "serving.crt"

    def _mismatched_probes(self, cloud_targets: list[str]) -> None:
        """Active-active: TCP between hybrid pod i and the cloud address of shard j = i + 1,
        whose two directions cross the owners of shards i and j. Opened from both sides, as
        one-shot calls (appended to the cloud caller's `cloud_targets`, and a caller in every
        pod) and as long-lived connections (a caller in the cloud and in every pod, against
        responders that keep a connection for CONN_IDLE_TIMEOUT_S)."""
        w, plan = self.world.w, self.plan
        interval = str(self.options.tcp_interval_s)
        responders = [("webhook-cloud", w.cloud, "0.0.0.0", TCP_PORT, 2.0)]
        responders.append(("longlived-cloud", w.cloud, "0.0.0.0", CONN_PORT, CONN_IDLE_TIMEOUT_S))
        for name, node in w.node_plans.items():
            responders.append(
                (f"longlived-{name}", w.pods[name], node.pod_ip, CONN_PORT, CONN_IDLE_TIMEOUT_S)
            )
        for name, ns, bind, port, idle in responders:
            self._probe(name, ns, [
                "tcp-server", "--bind", bind, "--port", str(port), "--idle-timeout-s", f"{idle:g}",
            ], listens=True)  # fmt: skip
        cloud_conns: list[str] = []
        for _, node, _, target in plan.mismatched_pairs():
            cloud_targets += ["--target", f"{node.pod_ip}:{TCP_PORT}@{target}"]
            cloud_conns += ["--target", f"{node.pod_ip}:{CONN_PORT}@{target}"]
            self._probe(f"probe-tcp-{node.name}", w.pods[node.name], [
                "tcp-client", "--bind", node.pod_ip, "--interval-s", interval,
                "--target", f"{target}:{TCP_PORT}",
                "--log", str(self.run_dir / f"probe-tcp-{node.name}.csv"),
            ], listens=False)  # fmt: skip
            self._probe(f"probe-conn-{node.name}", w.pods[node.name], [
                "tcp-client", "--persistent", "--bind", node.pod_ip, "--interval-s", interval,
                "--target", f"{target}:{CONN_PORT}",
                "--log", str(self.run_dir / f"probe-conn-{node.name}.csv"),
            ], listens=False)  # fmt: skip
        self._probe("probe-conn-cloud", w.cloud, [
            "tcp-client", "--persistent", "--bind", plan.cloud_pod_ip, "--interval-s", interval,
            *cloud_conns, "--log", str(self.run_dir / "probe-conn-cloud.csv"),
        ], listens=False)  # fmt: skip

    def _stop_all(self, probes: list[LabProcess]) -> None:
        for p in probes:
            p.signal(_signal.SIGTERM)
        for p in probes:
            if p.wait(10) is not None:
                continue
            p.signal(_signal.SIGUSR1)  # the probe dumps every thread's stack to its log
            time.sleep(0.5)
            stack = p.log_tail(60)
            p.signal(_signal.SIGKILL)
            p.wait(5)
            if not p.name.startswith(("webhook-", "longlived-")):  # its probe log is lost
                raise LabError(f"probe {p.name} did not stop:\n{stack}")
            # A webhook responder keeps no log: nothing is lost, but say so, with its stack.
            self.stop_warnings.append(f"{p.name} did not stop within 10 s of SIGTERM; killed")
            self.options.log(f"{self.stop_warnings[-1]}:\n{stack}")

    def stop(self) -> list[str]:
        """Stop every probe (senders stop, receivers drain) and return the raw log lines.

        The webhook caller stops first: a responder stopped under an in-flight call would
        fail it, and the lab would count that as loss."""
        callers = [p for p in self.probes if _is_caller(p.name)]
        self._stop_all(callers)
        self._stop_all([p for p in self.probes if p not in callers])
        lines: list[str] = []
        for path in sorted(self.run_dir.glob("probe-*.csv")):
            lines += path.read_text().splitlines()
        self.probes.clear()
        return lines


def _is_caller(name: str) -> bool:
    """A TCP caller: it binds nothing, and stops before the responders."""
    return name == "probe-tcp" or name.startswith(("probe-tcp-", "probe-conn-"))
