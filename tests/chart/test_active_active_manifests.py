"""The chart in active-active mode: the env the runtime reads, the Lease RBAC it needs, and
nothing else changed against active-standby with the same inputs."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

import hybrid_gateway_contract as contract
from eks_hybrid_gateway import KUBERNETES_VERSION
from hybrid_gateway_contract import Env
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL

Manifest = dict[str, Any]
LEASES = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"]}
POD_UID = {"fieldRef": {"fieldPath": "metadata.uid"}}


def _one(objects: list[Manifest], kind: str) -> Manifest:
    """The one object of `kind`; for Role, the Lease Role in the gateway's namespace (the
    other Role reads kube-system/cilium-config, the same in both modes)."""
    [found] = [
        o
        for o in objects
        if o["kind"] == kind
        and (kind != "Role" or o["metadata"]["namespace"] == contract.DEFAULT_NAMESPACE)
    ]
    return found


def _env(objects: list[Manifest]) -> dict[str, Any]:
    [container] = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("variant", ["aa-default", "aa-8"])
def test_every_object_validates_strictly_for_the_target_version(
    active_active_objects: dict[str, list[Manifest]], variant: str
) -> None:
    objects = active_active_objects[variant]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert {o["kind"] for o in objects} >= {"Deployment", "Role", "ClusterRole"}


def test_default_shard_settings_reach_the_env(
    active_active_objects: dict[str, list[Manifest]],
) -> None:
    env = _env(active_active_objects["aa-default"])
    assert env[Env.MODE] == "active-active"
    assert env[Env.SHARDS] == "4"  # explicit: the chart says how the traffic is cut
    assert Env.MAX_ROUTES_PER_TABLE not in env  # the runtime's default, not restated
    assert env[Env.POD_UID] == POD_UID


def test_chosen_shard_settings_reach_the_env(
    active_active_objects: dict[str, list[Manifest]],
) -> None:
    env = _env(active_active_objects["aa-8"])
    assert (env[Env.MODE], env[Env.SHARDS], env[Env.MAX_ROUTES_PER_TABLE]) == (
        "active-active",
        "8",
        "100",
    )
    assert env[Env.POD_UID] == POD_UID


def test_active_standby_sets_no_active_active_env(
    active_active_objects: dict[str, list[Manifest]],
) -> None:
    env = _env(active_active_objects["as-same-inputs"])
    for name in (Env.MODE, Env.SHARDS, Env.MAX_ROUTES_PER_TABLE, Env.POD_UID):
        assert name not in env


def test_only_the_env_and_the_lease_role_differ_from_active_standby(
    active_active_objects: dict[str, list[Manifest]],
) -> None:
    def without_mode_parts(objects: list[Manifest]) -> list[Manifest]:
        stripped = copy.deepcopy(objects)
        for obj in stripped:
            if obj["kind"] == "Role" and obj["metadata"]["namespace"] == contract.DEFAULT_NAMESPACE:
                obj["rules"] = "<lease rules>"
            if obj["kind"] == "Deployment":
                [container] = obj["spec"]["template"]["spec"]["containers"]
                container["env"] = "<env>"
        return stripped

    active = active_active_objects["aa-8"]
    standby = active_active_objects["as-same-inputs"]
    assert without_mode_parts(active) == without_mode_parts(standby)
    assert _one(active, "Role") != _one(standby, "Role")
    # The shared env is the same, in the same order: active-active only appends.
    active_env = _one(active, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    standby_env = _one(standby, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert active_env[: len(standby_env)] == standby_env
    assert [e["name"] for e in active_env[len(standby_env) :]] == [
        Env.MODE,
        Env.SHARDS,
        Env.MAX_ROUTES_PER_TABLE,
        Env.POD_UID,
    ]


def test_replicas_above_two_are_one_pod_per_node(
    active_active_objects: dict[str, list[Manifest]],
) -> None:
    deployment = _one(active_active_objects["aa-default"], "Deployment")
    assert deployment["spec"]["replicas"] == 3
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    [required] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["topologyKey"] == "kubernetes.io/hostname"


def test_lease_role_is_namespaced_and_never_deletes(
    active_active_objects: dict[str, list[Manifest]],
) -> None:
    role = _one(active_active_objects["aa-default"], "Role")
    assert role["metadata"]["namespace"] == contract.DEFAULT_NAMESPACE
    assert role["rules"] == [
        {**LEASES, "verbs": ["get", "list", "patch", "update", "watch"]},
        {**LEASES, "verbs": ["create"]},
    ]
    # Leases are granted nowhere else (the ClusterRole stays the active-standby one).
    cluster_rules = _one(active_active_objects["aa-default"], "ClusterRole")["rules"]
    assert not any("leases" in r["resources"] for r in cluster_rules)
    assert cluster_rules == _one(active_active_objects["as-same-inputs"], "ClusterRole")["rules"]


# --- Validation -------------------------------------------------------------------------------


def _chart(**overrides: Any) -> Any:
    import cdk8s

    from eks_hybrid_gateway import HybridGatewayChart

    props: dict[str, Any] = {
        "image": "registry.example/gw:1",
        "vpc_cidrs": ["10.0.0.0/16"],
        "pod_cidrs": ["10.85.0.0/16"],
        "route_table_ids": ["rtb-0123456789abcdef0"],
        "mode": "active-active",
        **overrides,
    }
    return HybridGatewayChart(cdk8s.App(), "c", **props)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"lease_name": "l" * 64},
            f"lease_name: '{'l' * 64}' is longer than 63 characters: in active-active mode it "
            f"is the value of the label {LEASE_GROUP_LABEL}",
        ),
        ({"mode": "active_active"}, "mode: 'active_active' is not a gateway mode"),
        ({"shards": 3}, "shards: 3: must be a power of two from 2 to 64"),
        ({"shards": "4"}, "shards: '4' is not an integer"),
        ({"max_routes_per_table": 0}, "max_routes_per_table: 0 must be a positive integer"),
        (
            {"pod_cidrs": ["10.85.0.0/16", "10.86.0.0/31"], "shards": 4},
            "shards: 4: remote pod network 10.86.0.0/31 cannot be cut into that many prefixes "
            "(they would be /33)",
        ),
        ({"pod_cidrs": ["10.86.0.300/16"]}, "pod_cidrs[0]: '10.86.0.300/16' is not a valid"),
        (
            {"mode": "active-standby", "max_routes_per_table": 100},
            "max_routes_per_table: 100 is only used in active-active mode, and mode is "
            "'active-standby'; use mode=GatewayMode.active_active(max_routes_per_table=...) or "
            "drop max_routes_per_table",
        ),
    ],
)
def test_bad_active_active_settings_are_rejected_by_name_and_value(
    overrides: dict[str, Any], message: str
) -> None:
    from eks_hybrid_gateway import HybridGatewayConfigError

    with pytest.raises(HybridGatewayConfigError, match=re.escape(message)):
        _chart(**overrides)


def test_a_long_lease_name_is_fine_in_active_standby() -> None:
    """The group label exists only in active-active mode."""
    chart = _chart(mode="active-standby", lease_name="l" * 64)
    assert chart.lease_name == "l" * 64


def test_the_mode_checks_its_own_settings_when_made() -> None:
    """`GatewayMode` is a value that refuses bad shard settings when it is made (synth time),
    by name and value, so the chart and the construct get a usable one."""
    from eks_hybrid_gateway import GatewayMode, HybridGatewayConfigError

    four: Any = "4"
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: GatewayMode.active_active(shards=3), "shards: 3: must be a power of two"),
        (lambda: GatewayMode.active_active(shards=four), "shards: '4' is not an integer"),
        (
            lambda: GatewayMode.active_active(max_routes_per_table=0),
            "max_routes_per_table: 0 must be a positive integer",
        ),
        (lambda: GatewayMode.parse("active_active"), "mode: 'active_active' is not a gateway"),
    ]
    for make, message in cases:
        with pytest.raises(HybridGatewayConfigError, match=re.escape(message)):
            make()
    standby = GatewayMode.active_standby()
    assert (standby.shards, standby.max_routes_per_table, standby.is_active_active) == (
        None,
        None,
        False,
    )
    assert GatewayMode.active_active(shards=4) == GatewayMode.ACTIVE_ACTIVE
    assert standby == GatewayMode.ACTIVE_STANDBY
    assert GatewayMode.parse("active-active", shards=8).shards == 8


def test_the_separate_shard_props_still_work_with_a_deprecation_warning() -> None:
    """The earlier API (mode as text or enum, `shards` and `max_routes_per_table` as props of their
    own) renders the same chart as the mode value, and says how to migrate."""
    import warnings

    from eks_hybrid_gateway import GatewayMode
    from hybrid_gateway_contract.sharding import GatewayMode as ModeKind

    with pytest.warns(DeprecationWarning, match=r"GatewayMode\.active_active\(shards=\.\.\."):
        old = _chart(mode=ModeKind.ACTIVE_ACTIVE, shards=8, max_routes_per_table=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = _chart(mode=GatewayMode.active_active(shards=8, max_routes_per_table=100))
        text = _chart(mode="active-active")
    assert old.mode == new.mode == GatewayMode.active_active(shards=8, max_routes_per_table=100)
    assert old.to_json() == new.to_json()
    assert text.mode == GatewayMode.ACTIVE_ACTIVE
