"""The control planes around the gateways, in the lab's control namespace and beside it: the
Kubernetes test API server (with the gateway's Namespace and Cilium's config), the EC2 emulator
behind its fault-injecting proxy, the VPC router that applies the emulator's route table to the
lab's packets, and the hybrid nodes' Cilium agents that follow the CiliumVTEPConfig."""

from __future__ import annotations

import ipaddress
import json
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid_gateway_contract import (
    CILIUM_CONFIG_NAME,
    CILIUM_CONFIG_NAMESPACE,
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    DEFAULT_NAMESPACE,
)
from hybrid_gateway_testkit.lab import ec2 as lab_ec2
from hybrid_gateway_testkit.lab.agent import AGENT_VTEP_MASK_KEY
from hybrid_gateway_testkit.lab.nsexec import NetnsExecutor
from hybrid_gateway_testkit.lab.options import LabError, LabOptions, wait_for
from hybrid_gateway_testkit.lab.procs import LabProcess, ProcessSet
from hybrid_gateway_testkit.lab.topology import VTEP_DEVICE, HybridNodePlan, LabPlan
from hybrid_gateway_testkit.lab.world import World

if TYPE_CHECKING:
    from kube_test_apiserver import ApiServer

MOTO_PORT = 5000
EC2_PROXY_PORT = 5001


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


class ControlPlane:
    def __init__(self, world: World, options: LabOptions, procs: ProcessSet, run_dir: Path) -> None:
        self.world = world
        self.plan = world.plan
        self.options = options
        self.procs = procs
        self.run_dir = run_dir
        self.throttle_file = run_dir / "ec2-throttle"
        self.ctl: NetnsExecutor | None = None
        self.ec2: lab_ec2.Ec2Lab | None = None
        self.apiserver: ApiServer | None = None
        self.agents: dict[str, LabProcess] = {}

    def close(self) -> None:
        """Stop the API server (after the daemons: their Leases get released) and the control
        namespace's executor; the processes are the lab's process set's to stop."""
        if self.apiserver is not None:
            try:
                self.apiserver.stop()
            except Exception as exc:  # cleanup continues whatever happened
                self.options.log(f"api server stop failed: {exc}")
            self.apiserver = None
        if self.ctl is not None:
            self.ctl.close()

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

    # ---- EC2 emulator, proxy, API server ------------------------------------------------------
    def start_ec2(self) -> None:
        w = self.world.w
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

        wait_for("the EC2 emulator", emulator_up, self.options.start_timeout_s, 0.2)
        self.ec2 = ctl.call(
            lambda: lab_ec2.create_lab(lab_ec2.ec2_client(self.moto_url), self.plan)
        )
        self.options.log(f"control: EC2 emulator {self.moto_url} (daemons use {self.ec2_url})")

    def start_apiserver(self) -> None:
        from hybrid_gateway_testkit.kube_api import start_kube_api

        self.apiserver = start_kube_api(
            self.run_dir / "apiserver",
            host=self.plan.control_ip,
            port=0,
            netns=self.world.w.control.name,
        )
        self.kube_call(lambda core, coord, custom: _ensure_namespace(core, DEFAULT_NAMESPACE))
        mask = agent_mask_for(self.plan)
        self.kube_call(lambda core, coord, custom: _publish_cilium_config(core, mask))
        self.options.log(f"control: API server {self.api.url} (Cilium vtep-mask {mask})")

    def kube_call(self, fn: Callable[[Any, Any, Any], Any]) -> Any:
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

        if self.ctl is None:
            raise LabError("the control namespace is not up: call start_ec2() first")
        return self.ctl.call(call)

    # ---- VPC router and hybrid node agents --------------------------------------------------
    def start_router(self) -> None:
        self.procs.start(
            "vpc-router",
            self.world.w.router,
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
        w = self.world.w
        for gw in self.plan.gateways:
            ns, iface = w.gateways[gw.name], w.gateway_ifaces[gw.name]
            mac = json.loads(ns.ip("-j", "link", "show", iface))[0]["address"]
            instance = self.e.instances[gw.name].instance_id
            args += ["--sdc-guard", f"{gw.name}={instance},{gw.ip},{mac}"]
        return args

    def start_agent(self, node: HybridNodePlan) -> LabProcess:
        proc = self.procs.start(
            f"agent-{node.name}",
            self.world.w.nodes[node.name],
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
        """A hybrid node joins: its namespaces, then its agent (which registers its CiliumNode)."""
        self.world.add_node(node)
        self.start_agent(node)

    def cilium_node_names(self) -> list[str]:
        listing = self.kube_call(
            lambda core, coord, custom: custom.list_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL
            )
        )
        return sorted(o["metadata"]["name"] for o in listing.get("items", []))

    def delete_cilium_node(self, name: str) -> None:
        self.kube_call(
            lambda core, coord, custom: custom.delete_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, name
            )
        )

    def patch_cilium_node(self, name: str, patch: dict[str, Any]) -> None:
        self.kube_call(
            lambda core, coord, custom: custom.patch_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, name, patch
            )
        )
