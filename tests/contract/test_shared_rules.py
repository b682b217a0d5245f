"""The construct (synth time) and the runtime (start-up) accept and refuse the same values.

One table drives both sides: each row is run through the construct library's own checks and
through the daemon's `load_config`, and both must agree with the row. Each side's error names
its own field: the prop on the construct side, the environment variable (and flag) at run time.
(The remote node networks and the service CIDR are construct-only: the daemon never gets them.)
The rules themselves live once, in `hybrid_gateway_contract.rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from eks_hybrid_gateway import HybridGatewayConfigError, LeaderElectionTimings
from eks_hybrid_gateway.chart import validate_chart_options
from eks_hybrid_gateway.validation import validate_networks, validate_route_table_ids
from hybrid_gateway.config import ConfigError, load_config
from hybrid_gateway_contract import DEFAULT_NAMESPACE

BASE_ENV = {
    "NODE_IP": "10.0.1.10",
    "VPC_CIDR": "10.0.0.0/16",
    "POD_CIDRS": "10.80.0.0/16",
    "POD_NAME": "gw-0",
    "POD_NAMESPACE": DEFAULT_NAMESPACE,
}
NODE_NETWORK = "192.168.100.0/24"

Value = Any  # a string, a number or a tuple, depending on the setting


@dataclass(frozen=True)
class Setting:
    """How one setting reaches each side, and the names each side's error must carry."""

    prop: str
    variables: tuple[str, ...]
    construct: Callable[[Value], None]
    environ: Callable[[Value], Mapping[str, str]]


def _chart(**options: Any) -> None:
    validate_chart_options(**{"replicas": 2, "namespace": DEFAULT_NAMESPACE, **options})


def _timings(value: Value) -> LeaderElectionTimings:
    duration, deadline, retry = value
    return LeaderElectionTimings(duration, deadline, retry)


def _plan(value: Value) -> tuple[list[str], list[str]]:
    vpc, pods = value
    return list(vpc), list(pods)


SETTINGS: dict[str, Setting] = {
    "lease name": Setting(
        "lease_name",
        ("LEADER_ELECTION_ID",),
        lambda v: _chart(lease_name=v),
        lambda v: {"LEADER_ELECTION_ID": str(v)},
    ),
    "namespace": Setting(
        "namespace",
        ("POD_NAMESPACE",),
        lambda v: _chart(namespace=v),
        lambda v: {"POD_NAMESPACE": str(v)},
    ),
    "route table ID": Setting(
        "route_table_ids",
        ("ROUTE_TABLE_IDS",),
        lambda v: validate_route_table_ids("route_table_ids", [str(v)]),
        lambda v: {"ROUTE_TABLE_IDS": str(v)},
    ),
    "region": Setting(
        "aws_region",
        ("AWS_REGION",),
        lambda v: _chart(aws_region=v),
        lambda v: {"AWS_REGION": str(v)},
    ),
    "VXLAN MTU": Setting(
        "vxlan_mtu",
        ("VXLAN_MTU",),
        lambda v: _chart(vxlan_mtu=v),
        lambda v: {"VXLAN_MTU": str(v)},
    ),
    "lease timings": Setting(
        "leader_election",
        ("LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD"),
        lambda v: _chart(leader_election=_timings(v)),
        lambda v: dict(
            zip(("LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD"), map(str, v), strict=True)
        ),
    ),
    "CIDR plan": Setting(
        "cidrs",
        ("VPC_CIDR", "POD_CIDRS"),
        lambda v: validate_networks(
            vpc_cidrs=_plan(v)[0],
            remote_node_networks=[NODE_NETWORK],
            remote_pod_networks=_plan(v)[1],
            service_cidr=None,
        ),
        lambda v: {"VPC_CIDR": ",".join(_plan(v)[0]), "POD_CIDRS": ",".join(_plan(v)[1])},
    ),
}

VPC = ("10.0.0.0/16",)
PODS = ("10.80.0.0/16",)

