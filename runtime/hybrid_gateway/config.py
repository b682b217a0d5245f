"""Daemon configuration: the reference chart's environment names, plus equivalent flags.

Every value is validated before anything starts; the first bad one becomes a `ConfigError` whose
message is one line naming the variable (and its flag) and the value, so a misconfigured pod's
log says exactly what to fix. Flags win over the environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from hybrid_gateway_contract import (
    DEFAULT_LEASE_DURATION_S,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    DEFAULT_RENEW_DEADLINE_S,
    DEFAULT_RESYNC_PERIOD_S,
    DEFAULT_RETRY_PERIOD_S,
    DEFAULT_VXLAN_MTU,
    HEALTH_PORT,
    METRICS_PORT,
    Env,
)
from hybrid_gateway_contract.rules import (
    MAX_VXLAN_MTU,
    MIN_VXLAN_MTU,
    CidrField,
    CidrProblemKind,
    LeaseTiming,
    NetworkRole,
    check_cidr_plan,
    dns_label_problem,
    lease_name_problem,
    lease_timing_problem,
    region_problem,
    route_table_id_problem,
    split_list,
    vxlan_mtu_problem,
)
from hybrid_gateway_contract.sharding import (
    DEFAULT_MAX_ROUTES_PER_TABLE,
    DEFAULT_SHARDS,
    GatewayMode,
    ShardPlan,
    ShardSetting,
    lease_group_problem,
    plan_shards,
    shard_plan_problems,
)

#: Where Kubernetes mounts the pod's namespace with its service account token. The reference
#: finds its Lease namespace there (controller-runtime pkg/leaderelection getInClusterNamespace:
#: its chart sets no POD_NAMESPACE), so we read it when POD_NAMESPACE is not set.
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

_INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_SECONDS = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
# Go's time.ParseDuration units, as the reference's --leader-election-* flags take them
# (`3s`, `1500ms`, `1m30s`); a bare number is seconds, as our environment settings always were.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Go's strconv.ParseBool spellings (the reference's --debug) and ours.
_TRUE = frozenset({"1", "t", "true", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "no", "off"})

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


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names variable and value."""

    def __init__(self, variable: str, value: str | None, reason: str) -> None:
        flag = " or ".join(_flags(variable)[:2]) if variable in REFERENCE_FLAGS else _flag(variable)
        if variable == ARGUMENTS:
            message = f"invalid command line {value!r}: {reason}"
        elif value is None:
            message = f"{variable} ({flag}) is required: {reason}"
        else:
            message = f"invalid {variable} ({flag}) {value!r}: {reason}"
        super().__init__(message)
        self.variable = variable
        self.value = value


