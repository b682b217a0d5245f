"""The server inside a network namespace: reachable from that namespace, driven from outside."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hybrid_gateway_testkit.netns import netns_world, run
from kube_test_apiserver import ApiServer, ApiServerError

pytestmark = pytest.mark.netns

CLIENT = """
import sys
from kubernetes import client, config
api = client.CoordinationV1Api(config.new_client_from_config(config_file=sys.argv[1]))
lease = api.create_namespaced_lease("default", {"metadata": {"name": "from-inside"}})
print(lease.metadata.resource_version)
"""


def test_server_in_a_namespace_serves_clients_in_that_namespace(tmp_path: Path) -> None:
    with netns_world() as world:
        ns = world.add("api")
        server = ApiServer.start(tmp_path, netns=ns.name)
        try:
            kubeconfig = server.kubeconfig("inside")
            rv = ns.exec(sys.executable, "-c", CLIENT, str(kubeconfig), timeout=30).strip()
            assert int(rv) > 0
            # The admin API (Unix socket) works from the root namespace ...
            writes = [r for r in server.audit() if r["identity"] == "inside"]
            assert [(r["verb"], r["status"], r["resource"]) for r in writes] == [
                ("create", 201, "leases")
            ]
            # ... while the API port only exists on the namespace's own loopback.
            port = urlsplit(server.url).port
            assert port is not None
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
                pass
        finally:
            assert server.stop() == 0
        assert run(["ip", "netns", "pids", ns.name]).split() == []  # nothing left behind


def test_a_missing_namespace_fails_start_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ApiServerError, match="hgw-missing-api"):
        ApiServer.start(tmp_path, netns="hgw-missing-api")
