"""The environment codec: each gateway variable parsed and rendered in one place, so what the
chart renders is what the daemon and the operations commands read back."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid_gateway_contract import Env, settings
from hybrid_gateway_contract.settings import SETTINGS, Address, Setting, SettingError
from hybrid_gateway_contract.sharding import GatewayMode

#: A value other than the default for every variable (what a chart may render).
CHOSEN: dict[str, Any] = {
    Env.NODE_IP: "10.0.1.10",
    Env.VPC_CIDR: ("10.0.0.0/16", "10.1.0.0/16"),
    Env.POD_CIDRS: ("10.80.0.0/16",),
    Env.ROUTE_TABLE_IDS: ("rtb-0123456789abcdef0", "rtb-01234567"),
    Env.LEADER_ELECTION_ID: "gw-leader",
    Env.AWS_REGION: "us-gov-west-1",
    Env.AWS_INSTANCE_ID: "i-0123456789abcdef0",
    Env.POD_NAME: "gateway-5d9c7-abcde",
    Env.POD_NAMESPACE: "gateway",
    Env.NODE_NAME: "ip-10-0-1-10.ec2.internal",
    Env.POD_UID: "0d6c0a3e-7f0b-4a4c-9d8e-5f1b2c3d4e5f",
    Env.DEBUG: True,
    Env.LEASE_DURATION: 15.0,
    Env.RENEW_DEADLINE: 1.5,
    Env.RETRY_PERIOD: 0.25,
    Env.VXLAN_MTU: 8951,
    Env.RESYNC_PERIOD: 90.0,
    Env.ALLOW_ROUTE_TAKEOVER: True,
    Env.LOG_FORMAT: "json",
    Env.HEALTH_ADDR: Address("127.0.0.1", 18088),
    Env.METRICS_ADDR: Address("", 20080),
    Env.MODE: GatewayMode.ACTIVE_ACTIVE,
    Env.SHARDS: 16,
    Env.MAX_ROUTES_PER_TABLE: 1000,
}


def test_every_variable_of_the_contract_has_a_setting() -> None:
    names = {value for key, value in vars(Env).items() if not key.startswith("_")}
    assert set(SETTINGS) == names == set(CHOSEN)


@pytest.mark.parametrize("variable", sorted(CHOSEN))
def test_what_is_rendered_reads_back_the_same(variable: str) -> None:
    setting = SETTINGS[variable]
    value = CHOSEN[variable]
    assert value != setting.default
    assert setting.read({variable: setting.render(value)}) == value


@pytest.mark.parametrize("variable", sorted(CHOSEN))
def test_unset_or_blank_means_the_default(variable: str) -> None:
    setting = SETTINGS[variable]
    assert setting.read({}) == setting.default
    if variable != Env.ROUTE_TABLE_IDS:  # the reference refuses a list that holds no ID
        assert setting.parse("  ") == setting.default


def test_durations_take_go_syntax_as_the_reference_flags_do() -> None:
    assert settings.LEASE_DURATION.parse("1m30s") == 90.0
    assert settings.RENEW_DEADLINE.parse("1500ms") == 1.5
    assert settings.RETRY_PERIOD.parse(" 2 ") == 2.0
    assert settings.MODE.parse("Active-Active") is GatewayMode.ACTIVE_ACTIVE


BAD: list[tuple[Setting[Any], str, str]] = [
    (settings.MODE, "both", "must be one of active-standby, active-active"),
    (settings.SHARDS, "four", "must be a positive integer"),
    (settings.MAX_ROUTES_PER_TABLE, "0", "must be a positive integer"),
    (settings.LEASE_DURATION, "3 seconds", "not a duration"),
    (settings.VXLAN_MTU, "9001", "must be an integer 576-8951"),
    (settings.ROUTE_TABLE_IDS, " , ", "set but holds no route table ID"),
    (settings.DEBUG, "maybe", "not a boolean"),
]


@pytest.mark.parametrize(("setting", "raw", "reason"), BAD, ids=[s.variable for s, _, _ in BAD])
def test_an_error_names_the_variable_and_the_value_once(
    setting: Setting[Any], raw: str, reason: str
) -> None:
    with pytest.raises(SettingError) as info:
        setting.parse(raw)
    assert str(info.value) == f"invalid {setting.variable} {raw!r}: {info.value.reason}"
    assert (info.value.variable, info.value.value) == (setting.variable, raw)
    assert info.value.reason.startswith(reason)
    assert repr(raw) not in info.value.reason and repr(raw.strip()) not in info.value.reason