@dataclass(frozen=True)
class Address:
    """A listen address; host "" means every interface."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


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
    kubeconfig: str | None = None  # --kubeconfig: overrides KUBECONFIG, as in the reference
    mode: GatewayMode = GatewayMode.ACTIVE_STANDBY
    shards: int = DEFAULT_SHARDS  # active-active only
    max_routes_per_table: int = DEFAULT_MAX_ROUTES_PER_TABLE

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
    (Env.LEADER_ELECTION_ID, f"Lease name (default {DEFAULT_LEASE_NAME})"),
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
        f"how long a silent holder keeps the Lease (default {DEFAULT_LEASE_DURATION_S:g}s)",
    ),
    (
        Env.RENEW_DEADLINE,
        "a holder that could not renew for this long stops leader work; below the lease "
        f"duration (default {DEFAULT_RENEW_DEADLINE_S:g}s)",
    ),
    (
        Env.RETRY_PERIOD,
        "renew and acquire attempt period; below the renew deadline "
        f"(default {DEFAULT_RETRY_PERIOD_S:g}s)",
    ),
    (
        Env.VXLAN_MTU,
        f"hybrid_vxlan0 MTU, {MIN_VXLAN_MTU}-{MAX_VXLAN_MTU} (default {DEFAULT_VXLAN_MTU})",
    ),
    (
        Env.RESYNC_PERIOD,
        "full re-check of routes, VTEP config (drift repair) and tunnels "
        f"(default {DEFAULT_RESYNC_PERIOD_S:g}s)",
    ),
    (
        Env.ALLOW_ROUTE_TAKEOVER,
        "also replace pod-CIDR routes that target a transit, virtual private, NAT or internet "
        "gateway or a peering (default false)",
    ),
    (Env.LOG_FORMAT, "text, or json: one JSON object per line (default text)"),
    (Env.HEALTH_ADDR, f"/healthz and /readyz listen address (default :{HEALTH_PORT})"),
    (Env.METRICS_ADDR, f"/metrics listen address (default :{METRICS_PORT})"),
    (Env.MODE, "active-standby (default: one leader) or active-active (every replica owns shards)"),
    (
        Env.SHARDS,
        f"active-active: number of shards, a power of two from 2 to 64 (default {DEFAULT_SHARDS})",
    ),
    (
        Env.MAX_ROUTES_PER_TABLE,
        "the VPC quota of routes per route table; active-active refuses to start when its routes "
        f"plus the local routes exceed it (default {DEFAULT_MAX_ROUTES_PER_TABLE})",
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


def _ipv4(variable: str, raw: str) -> str:
    try:
        addr = ipaddress.IPv4Address(raw.strip())
    except ValueError:
        raise ConfigError(variable, raw, "not an IPv4 address") from None
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ConfigError(variable, raw, "not a unicast address")
    return str(addr)


def _cidr_plan(
    vpc_raw: str | None, pod_raw: str | None
) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network]]:
    """VPC_CIDR and POD_CIDRS through the contract's address-plan rules (shared with the CDK)."""
    raw = {Env.VPC_CIDR: vpc_raw or "", Env.POD_CIDRS: pod_raw or ""}
    vpc_items, pod_items = split_list(raw[Env.VPC_CIDR]), split_list(raw[Env.POD_CIDRS])
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


def _route_table_ids(raw: str | None) -> list[str]:
    """ROUTE_TABLE_IDS: unset or empty means no VPC routes; set to only commas is an error.

    Like the reference (cmd/gateway/main.go): an empty value skips the route table manager,
    and a value that parses to no ID stops the daemon ("No valid route table IDs provided").
    """
    if not raw:
        return []
    tables: list[str] = []
    for table in split_list(raw):
        problem = route_table_id_problem(table)
        if problem is not None:
            raise ConfigError(Env.ROUTE_TABLE_IDS, raw, f"{table!r} is {problem}")
        if table not in tables:
            tables.append(table)
    if not tables:
        raise ConfigError(
            Env.ROUTE_TABLE_IDS,
            raw,
            "set but holds no route table ID; list at least one, or unset it to run without "
            "VPC routes",
        )
    return tables


def _namespace(raw: str | None, namespace_file: Path) -> str:
    """POD_NAMESPACE, else the service account's namespace file, else the default."""
    namespace = (raw or "").strip()
    variable_value = namespace
    if not namespace:
        try:
            namespace = namespace_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            namespace = ""
        except OSError as exc:
            raise ConfigError(
                Env.POD_NAMESPACE, None, f"not set, and {namespace_file} is unreadable ({exc})"
            ) from None
        variable_value = f"{namespace} (from {namespace_file})" if namespace else ""
    namespace = namespace or DEFAULT_NAMESPACE
    problem = dns_label_problem(namespace)
    if problem is not None:
        raise ConfigError(Env.POD_NAMESPACE, variable_value or namespace, f"{problem}")
    return namespace


