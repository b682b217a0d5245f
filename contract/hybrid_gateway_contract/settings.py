"""The gateway's environment, parsed and rendered in one place.

The chart renders these variables into the Deployment, the daemon parses them at start-up, and
the operations commands parse them again from the Deployment they read: each side goes through
the `Setting` of the variable here, so a value one side writes is one the others read the same
way, with the same default and the same error. A rule about ONE variable lives here; rules
across variables (the address plan, the order of the lease timings, the shard plan) stay in
`rules` and `sharding` and run on the parsed values.

An unset or blank variable means its default (ROUTE_TABLE_IDS alone: unset or empty, as the
reference reads it). A bad value raises `SettingError`, which names the variable and the value
once; the daemon adds the variable's flags to that line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from hybrid_gateway_contract import (
    DEFAULT_LEASE_DURATION_S,
    DEFAULT_LEASE_NAME,
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
    dns_label_problem,
    lease_name_problem,
    region_problem,
    route_table_id_problem,
    split_list,
    vxlan_mtu_problem,
)
from hybrid_gateway_contract.sharding import (
    DEFAULT_MAX_ROUTES_PER_TABLE,
    DEFAULT_SHARDS,
    GatewayMode,
)

__all__ = [
    "ALLOW_ROUTE_TAKEOVER",
    "AWS_INSTANCE_ID",
    "AWS_REGION",
    "DEBUG",
    "HEALTH_ADDR",
    "LEADER_ELECTION_ID",
    "LEASE_DURATION",
    "LOG_FORMAT",
    "MAX_ROUTES_PER_TABLE",
    "METRICS_ADDR",
    "MODE",
    "NODE_IP",
    "NODE_NAME",
    "POD_CIDRS",
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_UID",
    "RENEW_DEADLINE",
    "RESYNC_PERIOD",
    "RETRY_PERIOD",
    "ROUTE_TABLE_IDS",
    "SETTINGS",
    "SHARDS",
    "VPC_CIDR",
    "VXLAN_MTU",
    "Address",
    "Setting",
    "SettingError",
    "parse_seconds",
]

T = TypeVar("T")


class SettingError(ValueError):
    """A variable's value cannot be used: names the variable and the value once. `shown_as`
    names it otherwise in the message (the daemon adds its flags)."""

    def __init__(
        self, variable: str, value: str | None, reason: str, *, shown_as: str | None = None
    ) -> None:
        name = shown_as or variable
        if value is None:
            message = f"{name} is required: {reason}"
        else:
            message = f"invalid {name} {value!r}: {reason}"
        super().__init__(message)
        self.variable = variable
        self.value = value
        self.reason = reason


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: its default, how its text becomes a value and back.

    `decode` gets the stripped, non-blank text and raises ValueError with the reason (never
    repeating the value: the error names it). `encode` renders a value `decode` reads back.
    """

    variable: str
    default: T
    decode: Callable[[str], T]
    encode: Callable[[T], str]
    blank_is_unset: bool = True

    def parse(self, raw: str | None) -> T:
        if raw is None or (not raw.strip() if self.blank_is_unset else raw == ""):
            return self.default
        try:
            return self.decode(raw.strip())
        except ValueError as exc:
            raise SettingError(self.variable, raw, str(exc)) from None

    def read(self, environ: Mapping[str, str]) -> T:
        return self.parse(environ.get(self.variable))

    def render(self, value: T) -> str:
        return self.encode(value)


# --- Decoders: stripped, non-blank text -> value, or ValueError(reason) -------------------------
def _text(raw: str) -> str:
    return raw


def _optional_text(raw: str) -> str | None:
    return raw


def _render_optional(value: str | None) -> str:
    return value or ""


