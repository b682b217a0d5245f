"""`hybrid-gateway preflight | status | cleanup`: argument parsing, clients, output, exit codes.

Exit codes (report.Outcome): preflight 0 (all ok, or skipped before install), 1 (warnings), 2
(a misconfiguration found), 3 (nothing failed, but a source such as EKS, EC2 or a Kubernetes
read could not be read: incomplete, never a pass); status 0, or 1 when a source could not be
read; cleanup 0, or 1 when a change failed. A usage error exits with one line naming the flag
and its value: 64 for preflight (sysexits EX_USAGE, so it is never mistaken for its 2, "failures
found"), 2 for status and cleanup.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO, TypeVar

from hybrid_gateway_contract import (
    APP_NAME,
    DEFAULT_NAMESPACE,
    HEALTH_PORT,
    METRICS_PORT,
    settings,
)
from hybrid_gateway_contract.rules import (
    CidrEntry,
    CidrProblem,
    parse_cidr,
    region_problem,
    route_table_id_problem,
    split_list,
)
from hybrid_gateway_contract.settings import Setting
from hybrid_gateway_contract.sharding import GatewayMode, shard_count_problem

from .checks import run_checks
from .cleanup import plan_cleanup, plan_json, plan_lines
from .facts import Facts
from .gather import Target
from .report import Outcome, exit_code, results_json, results_table
from .status import ReplicaScrape, build_status, status_json, status_table

COMMANDS = ("preflight", "status", "cleanup")

T = TypeVar("T")


class UsageError(Exception):
    pass


class _PreflightParser(argparse.ArgumentParser):
    """argparse exits 2 on a bad flag; preflight's 2 means "failures found", so its usage
    errors exit with their own code."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(Outcome.USAGE.value, f"{self.prog}: error: {message}\n")


def _cidrs(flag: str) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        values = split_list(raw)
        for index, value in enumerate(values):
            problem = parse_cidr(CidrEntry(flag, index, value))
            if isinstance(problem, CidrProblem):
                raise argparse.ArgumentTypeError(str(problem))
        return tuple(values)

    return parse


def _table_ids(raw: str) -> tuple[str, ...]:
    values = split_list(raw)
    if not values:
        raise argparse.ArgumentTypeError(f"{raw!r} holds no route table ID")
    for value in values:
        problem = route_table_id_problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{value!r}: {problem}")
    return tuple(values)


_EC2_ID = re.compile(r"^(?:[0-9a-f]{8}|[0-9a-f]{17})$")  # EC2 resource IDs: 8 or 17 hex digits


def _ec2_ids(prefix: str, what: str) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        values = split_list(raw)
        if not values:
            raise argparse.ArgumentTypeError(f"{raw!r} holds no {what} ID")
        for value in values:
            if not (value.startswith(prefix) and _EC2_ID.match(value[len(prefix) :])):
                raise argparse.ArgumentTypeError(
                    f"{value!r}: not {what} ID ({prefix} and 8 or 17 hexadecimal digits)"
                )
        return tuple(values)

    return parse


def _region(raw: str) -> str:
    problem = region_problem(raw)
    if problem:
        raise argparse.ArgumentTypeError(f"{raw!r}: {problem}")
    return raw


