"""One retry policy, ours: every read, list and watch of the daemon makes one HTTP attempt, so a
hung API server ends it after one timeout (urllib3's default Retry would send it four times:
kubernetes/client/rest.py builds the PoolManager without `retries` when Configuration.retries
is None, and urllib3 retries a read timeout of a GET up to 3 more times).

The adapters are handed a client with the library defaults, as any caller would build it; the
test API server hangs the identity's requests (lost packets), and its audit, which records
hung requests once healed, counts the attempts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_lease import LeaseApiError, LeaseStore, lease_watch
from hybrid_gateway.adapters.kube_nodes import CiliumNodeCache
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_vtep import VtepApiError, VtepStore
from hybrid_gateway.adapters.kube_watch import WatchFailure
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

IDENTITY = "gw-a"


@pytest.fixture
def defaults(kube_api: ApiServer) -> Iterator[client.ApiClient]:
    """A client with the kubernetes library's defaults (urllib3 retries on)."""
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig(IDENTITY)))
    assert api.configuration.retries is None
    yield api
    api.close()


def attempts(kube: ApiServer, resource: str, verb: str) -> list[dict[str, Any]]:
    return [
        e
        for e in kube.audit()
        if e["identity"] == IDENTITY and e.get("resource") == resource and e["verb"] == verb
    ]


def test_a_read_on_a_hung_server_is_one_attempt(
    kube_api: ApiServer, defaults: client.ApiClient
) -> None:
    vtep = VtepStore(defaults, settings=WatchingSettings(request_timeout_s=0.5))
    lease = LeaseStore(defaults, "default", "hybrid-gateway-leader")
    kube_api.partition(IDENTITY, hang=True)
    try:
        with pytest.raises(VtepApiError):
            vtep.get()
        with pytest.raises(LeaseApiError):
            lease.get(0.5)
    finally:
        kube_api.heal(IDENTITY)
    wait_until(
        "hung reads audited",
        lambda: (
            attempts(kube_api, "leases", "get") and attempts(kube_api, "ciliumvtepconfigs", "get")
        ),
        10,
    )
    time.sleep(0.5)  # a retry, if any, would be audited by now
    assert len(attempts(kube_api, "ciliumvtepconfigs", "get")) == 1
    assert len(attempts(kube_api, "leases", "get")) == 1


def test_a_watch_on_a_hung_server_ends_after_one_window_and_one_attempt(
    kube_api: ApiServer, defaults: client.ApiClient
) -> None:
    """A watch request that gets no answer at all ends by its read timeout (window plus one
    call timeout), once: not four windows, which took 128 s with the daemon's default timings
    and went past the watch's stuck-loop limit."""
    failures: list[WatchFailure] = []
    watch = lease_watch(
        defaults,
        "default",
        "hybrid-gateway-leader",
        on_seen=lambda _record: None,
        on_error=failures.append,
        settings=WatchingSettings.derived(window_s=1.0, request_timeout_s=0.5, max_backoff_s=5.0),
    )
    watch.list()
    kube_api.partition(IDENTITY, hang=True)
    try:
        with pytest.raises(Exception) as ended:
            watch.watch_once(threading.Event())
        assert "timed out" in str(ended.value).lower()
    finally:
        kube_api.heal(IDENTITY)
    wait_until("hung watch audited", lambda: attempts(kube_api, "leases", "watch"), 10)
    time.sleep(0.5)
    assert len(attempts(kube_api, "leases", "watch")) == 1


def timed_out(failures: list[WatchFailure]) -> list[WatchFailure]:
    return [f for f in failures if "timed out" in f.message.lower()]


def test_each_timed_out_list_or_watch_on_a_hung_server_is_one_request(
    kube_api: ApiServer, defaults: client.ApiClient
) -> None:
    failures: list[WatchFailure] = []
    cache = CiliumNodeCache(
        defaults,
        on_error=failures.append,
        settings=WatchingSettings(
            server_timeout_s=1,
            connect_timeout_s=0.5,
            client_timeout_s=1.5,
            request_timeout_s=0.5,
            backoff_initial_s=0.1,
            backoff_max_s=0.2,
        ),
    )
    stop = threading.Event()
    thread = threading.Thread(target=cache.watch.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert cache.watch.wait_synced(10)
        kube_api.partition(IDENTITY, hang=True)  # the open watch goes silent: read timeout
        wait_until("three timed-out lists", lambda: len(timed_out(failures)) >= 3, 20)
    finally:
        stop.set()
        kube_api.heal(IDENTITY)
        thread.join(10)
    failed = len(timed_out(failures))

    def lists() -> list[dict[str, Any]]:
        hung = attempts(kube_api, "ciliumnodes", "list") + attempts(
            kube_api, "ciliumnodes", "watch"
        )
        return [e for e in hung if e["dropped"]]

    # hung requests are audited when the server lets them go (after the heal)
    wait_until("hung requests audited", lambda: len(lists()) >= failed, 10)
    time.sleep(0.5)
    # every timed-out list or watch is one request (one still in flight at the stop may add one)
    assert failed <= len(lists()) <= failed + 1, (failed, len(lists()))
