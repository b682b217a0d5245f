"""Fixtures for the data-plane tests: the tunnel world in network namespaces (overrides the
VPC `world` of tests/runtime/conftest.py here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.netns import leftover_namespaces
from hybrid_gateway_testkit.tunnel_world import GATEWAY_IP, World, tunnel_world


@pytest.fixture
def world() -> Iterator[World]:
    with tunnel_world(gateway_mac=vxlan_device_mac(GATEWAY_IP)) as w:
        tag = w.netns.tag
        yield w
    assert not [n for n in leftover_namespaces() if n.startswith(f"hgw-{tag}-")]