def _duration(variable: str, raw: str | None, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    value = _seconds(raw.strip())
    if value is None:
        raise ConfigError(
            variable, raw, "not a duration (seconds, or Go style with units: 500ms, 2s, 1m30s)"
        )
    if value <= 0:
        raise ConfigError(variable, raw, "must be positive")
    return value


def _seconds(text: str) -> float | None:
    """Seconds in `text` (a bare number, or Go's time.ParseDuration syntax), None if neither."""
    if _SECONDS.match(text):
        return float(text)
    total, position = 0.0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            return None
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    return total if position and position == len(text) else None


def _bool(variable: str, raw: str | None) -> bool:
    if raw is None or not raw.strip():
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(variable, raw, "not a boolean (true/false)")


def _address(variable: str, raw: str | None, default_port: int) -> Address:
    if raw is None or not raw.strip():
        return Address("", default_port)
    if raw.strip() == "0":
        # controller-runtime reads "0" as "do not serve"; probes and metrics always serve here.
        raise ConfigError(variable, raw, "'0' (do not serve) is not supported: give [host]:port")
    host, sep, port_text = raw.strip().rpartition(":")
    if not sep:
        raise ConfigError(variable, raw, "expected [host]:port, e.g. :8088 or 127.0.0.1:8088")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(variable, raw, "port must be 1-65535")
    if host:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ConfigError(variable, raw, "host must be an IP address or empty") from None
    return Address(host.strip("[]"), int(port_text))


def load_config(
    environ: Mapping[str, str],
    argv: Sequence[str] = (),
    *,
    namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE,
) -> Config:
    """Parse flags over the environment and validate every value; raise ConfigError."""
    parser = build_parser()
    assert isinstance(parser, _Parser)
    parser._argv_seen = list(argv)
    args = parser.parse_args(list(argv))
    flags: dict[str, str | None] = vars(args)

    def get(variable: str) -> str | None:
        flag_value = flags.get(variable)
        return flag_value if flag_value is not None else environ.get(variable)

    node_ip_raw = get(Env.NODE_IP)
    if node_ip_raw is None or not node_ip_raw.strip():
        raise ConfigError(Env.NODE_IP, None, "the node IP (downward API status.hostIP)")
    node_ip = _ipv4(Env.NODE_IP, node_ip_raw)

    vpc_cidrs, pod_cidrs = _cidr_plan(get(Env.VPC_CIDR), get(Env.POD_CIDRS))
    tables = _route_table_ids(get(Env.ROUTE_TABLE_IDS))

    lease_name = (get(Env.LEADER_ELECTION_ID) or DEFAULT_LEASE_NAME).strip()
    problem = lease_name_problem(lease_name)
    if problem is not None:
        raise ConfigError(Env.LEADER_ELECTION_ID, lease_name, problem)

    region = (get(Env.AWS_REGION) or "").strip() or None
    problem = region_problem(region) if region is not None else None
    if problem is not None:
        raise ConfigError(Env.AWS_REGION, region, problem)
    instance = (get(Env.AWS_INSTANCE_ID) or "").strip() or None
    if instance is not None and not _INSTANCE_ID.match(instance):
        raise ConfigError(Env.AWS_INSTANCE_ID, instance, "not an instance id such as i-0abc...")

    identity = (get(Env.POD_NAME) or "").strip() or socket.gethostname()
    if len(identity) > 253:
        raise ConfigError(Env.POD_NAME, identity, "longer than 253 characters")
    namespace = _namespace(get(Env.POD_NAMESPACE), namespace_file)
    node_name = (get(Env.NODE_NAME) or "").strip() or None

    lease_duration = _duration(
        Env.LEASE_DURATION, get(Env.LEASE_DURATION), DEFAULT_LEASE_DURATION_S
    )
    renew_deadline = _duration(
        Env.RENEW_DEADLINE, get(Env.RENEW_DEADLINE), DEFAULT_RENEW_DEADLINE_S
    )
    retry_period = _duration(Env.RETRY_PERIOD, get(Env.RETRY_PERIOD), DEFAULT_RETRY_PERIOD_S)
    timing = lease_timing_problem(lease_duration, renew_deadline, retry_period)
    if timing is not None:
        variable = _TIMING_VARIABLE[timing.setting]
        seconds = {
            Env.LEASE_DURATION: lease_duration,
            Env.RENEW_DEADLINE: renew_deadline,
            Env.RETRY_PERIOD: retry_period,
        }[variable]
        raise ConfigError(variable, get(variable) or f"{seconds:g}", timing.reason)

    mtu_raw = get(Env.VXLAN_MTU)
    mtu = DEFAULT_VXLAN_MTU
    if mtu_raw is not None and mtu_raw.strip():
        if not mtu_raw.strip().isdigit():
            raise ConfigError(
                Env.VXLAN_MTU, mtu_raw, f"must be an integer {MIN_VXLAN_MTU}-{MAX_VXLAN_MTU}"
            )
        mtu = int(mtu_raw)
        problem = vxlan_mtu_problem(mtu)
        if problem is not None:
            raise ConfigError(Env.VXLAN_MTU, mtu_raw, problem)

    resync = _duration(Env.RESYNC_PERIOD, get(Env.RESYNC_PERIOD), DEFAULT_RESYNC_PERIOD_S)

    log_format = (get(Env.LOG_FORMAT) or "text").strip().lower()
    if log_format not in ("text", "json"):
        raise ConfigError(Env.LOG_FORMAT, get(Env.LOG_FORMAT), "must be text or json")

    health = _address(Env.HEALTH_ADDR, get(Env.HEALTH_ADDR), HEALTH_PORT)
    metrics = _address(Env.METRICS_ADDR, get(Env.METRICS_ADDR), METRICS_PORT)
    if health.port == metrics.port and health.host == metrics.host:
        raise ConfigError(Env.METRICS_ADDR, str(metrics), f"same address as {Env.HEALTH_ADDR}")

    mode, shards, max_routes = _sharding(get, pod_cidrs, vpc_cidrs, lease_name)

    return Config(
        node_ip=node_ip,
        vpc_cidrs=tuple(vpc_cidrs),
        pod_cidrs=tuple(pod_cidrs),
        route_table_ids=tuple(tables),
        lease_name=lease_name,
        aws_region=region,
        aws_instance_id=instance,
        identity=identity,
        namespace=namespace,
        node_name=node_name,
        debug=_bool(Env.DEBUG, get(Env.DEBUG)),
        lease_duration_s=lease_duration,
        renew_deadline_s=renew_deadline,
        retry_period_s=retry_period,
        vxlan_mtu=mtu,
        resync_period_s=resync,
        allow_route_takeover=_bool(Env.ALLOW_ROUTE_TAKEOVER, get(Env.ALLOW_ROUTE_TAKEOVER)),
        log_format=log_format,
        health_addr=health,
        metrics_addr=metrics,
        dataplane=not bool(flags.get("no_dataplane")),
        kubeconfig=(flags.get("kubeconfig") or "").strip() or None,
        mode=mode,
        shards=shards,
        max_routes_per_table=max_routes,
    )


def _positive_int(variable: str, raw: str | None, default: int) -> int:
    if raw is None or not raw.strip():
        return default
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ConfigError(variable, raw, "must be a positive integer")
    return int(raw)


def _sharding(
    get: Callable[[str], str | None],
    pod_cidrs: Sequence[ipaddress.IPv4Network],
    vpc_cidrs: Sequence[ipaddress.IPv4Network],
    lease_name: str,
) -> tuple[GatewayMode, int, int]:
    """MODE, SHARDS and MAX_ROUTES_PER_TABLE through the contract's shard rules (shared with
    the construct library): in active-active mode the shard routes must fit every table."""
    raw_mode = get(Env.MODE)
    text = (raw_mode or GatewayMode.ACTIVE_STANDBY.value).strip().lower()
    modes = {mode.value: mode for mode in GatewayMode}
    if text not in modes:
        raise ConfigError(Env.MODE, raw_mode, f"must be one of {', '.join(modes)}")
    mode = modes[text]
    shards = _positive_int(Env.SHARDS, get(Env.SHARDS), DEFAULT_SHARDS)
    max_routes = _positive_int(
        Env.MAX_ROUTES_PER_TABLE, get(Env.MAX_ROUTES_PER_TABLE), DEFAULT_MAX_ROUTES_PER_TABLE
    )
    if mode is GatewayMode.ACTIVE_ACTIVE:
        problems = shard_plan_problems(
            pod_cidrs, vpc_cidrs, shards, max_routes_per_table=max_routes
        )
        if problems:
            first = problems[0]
            variable = (
                Env.SHARDS if first.setting is ShardSetting.SHARDS else Env.MAX_ROUTES_PER_TABLE
            )
            value = shards if variable == Env.SHARDS else max_routes
            raise ConfigError(variable, get(variable) or str(value), first.message)
        group = lease_group_problem(lease_name)
        if group is not None:
            raise ConfigError(Env.LEADER_ELECTION_ID, lease_name, group)
    return mode, shards, max_routes
