"""Daemon configuration: the reference chart's environment names, plus equivalent flags.

Every value is validated before anything starts; the first bad one becomes a `ConfigError` whose
message is one line naming the variable (and its flag) and the value, so a misconfigured pod's
log says exactly what to fix. Flags win over the environment. Each variable is parsed by its
`Setting` in the contract (`hybrid_gateway_contract.settings`), the codec the chart renders
with and the operations commands read with; this module adds the flags, the rules across
variables, and the fallbacks that need this host (the hostname, the namespace file). After
`load_config` nothing reads the environment again: `Config` holds every value the daemon uses.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from hybrid_gateway_contract import DEFAULT_NAMESPACE, Env, settings
from hybrid_gateway_contract.rules import (
    MAX_VXLAN_MTU,
    MIN_VXLAN_MTU,
    CidrField,
    CidrProblemKind,
    LeaseTiming,
    NetworkRole,
    check_cidr_plan,
    dns_label_problem,
    lease_timing_problem,
)
from hybrid_gateway_contract.settings import Address, Setting, SettingError
from hybrid_gateway_contract.sharding import (
    GatewayMode,
    ShardPlan,
    ShardSetting,
    lease_group_problem,
    plan_shards,
    shard_plan_problems,
)

__all__ = [
    "Address",
    "Config",
    "ConfigError",
    "ImdsSettings",
    "build_parser",
    "documented_settings",
    "load_config",
]

T = TypeVar("T")

#: Where Kubernetes mounts the pod's namespace with its service account token. The reference
#: finds its Lease namespace there (controller-runtime pkg/leaderelection getInClusterNamespace:
#: its chart sets no POD_NAMESPACE), so we read it when POD_NAMESPACE is not set.
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

#: The Kubernetes client's kubeconfig variable (the --kubeconfig flag wins over it).
KUBECONFIG_ENV = "KUBECONFIG"
#: The AWS SDKs' variables for the instance metadata service, as botocore reads them
#: (botocore/utils.py, InstanceMetadataFetcher: the endpoint, and "true" disables IMDS).
IMDS_ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
IMDS_DISABLED_ENV = "AWS_EC2_METADATA_DISABLED"
DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"

#: The reference's flag name for a setting whose flag is spelled differently here
#: (cmd/gateway/main.go). Both spellings are accepted; so is Go's single-dash form.
REFERENCE_FLAGS: Mapping[str, str] = {
    Env.METRICS_ADDR: "metrics-bind-address",
    Env.HEALTH_ADDR: "health-probe-bind-address",
    Env.LEASE_DURATION: "leader-election-lease-duration",
    Env.RENEW_DEADLINE: "leader-election-renew-deadline",
    Env.RETRY_PERIOD: "leader-election-retry-period",
}
#: Settings whose flag the reference has under the same name (single-dash form accepted too).
_REFERENCE_SAME_NAME = frozenset(
    {
        Env.NODE_IP,
        Env.VPC_CIDR,
        Env.POD_CIDRS,
        Env.ROUTE_TABLE_IDS,
        Env.LEADER_ELECTION_ID,
        Env.AWS_REGION,
        Env.AWS_INSTANCE_ID,
        Env.DEBUG,
    }
)
_TIMING_VARIABLE = {
    LeaseTiming.LEASE_DURATION: Env.LEASE_DURATION,
    LeaseTiming.RENEW_DEADLINE: Env.RENEW_DEADLINE,
    LeaseTiming.RETRY_PERIOD: Env.RETRY_PERIOD,
}


ARGUMENTS = "ARGUMENTS"  # pseudo-variable for command-line syntax errors


class ConfigError(SettingError):
    """A configuration value is missing or invalid; the message names the variable with its
    flag, and the value."""

    def __init__(self, variable: str, value: str | None, reason: str) -> None:
        flag = " or ".join(_flags(variable)[:2]) if variable in REFERENCE_FLAGS else _flag(variable)
        shown_as = "command line" if variable == ARGUMENTS else f"{variable} ({flag})"
        super().__init__(variable, value, reason, shown_as=shown_as)


@dataclass(frozen=True)
class ImdsSettings:
    """Where the instance metadata service answers, and whether it may be asked at all."""

    endpoint: str = DEFAULT_IMDS_ENDPOINT
    disabled: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ImdsSettings:
        endpoint = (environ.get(IMDS_ENDPOINT_ENV) or "").strip() or DEFAULT_IMDS_ENDPOINT
        disabled = environ.get(IMDS_DISABLED_ENV, "").strip().lower() == "true"
        return cls(endpoint.rstrip("/"), disabled)


@dataclass(frozen=True)
class Config:
    node_ip: str
    vpc_cidrs: tuple[ipaddress.IPv4Network, ...]
    pod_cidrs: tuple[ipaddress.IPv4Network, ...]
    route_table_ids: tuple[str, ...]
    lease_name: str
    aws_region: str | None
    aws_instance_id: str | None
    identity: str  # POD_NAME, else the hostname: the Lease holderIdentity
    namespace: str  # POD_NAMESPACE: where the Lease and Events live
    node_name: str | None
    debug: bool
    lease_duration_s: float
    renew_deadline_s: float
    retry_period_s: float
    vxlan_mtu: int
    resync_period_s: float
    allow_route_takeover: bool
    log_format: str
    health_addr: Address
    metrics_addr: Address
    dataplane: bool
    kubeconfig: str | None = None  # --kubeconfig, else KUBECONFIG; None: in-cluster
    mode: GatewayMode = GatewayMode.ACTIVE_STANDBY
    shards: int = settings.SHARDS.default  # active-active only
    max_routes_per_table: int = settings.MAX_ROUTES_PER_TABLE.default
    pod_uid: str | None = None  # POD_UID: owner of the active-active membership Lease
    imds: ImdsSettings = field(default_factory=ImdsSettings)

    @property
    def active_active(self) -> bool:
        return self.mode is GatewayMode.ACTIVE_ACTIVE

    def shard_plan(self) -> ShardPlan:
        """The shards of active-active mode (validated at load)."""
        return plan_shards(self.pod_cidrs, self.vpc_cidrs, self.shards)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(ARGUMENTS, " ".join(self._argv_seen), message)

    _argv_seen: Sequence[str] = ()


def _default(setting: Setting[Any]) -> str:
    """A setting's default as the environment spells it (the codec renders it)."""
    return setting.render(setting.default)


