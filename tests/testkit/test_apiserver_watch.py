"""Watch streams through the official client's `Watch`: order, selectors, 410 Expired, bookmarks."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kube_test_apiserver import ApiServer

GROUP, VERSION, NODES = "cilium.io", "v2", "ciliumnodes"
HYBRID = "eks.amazonaws.com/compute-type"


def node(name: str, *, hybrid: bool = True, ip: str = "192.168.1.10") -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNode",
        "metadata": {"name": name, "labels": {HYBRID: "hybrid" if hybrid else "ec2"}},
        "spec": {
            "addresses": [{"type": "InternalIP", "ip": ip}],
            "ipam": {"podCIDRs": ["10.85.0.0/24"]},
        },
    }


def collect(
    w: watch.Watch, func: Any, count: int, **kwargs: Any
) -> list[tuple[str, dict[str, Any]]]:
    """The first `count` events (bounded by the server-side timeout in kwargs)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    for event in w.stream(func, **kwargs):
        seen.append((event["type"], event["raw_object"]))
        if len(seen) >= count:
            w.stop()
    return seen


def test_watch_from_resource_version_delivers_changes_in_order(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    name = f"n-{uuid.uuid4().hex[:8]}"
    start = custom.list_cluster_custom_object(GROUP, VERSION, NODES)["metadata"]["resourceVersion"]
    custom.create_cluster_custom_object(GROUP, VERSION, NODES, node(name))
    custom.patch_cluster_custom_object(
        GROUP, VERSION, NODES, name, {"metadata": {"labels": {"x": "1"}}}
    )
    custom.delete_cluster_custom_object(GROUP, VERSION, NODES, name)

    events = collect(
        watch.Watch(),
        custom.list_cluster_custom_object,
        3,
        group=GROUP,
        version=VERSION,
        plural=NODES,
        resource_version=start,
        timeout_seconds=5,
        field_selector=f"metadata.name={name}",
    )
    assert [kind for kind, _ in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(obj["metadata"]["resourceVersion"]) for _, obj in events]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert events[1][1]["metadata"]["labels"]["x"] == "1"


def test_watch_without_resource_version_starts_with_synthetic_added(
    admin: client.ApiClient,
) -> None:
    leases = client.CoordinationV1Api(admin)
    ns = f"w-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(admin).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))
    )
    for name in ("a", "b"):
        leases.create_namespaced_lease(ns, client.V1Lease(metadata=client.V1ObjectMeta(name=name)))
    seen = []
    for event in watch.Watch().stream(leases.list_namespaced_lease, ns, timeout_seconds=1):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "a"), ("ADDED", "b")]  # typed V1Lease objects, then a clean timeout


def test_label_selector_transitions_become_added_and_deleted(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    name = f"t-{uuid.uuid4().hex[:8]}"
    start = custom.list_cluster_custom_object(GROUP, VERSION, NODES)["metadata"]["resourceVersion"]
    custom.create_cluster_custom_object(GROUP, VERSION, NODES, node(name, hybrid=False))
    custom.patch_cluster_custom_object(
        GROUP, VERSION, NODES, name, {"metadata": {"labels": {HYBRID: "hybrid"}}}
    )
    custom.patch_cluster_custom_object(
        GROUP,
        VERSION,
        NODES,
        name,
        {"spec": {"addresses": [{"type": "InternalIP", "ip": "192.168.1.11"}]}},
    )
    custom.patch_cluster_custom_object(
        GROUP, VERSION, NODES, name, {"metadata": {"labels": {HYBRID: None}}}
    )
    events = collect(
        watch.Watch(),
        custom.list_cluster_custom_object,
        3,
        group=GROUP,
        version=VERSION,
        plural=NODES,
        resource_version=start,
        timeout_seconds=5,
        label_selector=f"{HYBRID}=hybrid",
    )
    assert [kind for kind, _ in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert all(obj["metadata"]["name"] == name for _, obj in events)


def test_compaction_makes_old_watches_fail_with_410(
    shared_api: ApiServer, admin: client.ApiClient
) -> None:
    leases = client.CoordinationV1Api(admin)
    old = leases.list_namespaced_lease("default").metadata.resource_version
    leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=f"c-{uuid.uuid4().hex[:8]}"))
    )
    shared_api.compact()
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(
            leases.list_namespaced_lease, "default", resource_version=old, timeout_seconds=2
        ):
            pass
    assert err.value.status == 410
    assert str(err.value.reason).startswith("Expired: ")  # the client's "<reason>: <message>"
    # A fresh list gives a version that can be watched again.
    current = leases.list_namespaced_lease("default").metadata.resource_version
    fresh = f"f-{uuid.uuid4().hex[:8]}"
    leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=fresh))
    )
    for event in watch.Watch().stream(
        leases.list_namespaced_lease, "default", resource_version=current, timeout_seconds=5
    ):
        assert (event["type"], event["object"].metadata.name) == ("ADDED", fresh)
        break


