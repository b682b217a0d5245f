"""The follower reacts to a released Lease through its WATCH, not at its next retry round.

Two electors in this process, each with its own identity's client, against the test API server.
The retry period is long (5 s) and the release is made right after the follower's poll round,
so a follower that relied on polling alone could not acquire within the bounded wait below;
times come from the API server's audit (system-wide monotonic clock). Assertions are about
order: the acquisition came after the release and before the follower's next poll round.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import config

from hybrid_gateway.adapters.kube_lease import LeaseStore, lease_watch
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.leader.elector import LeaseElector
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer
from kube_test_apiserver import lease_writes as audit_lease_writes

NAMESPACE = "eks-hybrid-nodes-gateway"
LEASE = "hybrid-gateway-leader"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
RETRY_S = 5.0
POLL_S = 0.02  # fine-grained: the early take-over must be seen well within RETRY_S / 3


class Replica:
    """An elector loop and its Lease watch, on threads, for one identity."""

    def __init__(self, kube: ApiServer, identity: str) -> None:
        api = config.new_client_from_config(config_file=str(kube.kubeconfig(identity)))
        self.identity = identity
        self.store = LeaseStore(api, NAMESPACE, LEASE)
        self.elector = LeaseElector(
            self.store,
            identity=identity,
            lease_duration_s=15.0,
            renew_deadline_s=10.0,
            retry_period_s=RETRY_S,
        )
        self.seen: list[LeaseRecord | None] = []
        self.stop = threading.Event()
        self.loop_stop = threading.Event()

        def notice(record: LeaseRecord | None) -> None:
            self.seen.append(record)
            self.elector.notice(record)

        self.threads = [
            threading.Thread(target=self.elector.run, args=(self.loop_stop,), daemon=True),
            threading.Thread(
                target=lease_watch(
                    api,
                    NAMESPACE,
                    LEASE,
                    on_seen=notice,
                    settings=WatchingSettings.derived(
                        window_s=5.0, request_timeout_s=2.0, max_backoff_s=5.0
                    ),
                ).run,
                args=(self.stop,),
                daemon=True,
            ),
        ]
        for thread in self.threads:
            thread.start()

    def stop_loop(self) -> None:
        self.loop_stop.set()
        self.elector.wake()
        self.threads[0].join(5)

    def close(self) -> None:
        self.stop.set()
        self.stop_loop()


@pytest.fixture
def replicas(kube_api: ApiServer) -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.close()


lease_writes = functools.partial(audit_lease_writes, namespace=NAMESPACE)


def watched_since(kube: ApiServer, identity: str, since: float) -> bool:
    """Whether `identity` opened a watch on the Lease after `since` (server's audit)."""
    return any(
        float(e["mono"]) > since
        for e in kube.audit()
        if e["identity"] == identity and e["verb"] == "watch" and e["path"].startswith(LEASES)
    )


def _leader_and_watching_follower(
    kube_api: ApiServer, replicas: list[Replica]
) -> tuple[Replica, Replica]:
    """gw-a leading and gw-b following it with its Lease watch connected."""
    a = Replica(kube_api, "gw-a")
    replicas.append(a)
    wait_until("gw-a leading", a.elector.valid, 5.0, poll_s=POLL_S)
    b = Replica(kube_api, "gw-b")
    replicas.append(b)
    wait_until(
        "gw-b watching the lease of gw-a",
        lambda: b.elector.holder == "gw-a" and bool(b.seen),
        5.0,
        poll_s=POLL_S,
    )
    return a, b


def test_follower_acquires_a_released_lease_before_its_next_poll(
    kube_api: ApiServer, replicas: list[Replica]
) -> None:
    # b has polled once and follows a; its watch is connected (it listed a's Lease)
    a, b = _leader_and_watching_follower(kube_api, replicas)
    polled_at = b.elector.heartbeat  # b's next poll round is RETRY_S after this
    assert not b.elector.valid()

    a.stop_loop()
    assert a.elector.release()
    released_at = time.monotonic()
    assert released_at < polled_at + RETRY_S / 2, "setup too slow for the check to mean anything"

    # bounded wait well shorter than the retry period: only the watch can make this true
    wait_until(
        "the standby taking the released lease before its next poll",
        b.elector.valid,
        RETRY_S / 3,
        poll_s=POLL_S,
    )
    audit = kube_api.audit()
    writes = lease_writes(audit)
    release = max(t for t, who in writes if who == "gw-a")
    acquired = min(t for t, who in writes if who == "gw-b")
    assert release < acquired < polled_at + RETRY_S
    assert any(r is not None and r.released for r in b.seen)  # seen on the watch
    print(f"\nstandby acquired {acquired - release:.3f}s after the release (retry {RETRY_S:g}s)")


def test_follower_woken_by_renewals_never_takes_a_live_lease(
    kube_api: ApiServer, replicas: list[Replica]
) -> None:
    """The watch sees every renewal of the holder; the follower keeps following it."""
    a = Replica(kube_api, "gw-a")
    replicas.append(a)
    wait_until("gw-a leading", a.elector.valid, 5.0, poll_s=POLL_S)
    b = Replica(kube_api, "gw-b")
    replicas.append(b)
    wait_until("gw-b following gw-a", lambda: b.elector.holder == "gw-a", 5.0, poll_s=POLL_S)
    a.stop_loop()  # the test drives a's rounds from here
    for _ in range(5):  # a renews five times, far more often than b polls
        a.elector.try_once()
        time.sleep(0.1)
    wait_until(
        "renewals seen on the watch",
        lambda: len([r for r in b.seen if r is not None]) >= 4,
        5.0,
        poll_s=POLL_S,
    )
    assert a.elector.valid() and not b.elector.valid()
    holders = {who for _, who in lease_writes(kube_api.audit())}
    assert holders == {"gw-a"}


def test_watch_reconnects_after_a_partition(kube_api: ApiServer, replicas: list[Replica]) -> None:
    """Cut the follower off from the API server and heal: its watch lists and watches again,
    and a later release is still noticed at once."""
    a, b = _leader_and_watching_follower(kube_api, replicas)

    kube_api.partition("gw-b")
    time.sleep(1.0)
    seen_before = len(b.seen)
    kube_api.heal("gw-b")
    healed_at = time.monotonic()
    # a fresh list after the reconnect reaches the elector, and b has polled since the heal
    wait_until("the watch reconnecting", lambda: len(b.seen) > seen_before, 20.0, poll_s=POLL_S)
    wait_until(
        "a new watch after the heal",
        lambda: watched_since(kube_api, "gw-b", healed_at),
        10.0,
        poll_s=POLL_S,
    )
    wait_until(
        "an elector round after the heal",
        lambda: b.elector.heartbeat > healed_at,
        2 * RETRY_S + 1,
        poll_s=POLL_S,
    )
    polled_at = b.elector.heartbeat
    assert b.elector.holder == "gw-a" and not b.elector.valid()

    a.stop_loop()
    assert a.elector.release()
    assert time.monotonic() < polled_at + RETRY_S / 2, "setup too slow for the check to mean it"
    wait_until(
        "the standby taking the released lease before its next poll",
        b.elector.valid,
        RETRY_S / 3,
        poll_s=POLL_S,
    )


def test_a_watched_lease_reads_as_the_same_record_as_a_get(kube_api: ApiServer) -> None:
    """The watch delivers JSON (renewTime "...Z"), a get the client's model (a datetime): both
    must give the same record, or every relist would look like a renewal."""
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("gw-r")))
    store = LeaseStore(api, NAMESPACE, LEASE)
    store.write(None, "gw-r", 15.0, timeout_s=5.0)
    seen: list[LeaseRecord | None] = []
    lease_watch(
        api,
        NAMESPACE,
        LEASE,
        on_seen=seen.append,
        settings=WatchingSettings.derived(window_s=30.0, request_timeout_s=5.0, max_backoff_s=5.0),
    ).list()
    assert seen == [store.get(5.0)]
    assert seen[0] is not None and seen[0].holder == "gw-r"
