"""`GatewayMode`: how the replicas share the traffic, as one value that checks itself.

Shaped like cdk8s-plus's `DeploymentStrategy` (static factories whose options belong to the
strategy they configure): `GatewayMode.active_standby()` takes nothing, and
`GatewayMode.active_active(shards=..., max_routes_per_table=...)` takes the shard settings,
which mean nothing in the other mode. The value is checked when it is made (synth time), so
whoever holds one (the construct, the chart) knows its shard settings are usable; what needs
the address plan as well (`check_plan`) is checked where the plan is known. The rules are the
contract's (`hybrid_gateway_contract.sharding`), the ones the daemon runs at start-up.

Earlier the mode was an enum and the shard settings were props of their own: the enum's names
still work (`GatewayMode.ACTIVE_ACTIVE` is `active_active()` with the defaults), and the
separate `shards` / `max_routes_per_table` props still work with a DeprecationWarning.
"""

from __future__ import annotations

import ipaddress
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from eks_hybrid_gateway.validation import HybridGatewayConfigError, is_token, parse_cidr_or_token
from hybrid_gateway_contract import sharding
from hybrid_gateway_contract.sharding import GatewayMode as ModeKind
from hybrid_gateway_contract.sharding import ShardSetting

__all__ = ["GatewayMode", "ModeKind", "resolve_mode"]

#: Stands for a CIDR known only at deploy time in the shard checks: it counts as one network
#: (one route per shard, one local route) and, as a /0, can always be cut; its real size is
#: checked by the runtime at start-up.
_UNKNOWN_CIDR = ipaddress.IPv4Network("0.0.0.0/0")