def test_a_watch_from_a_compacted_version_gets_the_status_kube_apiserver_sends(
    shared_api: ApiServer, admin: client.ApiClient
) -> None:
    """On the wire, as kube-apiserver streams it: 200, then one ERROR event whose object is the
    Status of apimachinery pkg/api/errors `NewResourceExpired` (code 410, reason "Expired",
    metav1 `StatusReasonExpired`), with the watch cache's message (k8s.io/apiserver
    pkg/storage/cacher/watch_cache.go `getAllEventsSinceLocked`: "too old resource version")."""
    leases = client.CoordinationV1Api(admin)
    old = leases.list_namespaced_lease("default").metadata.resource_version
    leases.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=f"s-{uuid.uuid4().hex[:8]}"))
    )
    shared_api.compact()
    response = leases.list_namespaced_lease(
        "default", watch=True, resource_version=old, timeout_seconds=2, _preload_content=False
    )
    try:
        lines = [json.loads(line) for line in response.data.splitlines() if line.strip()]
    finally:
        response.release_conn()
    assert response.status == 200
    assert [event["type"] for event in lines] == ["ERROR"]
    status = lines[0]["object"]
    assert {k: status[k] for k in ("kind", "status", "code", "reason")} == {
        "kind": "Status",
        "status": "Failure",
        "code": 410,
        "reason": "Expired",
    }
    assert status["message"].startswith(f"too old resource version: {old} (")


def test_bookmarks_carry_the_current_resource_version(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    start = custom.list_cluster_custom_object(GROUP, VERSION, NODES)["metadata"]["resourceVersion"]
    other = client.CoordinationV1Api(admin).create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=f"b-{uuid.uuid4().hex[:8]}"))
    )
    w = watch.Watch()
    for event in w.stream(
        custom.list_cluster_custom_object,
        group=GROUP,
        version=VERSION,
        plural=NODES,
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        assert event["type"] == "BOOKMARK", "no CiliumNode changed since start"
        break
    # The bookmark moved the client past versions of other kinds it never needs to replay.
    assert int(w.resource_version) >= int(other.metadata.resource_version) > int(start)


def test_watch_is_cut_for_partitioned_identity_and_works_after_heal(
    shared_api: ApiServer, client_for: Any
) -> None:
    gw = client_for("gw-watcher")
    leases = client.CoordinationV1Api(gw)
    rv = leases.list_namespaced_lease("default").metadata.resource_version
    stream = watch.Watch().stream(
        leases.list_namespaced_lease, "default", resource_version=rv, timeout_seconds=10
    )
    shared_api.partition("gw-watcher")
    with pytest.raises(Exception) as err:  # urllib3 ProtocolError: the stream was cut
        next(stream)
    assert not isinstance(err.value, StopIteration)
    shared_api.heal("gw-watcher")
    assert leases.list_namespaced_lease("default").metadata.resource_version


def test_hang_partition_stalls_a_watch_which_resumes_after_heal(
    shared_api: ApiServer, client_for: Any
) -> None:
    leases = client.CoordinationV1Api(client_for("gw-stalled"))
    writer = client.CoordinationV1Api(client_for("admin"))
    rv = leases.list_namespaced_lease("default").metadata.resource_version
    seen: queue.Queue[str] = queue.Queue()

    def follow() -> None:
        for event in watch.Watch().stream(
            leases.list_namespaced_lease, "default", resource_version=rv, timeout_seconds=10
        ):
            seen.put(event["object"].metadata.name)
            return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not any(  # the watch must be open before the partition
        r["identity"] == "gw-stalled" and r["verb"] == "watch" for r in shared_api.audit()
    ):
        assert time.monotonic() < deadline, "the watch never started"
        time.sleep(0.02)
    shared_api.partition("gw-stalled", hang=True)
    name = f"s-{uuid.uuid4().hex[:8]}"
    writer.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=name))
    )
    with pytest.raises(queue.Empty):
        seen.get(timeout=0.5)  # nothing arrives while partitioned
    shared_api.heal("gw-stalled")
    assert seen.get(timeout=5) == name  # the stream carries on with what it missed
    thread.join(timeout=5)