_SETTINGS: tuple[tuple[str, str], ...] = (
    (
        Env.NODE_IP,
        "required: this node's IP (downward API status.hostIP), the tunnel endpoint and the "
        "VTEP tunnelEndpoint",
    ),
    (
        Env.VPC_CIDR,
        "required: cluster VPC CIDR(s), comma-separated, at most 8 (one VTEP endpoint each)",
    ),
    (
        Env.POD_CIDRS,
        "required: hybrid pod CIDRs the VPC routes send to the gateway, comma-separated; must "
        "not overlap the VPC",
    ),
    (
        Env.ROUTE_TABLE_IDS,
        "VPC route tables to program, comma-separated (default none: no VPC routes; set but "
        "holding no ID is refused)",
    ),
    (Env.LEADER_ELECTION_ID, f"Lease name (default {_default(settings.LEADER_ELECTION_ID)})"),
    (
        Env.AWS_REGION,
        "AWS region (default: the IMDSv2 instance identity document; IMDS is link-local, so "
        "HTTP(S)_PROXY is never used for it)",
    ),
    (Env.AWS_INSTANCE_ID, "this instance (default: the IMDSv2 instance identity document)"),
    (Env.POD_NAME, "Lease holder identity (default: hostname)"),
    (
        Env.POD_NAMESPACE,
        "namespace of the Lease and Events (default: the service account's namespace file, "
        f"else {DEFAULT_NAMESPACE})",
    ),
    (Env.NODE_NAME, "node name, reported in Events and hybrid_gateway_info"),
    (Env.DEBUG, "verbose logs (true/false; a bare --debug means true)"),
    (
        Env.LEASE_DURATION,
        f"how long a silent holder keeps the Lease (default {_default(settings.LEASE_DURATION)})",
    ),
    (
        Env.RENEW_DEADLINE,
        "a holder that could not renew for this long stops leader work; below the lease "
        f"duration (default {_default(settings.RENEW_DEADLINE)})",
    ),
    (
        Env.RETRY_PERIOD,
        "renew and acquire attempt period; below the renew deadline "
        f"(default {_default(settings.RETRY_PERIOD)})",
    ),
    (
        Env.VXLAN_MTU,
        f"hybrid_vxlan0 MTU, {MIN_VXLAN_MTU}-{MAX_VXLAN_MTU} "
        f"(default {_default(settings.VXLAN_MTU)})",
    ),
    (
        Env.RESYNC_PERIOD,
        "full re-check of routes, VTEP config (drift repair) and tunnels "
        f"(default {_default(settings.RESYNC_PERIOD)})",
    ),
    (
        Env.ALLOW_ROUTE_TAKEOVER,
        "also replace pod-CIDR routes that target a transit, virtual private, NAT or internet "
        "gateway or a peering (default false)",
    ),
    (Env.LOG_FORMAT, "text, or json: one JSON object per line (default text)"),
    (
        Env.HEALTH_ADDR,
        f"/healthz and /readyz listen address (default {_default(settings.HEALTH_ADDR)})",
    ),
    (Env.METRICS_ADDR, f"/metrics listen address (default {_default(settings.METRICS_ADDR)})"),
    (Env.MODE, "active-standby (default: one leader) or active-active (every replica owns shards)"),
    (
        Env.SHARDS,
        "active-active: number of shards, a power of two from 2 to 64 "
        f"(default {_default(settings.SHARDS)})",
    ),
    (
        Env.MAX_ROUTES_PER_TABLE,
        "the VPC quota of routes per route table; active-active refuses to start when its routes "
        f"plus the local routes exceed it (default {_default(settings.MAX_ROUTES_PER_TABLE)})",
    ),
)
#: Read from the environment only (set by the chart through the downward API), no flag.
_ENVIRONMENT_ONLY: tuple[tuple[str, str], ...] = (
    (
        Env.POD_UID,
        "active-active: the pod's UID; the membership Lease gets an owner reference to the pod, "
        "so Kubernetes deletes it with the pod",
    ),
)