def _integer(prop: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HybridGatewayConfigError(f"{prop}: {value!r} is not an integer")
    return value


@dataclass(frozen=True)
class GatewayMode:
    """How the replicas share the traffic. Make it with `active_standby()` or
    `active_active(...)`; `shards` and `max_routes_per_table` are None in active-standby."""

    kind: ModeKind
    shards: int | None = None
    max_routes_per_table: int | None = None

    #: The earlier enum's names: one leader, or every replica with the default shard settings.
    ACTIVE_STANDBY: ClassVar[GatewayMode]
    ACTIVE_ACTIVE: ClassVar[GatewayMode]

    def __post_init__(self) -> None:
        if self.kind is ModeKind.ACTIVE_STANDBY:
            for prop, value in (
                ("shards", self.shards),
                ("max_routes_per_table", self.max_routes_per_table),
            ):
                if value is not None:
                    raise HybridGatewayConfigError(
                        f"{prop}: {value} is only used in active-active mode, and mode is "
                        f"'active-standby'; use mode=GatewayMode.active_active({prop}=...) or "
                        f"drop {prop}"
                    )
            return
        shards = _integer("shards", self.shards)
        if (problem := sharding.shard_count_problem(shards)) is not None:
            raise HybridGatewayConfigError(f"shards: {shards}: {problem}")
        max_routes = _integer("max_routes_per_table", self.max_routes_per_table)
        if max_routes < 1:
            raise HybridGatewayConfigError(
                f"max_routes_per_table: {max_routes} must be a positive integer"
            )

    @staticmethod
    def active_standby() -> GatewayMode:
        """One leader, elected by Lease, carries all the traffic (the reference's model)."""
        return GatewayMode(ModeKind.ACTIVE_STANDBY)

    @staticmethod
    def active_active(
        *,
        shards: int = sharding.DEFAULT_SHARDS,
        max_routes_per_table: int = sharding.DEFAULT_MAX_ROUTES_PER_TABLE,
    ) -> GatewayMode:
        """Every replica carries the shards it owns.

        Args:
            shards: a power of two from 2 to 64: the remote pod networks are cut into that many
                prefixes, each routed to the replica owning its shard. @default 4
            max_routes_per_table: the owned tables' VPC quota "Routes per route table", which
                `shards` x remote pod networks + the tables' local routes must fit. @default 500
        """
        return GatewayMode(ModeKind.ACTIVE_ACTIVE, shards, max_routes_per_table)

    @staticmethod
    def parse(
        text: str, *, shards: int | None = None, max_routes_per_table: int | None = None
    ) -> GatewayMode:
        """The mode from its `MODE` spelling (`active-standby`, `active-active`) and optional
        shard settings, as a manifest or cdk.json context gives them."""
        kinds = {kind.value: kind for kind in ModeKind}
        kind = kinds.get(text) if isinstance(text, str) else None
        if kind is None:
            raise HybridGatewayConfigError(
                f"mode: {text!r} is not a gateway mode; use GatewayMode.active_standby() or "
                f"GatewayMode.active_active(...) (as text: {', '.join(map(repr, kinds))})"
            )
        if kind is ModeKind.ACTIVE_STANDBY:
            return GatewayMode(kind, shards, max_routes_per_table)
        return GatewayMode.active_active(
            shards=sharding.DEFAULT_SHARDS if shards is None else shards,
            max_routes_per_table=sharding.DEFAULT_MAX_ROUTES_PER_TABLE
            if max_routes_per_table is None
            else max_routes_per_table,
        )

    @property
    def is_active_active(self) -> bool:
        return self.kind is ModeKind.ACTIVE_ACTIVE

    def check_plan(
        self,
        *,
        pod_cidrs: tuple[str, Sequence[str]],
        vpc_cidrs: tuple[str, Sequence[str]],
        lease_name: str,
    ) -> None:
        """What the mode needs of the address plan and the Lease name (nothing in
        active-standby): every pod network can be cut into `shards` prefixes, the shard routes
        plus the local routes fit the quota, and the Lease name can label the Lease group.
        `pod_cidrs` and `vpc_cidrs` are (prop name, values); tokens count as one network."""
        if self.shards is None or self.max_routes_per_table is None:
            return
        problems = sharding.shard_plan_problems(
            _networks(*pod_cidrs),
            _networks(*vpc_cidrs),
            self.shards,
            max_routes_per_table=self.max_routes_per_table,
        )
        if problems:
            first = problems[0]
            prop = "shards" if first.setting is ShardSetting.SHARDS else "max_routes_per_table"
            raise HybridGatewayConfigError(f"{prop}: {first.value}: {first.reason}")
        if not is_token(lease_name) and (group := sharding.lease_group_problem(lease_name)):
            raise HybridGatewayConfigError(f"lease_name: {lease_name!r} is {group}")

    def __str__(self) -> str:
        return self.kind.value


GatewayMode.ACTIVE_STANDBY = GatewayMode.active_standby()
GatewayMode.ACTIVE_ACTIVE = GatewayMode.active_active()


def _networks(prop: str, values: Sequence[str]) -> list[ipaddress.IPv4Network]:
    """Every CIDR of a prop, in order, a deploy-time token as `_UNKNOWN_CIDR`."""
    return [
        _UNKNOWN_CIDR if network is None else network
        for network in (
            parse_cidr_or_token(prop, index, value) for index, value in enumerate(values)
        )
    ]


def resolve_mode(
    mode: GatewayMode | ModeKind | str,
    shards: int | None = None,
    max_routes_per_table: int | None = None,
) -> GatewayMode:
    """The mode from a construct's props. `mode` given as text and the separate `shards` /
    `max_routes_per_table` props are the earlier API: still accepted, the separate props with a
    DeprecationWarning; they win over the mode's own settings."""
    if shards is not None or max_routes_per_table is not None:
        warnings.warn(
            "the shards and max_routes_per_table props are deprecated: pass "
            "mode=GatewayMode.active_active(shards=..., max_routes_per_table=...)",
            DeprecationWarning,
            stacklevel=3,
        )
    if isinstance(mode, ModeKind):  # the contract's enum, as the construct exported it before
        mode = mode.value
    if isinstance(mode, GatewayMode):
        if shards is None and max_routes_per_table is None:
            return mode
        if not mode.is_active_active:
            return GatewayMode(mode.kind, shards, max_routes_per_table)  # refused, by name
        return GatewayMode.active_active(
            shards=mode.shards if shards is None else shards,  # type: ignore[arg-type]
            max_routes_per_table=mode.max_routes_per_table  # type: ignore[arg-type]
            if max_routes_per_table is None
            else max_routes_per_table,
        )
    return GatewayMode.parse(mode, shards=shards, max_routes_per_table=max_routes_per_table)
