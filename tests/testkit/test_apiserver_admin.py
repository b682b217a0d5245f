"""Identities, partitions, audit and the process life cycle."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kube_test_apiserver import ApiServer, ApiServerError


def lease_api(server: ApiServer, identity: str) -> client.CoordinationV1Api:
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig(identity)))
    api_client.rest_client.pool_manager.connection_pool_kw["retries"] = False
    return client.CoordinationV1Api(api_client)


def test_unknown_token_is_401(shared_api: ApiServer) -> None:
    configuration = client.Configuration()
    configuration.host = shared_api.url
    configuration.api_key = {"authorization": "Bearer not-a-token"}
    with client.ApiClient(configuration) as api_client, pytest.raises(ApiException) as err:
        client.CoreV1Api(api_client).list_namespace()
    assert err.value.status == 401


def test_each_identity_has_its_own_token_and_kubeconfig(shared_api: ApiServer) -> None:
    a, b = shared_api.kubeconfig("gw-a"), shared_api.kubeconfig("gw-b")
    assert a != b and a.read_text() != b.read_text()
    assert shared_api.kubeconfig("gw-a") == a and shared_api.token("gw-a") == shared_api.token(
        "gw-a"
    )
    assert oct(a.stat().st_mode & 0o777) == "0o600"


def test_partition_drops_requests_until_heal(shared_api: ApiServer) -> None:
    partitioned, healthy = lease_api(shared_api, "gw-p1"), lease_api(shared_api, "gw-p2")
    partitioned.list_namespaced_lease("default")
    shared_api.partition("gw-p1")
    with pytest.raises(urllib3.exceptions.HTTPError):
        partitioned.list_namespaced_lease("default", _request_timeout=5)
    healthy.list_namespaced_lease("default")  # others are unaffected
    shared_api.heal("gw-p1")
    partitioned.list_namespaced_lease("default")
    dropped = [r for r in shared_api.audit() if r["identity"] == "gw-p1" and r.get("dropped")]
    assert dropped and all(r["status"] is None for r in dropped)
    assert {(r["verb"], r["resource"]) for r in dropped} == {("list", "leases")}


def test_hang_partition_times_out_the_client_and_never_applies_the_write(
    shared_api: ApiServer,
) -> None:
    leases = lease_api(shared_api, "gw-h")
    shared_api.partition("gw-h", hang=True)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="written-while-partitioned"))
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError):
        leases.create_namespaced_lease("default", body, _request_timeout=0.5)
    assert time.monotonic() - started >= 0.5
    shared_api.heal("gw-h")
    time.sleep(0.2)
    with pytest.raises(ApiException) as err:
        leases.read_namespaced_lease("written-while-partitioned", "default")
    assert err.value.status == 404


def test_audit_records_identity_verb_path_status_and_times(shared_api: ApiServer) -> None:
    leases = lease_api(shared_api, "gw-audit")
    before = time.monotonic()
    leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name="audited"))
    )
    with pytest.raises(ApiException):
        leases.read_namespaced_lease("not-there", "default")
    records = [r for r in shared_api.audit() if r["identity"] == "gw-audit"]
    assert [(r["verb"], r["status"]) for r in records] == [("create", 201), ("get", 404)]
    create = records[0]
    assert create["path"] == "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    assert (create["resource"], create["namespace"], create["name"]) == (
        "leases",
        "default",
        "audited",
    )
    assert create["resourceVersion"]
    assert before <= create["mono"] <= create["mono_done"] <= time.monotonic()  # same clock
    assert abs(create["wall"] - time.time()) < 60


def test_process_stops_cleanly_without_orphans(tmp_path: Path) -> None:
    server = ApiServer.start(tmp_path)
    pid = server.pid
    assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
    assert server.stop() == 0
    assert not server.running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_kube_api_fixture_serves_the_official_client(kube_api: ApiServer) -> None:
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig("fixture")))
    names = {ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items}
    assert "kube-system" in names


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


ORPHAN_PARENT = """
import sys, time
from pathlib import Path
from kube_test_apiserver import ApiServer, ApiServerError
server = ApiServer.start(Path(sys.argv[1]))
print(server.pid, flush=True)
time.sleep(60)
"""


def test_server_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert alive(server_pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not alive(server_pid):
            return
        time.sleep(0.05)
    os.kill(server_pid, signal.SIGKILL)
    raise AssertionError("the server outlived its killed parent")


def test_injected_errors_fail_the_next_requests_then_stop(shared_api: ApiServer) -> None:
    leases = lease_api(shared_api, "gw-faulty")
    shared_api.inject_errors("gw-faulty", code=503, count=2)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            leases.list_namespaced_lease("default")
        assert err.value.status == 503
    leases.list_namespaced_lease("default")
    shared_api.inject_errors(code=429, count=1)  # anyone
    with pytest.raises(ApiException) as err:
        leases.list_namespaced_lease("default")
    assert err.value.status == 429
    leases.list_namespaced_lease("default")


def test_latency_delays_only_the_chosen_identity(shared_api: ApiServer) -> None:
    slow, fast = lease_api(shared_api, "gw-slow"), lease_api(shared_api, "gw-fast")
    shared_api.set_latency(0.3, "gw-slow")
    try:
        slow.list_namespaced_lease("default")
        fast.list_namespaced_lease("default")
    finally:
        shared_api.set_latency(0.0, "gw-slow")
    records = shared_api.audit()
    slow_rec = [r for r in records if r["identity"] == "gw-slow"][-1]
    fast_rec = [r for r in records if r["identity"] == "gw-fast"][-1]
    # The server received the fast request only after the delayed one was answered.
    assert fast_rec["mono"] - slow_rec["mono"] >= 0.3


def test_latency_can_target_one_resource(shared_api: ApiServer) -> None:
    leases = lease_api(shared_api, "gw-l1")
    events = client.CoreV1Api(leases.api_client)
    shared_api.set_latency(0.5, "gw-l1", resource="events")
    try:
        leases.list_namespaced_lease("default")
        events.list_namespaced_event("default")
    finally:
        shared_api.set_latency(0.0, "gw-l1", resource="events")
    mine = [r for r in shared_api.audit() if r["identity"] == "gw-l1"][-2:]
    assert [r["resource"] for r in mine] == ["leases", "events"]
    # each answer was sent mono_done after arrival: only the Events request waited
    waited = {r["resource"]: r["mono_done"] - r["mono"] for r in mine}
    assert waited["events"] >= 0.5 and waited["leases"] < waited["events"]


def test_latency_jitter_spreads_the_delays_within_its_bound(shared_api: ApiServer) -> None:
    leases = lease_api(shared_api, "gw-jitter")
    shared_api.set_latency(0.05, "gw-jitter", jitter_s=0.2)
    try:
        for _ in range(8):
            leases.list_namespaced_lease("default")
    finally:
        shared_api.set_latency(0.0, "gw-jitter")
    mine = [r for r in shared_api.audit() if r["identity"] == "gw-jitter"][-8:]
    waited = [r["mono_done"] - r["mono"] for r in mine]
    assert all(w >= 0.05 for w in waited)
    # 8 uniform draws over 0.2 s all within 0.02 s of each other: chance (1/10)^7
    assert max(waited) - min(waited) > 0.02, waited
    with pytest.raises(ApiServerError, match="jitter"):
        shared_api.set_latency(0.1, "gw-jitter", jitter_s=-1.0)


def test_a_busy_port_fails_start_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ApiServerError, match="Address already in use"):
            ApiServer.start(tmp_path, port=port)


def test_the_cli_rejects_a_bad_history_size(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kube_test_apiserver",
            "--kubeconfig-dir",
            str(tmp_path),
            "--history-size",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "--history-size must be >= 1, got 0" in proc.stderr
    assert "READY" not in proc.stdout


def test_the_cli_writes_kubeconfigs_for_requested_identities(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kube_test_apiserver",
            "--kubeconfig-dir",
            str(tmp_path),
            "--identity",
            "lab-a",
            "--identity",
            "lab-b",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "READY" and ready[1].startswith("http://127.0.0.1:")
        api_client = config.new_client_from_config(config_file=str(tmp_path / "lab-b.kubeconfig"))
        with api_client:
            assert client.CoreV1Api(api_client).read_namespace("default").status.phase == "Active"
        assert sorted(p.name for p in tmp_path.glob("*.kubeconfig")) == [
            "admin.kubeconfig",
            "lab-a.kubeconfig",
            "lab-b.kubeconfig",
        ]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_injected_403_hits_only_the_chosen_identity_and_resource(shared_api: ApiServer) -> None:
    leases = lease_api(shared_api, "gw-f1")
    events = client.CoreV1Api(leases.api_client)
    shared_api.inject_errors("gw-f1", code=403, count=2, resource="leases")
    try:
        events.list_namespaced_event("default")  # another resource: unaffected
        lease_api(shared_api, "gw-f2").list_namespaced_lease("default")  # another identity
        for _ in range(2):
            with pytest.raises(ApiException) as err:
                leases.list_namespaced_lease("default")
            assert (err.value.status, err.value.reason) == (403, "Forbidden")
        leases.list_namespaced_lease("default")  # the count is used up
    finally:
        shared_api.inject_errors("gw-f1", count=0, resource="leases")
    failed = [r for r in shared_api.audit() if r["identity"] == "gw-f1" and r["status"] == 403]
    assert [(r["verb"], r["resource"]) for r in failed] == [("list", "leases")] * 2
