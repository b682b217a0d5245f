"""CiliumNode list + watch against the test API server, through the official client."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.kube_nodes import CiliumNodeCache
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.core.backoff import Backoff
from hybrid_gateway.core.dataplane import NodeRecord, node_record
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer


def create(admin: client.CustomObjectsApi, name: str, ip: str, cidr: str) -> None:
    admin.create_cluster_custom_object(
        "cilium.io", "v2", "ciliumnodes", cilium_node(name, ip, [cidr])
    )


def names(cache: CiliumNodeCache) -> set[str]:
    return {r.name for r in cache.snapshot()}


def test_the_cache_follows_creates_updates_and_deletes(
    kube_clients: tuple[client.ApiClient, client.CustomObjectsApi],
) -> None:
    api, admin = kube_clients
    create(admin, "a", "192.168.1.1", "10.200.1.0/24")
    changes: list[int] = []
    cache = CiliumNodeCache(api, on_change=lambda: changes.append(1), watch_timeout_s=5)
    stop = threading.Event()
    thread = threading.Thread(target=cache.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert cache.wait_synced(10)
        assert names(cache) == {"a"}
        create(admin, "b", "192.168.1.2", "10.200.2.0/24")
        wait_until("b added", lambda: names(cache) == {"a", "b"})
        obj = admin.get_cluster_custom_object("cilium.io", "v2", "ciliumnodes", "a")
        obj["spec"]["ipam"]["podCIDRs"] = ["10.200.9.0/24"]
        admin.replace_cluster_custom_object("cilium.io", "v2", "ciliumnodes", "a", obj)

        def updated() -> bool:
            found = [r for r in cache.snapshot() if r.name == "a"]
            return bool(found) and found[0].pod_cidrs == ("10.200.9.0/24",)

        wait_until("a updated", updated)
        admin.delete_cluster_custom_object("cilium.io", "v2", "ciliumnodes", "b")
        wait_until("b deleted", lambda: names(cache) == {"a"})
        assert cache.relists == 1 and cache.expired == 0
        assert len(changes) >= 4
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_watch_from_a_compacted_version_gets_410_and_the_cache_relists(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    api, admin = kube_clients
    cache = CiliumNodeCache(api, watch_timeout_s=5)
    cache.relist()
    stale = cache.resource_version
    create(admin, "missed", "192.168.1.3", "10.200.3.0/24")
    kube_api.compact()

    with pytest.raises(ApiException) as gone:
        cache.watch_once(threading.Event())
    assert gone.value.status == 410
    assert names(cache) == set() and cache.resource_version == stale

    stop = threading.Event()
    thread = threading.Thread(target=cache.follow, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until("relist after 410", lambda: names(cache) == {"missed"})
        assert cache.expired == 1 and cache.relists == 2
        create(admin, "later", "192.168.1.4", "10.200.4.0/24")
        wait_until("watch resumed", lambda: names(cache) == {"missed", "later"})
        assert cache.relists == 2, "after the relist the watch carries the changes again"
    finally:
        stop.set()
        thread.join(timeout=10)


def test_errors_back_off_and_the_cache_catches_up_after_a_partition(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    api, admin = kube_clients
    cache = CiliumNodeCache(
        api, settings=WatchingSettings(backoff_initial_s=0.2, backoff_max_s=1.0).with_window(5)
    )
    stop = threading.Event()
    thread = threading.Thread(target=cache.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert cache.wait_synced(10)
        kube_api.partition("watcher")
        kube_api.close_watches()
        time.sleep(0.6)
        create(admin, "during", "192.168.1.5", "10.200.5.0/24")
        time.sleep(1.5)
        assert names(cache) == set()
        kube_api.heal("watcher")
        wait_until("caught up", lambda: names(cache) == {"during"})
        assert cache.relists >= 2
        attempts = [r for r in kube_api.audit() if r.get("identity") == "watcher"]
        assert len(attempts) < 30, "retries are paced by the backoff, not a busy loop"
    finally:
        stop.set()
        thread.join(timeout=10)


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(initial_s=0.5, maximum_s=3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_only_hybrid_nodes_are_cached_trimmed_to_what_the_data_plane_reads(
    kube_clients: tuple[client.ApiClient, client.CustomObjectsApi],
) -> None:
    api, admin = kube_clients
    hybrid = cilium_node("h", "192.168.1.6", ["10.200.6.0/24"])
    hybrid["spec"]["instance-id"] = "mi-0123"
    hybrid["spec"]["ipam"]["pool"] = {"10.200.6.7": {"owner": "default/pod-a"}}
    admin.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", hybrid)
    ec2 = cilium_node("e", "10.0.9.9", ["10.201.0.0/24"], hybrid=False)
    admin.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", ec2)
    cache = CiliumNodeCache(api, watch_timeout_s=5)
    stop = threading.Event()
    thread = threading.Thread(target=cache.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert cache.wait_synced(10)
        assert names(cache) == {"h"}
        (cached,) = cache.snapshot()
        uid = admin.get_cluster_custom_object("cilium.io", "v2", "ciliumnodes", "h")["metadata"]
        assert cached == NodeRecord(
            name="h",
            uid=uid["uid"],
            hybrid=True,
            internal_ips=("192.168.1.6",),
            pod_cidrs=("10.200.6.0/24",),
        )

        def set_labels(name: str, labels: dict[str, str]) -> None:
            obj = admin.get_cluster_custom_object("cilium.io", "v2", "ciliumnodes", name)
            obj["metadata"]["labels"] = labels
            admin.replace_cluster_custom_object("cilium.io", "v2", "ciliumnodes", name, obj)

        set_labels("h", {})
        wait_until("unlabelled node leaves the cache", lambda: names(cache) == set())
        set_labels("e", {"eks.amazonaws.com/compute-type": "hybrid"})
        wait_until("labelled node enters the cache", lambda: names(cache) == {"e"})
        assert cache.relists == 1
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_paged_list_really_pages_and_builds_the_same_cache_as_one_whole_list(
    kube_api: ApiServer, kube_clients: tuple[client.ApiClient, client.CustomObjectsApi]
) -> None:
    api, admin = kube_clients
    for i in range(23):
        create(admin, f"n{i:02d}", f"192.168.2.{i + 1}", f"10.201.{i}.0/24")
    create(admin, "bad", "not-an-ip", "10.202.0.0/24")  # kept as sent: rejected later, named
    admin.create_cluster_custom_object(
        "cilium.io", "v2", "ciliumnodes", cilium_node("e", "10.0.9.9", [], hybrid=False)
    )
    paged = CiliumNodeCache(api, page_size=5)
    paged.relist()
    lists = [
        parse_qs(str(e.get("query") or ""))
        for e in kube_api.audit()
        if e["identity"] == "watcher" and e["verb"] == "list"
    ]
    assert len(lists) == 5 and all(q["limit"] == ["5"] for q in lists)
    assert sum("continue" in q for q in lists) == 4

    whole = CiliumNodeCache(api, page_size=0)  # one request, as before paging
    whole.relist()
    assert "limit" not in parse_qs(str(kube_api.audit()[-1].get("query") or ""))
    assert sorted(paged.snapshot()) == sorted(whole.snapshot())
    assert len(paged) == 24 and paged.resource_version == whole.resource_version
    listing = admin.list_cluster_custom_object(
        "cilium.io", "v2", "ciliumnodes", label_selector="eks.amazonaws.com/compute-type=hybrid"
    )
    assert sorted(paged.snapshot()) == sorted(node_record(o) for o in listing["items"])
