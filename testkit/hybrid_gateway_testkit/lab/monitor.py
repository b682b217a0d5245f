"""The monitor: what the lab observes over time, from outside every gateway. A thread in the
control namespace reads the Lease (or every shard Lease), the EC2 route table and the
CiliumVTEPConfig every 50 ms and logs each change (`monitor.jsonl`); with the VPC router's and
the agents' event logs, that says when everything points at a gateway (`converged_on`) or when
every shard is settled on a live one (`shard_owners`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
)
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL, shard_lease_name
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.agent import cidr_mask_of, endpoints_of
from hybrid_gateway_testkit.lab.control import ControlPlane
from hybrid_gateway_testkit.lab.events import EventLog, read_events
from hybrid_gateway_testkit.lab.nsexec import NetnsExecutor
from hybrid_gateway_testkit.lab.options import LabError, LabOptions, wait_for
from hybrid_gateway_testkit.lab.shards import spread_ok
from hybrid_gateway_testkit.lab.world import World


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


class Monitor:
    def __init__(
        self, world: World, control: ControlPlane, options: LabOptions, run_dir: Path
    ) -> None:
        self.world = world
        self.plan = world.plan
        self.control = control
        self.options = options
        self.run_dir = run_dir
        self.observed: Observed | None = None
        self._log: EventLog | None = None
        self._stop = threading.Event()
        self._loop: Future[None] | None = None
        self._ex: NetnsExecutor | None = None

    def stop(self) -> None:
        self._stop.set()
        if self._loop is not None:
            try:
                self._loop.result(timeout=10)
            except Exception as exc:  # report, but keep cleaning up
                self.options.log(f"monitor stopped with {type(exc).__name__}: {exc}")
            self._loop = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._ex is not None:
            self._ex.close()
            self._ex = None

    def start(self, period_s: float = 0.05) -> None:
        self._log = EventLog(self.run_dir / "monitor.jsonl")
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        path = str(self.control.api.kubeconfig("lab-monitor"))
        ec2_lab = self.control.e
        moto_url = self.control.moto_url
        self._ex = ex = NetnsExecutor(self.world.w.control.name)
        log, stop = self._log, self._stop
        host_of_ip = self.world.host_of_ip

        def loop() -> None:
            api = config.new_client_from_config(config_file=path)
            coord, custom = client.CoordinationV1Api(api), client.CustomObjectsApi(api)
            ec2 = lab_ec2.ec2_client(moto_url, attempts=1)
            last: tuple[Any, ...] | None = None
            aa = self.plan.active_active
            while not stop.is_set():
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
                    vteps = tuple((e.cidr, host_of_ip(e.tunnel_endpoint)) for e in eps)
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
                    stop.wait(period_s)
                    continue
                now = time.monotonic()
                self.observed = Observed(
                    now, holder, routes, vtep, shard_holders, route_map, vteps, mask
                )
                state = (holder, routes, vtep, shard_holders, route_map, vteps)
                if state != last:
                    extra: dict[str, Any] = {}
                    if aa:
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
                stop.wait(period_s)
            api.close()

        self._loop = ex.submit(loop)
        wait_for("the first observation", lambda: self.observed is not None, 30)

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

    # ---- what the VPC router and the agents did (their event logs) ---------------------------
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

    def agent_endpoints(self, node: str) -> dict[str, str]:
        """Endpoint CIDR -> tunnel endpoint the node last programmed."""
        current: dict[str, str] = {}
        for ev in read_events(self.run_dir / f"agent-{node}.jsonl"):
            if ev["kind"] == "vtep-switch":
                current = {ep["cidr"]: ep["tunnelEndpoint"] for ep in ev["endpoints"]}
        return current

    # ---- active-standby: the leader ------------------------------------------------------------
    def leader(self) -> str | None:
        return self.observed.holder if self.observed else None

    def converged_on(self, host: str) -> bool:
        """Lease, EC2 routes, VPC router, VTEP config and every agent all point at `host`."""
        obs, host_of_ip = self.observed, self.world.host_of_ip
        if obs is None or obs.holder != host or not obs.route_hosts:
            return False
        if any(h != host for h in obs.route_hosts) or host_of_ip(obs.vtep_endpoint) != host:
            return False
        gw_ip = self.world.gateway_ip(host)
        routed = self.router_state()
        if not routed or any(via != gw_ip for via in routed.values()):
            return False
        return all(self.agent_endpoint(n) == gw_ip for n in self.control.agents)

    def wait_converged(self, host: str, timeout_s: float, progress: bool = True) -> float:
        """Wait until everything points at `host`; returns when it did (monotonic)."""
        host_of_ip = self.world.host_of_ip
        deadline = time.monotonic() + timeout_s
        next_print = time.monotonic()
        while time.monotonic() < deadline:
            if self.converged_on(host):
                return time.monotonic()
            if progress and time.monotonic() >= next_print:
                obs = self.observed
                routed = sorted({str(host_of_ip(v)) for v in self.router_state().values()})
                agents = {n: host_of_ip(self.agent_endpoint(n)) for n in self.control.agents}
                self.options.log(
                    f"  ... waiting for {host}: leader={obs.holder if obs else None} "
                    f"ec2-routes={list(obs.route_hosts) if obs else []} "
                    f"vtep={host_of_ip(obs.vtep_endpoint) if obs else None} "
                    f"router={routed} "
                    f"agents={agents}"
                )
                next_print = time.monotonic() + 1.0
            time.sleep(0.05)
        raise LabError(f"not converged on {host} within {timeout_s:g}s (observed {self.observed})")

    # ---- active-active: shard owners -----------------------------------------------------------
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
        nodes = [self.agent_endpoints(n) for n in self.control.agents]
        owners: dict[int, str] = {}
        for shard in plan.shards:
            host = obs.shard_holders[shard.index]
            if host is None or host not in alive:
                return None
            ip = self.world.gateway_ip(host)
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