def _flag(
    setting: Setting[T], check: Callable[[T], str | None] = lambda _: None
) -> Callable[[str], T]:
    """A flag that overrides a gateway variable, read by the variable's own codec (the
    daemon's), then `check`: a flag's value is never blank, so it is always decoded."""

    def parse(raw: str) -> T:
        try:
            value = setting.decode(raw.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r}: {exc}") from None
        problem = check(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{raw!r}: {problem}")
        return value

    return parse


def build_parser(command: str) -> argparse.ArgumentParser:
    descriptions = {
        "preflight": "Read-only checks of the account and cluster the gateway runs in.",
        "status": "Where the gateway stands now: leader, routes, VTEP config, replicas, Events.",
        "cleanup": "Remove what the gateway owns after an uninstall (dry run unless --yes).",
    }
    parser_class = _PreflightParser if command == "preflight" else argparse.ArgumentParser
    parser = parser_class(prog=f"hybrid-gateway {command}", description=descriptions[command])
    where = parser.add_argument_group("what to inspect")
    where.add_argument("--cluster", help="EKS cluster name (DescribeCluster: remoteNetworkConfig)")
    where.add_argument("--region", type=_region, help="AWS region (default: the SDK's)")
    where.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the gateway's namespace")
    where.add_argument("--deployment", default=APP_NAME, help="the gateway Deployment's name")
    where.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    where.add_argument("--context", help="kubeconfig context")
    overrides = parser.add_argument_group("overrides for what cannot be discovered")
    overrides.add_argument("--vpc-id", type=lambda raw: _ec2_ids("vpc-", "a VPC")(raw)[0])
    overrides.add_argument("--vpc-cidrs", type=_cidrs("--vpc-cidrs"))
    overrides.add_argument("--remote-node-cidrs", type=_cidrs("--remote-node-cidrs"))
    overrides.add_argument("--remote-pod-cidrs", type=_cidrs("--remote-pod-cidrs"))
    overrides.add_argument("--service-cidr", type=_cidrs("--service-cidr"))
    overrides.add_argument("--route-table-ids", type=_table_ids, help="default: ROUTE_TABLE_IDS")
    overrides.add_argument("--pod-cidrs", type=_cidrs("--pod-cidrs"), help="default: POD_CIDRS")
    overrides.add_argument(
        "--gateway-instance-ids",
        type=_ec2_ids("i-", "an instance"),
        default=(),
        help="gateway instances besides those found through pods and node labels",
    )
    overrides.add_argument("--lease-name", help="default: LEADER_ELECTION_ID")
    modes = "|".join(mode.value for mode in GatewayMode)
    overrides.add_argument("--mode", type=_flag(settings.MODE), metavar=modes, help="default: MODE")
    overrides.add_argument(
        "--shards",
        type=_flag(settings.SHARDS, shard_count_problem),
        help="active-active; default: SHARDS",
    )
    overrides.add_argument(
        "--max-routes-per-table",
        type=_flag(settings.MAX_ROUTES_PER_TABLE),
        help="default: MAX_ROUTES_PER_TABLE",
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")
    if command == "status":
        parser.add_argument(
            "--no-scrape",
            action="store_true",
            help="do not ask the replicas' own /metrics and /readyz endpoints (Kubernetes only)",
        )
        parser.add_argument("--metrics-port", type=int, default=METRICS_PORT)
        parser.add_argument("--health-port", type=int, default=HEALTH_PORT)
    if command == "cleanup":
        parser.add_argument(
            "--yes", action="store_true", help="make the changes (default: dry run)"
        )
        parser.add_argument(
            "--force", action="store_true", help="act even while the gateway is still installed"
        )
        parser.add_argument(
            "--shard-routes-only",
            action="store_true",
            help="remove only an active-active gateway's shard routes (after switching back to "
            "active-standby; give --mode active-active --shards N)",
        )
    return parser


def target_from(args: argparse.Namespace) -> Target:
    service = args.service_cidr
    if service is not None and len(service) != 1:
        raise UsageError(f"--service-cidr: exactly one CIDR expected, got {','.join(service)!r}")
    return Target(
        cluster=args.cluster,
        namespace=args.namespace,
        deployment=args.deployment,
        vpc_id=args.vpc_id,
        vpc_cidrs=args.vpc_cidrs,
        remote_node_cidrs=args.remote_node_cidrs,
        remote_pod_cidrs=args.remote_pod_cidrs,
        service_cidr=service[0] if service else None,
        route_table_ids=args.route_table_ids,
        pod_cidrs=args.pod_cidrs,
        gateway_instance_ids=args.gateway_instance_ids,
        lease_name=args.lease_name,
        mode=args.mode,
        shards=args.shards,
        max_routes_per_table=args.max_routes_per_table,
    )


def make_clients(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """EC2 and EKS clients by the SDK's conventions; the Kubernetes client from the kubeconfig
    (or in-cluster). A client that cannot be made is None, and its checks are skipped."""
    import boto3
    import botocore.config
    from kubernetes import client, config

    # AWS_REGION as the SDKs define it (botocore itself reads AWS_DEFAULT_REGION).
    session = boto3.session.Session(region_name=args.region or os.environ.get("AWS_REGION"))
    retries = botocore.config.Config(retries={"mode": "standard", "max_attempts": 5})
    ec2 = session.client("ec2", config=retries) if session.region_name else None
    eks = session.client("eks", config=retries) if session.region_name and args.cluster else None
    kube: client.ApiClient | None
    try:
        kube = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    except (config.ConfigException, OSError):
        try:
            config.load_incluster_config()
            kube = client.ApiClient()
        except config.ConfigException:
            kube = None
    return ec2, eks, kube


def collect(args: argparse.Namespace) -> tuple[Facts, Any, Any]:
    from .gather import gather

    ec2, eks, kube = make_clients(args)
    facts = gather(target_from(args), ec2=ec2, eks=eks, kube=kube)
    if ec2 is None:
        facts = _with_unavailable(facts, "ec2", "no AWS region: set AWS_REGION or --region")
    return facts, ec2, kube


def _with_unavailable(facts: Facts, source: str, why: str) -> Facts:
    from dataclasses import replace

    return replace(facts, unavailable={**facts.unavailable, source: why})


def run_preflight(args: argparse.Namespace, out: TextIO) -> int:
    facts, _, _ = collect(args)
    results = run_checks(facts)
    if args.output == "json":
        print(results_json(results, facts.unavailable, command="preflight"), file=out)
    else:
        print(results_table(results), file=out)
        for source, why in facts.unavailable.items():
            print(f"UNAVAILABLE {source}: {why}", file=out)
    # A source that could not be read is not a pass: its checks are skipped, and the run is
    # incomplete (3) unless a failure was found anyway (2).
    return exit_code(results, facts.unavailable)


def run_status(args: argparse.Namespace, out: TextIO) -> int:
    from .gather import scrape_configured, scrape_readiness

    facts, _, _ = collect(args)
    scraped: dict[str, ReplicaScrape] = {}
    if not args.no_scrape:
        for pod in facts.pods:
            if pod.host_ip:
                scraped[pod.name] = ReplicaScrape(
                    configured=scrape_configured(pod.host_ip, args.metrics_port),
                    readiness=scrape_readiness(pod.host_ip, args.health_port),
                )
    status = build_status(facts, scraped)
    print(status_json(status) if args.output == "json" else status_table(status), file=out)
    return 1 if facts.unavailable else 0


def run_cleanup(args: argparse.Namespace, out: TextIO) -> int:
    from .act import apply_cleanup

    facts, ec2, kube = collect(args)
    settings = facts.settings
    if settings is None or not settings.route_table_ids:
        raise UsageError(
            "--route-table-ids: no route tables known (no gateway Deployment to read "
            "ROUTE_TABLE_IDS from); name the tables to clean"
        )
    if not settings.pod_cidrs:
        raise UsageError("--pod-cidrs: no pod CIDRs known (no Deployment, no --cluster)")
    if "ec2" in facts.unavailable:
        print(
            f"hybrid-gateway cleanup: cannot read EC2: {facts.unavailable['ec2']}", file=sys.stderr
        )
        return 1
    if args.shard_routes_only:
        _shard_routes_only_allowed(facts, args)
    elif settings.deployment is not None and args.yes and not args.force:
        raise UsageError(
            f"--yes: the gateway Deployment {settings.namespace}/{settings.deployment} still "
            "exists and its leader would recreate what cleanup removes; uninstall it first "
            "(or pass --force)"
        )
    try:
        plan = plan_cleanup(facts, shard_routes_only=args.shard_routes_only)
    except ValueError as exc:  # names the setting: "shards 8: ...", "pod_cidrs[1]: ..."
        raise UsageError(f"cannot plan the cleanup: {exc}") from exc
    applied = apply_cleanup(plan, ec2=ec2, kube=kube) if args.yes else None
    if args.output == "json":
        print(plan_json(plan, applied=applied), file=out)
    else:
        for line in plan_lines(plan, applied=applied):
            print(line, file=out)
        if applied is None and (plan.routes.deletions or plan.delete_vtep_config):
            print("dry run: nothing changed; run again with --yes to make these changes", file=out)
    return 1 if applied else 0


def _shard_routes_only_allowed(facts: Facts, args: argparse.Namespace) -> None:
    """Shard routes may go while an active-standby gateway runs (its leader never writes
    them), not while a shard owner does (it would write them again)."""
    if facts.settings is None or not facts.settings.active_active:
        raise UsageError(
            "--shard-routes-only: no shard count: give --mode active-active and --shards (the "
            "SHARDS the active-active gateway ran with)"
        )
    if not args.yes or args.force:
        return
    unread = [f"{k}: {v}" for k, v in facts.unavailable.items() if k.startswith("kubernetes")]
    if unread:
        raise UsageError(
            f"--yes: cannot tell whether shard owners still run ({'; '.join(unread)}); "
            "pass --force to remove the shard routes anyway"
        )
    held = [lease.name for lease in facts.shard_leases.values() if lease.live(facts.now)]
    if held:
        raise UsageError(
            f"--yes: shard Lease(s) {', '.join(sorted(held))} still held: their owners would "
            "recreate the shard routes; stop the active-active replicas first (or pass --force)"
        )


RUNNERS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "preflight": run_preflight,
    "status": run_status,
    "cleanup": run_cleanup,
}


def main(command: str, argv: Sequence[str], out: TextIO | None = None) -> int:
    args = build_parser(command).parse_args(list(argv))  # exits 2 on bad flags, naming them
    try:
        return RUNNERS[command](args, out or sys.stdout)
    except UsageError as exc:
        print(f"hybrid-gateway {command}: {exc}", file=sys.stderr)
        return Outcome.USAGE.value if command == "preflight" else 2
