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