def _flag(variable: str) -> str:
    return "--" + variable.lower().replace("_", "-")


def _flags(variable: str) -> list[str]:
    """Every spelling of a setting's flag: ours first, then the reference's (Go's `-x` too)."""
    flags = [_flag(variable)]
    reference = REFERENCE_FLAGS.get(variable)
    if reference is not None:
        flags += [f"--{reference}", f"-{reference}"]
    elif variable in _REFERENCE_SAME_NAME:
        flags.append(flags[0][1:])
    return flags


def documented_settings() -> list[tuple[str, list[str], str]]:
    """Every setting with its flags and meaning: the daemon guide's configuration table is
    generated from these rows (docs/hooks.py), the same text `hybrid-gateway run --help` shows."""
    rows = [(variable, _flags(variable), meaning) for variable, meaning in _SETTINGS]
    return rows + [(variable, [], meaning) for variable, meaning in _ENVIRONMENT_ONLY]


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: Go's flag package (the reference) has none, and a prefix that means one
    # flag today must not silently mean another when a flag is added.
    parser = _Parser(prog="hybrid-gateway run", add_help=True, allow_abbrev=False)
    for variable, help_text in _SETTINGS:
        if variable == Env.DEBUG:
            # Go bool flag: a bare `--debug` is true, `--debug=false` overrides DEBUG.
            parser.add_argument(
                *_flags(variable), dest=variable, nargs="?", const="true", help=help_text
            )
            continue
        parser.add_argument(*_flags(variable), dest=variable, default=None, help=help_text)
    # controller-runtime registers --kubeconfig on the reference's command line
    # (pkg/client/config); it wins over the KUBECONFIG variable there too.
    parser.add_argument(
        "--kubeconfig",
        "-kubeconfig",
        dest="kubeconfig",
        default=None,
        help="kubeconfig file (default: KUBECONFIG, else the in-cluster service account)",
    )
    parser.add_argument(
        "--no-dataplane",
        dest="no_dataplane",
        action="store_true",
        help="leader work only: no VXLAN device (the VTEP MAC is derived from NODE_IP)",
    )
    return parser