def _ipv4(raw: str) -> str | None:
    try:
        address = ipaddress.IPv4Address(raw)
    except ValueError:
        raise ValueError("not an IPv4 address") from None
    if (
        address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise ValueError("not a unicast address")
    return str(address)


def _list(raw: str) -> tuple[str, ...]:
    return tuple(split_list(raw))


def _route_table_ids(raw: str) -> tuple[str, ...]:
    """Unset or empty means no VPC routes; set but holding no ID is refused. Like the reference
    (cmd/gateway/main.go): an empty value skips the route table manager, and a value that
    parses to no ID stops the daemon ("No valid route table IDs provided")."""
    tables: list[str] = []
    for table in split_list(raw):
        problem = route_table_id_problem(table)
        if problem is not None:
            raise ValueError(f"{table!r} is {problem}")
        if table not in tables:
            tables.append(table)
    if not tables:
        raise ValueError(
            "set but holds no route table ID; list at least one, or unset it to run without "
            "VPC routes"
        )
    return tuple(tables)


def _lease_name(raw: str) -> str:
    problem = lease_name_problem(raw)
    if problem is not None:
        raise ValueError(problem)
    return raw


def _region(raw: str) -> str | None:
    problem = region_problem(raw)
    if problem is not None:
        raise ValueError(problem)
    return raw


_INSTANCE_ID: Final = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


def _instance_id(raw: str) -> str | None:
    if not _INSTANCE_ID.match(raw):
        raise ValueError("not an instance id such as i-0abc...")
    return raw


def _pod_name(raw: str) -> str | None:
    if len(raw) > 253:
        raise ValueError("longer than 253 characters")
    return raw


def _namespace(raw: str) -> str | None:
    problem = dns_label_problem(raw)
    if problem is not None:
        raise ValueError(problem)
    return raw


# Go's strconv.ParseBool spellings (the reference's --debug) and ours.
_TRUE: Final = frozenset({"1", "t", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "f", "false", "no", "off"})


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("not a boolean (true/false)")


def _render_bool(value: bool) -> str:
    return "true" if value else "false"


_SECONDS: Final = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
# Go's time.ParseDuration units, as the reference's --leader-election-* flags take them
# (`3s`, `1500ms`, `1m30s`); a bare number is seconds, as our environment settings always were.
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_seconds(text: str) -> float | None:
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


def _duration(raw: str) -> float:
    value = parse_seconds(raw)
    if value is None:
        raise ValueError("not a duration (seconds, or Go style with units: 500ms, 2s, 1m30s)")
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _render_duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _mtu(raw: str) -> int:
    if not raw.isdigit():
        raise ValueError(f"must be an integer {MIN_VXLAN_MTU}-{MAX_VXLAN_MTU}")
    problem = vxlan_mtu_problem(int(raw))
    if problem is not None:
        raise ValueError(problem)
    return int(raw)


def _positive_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError("must be a positive integer")
    return int(raw)


_LOG_FORMATS: Final = ("text", "json")


def _log_format(raw: str) -> str:
    value = raw.lower()
    if value not in _LOG_FORMATS:
        raise ValueError("must be text or json")
    return value


_MODES: Final = {mode.value: mode for mode in GatewayMode}


def _mode(raw: str) -> GatewayMode:
    mode = _MODES.get(raw.lower())
    if mode is None:
        raise ValueError(f"must be one of {', '.join(_MODES)}")
    return mode


def _render_mode(mode: GatewayMode) -> str:
    return mode.value


@dataclass(frozen=True)
class Address:
    """A listen address; host "" means every interface."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _address(raw: str) -> Address:
    if raw == "0":
        # controller-runtime reads "0" as "do not serve"; probes and metrics always serve here.
        raise ValueError("'0' (do not serve) is not supported: give [host]:port")
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        raise ValueError("expected [host]:port, e.g. :8088 or 127.0.0.1:8088")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("port must be 1-65535")
    if host:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError("host must be an IP address or empty") from None
    return Address(host.strip("[]"), int(port_text))


def _joined(values: tuple[str, ...]) -> str:
    return ",".join(values)


# --- The variables ------------------------------------------------------------------------------
NODE_IP: Final[Setting[str | None]] = Setting(Env.NODE_IP, None, _ipv4, _render_optional)
VPC_CIDR: Final[Setting[tuple[str, ...]]] = Setting(Env.VPC_CIDR, (), _list, _joined)
POD_CIDRS: Final[Setting[tuple[str, ...]]] = Setting(Env.POD_CIDRS, (), _list, _joined)
ROUTE_TABLE_IDS: Final[Setting[tuple[str, ...]]] = Setting(
    Env.ROUTE_TABLE_IDS, (), _route_table_ids, _joined, blank_is_unset=False
)
LEADER_ELECTION_ID: Final[Setting[str]] = Setting(
    Env.LEADER_ELECTION_ID, DEFAULT_LEASE_NAME, _lease_name, _text
)
AWS_REGION: Final[Setting[str | None]] = Setting(Env.AWS_REGION, None, _region, _render_optional)
AWS_INSTANCE_ID: Final[Setting[str | None]] = Setting(
    Env.AWS_INSTANCE_ID, None, _instance_id, _render_optional
)
POD_NAME: Final[Setting[str | None]] = Setting(Env.POD_NAME, None, _pod_name, _render_optional)
POD_NAMESPACE: Final[Setting[str | None]] = Setting(
    Env.POD_NAMESPACE, None, _namespace, _render_optional
)
NODE_NAME: Final[Setting[str | None]] = Setting(
    Env.NODE_NAME, None, _optional_text, _render_optional
)
POD_UID: Final[Setting[str | None]] = Setting(Env.POD_UID, None, _optional_text, _render_optional)
DEBUG: Final[Setting[bool]] = Setting(Env.DEBUG, False, _bool, _render_bool)
LEASE_DURATION: Final[Setting[float]] = Setting(
    Env.LEASE_DURATION, DEFAULT_LEASE_DURATION_S, _duration, _render_duration
)
RENEW_DEADLINE: Final[Setting[float]] = Setting(
    Env.RENEW_DEADLINE, DEFAULT_RENEW_DEADLINE_S, _duration, _render_duration
)
RETRY_PERIOD: Final[Setting[float]] = Setting(
    Env.RETRY_PERIOD, DEFAULT_RETRY_PERIOD_S, _duration, _render_duration
)
VXLAN_MTU: Final[Setting[int]] = Setting(Env.VXLAN_MTU, DEFAULT_VXLAN_MTU, _mtu, str)
RESYNC_PERIOD: Final[Setting[float]] = Setting(
    Env.RESYNC_PERIOD, DEFAULT_RESYNC_PERIOD_S, _duration, _render_duration
)
ALLOW_ROUTE_TAKEOVER: Final[Setting[bool]] = Setting(
    Env.ALLOW_ROUTE_TAKEOVER, False, _bool, _render_bool
)
LOG_FORMAT: Final[Setting[str]] = Setting(Env.LOG_FORMAT, "text", _log_format, _text)
HEALTH_ADDR: Final[Setting[Address]] = Setting(
    Env.HEALTH_ADDR, Address("", HEALTH_PORT), _address, str
)
METRICS_ADDR: Final[Setting[Address]] = Setting(
    Env.METRICS_ADDR, Address("", METRICS_PORT), _address, str
)
MODE: Final[Setting[GatewayMode]] = Setting(
    Env.MODE, GatewayMode.ACTIVE_STANDBY, _mode, _render_mode
)
SHARDS: Final[Setting[int]] = Setting(Env.SHARDS, DEFAULT_SHARDS, _positive_int, str)
MAX_ROUTES_PER_TABLE: Final[Setting[int]] = Setting(
    Env.MAX_ROUTES_PER_TABLE, DEFAULT_MAX_ROUTES_PER_TABLE, _positive_int, str
)

#: Every variable of the gateway, by name.
SETTINGS: Final[Mapping[str, Setting[object]]] = {
    setting.variable: setting  # type: ignore[misc]
    for setting in (
        NODE_IP,
        VPC_CIDR,
        POD_CIDRS,
        ROUTE_TABLE_IDS,
        LEADER_ELECTION_ID,
        AWS_REGION,
        AWS_INSTANCE_ID,
        POD_NAME,
        POD_NAMESPACE,
        NODE_NAME,
        POD_UID,
        DEBUG,
        LEASE_DURATION,
        RENEW_DEADLINE,
        RETRY_PERIOD,
        VXLAN_MTU,
        RESYNC_PERIOD,
        ALLOW_ROUTE_TAKEOVER,
        LOG_FORMAT,
        HEALTH_ADDR,
        METRICS_ADDR,
        MODE,
        SHARDS,
        MAX_ROUTES_PER_TABLE,
    )
}
