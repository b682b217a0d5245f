"""The shared list-then-watch helper against the test API server, through the official client:
paging, resuming, 410, denied access reported through the callback, back-off, timeouts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import pytest
from kubernetes import client, config

from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_watch import ListIncompleteError, ListWatch, WatchFailure
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.waiting import running, wait_until
from kube_test_apiserver import ApiServer

NODES = ("cilium.io", "v2", "ciliumnodes")


class Recorder:
    """A caller's state as the helper's documentation asks for it: swapped after a full list."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []
        self.failures: list[WatchFailure] = []
        self.lists = 0
        self.after_first_item: Callable[[], None] | None = None

    def on_list(self, items: Iterator[dict[str, Any]]) -> None:
        fresh: dict[str, dict[str, Any]] = {}
        for obj in items:
            if not fresh and self.after_first_item is not None:
                self.after_first_item()
            fresh[obj["metadata"]["name"]] = obj
        self.objects = fresh
        self.lists += 1

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self.events.append((kind, name))
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj


#: A 5 s window; the other settings the client's defaults.
WINDOW_5 = WatchingSettings().with_window(5)


def backing_off(initial_s: float, maximum_s: float) -> WatchingSettings:
    return replace(WINDOW_5, backoff_initial_s=initial_s, backoff_max_s=maximum_s)


def make(watcher: client.ApiClient, recorder: Recorder, **kwargs: Any) -> ListWatch:
    return ListWatch(
        "CiliumNodes",
        client.CustomObjectsApi(watcher).list_cluster_custom_object,
        args=NODES,
        on_list=recorder.on_list,
        on_event=recorder.on_event,
        on_error=recorder.failures.append,
        **kwargs,
    )


def create_nodes(admin: client.CustomObjectsApi, count: int, prefix: str = "n") -> None:
    for i in range(count):
        admin.create_cluster_custom_object(
            *NODES,
            cilium_node(
                f"{prefix}{i:03d}", f"192.168.{i // 250}.{i % 250 + 1}", [f"10.200.{i}.0/24"]
            ),
        )


def list_queries(kube: ApiServer) -> list[dict[str, list[str]]]:
    return [
        parse_qs(str(e.get("query") or ""))
        for e in kube.audit()
        if e["identity"] == "watcher" and e["verb"] == "list"
    ]


