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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from hybrid_gateway.core.lease import validate_timing
from hybrid_gateway_contract import (
    DEFAULT_LEASE_DURATION_S,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    DEFAULT_RENEW_DEADLINE_S,
    DEFAULT_RESYNC_PERIOD_S,
    DEFAULT_RETRY_PERIOD_S,
    DEFAULT_VXLAN_MTU,
    HEALTH_PORT,
    MAX_VTEP_ENDPOINTS,
    METRICS_PORT,
    VXLAN_OVERHEAD_BYTES,
    Env,
)

MIN_MTU = 576
MAX_MTU = 9001 - VXLAN_OVERHEAD_BYTES  # AWS jumbo frames minus the VXLAN overhead

_ROUTE_TABLE_ID = re.compile(r"^rtb-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(ms|s|m)?$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


ARGUMENTS = "ARGUMENTS"  # pseudo-variable for command-line syntax errors


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names variable and value."""

    def __init__(self, variable: str, value: str | None, reason: str) -> None:
        flag = _flag(variable)
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


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(ARGUMENTS, " ".join(self._argv_seen), message)

    _argv_seen: Sequence[str] = ()


_SETTINGS: tuple[tuple[str, str], ...] = (
    (Env.NODE_IP, "node IP, the tunnel endpoint (downward API status.hostIP)"),
    (Env.VPC_CIDR, "cluster VPC CIDR(s), comma-separated"),
    (Env.POD_CIDRS, "hybrid pod CIDRs routed to the leader, comma-separated"),
    (Env.ROUTE_TABLE_IDS, "VPC route tables to program, comma-separated"),
    (Env.LEADER_ELECTION_ID, f"Lease name (default {DEFAULT_LEASE_NAME})"),
    (Env.AWS_REGION, "AWS region (default: IMDSv2 identity document)"),
    (Env.AWS_INSTANCE_ID, "this instance (default: IMDSv2 identity document)"),
    (Env.POD_NAME, "Lease holder identity (default: hostname)"),
    (Env.POD_NAMESPACE, f"namespace of the Lease and Events (default {DEFAULT_NAMESPACE})"),
    (Env.NODE_NAME, "node name, for Events and metrics"),
    (Env.DEBUG, "verbose logs (true/false)"),
    (Env.LEASE_DURATION, f"Lease duration (default {DEFAULT_LEASE_DURATION_S:g}s)"),
    (Env.RENEW_DEADLINE, f"renew deadline (default {DEFAULT_RENEW_DEADLINE_S:g}s)"),
    (Env.RETRY_PERIOD, f"retry period (default {DEFAULT_RETRY_PERIOD_S:g}s)"),
    (Env.VXLAN_MTU, f"VXLAN device MTU (default {DEFAULT_VXLAN_MTU})"),
    (Env.RESYNC_PERIOD, f"full re-check period (default {DEFAULT_RESYNC_PERIOD_S:g}s)"),
    (Env.ALLOW_ROUTE_TAKEOVER, "replace routes that target gateways/peering (default false)"),
    (Env.LOG_FORMAT, "text or json (default text)"),
    (Env.HEALTH_ADDR, f"health listen address (default :{HEALTH_PORT})"),
    (Env.METRICS_ADDR, f"metrics listen address (default :{METRICS_PORT})"),
)


def _flag(variable: str) -> str:
    return "--" + variable.lower().replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hybrid-gateway run", add_help=True)
    for variable, help_text in _SETTINGS:
        parser.add_argument(_flag(variable), dest=variable, default=None, help=help_text)
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


def _networks(
    variable: str, raw: str | None, *, maximum: int | None = None
) -> list[ipaddress.IPv4Network]:
    if raw is None or not raw.strip():
        raise ConfigError(variable, None, "give at least one CIDR, e.g. 10.0.0.0/16")
    out: list[ipaddress.IPv4Network] = []
    for part in raw.split(","):
        item = part.strip()
        try:
            net = ipaddress.IPv4Network(item, strict=True)
        except ValueError as exc:
            raise ConfigError(variable, raw, f"{item!r} is not an IPv4 CIDR ({exc})") from None
        if net in out:
            raise ConfigError(variable, raw, f"{item} is listed twice")
        out.append(net)
    if maximum is not None and len(out) > maximum:
        raise ConfigError(variable, raw, f"{len(out)} CIDRs, at most {maximum} are supported")
    return out


def _duration(variable: str, raw: str | None, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    match = _DURATION.match(raw.strip())
    if not match:
        raise ConfigError(variable, raw, "not a duration (seconds, or with unit: 500ms, 2s, 1m)")
    value = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    if value <= 0:
        raise ConfigError(variable, raw, "must be positive")
    return value


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


def load_config(environ: Mapping[str, str], argv: Sequence[str] = ()) -> Config:
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

    vpc_cidrs = _networks(Env.VPC_CIDR, get(Env.VPC_CIDR), maximum=MAX_VTEP_ENDPOINTS)
    pod_raw = get(Env.POD_CIDRS)
    pod_cidrs = _networks(Env.POD_CIDRS, pod_raw)
    for pod in pod_cidrs:
        for vpc in vpc_cidrs:
            if pod.overlaps(vpc):
                raise ConfigError(Env.POD_CIDRS, pod_raw, f"{pod} overlaps VPC CIDR {vpc}")

    tables_raw = get(Env.ROUTE_TABLE_IDS) or ""
    tables: list[str] = []
    for part in tables_raw.split(","):
        table = part.strip()
        if not table:
            continue
        if not _ROUTE_TABLE_ID.match(table):
            raise ConfigError(Env.ROUTE_TABLE_IDS, tables_raw, f"{table!r} is not a route table id")
        if table not in tables:
            tables.append(table)

    lease_name = (get(Env.LEADER_ELECTION_ID) or DEFAULT_LEASE_NAME).strip()
    if len(lease_name) > 253 or not _DNS_SUBDOMAIN.match(lease_name):
        raise ConfigError(Env.LEADER_ELECTION_ID, lease_name, "not a valid Kubernetes object name")

    region = (get(Env.AWS_REGION) or "").strip() or None
    if region is not None and not _REGION.match(region):
        raise ConfigError(Env.AWS_REGION, region, "not an AWS region name such as us-east-1")
    instance = (get(Env.AWS_INSTANCE_ID) or "").strip() or None
    if instance is not None and not _INSTANCE_ID.match(instance):
        raise ConfigError(Env.AWS_INSTANCE_ID, instance, "not an instance id such as i-0abc...")

    identity = (get(Env.POD_NAME) or "").strip() or socket.gethostname()
    if len(identity) > 253:
        raise ConfigError(Env.POD_NAME, identity, "longer than 253 characters")
    namespace = (get(Env.POD_NAMESPACE) or "").strip() or DEFAULT_NAMESPACE
    if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise ConfigError(Env.POD_NAMESPACE, namespace, "not a valid namespace name")
    node_name = (get(Env.NODE_NAME) or "").strip() or None

    lease_duration = _duration(
        Env.LEASE_DURATION, get(Env.LEASE_DURATION), DEFAULT_LEASE_DURATION_S
    )
    renew_deadline = _duration(
        Env.RENEW_DEADLINE, get(Env.RENEW_DEADLINE), DEFAULT_RENEW_DEADLINE_S
    )
    retry_period = _duration(Env.RETRY_PERIOD, get(Env.RETRY_PERIOD), DEFAULT_RETRY_PERIOD_S)
    try:
        validate_timing(lease_duration, renew_deadline, retry_period)
    except ValueError as exc:
        variable = Env.RENEW_DEADLINE if renew_deadline >= lease_duration else Env.RETRY_PERIOD
        shown = (
            get(variable)
            or f"{renew_deadline if variable == Env.RENEW_DEADLINE else retry_period:g}"
        )
        raise ConfigError(variable, shown, str(exc)) from None

    mtu_raw = get(Env.VXLAN_MTU)
    mtu = DEFAULT_VXLAN_MTU
    if mtu_raw is not None and mtu_raw.strip():
        if not mtu_raw.strip().isdigit() or not MIN_MTU <= int(mtu_raw) <= MAX_MTU:
            raise ConfigError(Env.VXLAN_MTU, mtu_raw, f"must be an integer {MIN_MTU}-{MAX_MTU}")
        mtu = int(mtu_raw)

    resync = _duration(Env.RESYNC_PERIOD, get(Env.RESYNC_PERIOD), DEFAULT_RESYNC_PERIOD_S)

    log_format = (get(Env.LOG_FORMAT) or "text").strip().lower()
    if log_format not in ("text", "json"):
        raise ConfigError(Env.LOG_FORMAT, get(Env.LOG_FORMAT), "must be text or json")

    health = _address(Env.HEALTH_ADDR, get(Env.HEALTH_ADDR), HEALTH_PORT)
    metrics = _address(Env.METRICS_ADDR, get(Env.METRICS_ADDR), METRICS_PORT)
    if health.port == metrics.port and health.host == metrics.host:
        raise ConfigError(Env.METRICS_ADDR, str(metrics), f"same address as {Env.HEALTH_ADDR}")

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
    )
