"""`hybrid-gateway account-check`: what only a real account can show, checked once by an operator.

The tests run every other part of the gateway against emulators; these answers come from the
account itself: whether a managed node group put the launch template's tags on the gateway nodes'
primary interfaces (aws/containers-roadmap#1496: it does not) and whether the source/destination
call is allowed on them, whether ECR Public has the Cilium chart tag, which CiliumVTEPConfig
versions the cluster serves and the Cilium agents' `vtep-mask`, in which zones the gateway
instance type is offered, and whether the cleanup log group's KMS key lets a stream be written.

Dry run by default: each check prints the command an operator would type and the answer that
passes; `--execute` runs them (boto3, the Kubernetes client, the OCI registry API) and prints
what was seen. Exit codes: 0 all passed (or dry run), 1 a check failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from hybrid_gateway.core.vtep import judge_agents
from hybrid_gateway_contract import (
    CILIUM_CONFIG_NAME,
    CILIUM_CONFIG_NAMESPACE,
    CILIUM_GROUP,
    GATEWAY_NODE_LABEL_KEY,
    GATEWAY_NODE_LABEL_VALUE,
    VTEP_CONFIGS_PLURAL,
)

#: The launch template's cluster tag (constructs/eks_hybrid_gateway/capacity.py
#: ENI_CLUSTER_TAG_KEY; the runtime does not import the construct library).
CLUSTER_TAG_KEY = "hybrid-gateway-cluster"
#: Where the EKS Cilium chart lives (constructs/eks_hybrid_gateway/hybrid_cilium.py
#: EKS_CILIUM_CHART_REPOSITORY, `oci://public.ecr.aws/eks/cilium/cilium`).
ECR_PUBLIC = "https://public.ecr.aws"
CILIUM_CHART_REPOSITORY = "eks/cilium/cilium"
#: The OCI media types a Helm chart manifest is served as (helm.sh/helm/v3 pkg/registry).
_MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"


class AccountCheckUsageError(ValueError):
    """A flag is missing or malformed: named with its value."""


@dataclass(frozen=True)
class Seen:
    ok: bool
    answer: str


@dataclass(frozen=True)
class AccountCheck:
    """One question for the account: the command that asks it and the answer that passes."""

    name: str
    command: str
    expected: str
    run: Callable[[], Seen]


@dataclass(frozen=True)
class Options:
    cluster: str
    region: str
    instance_type: str
    zones: tuple[str, ...]
    chart_version: str | None
    log_group: str | None
    vpc_cidrs: tuple[ipaddress.IPv4Network, ...]
    ecr_public: str = ECR_PUBLIC


@dataclass
class Clients:
    """What `--execute` talks to; built lazily so a dry run needs no credentials."""

    ec2: Any
    logs: Any
    kube_api: Any  # kubernetes.client.ApiClient


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "")) or str(exc)
    return f"{type(exc).__name__}: {exc}"


# --- the checks ---------------------------------------------------------------------------------


def _gateway_interfaces(ec2: Any, cluster: str) -> list[dict[str, Any]]:
    """The primary (device index 0) interface of every running gateway node of the cluster."""
    found: list[dict[str, Any]] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{GATEWAY_NODE_LABEL_KEY}", "Values": [GATEWAY_NODE_LABEL_VALUE]},
            {"Name": f"tag:{CLUSTER_TAG_KEY}", "Values": [cluster]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                for eni in instance.get("NetworkInterfaces", []):
                    if eni.get("Attachment", {}).get("DeviceIndex") == 0:
                        found.append(eni)
    ids = [eni["NetworkInterfaceId"] for eni in found]
    if not ids:
        return []
    # DescribeNetworkInterfaces is the interface's own record (TagSet, SourceDestCheck).
    described: list[dict[str, Any]] = ec2.describe_network_interfaces(NetworkInterfaceIds=ids)[
        "NetworkInterfaces"
    ]
    return described


def eni_tags_check(options: Options, clients: Callable[[], Clients]) -> AccountCheck:
    def run() -> Seen:
        enis = _gateway_interfaces(clients().ec2, options.cluster)
        if not enis:
            return Seen(False, "no running gateway node carries the gateway and cluster tags")
        lines, ok = [], True
        for eni in enis:
            tags = {t["Key"]: t["Value"] for t in eni.get("TagSet", [])}
            tagged = tags.get(GATEWAY_NODE_LABEL_KEY) == GATEWAY_NODE_LABEL_VALUE
            ok = ok and eni.get("SourceDestCheck") is False
            lines.append(
                f"{eni['NetworkInterfaceId']} in {eni.get('VpcId')}: SourceDestCheck="
                f"{eni.get('SourceDestCheck')}, launch-template tags "
                f"{'present' if tagged else 'absent'}"
            )
        return Seen(ok, "; ".join(lines))

    return AccountCheck(
        "ENI-TAGS",
        f"aws ec2 describe-instances --region {options.region} --filters "
        f"Name=tag:{GATEWAY_NODE_LABEL_KEY},Values={GATEWAY_NODE_LABEL_VALUE} "
        f"Name=tag:{CLUSTER_TAG_KEY},Values={options.cluster} "
        "--query 'Reservations[].Instances[].NetworkInterfaces[?Attachment.DeviceIndex==`0`]"
        ".[NetworkInterfaceId,SourceDestCheck,TagSet]'",
        "every gateway node's primary interface has SourceDestCheck false (the boot script's "
        "call went through); its tags are shown as found: a managed node group does not apply "
        "the launch template's interface tags (aws/containers-roadmap#1496), which is why the "
        "grant is scoped by ec2:Vpc and the instance tags instead",
        run,
    )


def source_dest_dry_run_check(options: Options, clients: Callable[[], Clients]) -> AccountCheck:
    def run() -> Seen:
        ec2 = clients().ec2
        enis = _gateway_interfaces(ec2, options.cluster)
        if not enis:
            return Seen(False, "no running gateway node to ask about")
        answers, ok = [], True
        for eni in enis:
            try:
                ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=eni["NetworkInterfaceId"],
                    SourceDestCheck={"Value": False},
                    DryRun=True,
                )
                code = "no error (the call was not a dry run?)"
            except Exception as exc:  # botocore ClientError carries the answer
                code = _error_code(exc)
            ok = ok and code == "DryRunOperation"
            answers.append(f"{eni['NetworkInterfaceId']}: {code}")
        return Seen(ok, "; ".join(answers))

    return AccountCheck(
        "SOURCE-DEST-DRYRUN",
        f"aws ec2 modify-network-interface-attribute --region {options.region} "
        "--network-interface-id <primary ENI> --no-source-dest-check --dry-run  "
        "(with the gateway node role's credentials, e.g. on a gateway node)",
        "DryRunOperation (allowed); UnauthorizedOperation means the credentials used may not "
        "turn the check off on that interface",
        run,
    )


def _bearer_challenge(header: str) -> dict[str, str]:
    """`Bearer realm="...",service="...",scope="..."` as a dict."""
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "bearer":
        raise ValueError(f"not a Bearer challenge: {header!r}")
    out: dict[str, str] = {}
    for part in params.split(","):
        key, _, value = part.strip().partition("=")
        out[key] = value.strip('"')
    return out


def _head_manifest(url: str, repo: str) -> str:
    """HEAD a manifest the way an OCI client (Helm) does: anonymously, and on a 401 with a
    Bearer challenge, with a pull token from the challenge's realm (the registry token flow of
    the OCI distribution spec, distribution/distribution docs/spec/auth/token.md)."""
    headers = {"Accept": _MANIFEST_TYPES}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD", headers=headers), timeout=10
        ) as reply:
            return str(reply.headers.get("Docker-Content-Digest", "?"))
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise
        challenge = _bearer_challenge(exc.headers.get("WWW-Authenticate", ""))
    query = urllib.parse.urlencode(
        {"service": challenge.get("service", ""), "scope": f"repository:{repo}:pull"}
    )
    with urllib.request.urlopen(f"{challenge['realm']}?{query}", timeout=10) as reply:
        token = json.load(reply)["token"]
    request = urllib.request.Request(
        url, method="HEAD", headers={**headers, "Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(reply.headers.get("Docker-Content-Digest", "?"))


def cilium_chart_check(options: Options) -> AccountCheck:
    tag = options.chart_version or "<version>"
    repo = CILIUM_CHART_REPOSITORY

    def run() -> Seen:
        if options.chart_version is None:
            return Seen(False, "no --chart-version given")
        url = f"{options.ecr_public}/v2/{repo}/manifests/{options.chart_version}"
        try:
            digest = _head_manifest(url, repo)
        except urllib.error.HTTPError as exc:
            return Seen(False, f"{repo}:{options.chart_version}: HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            return Seen(False, f"{options.ecr_public} not readable: {exc}")
        return Seen(True, f"{repo}:{options.chart_version} found ({digest})")

    return AccountCheck(
        "CILIUM-CHART-TAG",
        f"helm show chart oci://public.ecr.aws/{repo} --version {tag}",
        f"the chart {tag} exists in ECR Public (the version HybridCiliumOptions installs)",
        run,
    )


def cilium_vtep_check(options: Options, clients: Callable[[], Clients]) -> AccountCheck:
    crd = f"{VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}"

    def run() -> Seen:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        api = clients().kube_api
        try:
            found = client.ApiextensionsV1Api(api).read_custom_resource_definition(crd)
            served: list[str] | None = [v.name for v in found.spec.versions if v.served]
        except ApiException as exc:
            if exc.status != 404:
                return Seen(False, f"CRD {crd}: {exc.status} {exc.reason}")
            served = None
        try:
            config = client.CoreV1Api(api).read_namespaced_config_map(
                CILIUM_CONFIG_NAME, CILIUM_CONFIG_NAMESPACE
            )
            data: dict[str, str] | None = dict(config.data or {})
        except ApiException as exc:
            if exc.status != 404:
                return Seen(False, f"cilium-config: {exc.status} {exc.reason}")
            data = None
        if served is None:
            return Seen(False, f"no {crd} CRD: Cilium without CiliumVTEPConfig support")
        if data is None:
            return Seen(False, f"no {CILIUM_CONFIG_NAMESPACE}/{CILIUM_CONFIG_NAME} ConfigMap")
        match = judge_agents(served, data, vpc_cidrs=list(options.vpc_cidrs))
        mask = data.get("vtep-mask") or "<unset: agent default 255.255.255.0>"
        seen = f"served {', '.join(served)}; vtep-mask={mask}"
        return Seen(match.problem is None, seen + (f"; {match.problem}" if match.problem else ""))

    cidrs = ",".join(map(str, options.vpc_cidrs))
    return AccountCheck(
        "CILIUM-VTEP",
        f"kubectl get crd {crd} -o jsonpath='{{.spec.versions[?(@.served)].name}}'; "
        f"kubectl -n {CILIUM_CONFIG_NAMESPACE} get configmap {CILIUM_CONFIG_NAME} "
        "-o jsonpath='{.data.vtep-mask}'",
        f"v2 served, and a vtep-mask under which VPC CIDR(s) {cidrs} are matched exactly by at "
        "most 8 endpoints (the daemon's own check, core/vtep.py judge_agents)",
        run,
    )


def instance_offerings_check(options: Options, clients: Callable[[], Clients]) -> AccountCheck:
    def run() -> Seen:
        offered: set[str] = set()
        pages = (
            clients()
            .ec2.get_paginator("describe_instance_type_offerings")
            .paginate(
                LocationType="availability-zone",
                Filters=[{"Name": "instance-type", "Values": [options.instance_type]}],
            )
        )
        for page in pages:
            offered |= {o["Location"] for o in page["InstanceTypeOfferings"]}
        missing = [zone for zone in options.zones if zone not in offered]
        seen = f"offered in {', '.join(sorted(offered)) or 'no zone'}"
        return Seen(not missing, seen + (f"; not in {', '.join(missing)}" if missing else ""))

    return AccountCheck(
        "INSTANCE-TYPE-ZONES",
        f"aws ec2 describe-instance-type-offerings --region {options.region} --location-type "
        f"availability-zone --filters Name=instance-type,Values={options.instance_type} "
        "--query 'InstanceTypeOfferings[].Location'",
        f"{options.instance_type} offered in every gateway node zone: {', '.join(options.zones)}",
        run,
    )


def log_stream_check(options: Options, clients: Callable[[], Clients]) -> AccountCheck:
    group = options.log_group or "<cleanup log group>"

    def run() -> Seen:
        if options.log_group is None:
            return Seen(False, "no --log-group given")
        logs = clients().logs
        found = [
            g
            for g in logs.describe_log_groups(logGroupNamePrefix=options.log_group)["logGroups"]
            if g["logGroupName"] == options.log_group
        ]
        if not found:
            return Seen(False, f"log group {options.log_group} not found")
        key = found[0].get("kmsKeyId") or "none (CloudWatch Logs' own encryption)"
        stream = f"account-check-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
        try:
            logs.create_log_stream(logGroupName=options.log_group, logStreamName=stream)
        except Exception as exc:
            return Seen(False, f"KMS key {key}: creating {stream} failed: {_error_code(exc)}")
        try:
            logs.put_log_events(
                logGroupName=options.log_group,
                logStreamName=stream,
                logEvents=[
                    {
                        "timestamp": int(dt.datetime.now(dt.UTC).timestamp() * 1000),
                        "message": "hybrid-gateway account-check",
                    }
                ],
            )
            seen = Seen(True, f"KMS key {key}: stream {stream} written")
        except Exception as exc:
            seen = Seen(False, f"KMS key {key}: writing {stream} failed: {_error_code(exc)}")
        try:
            logs.delete_log_stream(logGroupName=options.log_group, logStreamName=stream)
        except Exception as exc:
            return Seen(seen.ok, f"{seen.answer}; not removed: {_error_code(exc)}")
        return Seen(seen.ok, f"{seen.answer} and removed")

    return AccountCheck(
        "LOG-STREAM-KMS",
        f"aws logs create-log-stream --region {options.region} --log-group-name {group} "
        "--log-stream-name account-check-<time>  (then put-log-events, delete-log-stream)",
        "the stream is created and written: CloudWatch Logs may use the group's KMS key",
        run,
    )


def account_checks(options: Options, clients: Callable[[], Clients]) -> list[AccountCheck]:
    return [
        eni_tags_check(options, clients),
        source_dest_dry_run_check(options, clients),
        cilium_chart_check(options),
        cilium_vtep_check(options, clients),
        instance_offerings_check(options, clients),
        log_stream_check(options, clients),
    ]


# --- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybrid-gateway account-check",
        description="Check once, in a real account, what the emulators cannot show. Prints "
        "each command and the expected answer; --execute runs them.",
    )
    parser.add_argument("--cluster", required=True, help="the EKS cluster name")
    parser.add_argument("--region", required=True, help="the AWS Region")
    parser.add_argument("--instance-type", default="c6in.xlarge")
    parser.add_argument(
        "--zones", required=True, help="comma-separated zones of the gateway node subnets"
    )
    parser.add_argument("--vpc-cidrs", required=True, help="comma-separated VPC_CIDR")
    parser.add_argument("--chart-version", help="the EKS Cilium chart version, e.g. 1.18.8-1")
    parser.add_argument("--log-group", help="the route cleanup's log group name")
    parser.add_argument("--execute", action="store_true", help="run the checks (default: print)")
    return parser


def parse_options(argv: Sequence[str]) -> tuple[Options, bool]:
    args = _parser().parse_args(list(argv))
    zones = tuple(z.strip() for z in args.zones.split(",") if z.strip())
    if not zones:
        raise AccountCheckUsageError(f"--zones: {args.zones!r} names no zone")
    cidrs: list[ipaddress.IPv4Network] = []
    for raw in (c.strip() for c in args.vpc_cidrs.split(",") if c.strip()):
        try:
            cidrs.append(ipaddress.IPv4Network(raw))
        except ValueError:
            raise AccountCheckUsageError(f"--vpc-cidrs: {raw!r} is not an IPv4 CIDR") from None
    if not cidrs:
        raise AccountCheckUsageError(f"--vpc-cidrs: {args.vpc_cidrs!r} names no CIDR")
    options = Options(
        cluster=args.cluster,
        region=args.region,
        instance_type=args.instance_type,
        zones=zones,
        chart_version=args.chart_version,
        log_group=args.log_group,
        vpc_cidrs=tuple(cidrs),
    )
    return options, bool(args.execute)


def run_account_checks(checks: Sequence[AccountCheck], *, execute: bool, out: TextIO) -> int:
    """Print every check (and, executing, what was seen); 1 if any executed check failed."""
    failed = 0
    for check in checks:
        print(f"{check.name}\n  command:  {check.command}\n  expected: {check.expected}", file=out)
        if not execute:
            continue
        try:
            seen = check.run()
        except Exception as exc:  # an unreachable service is a failed check, named
            seen = Seen(False, f"could not ask: {_error_code(exc)}")
        failed += not seen.ok
        print(f"  seen:     {seen.answer}\n  result:   {'PASS' if seen.ok else 'FAIL'}", file=out)
    if not execute:
        print("dry run: nothing was called; run again with --execute", file=out)
    return 1 if failed else 0


def _clients(region: str) -> Clients:
    import boto3
    from kubernetes import config

    return Clients(
        ec2=boto3.client("ec2", region_name=region),
        logs=boto3.client("logs", region_name=region),
        kube_api=config.new_client_from_config(),
    )


def main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    try:
        options, execute = parse_options(argv)
    except AccountCheckUsageError as exc:
        print(f"hybrid-gateway account-check: {exc}", file=sys.stderr)
        return 2
    made: list[Clients] = []

    def clients() -> Clients:
        if not made:
            made.append(_clients(options.region))
        return made[0]

    return run_account_checks(account_checks(options, clients), execute=execute, out=out)
