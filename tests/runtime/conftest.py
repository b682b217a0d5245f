"""Fixtures shared by the runtime tests: Kubernetes clients of the test API server, and an EC2
emulator (moto server) on loopback with a recording proxy in front of it and a seeded VPC
`world` (the data-plane tests override `world` with their tunnel world)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway_testkit.ec2emu import Ec2Proxy, VpcWorld, ec2_client, moto_ec2, seed_world
from kube_test_apiserver import ApiServer


@pytest.fixture
def kube_clients(
    kube_api: ApiServer,
) -> Iterator[tuple[client.ApiClient, client.CustomObjectsApi]]:
    """(the `watcher` identity's client, an admin CustomObjectsApi to change objects with)."""
    watcher = config.new_client_from_config(config_file=str(kube_api.kubeconfig("watcher")))
    admin = config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin-user")))
    try:
        yield watcher, client.CustomObjectsApi(admin)
    finally:
        watcher.close()
        admin.close()


POD_CIDRS = ["10.80.0.0/16", "10.81.0.0/16"]


@pytest.fixture(scope="session")
def moto_addr() -> Iterator[tuple[str, int]]:
    with moto_ec2() as addr:
        yield addr


@pytest.fixture
def ec2_proxy(moto_addr: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[Ec2Proxy]:
    """A proxy in front of moto, set as boto3's standard EC2 endpoint override for this test."""
    proxy = Ec2Proxy(moto_addr, label="test").start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield proxy
    proxy.stop()


@pytest.fixture
def direct(moto_addr: tuple[str, int]) -> Any:
    """An EC2 client straight to the emulator: seeding and inspection bypass the proxy."""
    host, port = moto_addr
    return ec2_client(f"http://{host}:{port}")


@pytest.fixture
def world(direct: Any) -> VpcWorld:
    return seed_world(direct, tables=3, pod_cidrs=POD_CIDRS)
