"""The operations commands read the shard settings from the chart's Deployment: what the
chart writes into the gateway container, `hybrid-gateway status/preflight/cleanup` must read
back as the same mode, shard count and route quota (ops/gather.py shard_settings)."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid_gateway.ops.gather import Target, shard_settings
from hybrid_gateway_contract import CONTAINER_NAME
from hybrid_gateway_contract.sharding import DEFAULT_MAX_ROUTES_PER_TABLE, GatewayMode

Manifest = dict[str, Any]


def _plain_env(objects: list[Manifest]) -> dict[str, str]:
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == CONTAINER_NAME
    ]
    return {v["name"]: str(v["value"]) for v in container["env"] if "value" in v}


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("aa-default", (GatewayMode.ACTIVE_ACTIVE, 4, DEFAULT_MAX_ROUTES_PER_TABLE)),
        ("aa-8", (GatewayMode.ACTIVE_ACTIVE, 8, 100)),
        ("as-same-inputs", (GatewayMode.ACTIVE_STANDBY, 4, DEFAULT_MAX_ROUTES_PER_TABLE)),
    ],
)
def test_ops_read_the_shard_settings_the_chart_writes(
    active_active_objects: dict[str, list[Manifest]],
    variant: str,
    expected: tuple[GatewayMode, int, int],
) -> None:
    read = shard_settings(Target(), _plain_env(active_active_objects[variant]))
    assert (read["mode"], read["shards"], read["max_routes_per_table"]) == expected
    assert read["setting_problems"] == ()
