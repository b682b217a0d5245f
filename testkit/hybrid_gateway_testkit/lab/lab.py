"""The lab orchestrator: builds the world, starts every process, observes, always cleans up.

`Lab` is a context manager; leaving it (normally, on an exception or on Ctrl-C) stops every
process it started by pid and deletes every namespace it created.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid_gateway_contract import (
    CILIUM_CONFIG_NAME,
    CILIUM_CONFIG_NAMESPACE,
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    HEALTH_PORT,
    METRICS_PATH,
    METRICS_PORT,
    READYZ_PATH,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
    Env,
)
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL, GatewayMode, shard_lease_name
from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.agent import AGENT_VTEP_MASK_KEY, cidr_mask_of, endpoints_of
from hybrid_gateway_testkit.lab.events import EventLog, read_events
from hybrid_gateway_testkit.lab.nsexec import NetnsExecutor
from hybrid_gateway_testkit.lab.procs import LabProcess, ProcessSet
from hybrid_gateway_testkit.lab.shards import held_shards, spread_ok
from hybrid_gateway_testkit.lab.topology import (
    CONN_PORT,
    TCP_PORT,
    UDP_PORT,
    VTEP_DEVICE,
    HybridNodePlan,
    LabPlan,
    LabWorld,
    add_hybrid_node,
    build_world,
)
from hybrid_gateway_testkit.netns import Netns, NetnsWorld

if TYPE_CHECKING:
    from kube_test_apiserver import ApiServer

MOTO_PORT = 5000
EC2_PROXY_PORT = 5001
#: Idle timeout of the long-lived connections' responders: longer than any failover, so a
#: connection only ends when the network lost it.
CONN_IDLE_TIMEOUT_S = 60.0


class LabError(RuntimeError):
    """The lab could not reach a state it needs; the message says which and why."""


@dataclass
class LabOptions:
    out_dir: Path
    lease_duration_s: float | None = None  # None: the daemon's defaults (3 s / 2 s / 1 s)
    renew_deadline_s: float | None = None  # None: 2/3 of the lease duration
    retry_period_s: float | None = None  # None: 1/3 of the lease duration
    propagation_delay_s: float = 0.5
    router_poll_s: float = 0.1
    rate: float = 100.0
    tcp_interval_s: float = 0.1
    start_timeout_s: float = 60.0
    vtep_match: str = "hash"  # how the hybrid nodes match VTEP endpoints (see `agent`)
    webhook_tls: bool = False  # the webhook calls over TLS (a handshake per call)
    api_outage_s: float = 60.0  # control-plane-upgrade: how long the API is unreachable
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def lease_env(self) -> dict[str, str]:
        if self.lease_duration_s is None:
            return {}
        lease = self.lease_duration_s
        renew = self.renew_deadline_s if self.renew_deadline_s is not None else lease * 2 / 3
        retry = self.retry_period_s if self.retry_period_s is not None else lease / 3
        return {
            Env.LEASE_DURATION: f"{lease:g}s",
            Env.RENEW_DEADLINE: f"{renew:g}s",
            Env.RETRY_PERIOD: f"{retry:g}s",
        }


@dataclass(frozen=True)
class Observed:
    """What the monitor last saw: lease holder, EC2 route targets, VTEP config endpoint; in
    active-active mode also every shard Lease's holder and, per CIDR, the gateway host each EC2
    route and each VTEP endpoint names."""

    t: float
    holder: str | None
    route_hosts: tuple[str | None, ...]
    vtep_endpoint: str | None
    shard_holders: tuple[str | None, ...] = ()
    routes: tuple[tuple[str, str | None], ...] = ()  # (destination CIDR, gateway host)
    vteps: tuple[tuple[str, str | None], ...] = ()  # (endpoint CIDR, gateway host)
    cidr_mask: str | None = None


def _wait(what: str, predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise LabError(f"timed out after {timeout_s:g}s waiting for {what}")


def _ensure_namespace(core: Any, name: str) -> None:
    from kubernetes.client.rest import ApiException

    try:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def agent_mask_for(plan: LabPlan) -> str:
    """The hybrid Cilium agents' `vtep-mask` for this lab, as the construct's Cilium values set
    it (constructs/eks_hybrid_gateway/cilium.py `vtep_mask_length`): the plan's endpoint length
    in active-active mode, the VPC CIDR's in active-standby."""
    length = (
        plan.shard_plan().vtep_prefix_length
        if plan.active_active
        else ipaddress.IPv4Network(plan.vpc_cidr).prefixlen
    )
    if length is None:
        raise LabError("the lab's shard plan has endpoints of more than one length")
    return str(ipaddress.IPv4Network(f"0.0.0.0/{length}").netmask)