#: (setting, value, accepted). Rows marked "drift" were accepted by one side and refused by the
#: other before the rules moved into the contract.
TABLE: list[tuple[str, Value, bool]] = [
    ("lease name", "hybrid-gateway-leader", True),
    ("lease name", "gw.leader", True),
    ("lease name", "a" * 253, True),
    ("lease name", "a..b", False),  # drift: the construct accepted it
    ("lease name", "a.-b", False),  # drift
    ("lease name", "a-.b", False),  # drift
    ("lease name", "a" * 254, False),
    ("lease name", "Hybrid", False),
    ("lease name", "a_b", False),
    ("lease name", "a.", False),
    ("namespace", "kube-system", True),
    ("namespace", "a" * 63, True),
    ("namespace", "a" * 64, False),
    ("namespace", "a.b", False),
    ("namespace", "Kube", False),
    ("route table ID", "rtb-01234567", True),
    ("route table ID", "rtb-0123456789abcdef0", True),
    ("route table ID", "rtb-0123456789ABCDEF0", False),
    ("route table ID", "rtb-012345678", False),
    ("route table ID", "main", False),
    ("region", "us-east-1", True),
    ("region", "us-gov-west-1", True),
    ("region", "cn-north-1", True),
    ("region", "eu-isoe-west-1", True),
    ("region", "us-isob-east-1", True),
    ("region", "ap-southeast-7", True),
    ("region", "mx-central-1", True),
    ("region", "eusc-de-east-1", True),  # drift: the runtime refused the European Sovereign Cloud
    ("region", "us-east-1a", False),  # drift: the construct did not check regions at all
    ("region", "US-EAST-1", False),  # drift
    ("region", "useast1", False),  # drift
    ("region", "us_east_1", False),  # drift
    ("VXLAN MTU", 576, True),
    ("VXLAN MTU", 1450, True),
    ("VXLAN MTU", 8951, True),
    ("VXLAN MTU", 575, False),
    ("VXLAN MTU", 8952, False),
    ("lease timings", (3, 2, 1), True),
    ("lease timings", (15, 10, 2), True),
    ("lease timings", (1.5, 1, 0.2), True),
    ("lease timings", (3, 3, 1), False),
    ("lease timings", (3, 2, 2), False),
    ("lease timings", (3, 4, 1), False),
    ("lease timings", (0, 2, 1), False),
    ("CIDR plan", (VPC, PODS), True),
    ("CIDR plan", (VPC, ("10.80.0.0/16", "10.81.0.0/16")), True),
    ("CIDR plan", (tuple(f"10.{i}.0.0/16" for i in range(8)), PODS), True),
    ("CIDR plan", (tuple(f"10.{i}.0.0/16" for i in range(9)), PODS), False),
    ("CIDR plan", (("10.0.0.1/16",), PODS), False),
    ("CIDR plan", (("10.0.0.0",), PODS), False),  # drift: the runtime read it as a /32
    ("CIDR plan", (VPC, ("10.0.128.0/20",)), False),
    ("CIDR plan", (VPC, ("10.80.0.0/16", "10.80.4.0/22")), False),  # drift: runtime accepted
    ("CIDR plan", (("10.0.0.0/16", "10.0.1.0/24"), PODS), False),  # drift: runtime accepted
    ("CIDR plan", (VPC, ("10.80.0.0/16", "10.80.0.0/16")), False),
    ("CIDR plan", (VPC, ("banana",)), False),
]


def _construct_refusal(setting: Setting, value: Value) -> str | None:
    try:
        setting.construct(value)
    except HybridGatewayConfigError as exc:
        return str(exc)
    return None


def _runtime_refusal(setting: Setting, value: Value) -> ConfigError | None:
    try:
        load_config({**BASE_ENV, **setting.environ(value)}, [])
    except ConfigError as exc:
        return exc
    return None


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    TABLE,
    ids=[f"{name}={str(value)[:40]}" for name, value, _ in TABLE],
)
def test_construct_and_runtime_agree(name: str, value: Value, accepted: bool) -> None:
    setting = SETTINGS[name]
    construct = _construct_refusal(setting, value)
    runtime = _runtime_refusal(setting, value)
    if accepted:
        assert construct is None, construct
        assert runtime is None, runtime
        return
    assert construct is not None, f"the construct accepted {value!r}"
    assert runtime is not None, f"the runtime accepted {value!r}"
    assert runtime.variable in setting.variables, str(runtime)
    if name == "CIDR plan":
        # The address plan names the list and position: vpc_cidrs[0], remote_pod_networks[1].
        assert any(prop in construct for prop in ("vpc_cidrs", "remote_pod_networks")), construct
    else:
        assert construct.startswith(setting.prop), construct
    if isinstance(value, str | int):  # both errors quote the offending value
        assert str(value) in construct and str(value) in str(runtime)
