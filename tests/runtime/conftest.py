"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config

from hybrid_gateway_testkit.apiserver import ApiServer


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
