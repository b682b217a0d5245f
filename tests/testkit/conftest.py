"""One server process per test module (starting one per test would dominate the run time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config

from kube_test_apiserver import ApiServer


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer.start(tmp_path_factory.mktemp("kube-api"), bookmark_interval_s=0.2)
    try:
        yield server
    finally:
        server.stop()


ClientFor = Callable[[str], client.ApiClient]


@pytest.fixture(scope="module")
def client_for(shared_api: ApiServer) -> Iterator[ClientFor]:
    """`client_for(identity)`: an official-client ApiClient authenticated as that identity."""
    made: list[client.ApiClient] = []

    def make(identity: str) -> client.ApiClient:
        api = config.new_client_from_config(config_file=str(shared_api.kubeconfig(identity)))
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture(scope="module")
def admin(client_for: ClientFor) -> client.ApiClient:
    return client_for("admin")