def test_closed_watches_are_resumed_by_the_client_from_its_last_version(
    shared_api: ApiServer, client_for: Any
) -> None:
    leases = client.CoordinationV1Api(client_for("gw-resumer"))
    writer = client.CoordinationV1Api(client_for("admin"))
    rv = leases.list_namespaced_lease("default").metadata.resource_version
    seen: queue.Queue[str] = queue.Queue()
    w = watch.Watch()

    stopping = threading.Event()

    def follow() -> None:  # no timeout: the client re-watches whenever a stream ends
        try:
            for event in w.stream(leases.list_namespaced_lease, "default", resource_version=rv):
                seen.put(event["object"].metadata.name)
        except urllib3.exceptions.ProtocolError:
            if not stopping.is_set():  # w.stop() shuts the socket down under the reader
                raise

    def watches() -> int:
        return sum(
            1 for r in shared_api.audit() if r["identity"] == "gw-resumer" and r["verb"] == "watch"
        )

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    first, second = f"r1-{uuid.uuid4().hex[:6]}", f"r2-{uuid.uuid4().hex[:6]}"
    writer.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=first))
    )
    assert seen.get(timeout=5) == first
    shared_api.close_watches()
    deadline = time.monotonic() + 5
    while watches() < 2:
        assert time.monotonic() < deadline, "the client did not re-watch"
        time.sleep(0.02)
    writer.create_namespaced_lease(
        "default", client.V1Lease(metadata=client.V1ObjectMeta(name=second))
    )
    assert seen.get(timeout=5) == second  # nothing lost, nothing repeated
    assert seen.empty()
    resumed = [
        r for r in shared_api.audit() if r["identity"] == "gw-resumer" and r["verb"] == "watch"
    ]
    assert f"resourceVersion={rv}" not in resumed[1]["query"]  # resumed from a newer version
    stopping.set()
    w.stop()
    thread.join(timeout=5)


def test_a_list_continued_past_a_compaction_gets_410_expired_and_a_token_to_go_on(
    shared_api: ApiServer, admin: client.ApiClient
) -> None:
    """kube-apiserver reads a list's next page from etcd at the first page's revision; once
    etcd compacted past it the answer is 410 Expired with a token that goes on at the latest
    revision (k8s.io/apiserver pkg/storage/etcd3/errors.go `handleCompactedErrorForPaging`)."""
    core, leases = client.CoreV1Api(admin), client.CoordinationV1Api(admin)
    ns = f"cont-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    for i in range(5):
        leases.create_namespaced_lease(
            ns, client.V1Lease(metadata=client.V1ObjectMeta(name=f"l{i}"))
        )
    # compacted at the list's own version: that version stays readable, as in etcd
    first = leases.list_namespaced_lease(ns, limit=2)
    shared_api.compact()
    assert [
        i.metadata.name
        for i in leases.list_namespaced_lease(ns, limit=2, _continue=first.metadata._continue).items
    ] == ["l2", "l3"]

    first = leases.list_namespaced_lease(ns, limit=2)
    leases.create_namespaced_lease(ns, client.V1Lease(metadata=client.V1ObjectMeta(name="l5")))
    shared_api.compact()
    with pytest.raises(ApiException) as err:
        leases.list_namespaced_lease(ns, limit=2, _continue=first.metadata._continue)
    status = json.loads(err.value.body)
    assert (err.value.status, status["code"], status["reason"]) == (410, 410, "Expired")
    assert status["message"].startswith("The provided continue parameter is too old")
    assert "inconsistent list" in status["message"]
    # the answer's token goes on behind the last item seen, at the current version
    rest = leases.list_namespaced_lease(ns, limit=10, _continue=status["metadata"]["continue"])
    assert [i.metadata.name for i in rest.items] == ["l2", "l3", "l4", "l5"]
    assert int(rest.metadata.resource_version) > int(first.metadata.resource_version)
    # a list started after the compaction pages as before
    again = leases.list_namespaced_lease(ns, limit=4)
    tail = leases.list_namespaced_lease(ns, limit=4, _continue=again.metadata._continue)
    assert [i.metadata.name for i in again.items + tail.items] == [f"l{i}" for i in range(6)]
