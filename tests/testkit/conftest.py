"""The test API server's conformance suite (tests/testkit/test_apiserver_*.py): it drives the
server through its public API only (`kube_test_apiserver`) and the Kubernetes API it serves.

One server process per test module (starting one per test would dominate the run time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config

from hybrid_gateway_testkit.kube_api import CILIUM_CRDS, GATEWAY_NAMESPACES
from kube_test_apiserver import ApiServer

#: The suite's sample custom resources: the Cilium CRDs (structural schemas with defaults,
#: enums, patterns and a status subresource), passed in as any user's CRDs are.
SAMPLE_CRDS = CILIUM_CRDS
#: A namespace beyond a new cluster's four, passed in at start.
SAMPLE_NAMESPACES = GATEWAY_NAMESPACES


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer.start(
        tmp_path_factory.mktemp("kube-api"),
        bookmark_interval_s=0.2,
        crds=SAMPLE_CRDS,
        namespaces=SAMPLE_NAMESPACES,
    )
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
