"""Start the real `hybrid-gateway run` for tests: its environment from the contract's names.

Every test that starts the daemon builds its environment with `daemon_env`, so a renamed or
added variable is changed in the contract and here, not in each test. `DaemonProcess` runs it
(inside a network namespace if given) and reads its probes and metrics from where it runs;
`GatewayDaemon` is one replica of a multi-replica test, behind its own EC2 proxy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from hybrid_gateway_contract import HEALTHZ_PATH, METRICS_PATH, READYZ_PATH, Env
from kube_test_apiserver import ApiServer

from .cilium import cilium_node
from .ec2emu import Ec2Proxy, VpcWorld
from .netns import Netns

#: The short lease timings the daemon tests use (the reference's 3/2/1 s ratios, scaled down).
FAST_LEASE = {Env.LEASE_DURATION: "1", Env.RENEW_DEADLINE: "0.6", Env.RETRY_PERIOD: "0.15"}
#: Standard SDK variables (botocore's names, not ours): credentials for the EC2 emulator.
FAKE_AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_env(
    *,
    kubeconfig: Path | str,
    identity: str,
    node_ip: str,
    pod_cidrs: Sequence[str],
    vpc_cidr: str = "10.0.0.0/16",
    namespace: str | None = None,
    route_table_ids: Sequence[str] = (),
    region: str | None = "us-east-1",
    instance_id: str | None = "i-0123456789abcdef0",
    ec2_url: str | None = None,
    imds_url: str | None = None,
    health_addr: str | None = None,
    metrics_addr: str | None = None,
    resync_period: str | None = None,
    lease: Mapping[str, str] = FAST_LEASE,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one daemon. Region or instance None leaves it to IMDS (`imds_url`,
    else the metadata service is disabled, as on a machine that is not an EC2 instance)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KUBECONFIG": str(kubeconfig),
        Env.POD_NAME: identity,
        Env.NODE_IP: node_ip,
        Env.VPC_CIDR: vpc_cidr,
        Env.POD_CIDRS: ",".join(pod_cidrs),
        **FAKE_AWS_CREDENTIALS,
        **lease,
    }
    optional = {
        Env.POD_NAMESPACE: namespace,
        Env.ROUTE_TABLE_IDS: ",".join(route_table_ids) or None,
        Env.AWS_REGION: region,
        Env.AWS_INSTANCE_ID: instance_id,
        Env.HEALTH_ADDR: health_addr,
        Env.METRICS_ADDR: metrics_addr,
        Env.RESYNC_PERIOD: resync_period,
        "AWS_ENDPOINT_URL_EC2": ec2_url,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_url,
    }
    env.update({k: v for k, v in optional.items() if v is not None})
    if imds_url is None:
        env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra or {})
    return env


_GET = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
sys.stdout.write(str(code) + "\\n" + body.decode())
"""


def check_on_in(reply: bytes) -> bool:
    """Whether a DescribeInstances answer (EC2's XML) says the source/destination check of
    its primary ENI (device 0 on network card 0) is on."""
    root = ElementTree.fromstring(reply)
    for eni in root.iterfind(".//{*}networkInterfaceSet/{*}item"):
        attachment = eni.find("{*}attachment")
        if attachment is None:
            continue
        device = attachment.findtext("{*}deviceIndex")
        card = attachment.findtext("{*}networkCardIndex") or "0"
        if (device, card) == ("0", "0"):
            return eni.findtext("{*}sourceDestCheck") == "true"
    raise ValueError("a DescribeInstances answer without a primary ENI")


