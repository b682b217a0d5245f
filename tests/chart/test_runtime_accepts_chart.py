"""The chart and the daemon meet here: what the Deployment sets, the runtime must accept.

Both sides import their names from the contract module, but values (duration formats, list
separators, booleans) could still drift apart; this feeds the rendered container environment,
with the downward API filled in as the kubelet would, into the runtime's own config parser.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest

from hybrid_gateway.config import load_config
from hybrid_gateway_contract import HEALTH_PORT, METRICS_PORT, Env
from hybrid_gateway_contract.sharding import GatewayMode, plan_shards

Manifest = dict[str, Any]

#: What the kubelet would put into each downward-API field the chart references.
DOWNWARD_API = {
    "status.hostIP": "10.0.1.10",
    "metadata.name": "eks-hybrid-nodes-gateway-6d9c7b5f4-x2x7q",
    "metadata.namespace": "eks-hybrid-nodes-gateway",
    "spec.nodeName": "ip-10-0-1-10.us-west-2.compute.internal",
    "metadata.uid": "0f3c8a52-6a1e-4c8e-9a51-3b1f0d5e2c77",
}


def _container(objects: list[Manifest]) -> Manifest:
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _environ(container: Manifest) -> dict[str, str]:
    environ: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            environ[var["name"]] = str(var["value"])
        else:
            environ[var["name"]] = DOWNWARD_API[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return environ


@pytest.mark.parametrize("variant", ["default", "full"])
def test_runtime_parses_the_environment_the_chart_sets(
    chart_objects: dict[str, list[Manifest]], variant: str
) -> None:
    container = _container(chart_objects[variant])
    environ = _environ(container)
    argv = list(container.get("args", []))
    command = list(container.get("command", []))
    assert command[-1:] == ["run"] or argv[:1] == ["run"], "the image must start `... run`"
    config = load_config(environ, [a for a in argv if a != "run"])

    assert config.node_ip == DOWNWARD_API["status.hostIP"]
    assert [str(c) for c in config.vpc_cidrs] == environ[Env.VPC_CIDR].split(",")
    assert [str(c) for c in config.pod_cidrs] == environ[Env.POD_CIDRS].split(",")
    assert list(config.route_table_ids) == environ[Env.ROUTE_TABLE_IDS].split(",")
    assert config.identity == DOWNWARD_API["metadata.name"]
    assert config.renew_deadline_s < config.lease_duration_s
    assert all(isinstance(c, ipaddress.IPv4Network) for c in config.pod_cidrs)


def test_full_variant_settings_reach_the_runtime(chart_objects: dict[str, list[Manifest]]) -> None:
    config = load_config(_environ(_container(chart_objects["full"])), [])
    assert (config.lease_duration_s, config.renew_deadline_s, config.retry_period_s) == (6, 4, 0.5)
    assert config.vxlan_mtu == 8950
    assert config.debug is True
    assert config.namespace == DOWNWARD_API["metadata.namespace"]


@pytest.mark.parametrize("variant", ["default", "full"])
def test_probes_and_ports_match_where_the_runtime_listens(
    chart_objects: dict[str, list[Manifest]], variant: str
) -> None:
    container = _container(chart_objects[variant])
    config = load_config(_environ(container), [])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.health_addr.port == HEALTH_PORT
    assert config.metrics_addr.port == METRICS_PORT
    assert config.health_addr.port in ports.values()
    assert config.metrics_addr.port in ports.values()
    for probe in ("livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert (ports.get(port) if isinstance(port, str) else port) == config.health_addr.port


@pytest.mark.parametrize(
    ("variant", "shards", "max_routes"), [("aa-default", 4, 500), ("aa-8", 8, 100)]
)
def test_runtime_runs_active_active_as_the_chart_sets_it(
    active_active_objects: dict[str, list[Manifest]], variant: str, shards: int, max_routes: int
) -> None:
    """The runtime parses MODE/SHARDS/MAX_ROUTES_PER_TABLE as the chart writes them and passes
    them through the same contract checks the chart ran at synth time."""
    environ = _environ(_container(active_active_objects[variant]))
    config = load_config(environ, [])
    assert config.mode is GatewayMode.ACTIVE_ACTIVE
    assert (config.shards, config.max_routes_per_table) == (shards, max_routes)
    plan = plan_shards(config.pod_cidrs, config.vpc_cidrs, config.shards)
    assert plan.count == shards
    assert plan.routes_per_table() + len(config.vpc_cidrs) <= config.max_routes_per_table
    # The downward API gives the Pod's UID, for the ownerReference of its membership Lease.
    assert environ[Env.POD_UID] == DOWNWARD_API["metadata.uid"]


def test_runtime_refuses_what_the_chart_would_refuse(
    active_active_objects: dict[str, list[Manifest]],
) -> None:
    """Same rules on both sides: shard routes over the quota are refused by both, blaming the
    same setting with the same words."""
    from eks_hybrid_gateway import GatewayMode as ChartMode
    from eks_hybrid_gateway import HybridGatewayChart, HybridGatewayConfigError
    from hybrid_gateway.config import ConfigError

    environ = _environ(_container(active_active_objects["aa-default"]))
    same_rule = re.escape("32 shards x 2 remote pod network(s) = 64 routes per route table")
    with pytest.raises(ConfigError, match=rf"MAX_ROUTES_PER_TABLE.*'50': {same_rule}"):
        load_config({**environ, Env.SHARDS: "32", Env.MAX_ROUTES_PER_TABLE: "50"}, [])
    import cdk8s

    with pytest.raises(HybridGatewayConfigError, match=rf"max_routes_per_table: 50: {same_rule}"):
        HybridGatewayChart(
            cdk8s.App(),
            "c",
            image="registry.example/gw:1",
            vpc_cidrs=environ[Env.VPC_CIDR].split(","),
            pod_cidrs=environ[Env.POD_CIDRS].split(","),
            route_table_ids=environ[Env.ROUTE_TABLE_IDS].split(","),
            mode=ChartMode.active_active(shards=32, max_routes_per_table=50),
        )