def test_the_list_is_paged_and_the_watch_starts_from_its_version(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    watcher, admin = kube_clients
    create_nodes(admin, 12)
    recorder = Recorder()
    lw = make(watcher, recorder, page_size=5, settings=WINDOW_5)
    with running(lw.run):
        assert lw.wait_synced(10)
        assert sorted(recorder.objects) == [f"n{i:03d}" for i in range(12)]
        assert lw.pages == 3
        queries = list_queries(kube_api)
        assert [q.get("limit") for q in queries] == [["5"]] * 3
        assert "continue" not in queries[0] and all("continue" in q for q in queries[1:])
        admin.delete_cluster_custom_object(*NODES, "n000")
        wait_until("deletion seen", lambda: "n000" not in recorder.objects)
        assert recorder.events == [("DELETED", "n000")], "the watch replays nothing listed"
        assert lw.healthy and recorder.failures == []


def test_the_default_page_is_client_gos_500(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    watcher, _ = kube_clients
    recorder = Recorder()
    make(watcher, recorder).list()
    assert [q.get("limit") for q in list_queries(kube_api)] == [["500"]]


def test_a_failed_page_leaves_the_callers_state_as_it_was(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    watcher, admin = kube_clients
    create_nodes(admin, 6)
    recorder = Recorder()
    lw = make(watcher, recorder, page_size=2)
    lw.list()
    before = dict(recorder.objects)
    create_nodes(admin, 2, prefix="late")
    listed_at = lw.resource_version

    # the second page fails: the server errs once the first page has been handed over
    recorder.after_first_item = lambda: kube_api.inject_errors("watcher", code=500)
    with pytest.raises(client.ApiException):
        lw.list()
    assert recorder.objects == before and lw.resource_version == listed_at
    assert lw.relists == 1


def test_a_caller_that_stops_early_is_an_error(
    kube_clients: tuple[client.ApiClient, client.CustomObjectsApi],
) -> None:
    watcher, admin = kube_clients
    create_nodes(admin, 4)

    def first_only(items: Iterator[dict[str, Any]]) -> None:
        next(items)

    lw = ListWatch(
        "CiliumNodes",
        client.CustomObjectsApi(watcher).list_cluster_custom_object,
        args=NODES,
        on_list=first_only,
        on_event=lambda _k, _o: None,
        page_size=2,
    )
    with pytest.raises(ListIncompleteError):
        lw.list()
    assert not lw.synced


def test_410_relists_at_once_and_the_watch_resumes(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    watcher, admin = kube_clients
    recorder = Recorder()
    lw = make(watcher, recorder, settings=WINDOW_5)
    lw.list()
    create_nodes(admin, 1, prefix="missed")
    kube_api.compact()
    with running(lw.follow):
        wait_until("relisted after 410", lambda: "missed000" in recorder.objects)
        assert lw.expired == 1 and lw.relists == 2
        assert recorder.failures == [], "410 is the protocol, not a failure"
        create_nodes(admin, 1, prefix="later")
        wait_until("watch resumed", lambda: "later000" in recorder.objects)
        assert lw.relists == 2


def test_a_list_expired_between_pages_is_done_again_unpaged(
    kube_api: ApiServer,
    kube_clients: tuple[client.ApiClient, client.CustomObjectsApi],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kube-apiserver answers a page continued at a compacted version with 410 Expired; like
    client-go's pager (tools/pager/pager.go, FullListIfExpired) the list starts over as one
    unpaged request, and the caller's state is replaced by that list, never by a mix."""
    watcher, admin = kube_clients
    create_nodes(admin, 5)
    recorder = Recorder()
    expired: list[int] = []
    lw = make(
        watcher, recorder, page_size=2, settings=WINDOW_5, on_list_expired=lambda: expired.append(1)
    )

    def compact_after_the_first_page() -> None:
        recorder.after_first_item = None  # once: the unpaged list must go through
        admin.delete_cluster_custom_object(*NODES, "n004")  # a change the first page missed
        create_nodes(admin, 1, prefix="late")
        kube_api.compact()

    recorder.after_first_item = compact_after_the_first_page
    lw.list()
    assert sorted(recorder.objects) == ["late000", "n000", "n001", "n002", "n003"]
    assert (lw.expired_lists, expired, recorder.lists, lw.relists) == (1, [1], 1, 1)
    queries = list_queries(kube_api)
    assert [(q.get("limit"), "continue" in q) for q in queries] == [
        (["2"], False),
        (["2"], True),  # answered 410
        (None, False),  # the whole list in one request
    ]
    statuses = [e["status"] for e in kube_api.audit() if e["identity"] == "watcher"]
    assert statuses == [200, 410, 200]
    warned = [r for r in caplog.records if "expired after 1 page" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"
    # the watch goes on from the unpaged list's version: nothing replayed, nothing missed
    with running(lw.follow):
        create_nodes(admin, 1, prefix="after")
        wait_until("watch resumed", lambda: "after000" in recorder.objects)
    assert recorder.events == [("ADDED", "after000")] and recorder.failures == []


@pytest.mark.parametrize("code", [401, 403])
def test_denied_access_is_warned_reported_and_retried_with_back_off(
    kube_api: ApiServer,
    kube_clients: tuple[client.ApiClient, client.CustomObjectsApi],
    code: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher, admin = kube_clients
    create_nodes(admin, 1)
    recorder = Recorder()
    lw = make(watcher, recorder, settings=backing_off(0.1, 0.4))
    kube_api.inject_errors("watcher", code=code, count=3)
    with running(lw.run):
        assert lw.wait_synced(10), "the list succeeds once access is back"
        assert [(f.status, f.denied) for f in recorder.failures] == [(code, True)] * 3
        assert lw.healthy and lw.consecutive_failures == 0
        # every failure reaches on_error; the log says it once per streak (rate-limited)
        denied = [r for r in caplog.records if "denied" in r.getMessage()]
        assert len(denied) == 1 and denied[0].levelname == "WARNING"
        assert "CiliumNodes" in denied[0].getMessage() and "RBAC" in denied[0].getMessage()
        statuses = [e["status"] for e in kube_api.audit() if e["identity"] == "watcher"][:4]
        assert statuses == [code, code, code, 200]


def test_an_unreachable_server_is_reported_and_the_state_catches_up_after(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    _, admin = kube_clients
    # urllib3 retries a timed-out GET 3 times by default (kubernetes Configuration.retries None),
    # which would make every timeout four timeouts: the daemon's client turns retries off.
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(kube_api.kubeconfig("watcher")), client_configuration=configuration
    )
    configuration.retries = False
    watcher = client.ApiClient(configuration)
    recorder = Recorder()
    lw = make(
        watcher,
        recorder,
        settings=replace(
            backing_off(0.1, 0.5), connect_timeout_s=0.5, request_timeout_s=0.5
        ).with_window(5),
    )
    with running(lw.run):
        assert lw.wait_synced(10)
        kube_api.partition("watcher", hang=True)  # lost packets: only the timeouts end calls
        kube_api.close_watches()
        create_nodes(admin, 1, prefix="during")
        wait_until("failures reported", lambda: len(recorder.failures) >= 2, 10)
        assert all(f.status is None and not f.denied for f in recorder.failures)
        assert not lw.healthy and "during000" not in recorder.objects
        kube_api.heal("watcher")
        wait_until("caught up", lambda: "during000" in recorder.objects, 15)
        wait_until("healthy again", lambda: lw.healthy, 5)
    watcher.close()


def test_a_failing_callback_does_not_stop_the_watch(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    watcher, admin = kube_clients
    recorder = Recorder()

    def broken(_failure: WatchFailure) -> None:
        raise RuntimeError("metrics backend down")

    lw = ListWatch(
        "CiliumNodes",
        client.CustomObjectsApi(watcher).list_cluster_custom_object,
        args=NODES,
        on_list=recorder.on_list,
        on_event=recorder.on_event,
        on_error=broken,
        settings=backing_off(0.1, 0.2),
    )
    kube_api.inject_errors("watcher", code=503, count=2)
    with running(lw.run):
        assert lw.wait_synced(10)
        create_nodes(admin, 1)
        wait_until("still watching", lambda: "n000" in recorder.objects)


def test_typed_resources_arrive_as_plain_dicts(kube_api: ApiServer) -> None:
    """The Lease (a built-in, typed resource) goes through the same helper as JSON dicts."""
    admin = config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin-user")))
    watcher = config.new_client_from_config(config_file=str(kube_api.kubeconfig("watcher")))
    leases = client.CoordinationV1Api(admin)
    leases.create_namespaced_lease(
        "default",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="hybrid-gateway-leader"),
            spec=client.V1LeaseSpec(holder_identity="gw-a", lease_duration_seconds=3),
        ),
    )
    recorder = Recorder()
    lw = ListWatch(
        "Lease default/hybrid-gateway-leader",
        client.CoordinationV1Api(watcher).list_namespaced_lease,
        args=("default",),
        field_selector="metadata.name=hybrid-gateway-leader",
        on_list=recorder.on_list,
        on_event=recorder.on_event,
        settings=WINDOW_5,
    )

    def holder() -> str:
        return str(recorder.objects["hybrid-gateway-leader"]["spec"]["holderIdentity"])

    with running(lw.run):
        assert lw.wait_synced(10)
        assert holder() == "gw-a"
        lease = leases.read_namespaced_lease("hybrid-gateway-leader", "default")
        lease.spec.holder_identity = "gw-b"
        leases.replace_namespaced_lease("hybrid-gateway-leader", "default", lease)
        wait_until("update seen", lambda: holder() == "gw-b")
        assert recorder.events == [("MODIFIED", "hybrid-gateway-leader")]
    admin.close()
    watcher.close()


def test_a_failing_watch_warns_once_per_interval_not_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A watch failing for good (API server gone) retries every back-off; the log carries the
    first failure of the streak, then one line per interval counting the others."""
    now = [0.0]
    calls = [0]

    def broken_list(*_args: Any, **_kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] > 300:
            stop.set()
        now[0] += 1.0  # one failure a second, on a fake clock
        raise ConnectionError("connection refused")

    def consume(items: Iterator[dict[str, Any]]) -> None:
        for _item in items:
            pass

    stop = threading.Event()
    failures: list[WatchFailure] = []
    lw = ListWatch(
        "CiliumNodes",
        broken_list,
        on_list=consume,
        on_event=lambda kind, obj: None,
        on_error=failures.append,
        settings=backing_off(0.0, 0.0),
        log_interval_s=60.0,
        clock=lambda: now[0],
    )
    caplog.set_level(logging.DEBUG, logger="hybrid_gateway.adapters.kube_watch")
    lw.run(stop)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(failures) == 301
    assert len(warnings) == 6, warnings  # at 1 s, 61 s, 121 s, 181 s, 241 s, 301 s
    assert "more since the last report" not in warnings[0]
    assert "(59 more since the last report)" in warnings[1]
