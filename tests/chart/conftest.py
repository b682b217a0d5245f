"""Chart fixtures: each chart variant is synthesized once per session (one jsii kernel)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parents[2]
# jsii runs on the project's Node 22 (no end-of-life banner, faster); never phone home.
os.environ["PATH"] = f"{_REPO / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")

Manifest = dict[str, Any]

#: The image reference every chart variant uses.
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks-hybrid-nodes-gateway:0.1.0"


@pytest.fixture(scope="session")
def chart_objects() -> dict[str, list[Manifest]]:
    """Managed-node-group defaults, and Auto Mode with every option set."""
    import cdk8s

    from eks_hybrid_gateway import (
        AutoModeCapacityChart,
        CapacityType,
        GatewayResources,
        HybridGatewayChart,
        LeaderElectionTimings,
        MetricsExposure,
    )
    from eks_hybrid_gateway.monitoring import GatewayPodMonitorChart

    app = cdk8s.App()
    default = HybridGatewayChart(
        app,
        "default",
        image=IMAGE,
        vpc_cidrs=["10.0.0.0/16"],
        pod_cidrs=["10.85.0.0/16", "10.86.0.0/16"],
        route_table_ids=["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"],
        aws_region="us-west-2",
    )
    full = HybridGatewayChart(
        app,
        "full",
        image=IMAGE,
        vpc_cidrs=["10.0.0.0/16", "100.64.0.0/16"],
        pod_cidrs=["10.85.0.0/16"],
        route_table_ids=["rtb-0123456789abcdef0"],
        namespace="hybrid-gw",
        capacity_type=CapacityType.AUTO_MODE,
        metrics=MetricsExposure.SERVICE_AND_POD_MONITOR,
        resources=GatewayResources(cpu_request="200m", memory_limit="512Mi"),
        leader_election=LeaderElectionTimings(
            lease_duration_s=6, renew_deadline_s=4, retry_period_s=0.5
        ),
        vxlan_mtu=8950,
        debug=True,
    )
    capacity = AutoModeCapacityChart(
        app,
        "capacity",
        node_role_name="gateway-node-role",
        subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        security_group_ids=["sg-0123456789abcdef0"],
        instance_types=["c6in.xlarge"],
        max_nodes=3,
    )
    pod_monitor = GatewayPodMonitorChart(app, "pod-monitor", namespace="hybrid-gw")
    return {
        "default": list(default.to_json()),
        "full": list(full.to_json()),
        "capacity": list(capacity.to_json()),
        "pod-monitor": list(pod_monitor.to_json()),
    }


@pytest.fixture(scope="session")
def chart_image() -> str:
    return IMAGE


#: The active-active variants' address plan: 2 pod networks x 8 shards + 2 local routes = 18.
ACTIVE_ACTIVE_INPUTS: dict[str, Any] = {
    "image": IMAGE,
    "vpc_cidrs": ["10.0.0.0/16", "100.64.0.0/16"],
    "pod_cidrs": ["10.85.0.0/16", "10.86.0.0/16"],
    "route_table_ids": ["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"],
    "aws_region": "us-west-2",
    "replicas": 3,
}


@pytest.fixture(scope="session")
def active_active_objects() -> dict[str, list[Manifest]]:
    """Active-active with default shard settings, with 8 shards and a raised route quota, and
    the same inputs in active-standby mode (to diff against). A separate app: the session's
    `chart_objects` (and its snapshot) stay the active-standby charts they always were."""
    import cdk8s

    from eks_hybrid_gateway import GatewayMode, HybridGatewayChart

    app = cdk8s.App()
    charts = {
        "aa-default": HybridGatewayChart(
            app, "aa-default", mode=GatewayMode.ACTIVE_ACTIVE, **ACTIVE_ACTIVE_INPUTS
        ),
        "aa-8": HybridGatewayChart(
            app,
            "aa-8",
            mode=GatewayMode.active_active(shards=8, max_routes_per_table=100),
            **ACTIVE_ACTIVE_INPUTS,
        ),
        "as-same-inputs": HybridGatewayChart(app, "as-same-inputs", **ACTIVE_ACTIVE_INPUTS),
    }
    return {name: list(chart.to_json()) for name, chart in charts.items()}