@dataclass(kw_only=True)
class DaemonProcess:
    """One `hybrid-gateway run` process, its log in `log_path`; killed by `stop`."""

    env: dict[str, str]
    log_path: Path
    netns: Netns | None = None
    args: Sequence[str] = ()
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> DaemonProcess:
        env = {
            Env.HEALTH_ADDR: f"127.0.0.1:{self.health_port}",
            Env.METRICS_ADDR: f"127.0.0.1:{self.metrics_port}",
            **self.env,
        }
        argv = [sys.executable, "-m", "hybrid_gateway", "run", *self.args]
        if self.netns is not None:
            argv = self.netns.exec_argv(argv)
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def get(self, port: int, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
        """(status, body) of a GET on the daemon's loopback; raises OSError if nothing listens."""
        url = f"http://127.0.0.1:{port}{path}"
        if self.netns is None:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as reply:
                    return int(reply.status), reply.read().decode()
            except urllib.error.HTTPError as err:
                return int(err.code), err.read().decode()
        argv = self.netns.exec_argv([sys.executable, "-c", _GET, url, str(timeout_s)])
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=timeout_s + 10
        )
        if done.returncode != 0:
            raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr else "GET failed")
        code, _, body = done.stdout.partition("\n")
        return int(code), body

    def healthz(self) -> tuple[int, str]:
        """(status, body); status 0 while nothing listens yet."""
        return self._probe(HEALTHZ_PATH)

    def readyz(self) -> tuple[int, str]:
        """(status, body); status 0 while nothing listens yet."""
        return self._probe(READYZ_PATH)

    def _probe(self, path: str) -> tuple[int, str]:
        try:
            return self.get(self.health_port, path)
        except OSError as exc:
            return 0, str(exc)

    def metrics(self) -> str:
        return self.get(self.metrics_port, METRICS_PATH)[1]

    def metric(self, name: str, labels: str = "") -> float | None:
        """The sum of the samples of `name` whose labels contain `labels` (as exposed, e.g.
        'api="lease"'; "" matches all), or None if there is none."""
        values = []
        for line in self.metrics().splitlines():
            sample, _, value = line.rpartition(" ")
            series, _, label_text = sample.partition("{")
            if series == name and labels in label_text:
                values.append(float(value))
        return sum(values) if values else None

    def wait_readyz(
        self, accept: Callable[[int, str], bool], what: str, timeout_s: float = 30.0
    ) -> tuple[int, str]:
        """The first /readyz answer that `accept(status, body)` takes; AssertionError after
        `timeout_s` naming `what` and the last answer."""
        deadline = time.monotonic() + timeout_s
        answer = self.readyz()
        while not accept(*answer):
            if time.monotonic() > deadline:
                raise AssertionError(f"/readyz never {what} in {timeout_s}s; last: {answer}")
            time.sleep(0.1)
            answer = self.readyz()
        return answer

    def wait_serving(self, timeout_s: float = 20.0) -> float:
        """Wait until /healthz answers 200; returns seconds since start."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.healthz()[0] == 200:
                return time.monotonic() - self.started_at
            assert self.running, self.log()
            time.sleep(0.05)
        raise AssertionError(f"not serving /healthz after {timeout_s}s: {self.log()}")


@dataclass(kw_only=True)
class GatewayDaemon(DaemonProcess):
    """One `hybrid-gateway run --no-dataplane` replica of a multi-replica test: identity
    `gw-<name>`, its own API server credentials, and its own recording EC2 proxy in front of
    the emulator (a test delays, holds or fails its calls there: `proxy.fault`)."""

    name: str
    identity: str
    node_ip: str
    proxy: Ec2Proxy
    args: Sequence[str] = ("--no-dataplane",)

    @classmethod
    def create(
        cls,
        name: str,
        *,
        kube: ApiServer,
        moto_addr: tuple[str, int],
        world: VpcWorld,
        node_ip: str,
        namespace: str,
        pod_cidrs: Sequence[str],
        log_dir: Path,
        resync_period: str,
        lease: Mapping[str, str] = FAST_LEASE,
        identity_known: bool = True,
        extra: Mapping[str, str] | None = None,
    ) -> GatewayDaemon:
        """Not started yet. Without `identity_known` it has neither AWS_INSTANCE_ID nor IMDS
        (the metadata service disabled, as when IMDS is refused): it cannot resolve its ENI."""
        identity = f"gw-{name}"
        proxy = Ec2Proxy(
            moto_addr, label=identity, keep_replies=frozenset({"DescribeInstances"})
        ).start()
        env = daemon_env(
            kubeconfig=kube.kubeconfig(identity),
            identity=identity,
            namespace=namespace,
            node_ip=node_ip,
            pod_cidrs=pod_cidrs,
            route_table_ids=world.table_ids,
            region="us-east-1" if identity_known else None,
            instance_id=world.instances[name] if identity_known else None,
            ec2_url=proxy.url,
            resync_period=resync_period,
            lease=lease,
            extra=extra,
        )
        return cls(
            name=name,
            identity=identity,
            node_ip=node_ip,
            proxy=proxy,
            env=env,
            log_path=log_dir / f"{identity}-{time.monotonic_ns()}.log",
        )

    def wait_ready(self, body: str, timeout_s: float = 10.0) -> tuple[int, str]:
        """/readyz once it answers 200 with `body` (readiness follows the last write's reply,
        a moment after the write is visible), or its last answer."""
        deadline = time.monotonic() + timeout_s
        answer = self.readyz()
        while answer != (200, body) and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = self.readyz()
        return answer

    def writes_after_check_read_on(self, actions: Sequence[str]) -> list[str]:
        """Calls among `actions` this replica sent after it had read the source/destination
        check as ON, as "Action +0.123s", and if there are any, a last item listing its EC2
        calls around that read.

        The read is the first DescribeInstances whose ANSWER says ON (`check_on_in`), not
        the first one sent after the change: a read that was on its way during the
        ModifyInstanceAttribute may be answered from either side of it (seen under load
        both ways: a read sent during the call answered OFF, and one answered ON), and EC2
        itself is eventually consistent ("Eventual consistency in the Amazon EC2 API", EC2
        developer guide), so a read after the change may still say OFF. A write already on
        the wire when that answer arrived starts within a moment on loopback, so 0.25 s
        after it is allowed."""
        calls = self.proxy.snapshot()
        seen_on = min(
            c.finished
            for c in calls
            if c.action == "DescribeInstances" and c.status == 200 and check_on_in(c.reply)
        )
        late = [c for c in calls if c.action in actions and c.started > seen_on + 0.25]
        if not late:
            return []
        timeline = "; ".join(
            f"{c.action} {c.started - seen_on:+.3f}..{c.finished - seen_on:+.3f}s"
            for c in calls
            if c.started > seen_on - 2.0
        )
        return [f"{c.action} {c.started - seen_on:+.3f}s" for c in late] + [f"(calls: {timeline})"]

    def close(self) -> None:
        """Kill the process, then stop its proxy."""
        self.stop()
        self.proxy.stop()


_KUBE = """
import json, sys
from kubernetes import client, config
api = client.CustomObjectsApi(config.new_client_from_config(config_file=sys.argv[1]))
if sys.argv[2] == "vtep":
    try:
        obj = api.get_cluster_custom_object(
            "cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway"
        )
        print(json.dumps(obj["spec"]["endpoints"]))
    except client.ApiException:
        print("null")
else:
    api.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", json.loads(sys.argv[3]))
"""


class NetnsKube:
    """Kubernetes calls made from inside a namespace (where the test API server listens)."""

    def __init__(self, netns: Netns, kubeconfig: Path | str) -> None:
        self._netns = netns
        self._kubeconfig = str(kubeconfig)

    def create_cilium_node(self, name: str, node_ip: str, pod_cidrs: Sequence[str]) -> None:
        body = json.dumps(cilium_node(name, node_ip, list(pod_cidrs)))
        self._netns.exec(sys.executable, "-c", _KUBE, self._kubeconfig, "node", body)

    def vtep_endpoints(self) -> list[dict[str, str]] | None:
        out = self._netns.exec(sys.executable, "-c", _KUBE, self._kubeconfig, "vtep")
        endpoints: list[dict[str, str]] | None = json.loads(out)
        return endpoints