def _publish_cilium_config(core: Any, mask: str) -> None:
    """kube-system/cilium-config with VTEP on and the agents' mask: what the lab agents (and
    the daemons' Cilium check) read."""
    from kubernetes.client.rest import ApiException

    _ensure_namespace(core, CILIUM_CONFIG_NAMESPACE)
    body = {
        "metadata": {"name": CILIUM_CONFIG_NAME},
        "data": {"enable-vtep": "true", AGENT_VTEP_MASK_KEY: mask},
    }
    try:
        core.create_namespaced_config_map(CILIUM_CONFIG_NAMESPACE, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map(CILIUM_CONFIG_NAME, CILIUM_CONFIG_NAMESPACE, body)


class Lab:
    def __init__(self, options: LabOptions, plan: LabPlan | None = None) -> None:
        self.options = options
        self.plan = plan or LabPlan()
        self.out = options.out_dir
        self.run_dir = self.out / "run"
        self._stack = ExitStack()
        self.procs = ProcessSet(self.run_dir / "logs")
        self.world: LabWorld | None = None
        self.ec2: lab_ec2.Ec2Lab | None = None
        self.apiserver: ApiServer | None = None
        self.ctl: NetnsExecutor | None = None
        self.daemons: dict[str, LabProcess] = {}
        self.agents: dict[str, LabProcess] = {}
        self.probes: list[LabProcess] = []
        self.monitor_log: EventLog | None = None
        self._monitor_stop = threading.Event()
        self._monitor: Future[None] | None = None
        self.observed: Observed | None = None
        self.throttle_file = self.run_dir / "ec2-throttle"
        self.stop_warnings: list[str] = []  # probes that had to be killed (see stop_probes)

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        netns_world = NetnsWorld()
        self._stack.callback(netns_world.close)
        self._stack.callback(self.procs.stop_all)
        try:
            counters.require_nft()  # the gateway hosts' kube-proxy rule and the ENI filters
            self.world = build_world(netns_world, self.plan)
            if self.plan.active_active:
                shard_plan = self.plan.shard_plan()
                for ns in self.world.gateways.values():
                    counters.install(ns, shard_plan, self.plan.pod_cidrs, UDP_PORT)
        except BaseException:  # __exit__ does not run when __enter__ fails: clean up here
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._monitor_stop.set()
        if self._monitor is not None:
            try:
                self._monitor.result(timeout=10)
            except Exception as exc:  # report, but keep cleaning up
                self.options.log(f"monitor stopped with {type(exc).__name__}: {exc}")
            self._monitor = None
        if self.monitor_log is not None:
            self.monitor_log.close()
            self.monitor_log = None
        # Daemons and agents first, while the API server still answers (leases get released).
        self.procs.stop_all()
        if self.apiserver is not None:
            try:
                self.apiserver.stop()
            except Exception as exc:  # cleanup continues whatever happened
                self.options.log(f"api server stop failed: {exc}")
            self.apiserver = None
        if self.ctl is not None:
            self.ctl.close()
        self._stack.close()

    @property
    def w(self) -> LabWorld:
        if self.world is None:
            raise LabError("the lab world is not built (use Lab as a context manager)")
        return self.world

    @property
    def e(self) -> lab_ec2.Ec2Lab:
        if self.ec2 is None:
            raise LabError("EC2 side not set up: call start_ec2() first")
        return self.ec2

    @property
    def api(self) -> ApiServer:
        if self.apiserver is None:
            raise LabError("API server not started: call start_apiserver() first")
        return self.apiserver

    @property
    def moto_url(self) -> str:
        return f"http://{self.plan.control_ip}:{MOTO_PORT}"

    @property
    def ec2_url(self) -> str:
        """What the daemons talk to: the fault-injecting proxy in front of the emulator."""
        return f"http://{self.plan.control_ip}:{EC2_PROXY_PORT}"

    # ---- control namespace: EC2 emulator, proxy, API server ---------------------------------
    def start_ec2(self) -> None:
        w = self.w
        self.ctl = NetnsExecutor(w.control.name)
        # moto_server with EC2's one source/destination check flag per primary ENI
        moto = [sys.executable, "-m", "hybrid_gateway_testkit.moto_strict"]
        self.procs.start(
            "moto",
            w.control,
            [*moto, "-H", self.plan.control_ip, "-p", str(MOTO_PORT)],
            env=lab_ec2.FAKE_AWS_ENV,
        )
        self.procs.start(
            "ec2-proxy",
            w.control,
            [
                sys.executable,
                "-m",
                "hybrid_gateway_testkit.lab.ec2proxy",
                "--listen",
                f"{self.plan.control_ip}:{EC2_PROXY_PORT}",
                "--upstream",
                self.moto_url,
                "--control",
                str(self.throttle_file),
                "--events",
                str(self.run_dir / "ec2proxy.jsonl"),
            ],
        )
        ctl = self.ctl

        def emulator_up() -> bool:
            try:
                ctl.call(lambda: urllib.request.urlopen(self.moto_url + "/moto-api/", timeout=1))
                return True
            except OSError:
                return False

        _wait("the EC2 emulator", emulator_up, self.options.start_timeout_s, 0.2)
        self.ec2 = ctl.call(
            lambda: lab_ec2.create_lab(lab_ec2.ec2_client(self.moto_url), self.plan)
        )
        self.options.log(f"control: EC2 emulator {self.moto_url} (daemons use {self.ec2_url})")

    def start_apiserver(self) -> None:
        from hybrid_gateway_testkit.kube_api import start_kube_api

        w = self.w

        self.apiserver = start_kube_api(
            self.run_dir / "apiserver", host=self.plan.control_ip, port=0, netns=w.control.name
        )
        self._kube_call(lambda core, coord, custom: _ensure_namespace(core, DEFAULT_NAMESPACE))
        mask = agent_mask_for(self.plan)
        self._kube_call(lambda core, coord, custom: _publish_cilium_config(core, mask))
        self.options.log(f"control: API server {self.api.url} (Cilium vtep-mask {mask})")

    def _kube_call(self, fn: Callable[[Any, Any, Any], Any]) -> Any:
        """Run fn(CoreV1Api, CoordinationV1Api, CustomObjectsApi) in the control namespace."""
        from kubernetes import client, config

        path = str(self.api.kubeconfig("lab-orchestrator"))

        def call() -> Any:
            api = config.new_client_from_config(config_file=path)
            try:
                return fn(
                    client.CoreV1Api(api),
                    client.CoordinationV1Api(api),
                    client.CustomObjectsApi(api),
                )
            finally:
                api.close()

        assert self.ctl is not None
        return self.ctl.call(call)

    # ---- VPC router and hybrid node agents --------------------------------------------------
    def start_router(self) -> None:
        self.procs.start(
            "vpc-router",
            self.w.router,
            [
                sys.executable,
                "-m",
                "hybrid_gateway_testkit.lab.vpc_router",
                "--endpoint",
                self.moto_url,
                "--route-table",
                self.e.route_table_id,
                "--device",
                "br0",
                "--events",
                str(self.run_dir / "router.jsonl"),
                "--pod-cidrs",
                self.plan.pod_cidrs,
                "--poll-s",
                str(self.options.router_poll_s),
                "--delay-s",
                str(self.options.propagation_delay_s),
                *self.sdc_guard_args(),
            ],
            env=lab_ec2.FAKE_AWS_ENV,
        )

    def sdc_guard_args(self) -> list[str]:
        """`--sdc-guard host=instance,IP,MAC` per gateway host: the VPC router drops what EC2
        drops while that instance's source/destination check is on (see `vpc_router`)."""
        args: list[str] = []
        for gw in self.plan.gateways:
            ns, iface = self.w.gateways[gw.name], self.w.gateway_ifaces[gw.name]
            mac = json.loads(ns.ip("-j", "link", "show", iface))[0]["address"]
            instance = self.e.instances[gw.name].instance_id
            args += ["--sdc-guard", f"{gw.name}={instance},{gw.ip},{mac}"]
        return args

    def start_agent(self, node: HybridNodePlan) -> LabProcess:
        proc = self.procs.start(
            f"agent-{node.name}",
            self.w.nodes[node.name],
            [
                sys.executable,
                "-m",
                "hybrid_gateway_testkit.lab.agent",
                "--kubeconfig",
                str(self.api.kubeconfig(f"agent-{node.name}")),
                "--node-name",
                node.name,
                "--node-ip",
                node.node_ip,
                "--pod-cidr",
                node.pod_cidr,
                "--vpc-cidr",
                self.plan.vpc_cidr,
                "--table",
                str(node.table),
                "--device",
                VTEP_DEVICE,
                "--events",
                str(self.run_dir / f"agent-{node.name}.jsonl"),
                "--vtep-match",
                self.options.vtep_match,
            ],
        )
        self.agents[node.name] = proc
        return proc

    def add_node(self, node: HybridNodePlan) -> None:
        add_hybrid_node(self.w, node)
        self.start_agent(node)

    def cilium_node_names(self) -> list[str]:
        listing = self._kube_call(
            lambda core, coord, custom: custom.list_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL
            )
        )
        return sorted(o["metadata"]["name"] for o in listing.get("items", []))

    def delete_cilium_node(self, name: str) -> None:
        self._kube_call(
            lambda core, coord, custom: custom.delete_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, name
            )
        )

    def patch_cilium_node(self, name: str, patch: dict[str, Any]) -> None:
        self._kube_call(
            lambda core, coord, custom: custom.patch_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, name, patch
            )
        )

    # ---- gateway daemons ---------------------------------------------------------------------
    def daemon_env(self, host: str) -> dict[str, str]:
        inst = self.e.instances[host]
        gw = next(g for g in self.plan.gateways if g.name == host)
        env = {
            **lab_ec2.FAKE_AWS_ENV,
            Env.NODE_IP: gw.ip,
            Env.VPC_CIDR: self.plan.vpc_cidr,
            Env.POD_CIDRS: self.plan.pod_cidrs,
            Env.ROUTE_TABLE_IDS: self.e.route_table_id,
            Env.AWS_INSTANCE_ID: inst.instance_id,
            Env.POD_NAME: host,
            Env.POD_NAMESPACE: DEFAULT_NAMESPACE,
            Env.NODE_NAME: host,
            "AWS_ENDPOINT_URL_EC2": self.ec2_url,
            "KUBECONFIG": str(self.api.kubeconfig(host)),
            **self.options.lease_env(),
        }
        if self.plan.active_active:
            env[Env.MODE] = GatewayMode.ACTIVE_ACTIVE.value
            env[Env.SHARDS] = str(self.plan.shards)
        return env

    def start_daemon(self, host: str) -> LabProcess:
        exe = str(Path(sys.executable).parent / "hybrid-gateway")
        proc = self.procs.start(
            f"daemon-{host}", self.w.gateways[host], [exe, "run"], env=self.daemon_env(host)
        )
        self.daemons[host] = proc
        return proc

    def daemon_ready(self, host: str) -> bool:
        gw = next(g for g in self.plan.gateways if g.name == host)
        url = f"http://{gw.ip}:{HEALTH_PORT}{READYZ_PATH}"
        ex = NetnsExecutor(self.w.gateways[host].name)
        try:
            resp = ex.call(lambda: urllib.request.urlopen(url, timeout=1))
            return bool(resp.status == 200)
        except OSError:
            return False
        finally:
            ex.close()

    def wait_daemon_ready(self, host: str, timeout_s: float | None = None) -> None:
        proc = self.daemons[host]

        def ready() -> bool:
            if not proc.alive():
                raise LabError(
                    f"daemon on {host} exited ({proc.popen.returncode}):\n{proc.log_tail()}"
                )
            return self.daemon_ready(host)

        _wait(
            f"daemon on {host} to be ready", ready, timeout_s or self.options.start_timeout_s, 0.2
        )

    # ---- the monitor: leader, EC2 routes, VTEP config over time ------------------------------
    def start_monitor(self, period_s: float = 0.05) -> None:
        self.monitor_log = EventLog(self.run_dir / "monitor.jsonl")
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        path = str(self.api.kubeconfig("lab-monitor"))
        ec2_lab = self.e
        ex = NetnsExecutor(self.w.control.name)
        self._stack.callback(ex.close)
        log = self.monitor_log

        def loop() -> None:
            api = config.new_client_from_config(config_file=path)
            coord, custom = client.CoordinationV1Api(api), client.CustomObjectsApi(api)
            ec2 = lab_ec2.ec2_client(self.moto_url, attempts=1)
            last: tuple[Any, ...] | None = None
            aa = self.plan.active_active
            while not self._monitor_stop.is_set():
                holder: str | None = None
                routes: tuple[str | None, ...] = ()
                vtep: str | None = None
                errors: list[str] = []
                shard_holders: tuple[str | None, ...] = ()
                try:
                    if aa:  # one list of the gateway's Lease group: every shard's holder
                        shard_holders = self._shard_holders(coord)
                    else:
                        lease = coord.read_namespaced_lease(DEFAULT_LEASE_NAME, DEFAULT_NAMESPACE)
                        holder = lease.spec.holder_identity or None
                except ApiException as exc:
                    holder = None
                    errors.append(f"leases: {exc.status}")
                except Exception as exc:
                    holder = None
                    errors.append(f"leases: {type(exc).__name__}: {exc}")
                route_map: tuple[tuple[str, str | None], ...] = ()
                try:
                    targets = lab_ec2.pod_cidr_targets(ec2, ec2_lab.route_table_id)
                    route_map = tuple(
                        (cidr, ec2_lab.host_of_eni(t)) for cidr, t in sorted(targets.items())
                    )
                    routes = tuple(host for _, host in route_map)
                except Exception as exc:
                    routes = ()
                    errors.append(f"ec2: {type(exc).__name__}: {exc}")
                vteps: tuple[tuple[str, str | None], ...] = ()
                mask: str | None = None
                try:
                    obj = custom.get_cluster_custom_object(
                        CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL, VTEP_CONFIG_NAME
                    )
                    eps = endpoints_of(obj)
                    vtep = eps[0].tunnel_endpoint if eps else None
                    vteps = tuple((e.cidr, self.host_of_ip(e.tunnel_endpoint)) for e in eps)
                    mask = cidr_mask_of(obj) if eps else None
                except ApiException as exc:
                    vtep = None
                    if exc.status != 404:  # absent (nobody published yet) is an observation
                        errors.append(f"vtep config: {exc.status}")
                except Exception as exc:
                    vtep = None
                    errors.append(f"vtep config: {type(exc).__name__}: {exc}")
                if aa and errors:
                    # A round with a failed read is not an observation: holders or routes that
                    # merely could not be read must not look like a change of owner.
                    log.write("monitor-error", errors=errors)
                    self._monitor_stop.wait(period_s)
                    continue
                now = time.monotonic()
                self.observed = Observed(
                    now, holder, routes, vtep, shard_holders, route_map, vteps, mask
                )
                state = (holder, routes, vtep, shard_holders, route_map, vteps)
                if state != last:
                    extra: dict[str, Any] = {}
                    if self.plan.active_active:
                        extra = {
                            "shard_holders": list(shard_holders),
                            "routes": dict(route_map),
                            "vteps": dict(vteps),
                            "cidr_mask": mask,
                        }
                    log.write(
                        "observed", holder=holder, route_hosts=list(routes), vtep=vtep, **extra
                    )
                    last = state
                self._monitor_stop.wait(period_s)
            api.close()

        self._monitor = ex.submit(loop)
        _wait("the first observation", lambda: self.observed is not None, 30)

    def _shard_holders(self, coord: Any) -> tuple[str | None, ...]:
        """Every shard Lease's holder (None: no such Lease yet, or no holder), from one list of
        the gateway's Lease group (the label every active-active Lease carries)."""
        listing = coord.list_namespaced_lease(
            DEFAULT_NAMESPACE, label_selector=f"{LEASE_GROUP_LABEL}={DEFAULT_LEASE_NAME}"
        )
        holders = {item.metadata.name: item.spec.holder_identity for item in listing.items}
        return tuple(
            holders.get(shard_lease_name(DEFAULT_LEASE_NAME, i)) or None
            for i in range(self.plan.shards)
        )

    def host_of_ip(self, ip: str | None) -> str | None:
        return next((g.name for g in self.plan.gateways if g.ip == ip), None)

    def converged_on(self, host: str) -> bool:
        """Lease, EC2 routes, VPC router, VTEP config and every agent all point at `host`."""
        obs = self.observed
        if obs is None or obs.holder != host or not obs.route_hosts:
            return False
        if any(h != host for h in obs.route_hosts) or self.host_of_ip(obs.vtep_endpoint) != host:
            return False
        gw_ip = next(g.ip for g in self.plan.gateways if g.name == host)
        routed = self.router_state()
        if not routed or any(via != gw_ip for via in routed.values()):
            return False
        return all(self.agent_endpoint(n) == gw_ip for n in self.agents)

    def router_state(self) -> dict[str, str | None]:
        state: dict[str, str | None] = {}
        for ev in read_events(self.run_dir / "router.jsonl"):
            if ev["kind"] == "router-switch":
                state[ev["cidr"]] = ev["via"]
        return state

    def agent_endpoint(self, node: str) -> str | None:
        current: str | None = None
        for ev in read_events(self.run_dir / f"agent-{node}.jsonl"):
            if ev["kind"] == "vtep-switch":
                eps = ev["endpoints"]
                current = eps[0]["tunnelEndpoint"] if eps else None
        return current

    def leader(self) -> str | None:
        return self.observed.holder if self.observed else None

    # ---- active-active: shard owners, counters, metrics ------------------------------------
    def gateway_ip(self, host: str) -> str:
        return next(g.ip for g in self.plan.gateways if g.name == host)

    def agent_endpoints(self, node: str) -> dict[str, str]:
        """Endpoint CIDR -> tunnel endpoint the node last programmed."""
        current: dict[str, str] = {}
        for ev in read_events(self.run_dir / f"agent-{node}.jsonl"):
            if ev["kind"] == "vtep-switch":
                current = {ep["cidr"]: ep["tunnelEndpoint"] for ep in ev["endpoints"]}
        return current

    def shard_owners(self, alive: Collection[str]) -> dict[int, str] | None:
        """Every shard's owner when each shard is settled on a live gateway: its Lease holder
        is live, the EC2 routes of its pod prefixes and the VPC router name that host, the
        VTEP config's endpoints of the shard name it and every hybrid node programmed them;
        and nothing else is routed or published. None while anything is still moving."""
        obs, plan = self.observed, self.plan.shard_plan()
        if obs is None or len(obs.shard_holders) != plan.count:
            return None
        routes, vteps, routed = dict(obs.routes), dict(obs.vteps), self.router_state()
        prefixes = {p for shard in plan.shards for p in shard.pod_prefixes}
        cidrs = {c for shard in plan.shards for _, c in shard.vtep_endpoints}
        if set(routes) != prefixes or set(vteps) != cidrs:
            return None
        if {c for c, via in routed.items() if via is not None} != prefixes:
            return None
        nodes = [self.agent_endpoints(n) for n in self.agents]
        owners: dict[int, str] = {}
        for shard in plan.shards:
            host = obs.shard_holders[shard.index]
            if host is None or host not in alive:
                return None
            ip = self.gateway_ip(host)
            if any(routes[p] != host or routed.get(p) != ip for p in shard.pod_prefixes):
                return None
            for _, cidr in shard.vtep_endpoints:
                if vteps[cidr] != host or any(eps.get(cidr) != ip for eps in nodes):
                    return None
            owners[shard.index] = host
        return owners

    def wait_shards_settled(
        self, alive: Collection[str], timeout_s: float, *, spread: bool
    ) -> tuple[float, dict[int, str]]:
        """Wait until every shard is settled on a live gateway (`shard_owners`), and with
        `spread` also evenly over all of `alive`; returns (when, owners)."""
        deadline = time.monotonic() + timeout_s
        next_print = time.monotonic()
        while time.monotonic() < deadline:
            owners = self.shard_owners(alive)
            if owners is not None and (not spread or spread_ok(owners, alive)):
                return time.monotonic(), owners
            if time.monotonic() >= next_print:
                obs = self.observed
                self.options.log(
                    f"  ... waiting for the shards to settle on {sorted(alive)}: "
                    f"holders={list(obs.shard_holders) if obs else []} "
                    f"ec2-routes={dict(obs.routes) if obs else {}} "
                    f"vtep={dict(obs.vteps) if obs else {}}"
                )
                next_print = time.monotonic() + 1.0
            time.sleep(0.05)
        raise LabError(
            f"shards not settled on {sorted(alive)} within {timeout_s:g}s "
            f"(observed {self.observed})"
        )

    def read_counters(self) -> dict[str, dict[counters.CounterKey, int]]:
        """Every gateway host's per-shard probe counters (a killed host's too)."""
        return {host: counters.read(ns) for host, ns in self.w.gateways.items()}

    def metrics_shards_held(self, host: str) -> list[int] | None:
        """The shards the daemon on `host` reports on /metrics (None: not answering)."""
        url = f"http://{self.gateway_ip(host)}:{METRICS_PORT}{METRICS_PATH}"
        ex = NetnsExecutor(self.w.gateways[host].name)
        try:
            body = ex.call(lambda: urllib.request.urlopen(url, timeout=2).read().decode())
            return held_shards(body)
        except (OSError, http.client.HTTPException):
            return None
        finally:
            ex.close()

    def wait_converged(self, host: str, timeout_s: float, progress: bool = True) -> float:
        """Wait until everything points at `host`; returns when it did (monotonic)."""
        deadline = time.monotonic() + timeout_s
        next_print = time.monotonic()
        while time.monotonic() < deadline:
            if self.converged_on(host):
                return time.monotonic()
            if progress and time.monotonic() >= next_print:
                obs = self.observed
                routed = sorted({str(self.host_of_ip(v)) for v in self.router_state().values()})
                self.options.log(
                    f"  ... waiting for {host}: leader={obs.holder if obs else None} "
                    f"ec2-routes={list(obs.route_hosts) if obs else []} "
                    f"vtep={self.host_of_ip(obs.vtep_endpoint) if obs else None} "
                    f"router={routed} "
                    f"agents={ {n: self.host_of_ip(self.agent_endpoint(n)) for n in self.agents} }"
                )
                next_print = time.monotonic() + 1.0
            time.sleep(0.05)
        raise LabError(f"not converged on {host} within {timeout_s:g}s (observed {self.observed})")

    # ---- probes ----------------------------------------------------------------------------------
    def _probe(self, name: str, netns: Netns, args: list[str], *, listens: bool) -> None:
        barrier = self.run_dir / "barrier"
        barrier.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "hybrid_gateway_testkit.lab.probe", *args]
        argv += ["--go-file", str(barrier / "go")] if args[0] != "tcp-server" else []
        if listens:
            argv += ["--ready-file", str(barrier / f"{name}.ready")]
        self.probes.append(self.procs.start(name, netns, argv))

    def start_probes(self) -> None:
        """UDP both ways between the cloud pod and every hybrid pod, plus webhook-like TCP calls.

        In active-active mode hybrid pod i talks to cloud address i (its shard's pair), from
        the one cloud probe process sending from each pair's own address.
        Every probe binds first; sending starts for all at once (a go file) so start-up is
        never counted as loss."""
        w, plan = self.w, self.plan
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

        _wait("probes to bind", all_ready, 30, 0.02)
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
            pods = sorted(node.pod_ip for node in self.w.node_plans.values())
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
        w, plan = self.w, self.plan
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

    def _stop(self, probes: list[LabProcess]) -> None:
        import signal as _signal

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

    def stop_probes(self) -> list[str]:
        """Stop every probe (senders stop, receivers drain) and return the raw log lines.

        The webhook caller stops first: a responder stopped under an in-flight call would
        fail it, and the lab would count that as loss."""
        callers = [p for p in self.probes if _is_caller(p.name)]
        self._stop(callers)
        self._stop([p for p in self.probes if p not in callers])
        lines: list[str] = []
        for path in sorted(self.run_dir.glob("probe-*.csv")):
            lines += path.read_text().splitlines()
        self.probes.clear()
        return lines


