"""The chart and the daemon meet here: what the Deployment sets, the runtime must accept.

Both sides import their names from the contract module, but values (duration formats, list
separators, booleans) could still drift apart; this feeds the rendered container environment,
with the downward API filled in as the kubelet would, into the runtime's own config parser.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from hybrid_gateway.config import load_config
from hybrid_gateway_contract import HEALTH_PORT, METRICS_PORT, Env

Manifest = dict[str, Any]

#: What the kubelet would put into each downward-API field the chart references.
DOWNWARD_API = {
    "status.hostIP": "10.0.1.10",
    "metadata.name": "eks-hybrid-nodes-gateway-6d9c7b5f4-x2x7q",
    "metadata.namespace": "eks-hybrid-nodes-gateway",
    "spec.nodeName": "ip-10-0-1-10.us-west-2.compute.internal",
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