def _read(setting: Setting[T], raw: str | None) -> T:
    """The setting's value through the contract's codec; its error names the flag too."""
    try:
        return setting.parse(raw)
    except SettingError as exc:
        raise ConfigError(exc.variable, exc.value, exc.reason) from None


def _cidr_plan(
    vpc_raw: str | None, pod_raw: str | None
) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network]]:
    """VPC_CIDR and POD_CIDRS through the contract's address-plan rules (shared with the CDK)."""
    raw = {Env.VPC_CIDR: vpc_raw or "", Env.POD_CIDRS: pod_raw or ""}
    vpc_items, pod_items = settings.VPC_CIDR.parse(vpc_raw), settings.POD_CIDRS.parse(pod_raw)
    problems = check_cidr_plan(
        [
            CidrField(Env.VPC_CIDR, NetworkRole.VPC, vpc_items),
            CidrField(Env.POD_CIDRS, NetworkRole.REMOTE_POD, pod_items),
        ]
    )
    if problems:
        first = problems[0]
        variable = first.entries[0].field
        if first.kind is CidrProblemKind.MISSING:
            raise ConfigError(
                variable, raw[variable] or None, "give at least one CIDR, e.g. 10.0.0.0/16"
            )
        raise ConfigError(variable, raw[variable], first.message)
    return (
        [ipaddress.IPv4Network(item) for item in vpc_items],
        [ipaddress.IPv4Network(item) for item in pod_items],
    )


def _namespace(raw: str | None, namespace_file: Path) -> str:
    """POD_NAMESPACE, else the service account's namespace file, else the default."""
    namespace = _read(settings.POD_NAMESPACE, raw)
    if namespace is not None:
        return namespace
    try:
        from_file = namespace_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return DEFAULT_NAMESPACE
    except OSError as exc:
        raise ConfigError(
            Env.POD_NAMESPACE, None, f"not set, and {namespace_file} is unreadable ({exc})"
        ) from None
    if not from_file:
        return DEFAULT_NAMESPACE
    problem = dns_label_problem(from_file)
    if problem is not None:
        raise ConfigError(Env.POD_NAMESPACE, f"{from_file} (from {namespace_file})", problem)
    return from_file


def _lease_timings(get: Callable[[str], str | None]) -> tuple[float, float, float]:
    """The three lease timings, each valid alone, then in the order the election needs."""
    timings = {
        setting.variable: _read(setting, get(setting.variable))
        for setting in (settings.LEASE_DURATION, settings.RENEW_DEADLINE, settings.RETRY_PERIOD)
    }
    lease_duration, renew_deadline, retry_period = timings.values()
    problem = lease_timing_problem(lease_duration, renew_deadline, retry_period)
    if problem is not None:
        variable = _TIMING_VARIABLE[problem.setting]
        raise ConfigError(variable, get(variable) or f"{problem.value_s:g}", problem.reason)
    return lease_duration, renew_deadline, retry_period