def _is_caller(name: str) -> bool:
    """A TCP caller: it binds nothing, and stops before the responders."""
    return name == "probe-tcp" or name.startswith(("probe-tcp-", "probe-conn-"))


@contextmanager
def running_lab(options: LabOptions, plan: LabPlan | None = None) -> Iterator[Lab]:
    """A lab with everything up: control, router, agents, gw-a leader, gw-b ready standby; in
    active-active mode every gateway ready and the shards spread evenly over them."""
    with Lab(options, plan) as lab:
        lab.start_ec2()
        lab.start_apiserver()
        lab.start_router()
        for node in lab.plan.nodes:
            lab.start_agent(node)
        lab.start_monitor()
        if lab.plan.active_active:
            hosts = [g.name for g in lab.plan.gateways]
            for host in hosts:  # all at once: the free shards spread without hand-overs
                lab.start_daemon(host)
            for host in hosts:
                lab.wait_daemon_ready(host)
            _, owners = lab.wait_shards_settled(hosts, lab.options.start_timeout_s, spread=True)
            lab.options.log(f"lab up (active-active): shard owners {owners}")
            yield lab
            return
        first, second = (g.name for g in lab.plan.gateways)
        lab.start_daemon(first)
        lab.wait_converged(first, lab.options.start_timeout_s)
        lab.wait_daemon_ready(first)
        lab.start_daemon(second)
        lab.wait_daemon_ready(second)
        lab.options.log(f"lab up: leader {first}, standby {second}")
        yield lab


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
