"""Fixtures for the data-plane tests: the tunnel world in network namespaces (overrides the
VPC `world` of tests/runtime/conftest.py here), and an admin client with helpers that create and
delete CiliumNodes in the test API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.netns import leftover_namespaces
from hybrid_gateway_testkit.tunnel_world import GATEWAY_IP, World, tunnel_world
from kube_test_apiserver import ApiServer


@pytest.fixture
def world() -> Iterator[World]:
    with tunnel_world(gateway_mac=vxlan_device_mac(GATEWAY_IP)) as w:
        tag = w.netns.tag
        yield w
    assert not [n for n in leftover_namespaces() if n.startswith(f"hgw-{tag}-")]


@pytest.fixture
def admin(kube_api: ApiServer) -> Iterator[client.CustomObjectsApi]:
    """A client of the test API server's admin identity, to change CiliumNodes with."""
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("test-admin")))
    try:
        yield client.CustomObjectsApi(api)
    finally:
        api.close()


def create(admin: client.CustomObjectsApi, obj: dict[str, Any]) -> None:
    admin.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", obj)


def delete(admin: client.CustomObjectsApi, name: str) -> None:
    admin.delete_cluster_custom_object("cilium.io", "v2", "ciliumnodes", name)
