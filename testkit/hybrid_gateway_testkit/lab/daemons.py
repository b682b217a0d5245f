"""The gateway daemons: the real `hybrid-gateway run` on each gateway host, configured as the
chart configures it (the lab's EC2 proxy, API server and lease timings), and what a daemon says
about itself (/readyz, the shards it reports on /metrics)."""

from __future__ import annotations

import http.client
import sys
import urllib.request
from pathlib import Path

from hybrid_gateway_contract import (
    DEFAULT_NAMESPACE,
    HEALTH_PORT,
    METRICS_PATH,
    METRICS_PORT,
    READYZ_PATH,
    Env,
)
from hybrid_gateway_contract.sharding import GatewayMode
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.control import ControlPlane
from hybrid_gateway_testkit.lab.nsexec import NetnsExecutor
from hybrid_gateway_testkit.lab.options import LabError, LabOptions, wait_for
from hybrid_gateway_testkit.lab.procs import LabProcess, ProcessSet
from hybrid_gateway_testkit.lab.shards import held_shards
from hybrid_gateway_testkit.lab.world import World


class Daemons:
    """`daemons[host]` is the daemon process on that host (the latest one started)."""

    def __init__(
        self, world: World, control: ControlPlane, options: LabOptions, procs: ProcessSet
    ) -> None:
        self.world = world
        self.plan = world.plan
        self.control = control
        self.options = options
        self.procs = procs
        self.running: dict[str, LabProcess] = {}

    def __getitem__(self, host: str) -> LabProcess:
        return self.running[host]

    def env(self, host: str) -> dict[str, str]:
        e = self.control.e
        env = {
            **lab_ec2.FAKE_AWS_ENV,
            Env.NODE_IP: self.world.gateway_ip(host),
            Env.VPC_CIDR: self.plan.vpc_cidr,
            Env.POD_CIDRS: self.plan.pod_cidrs,
            Env.ROUTE_TABLE_IDS: e.route_table_id,
            Env.AWS_INSTANCE_ID: e.instances[host].instance_id,
            Env.POD_NAME: host,
            Env.POD_NAMESPACE: DEFAULT_NAMESPACE,
            Env.NODE_NAME: host,
            "AWS_ENDPOINT_URL_EC2": self.control.ec2_url,
            "KUBECONFIG": str(self.control.api.kubeconfig(host)),
            **self.options.lease_env(),
        }
        if self.plan.active_active:
            env[Env.MODE] = GatewayMode.ACTIVE_ACTIVE.value
            env[Env.SHARDS] = str(self.plan.shards)
        return env

    def start(self, host: str) -> LabProcess:
        exe = str(Path(sys.executable).parent / "hybrid-gateway")
        proc = self.procs.start(
            f"daemon-{host}", self.world.w.gateways[host], [exe, "run"], env=self.env(host)
        )
        self.running[host] = proc
        return proc

    def _get(self, host: str, port: int, path: str, timeout_s: float) -> tuple[int, str]:
        url = f"http://{self.world.gateway_ip(host)}:{port}{path}"
        ex = NetnsExecutor(self.world.w.gateways[host].name)
        try:

            def get() -> tuple[int, str]:
                with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                    return int(resp.status), resp.read().decode()

            return ex.call(get)
        finally:
            ex.close()

    def ready(self, host: str) -> bool:
        try:
            return self._get(host, HEALTH_PORT, READYZ_PATH, 1.0)[0] == 200
        except OSError:
            return False

    def wait_ready(self, host: str, timeout_s: float | None = None) -> None:
        proc = self.running[host]

        def ready() -> bool:
            if not proc.alive():
                raise LabError(
                    f"daemon on {host} exited ({proc.popen.returncode}):\n{proc.log_tail()}"
                )
            return self.ready(host)

        timeout = timeout_s or self.options.start_timeout_s
        wait_for(f"daemon on {host} to be ready", ready, timeout, 0.2)

    def shards_held(self, host: str) -> list[int] | None:
        """The shards the daemon on `host` reports on /metrics (None: not answering)."""
        try:
            return held_shards(self._get(host, METRICS_PORT, METRICS_PATH, 2.0)[1])
        except (OSError, http.client.HTTPException):
            return None
