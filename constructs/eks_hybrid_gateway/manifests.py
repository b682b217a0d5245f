"""Write the gateway's Kubernetes manifests as plain YAML, for GitOps without CDK.

    python -m eks_hybrid_gateway.manifests --out dist/manifests \\
        --image REGISTRY/eks-hybrid-nodes-gateway:TAG --vpc-cidrs 10.0.0.0/16 \\
        --pod-cidrs 10.85.0.0/16 --route-table-ids rtb-0123456789abcdef0,rtb-0123456789abcdef1

Values not given as flags come from the `eks-hybrid-gateway:manifests` context entry of
`cdk.json` (the reference values `make synth` uses) when that file exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cdk8s

import hybrid_gateway_contract as contract
from eks_hybrid_gateway.chart import CapacityType, HybridGatewayChart, MetricsExposure
from eks_hybrid_gateway.mode import GatewayMode, ModeKind
from eks_hybrid_gateway.monitoring import GatewayPodMonitorChart
from eks_hybrid_gateway.validation import HybridGatewayConfigError

CONTEXT_KEY = "eks-hybrid-gateway:manifests"
OUTPUT_FILE = "eks-hybrid-nodes-gateway.yaml"
#: The PodMonitor (`--metrics pod-monitor`) goes to its own file: its CRD may be missing.
POD_MONITOR_FILE = "eks-hybrid-nodes-gateway-podmonitor.yaml"


def _csv(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eks_hybrid_gateway.manifests", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--cdk-json",
        type=Path,
        default=Path("cdk.json"),
        help=f"read defaults from its context entry {CONTEXT_KEY!r} (default: ./cdk.json)",
    )
    parser.add_argument("--image", help="gateway image reference")
    parser.add_argument("--vpc-cidrs", type=_csv, help="VPC CIDR(s), comma-separated")
    parser.add_argument("--pod-cidrs", type=_csv, help="remote pod networks, comma-separated")
    parser.add_argument("--route-table-ids", type=_csv, help="route tables, comma-separated")
    parser.add_argument("--region", help="AWS region (default: from IMDSv2 at run time)")
    parser.add_argument("--namespace", help=f"namespace (default {contract.DEFAULT_NAMESPACE})")
    parser.add_argument(
        "--capacity-type",
        choices=[c.value for c in CapacityType],
        help="decides the rolling-update strategy (default managed-node-group)",
    )
    parser.add_argument(
        "--metrics",
        choices=[m.value for m in MetricsExposure],
        help="how Prometheus finds the metrics (default none)",
    )
    parser.add_argument(
        "--mode",
        choices=[kind.value for kind in ModeKind],
        help="how the replicas share the traffic (default active-standby)",
    )
    parser.add_argument("--replicas", type=int, help="gateway pods, one per node (default 2)")
    parser.add_argument("--shards", type=int, help="active-active: shard count (default 4)")
    parser.add_argument(
        "--max-routes-per-table",
        type=int,
        help="active-active: the route tables' VPC route quota (default 500)",
    )
    return parser


def _defaults(cdk_json: Path) -> dict[str, Any]:
    if not cdk_json.is_file():
        return {}
    context = json.loads(cdk_json.read_text()).get("context", {})
    values = context.get(CONTEXT_KEY, {})
    return dict(values) if isinstance(values, dict) else {}


def render(out: Path, settings: dict[str, Any]) -> Path:
    """Synthesize the chart with `settings` (camelCase keys, as in cdk.json) into `out`."""
    missing = [
        key for key in ("image", "vpcCidrs", "podCidrs", "routeTableIds") if not settings.get(key)
    ]
    if missing:
        raise HybridGatewayConfigError(
            f"{', '.join(missing)}: required; pass them as flags or in cdk.json context "
            f"{CONTEXT_KEY!r}"
        )
    out.mkdir(parents=True, exist_ok=True)
    app = cdk8s.App(outdir=str(out), output_file_extension=".yaml")
    namespace = settings.get("namespace") or contract.DEFAULT_NAMESPACE
    metrics = MetricsExposure(settings.get("metrics") or "none")
    HybridGatewayChart(
        app,
        OUTPUT_FILE.removesuffix(".yaml"),
        image=settings["image"],
        vpc_cidrs=settings["vpcCidrs"],
        pod_cidrs=settings["podCidrs"],
        route_table_ids=settings["routeTableIds"],
        namespace=namespace,
        aws_region=settings.get("region"),
        capacity_type=CapacityType(settings.get("capacityType") or "managed-node-group"),
        metrics=metrics,
        replicas=settings.get("replicas") or 2,
        mode=GatewayMode.parse(
            settings.get("mode") or ModeKind.ACTIVE_STANDBY.value,
            shards=settings.get("shards"),
            max_routes_per_table=settings.get("maxRoutesPerTable"),
        ),
    )
    if metrics in (MetricsExposure.POD_MONITOR, MetricsExposure.SERVICE_AND_POD_MONITOR):
        GatewayPodMonitorChart(app, POD_MONITOR_FILE.removesuffix(".yaml"), namespace=namespace)
    app.synth()
    return out / OUTPUT_FILE


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _defaults(args.cdk_json)
    for key, value in (
        ("image", args.image),
        ("vpcCidrs", args.vpc_cidrs),
        ("podCidrs", args.pod_cidrs),
        ("routeTableIds", args.route_table_ids),
        ("region", args.region),
        ("namespace", args.namespace),
        ("capacityType", args.capacity_type),
        ("metrics", args.metrics),
        ("mode", args.mode),
        ("replicas", args.replicas),
        ("shards", args.shards),
        ("maxRoutesPerTable", args.max_routes_per_table),
    ):
        if value:
            settings[key] = value
    try:
        path = render(args.out, settings)
    except HybridGatewayConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Kubernetes manifests written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