def load_config(
    environ: Mapping[str, str],
    argv: Sequence[str] = (),
    *,
    namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE,
) -> Config:
    """Parse flags over the environment and validate every value; raise ConfigError.

    Everything the daemon later reads from its environment is read here, so nothing after
    start-up needs the environment: the gateway's variables (through the contract's codec),
    KUBECONFIG (the --kubeconfig flag wins, as in the reference) and the AWS SDK's IMDS
    variables."""
    parser = build_parser()
    assert isinstance(parser, _Parser)
    parser._argv_seen = list(argv)
    args = parser.parse_args(list(argv))
    flags: dict[str, str | None] = vars(args)

    def get(variable: str) -> str | None:
        flag_value = flags.get(variable)
        return flag_value if flag_value is not None else environ.get(variable)

    def read(setting: Setting[T]) -> T:
        return _read(setting, get(setting.variable))

    node_ip = read(settings.NODE_IP)
    if node_ip is None:
        raise ConfigError(Env.NODE_IP, None, "the node IP (downward API status.hostIP)")
    vpc_cidrs, pod_cidrs = _cidr_plan(get(Env.VPC_CIDR), get(Env.POD_CIDRS))
    tables = read(settings.ROUTE_TABLE_IDS)
    lease_name = read(settings.LEADER_ELECTION_ID)
    region = read(settings.AWS_REGION)
    instance = read(settings.AWS_INSTANCE_ID)
    identity = read(settings.POD_NAME) or socket.gethostname()
    namespace = _namespace(get(Env.POD_NAMESPACE), namespace_file)
    node_name = read(settings.NODE_NAME)
    lease_duration, renew_deadline, retry_period = _lease_timings(get)
    mtu = read(settings.VXLAN_MTU)
    resync = read(settings.RESYNC_PERIOD)
    log_format = read(settings.LOG_FORMAT)
    health = read(settings.HEALTH_ADDR)
    metrics = read(settings.METRICS_ADDR)
    if health.port == metrics.port and health.host == metrics.host:
        raise ConfigError(Env.METRICS_ADDR, str(metrics), f"same address as {Env.HEALTH_ADDR}")
    mode, shards, max_routes = _sharding(read, pod_cidrs, vpc_cidrs, get)
    kubeconfig = (flags.get("kubeconfig") or environ.get(KUBECONFIG_ENV) or "").strip()

    return Config(
        node_ip=node_ip,
        vpc_cidrs=tuple(vpc_cidrs),
        pod_cidrs=tuple(pod_cidrs),
        route_table_ids=tables,
        lease_name=lease_name,
        aws_region=region,
        aws_instance_id=instance,
        identity=identity,
        namespace=namespace,
        node_name=node_name,
        debug=read(settings.DEBUG),
        lease_duration_s=lease_duration,
        renew_deadline_s=renew_deadline,
        retry_period_s=retry_period,
        vxlan_mtu=mtu,
        resync_period_s=resync,
        allow_route_takeover=read(settings.ALLOW_ROUTE_TAKEOVER),
        log_format=log_format,
        health_addr=health,
        metrics_addr=metrics,
        dataplane=not bool(flags.get("no_dataplane")),
        kubeconfig=kubeconfig or None,
        mode=mode,
        shards=shards,
        max_routes_per_table=max_routes,
        pod_uid=(read(settings.POD_UID) or None),
        imds=ImdsSettings.from_environ(environ),
    )


def _sharding(
    read: Callable[[Setting[Any]], Any],
    pod_cidrs: Sequence[ipaddress.IPv4Network],
    vpc_cidrs: Sequence[ipaddress.IPv4Network],
    get: Callable[[str], str | None],
) -> tuple[GatewayMode, int, int]:
    """MODE, SHARDS and MAX_ROUTES_PER_TABLE through the contract's shard rules (shared with
    the construct library): in active-active mode the shard routes must fit every table."""
    mode: GatewayMode = read(settings.MODE)
    shards: int = read(settings.SHARDS)
    max_routes: int = read(settings.MAX_ROUTES_PER_TABLE)
    if mode is GatewayMode.ACTIVE_ACTIVE:
        problems = shard_plan_problems(
            pod_cidrs, vpc_cidrs, shards, max_routes_per_table=max_routes
        )
        if problems:
            first = problems[0]
            variable = (
                Env.SHARDS if first.setting is ShardSetting.SHARDS else Env.MAX_ROUTES_PER_TABLE
            )
            raise ConfigError(variable, get(variable) or str(first.value), first.reason)
        lease_name: str = read(settings.LEADER_ELECTION_ID)
        group = lease_group_problem(lease_name)
        if group is not None:
            raise ConfigError(Env.LEADER_ELECTION_ID, lease_name, group)
    return mode, shards, max_routes
