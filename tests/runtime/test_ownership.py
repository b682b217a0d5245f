"""Both modes give the daemon one ownership interface: its tasks, its /readyz check and its
shutdown, so `daemon.run` does not branch on the mode beyond building it.

And the timeouts and back-off every Kubernetes call of either mode (and of the operations
commands) really passes, pinned at the client's REST layer: the server-side watch timeout
(`timeoutSeconds`), the client-side (connect, read) timeouts of a watch, the timeout of a
single request or list page, and the pauses between failed attempts."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client as kclient
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.adapters.kube_nodes import CiliumNodeCache
from hybrid_gateway.adapters.kube_watch import ListWatch
from hybrid_gateway.config import load_config
from hybrid_gateway.daemon import (
    ActiveActiveOwnership,
    ActiveStandbyOwnership,
    Ownership,
    build_ownership,
)
from hybrid_gateway.leader.assembly import OwnershipInputs
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.ops.gather import Target, _Gathered, gather_kubernetes
from hybrid_gateway.reporting import Reporting
from hybrid_gateway.timings import Timings

ENV = {
    "NODE_IP": "10.0.1.10",
    "VPC_CIDR": "10.0.0.0/16",
    "POD_CIDRS": "10.80.0.0/16",
    "ROUTE_TABLE_IDS": "rtb-0123456789abcdef0",
    "POD_NAME": "gw-0",
    "AWS_REGION": "us-east-1",
    "AWS_INSTANCE_ID": "i-0123456789abcdef0",
}


class NoEvents:
    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        pass


#: Nothing is started here, so no request reaches this address (a closed loopback port).
NOWHERE = "http://127.0.0.1:9"


def ownership_of(env: dict[str, str]) -> Ownership:
    """The ownership the daemon builds from `env`, not started."""
    config = load_config(env, ["--no-dataplane"])
    api_client = kclient.ApiClient(kclient.Configuration(host=NOWHERE))
    reporting = Reporting(NoEvents(), ObjectRef("v1", "Pod", "gw-0", "ns"), GatewayMetrics())
    inputs = OwnershipInputs(
        config, Timings.from_config(config), api_client, reporting, "02:00:0a:00:01:0a", bool
    )
    return build_ownership(inputs, None, None, None)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("active-standby", ActiveStandbyOwnership), ("active-active", ActiveActiveOwnership)],
)
def test_both_modes_build_the_same_ownership_interface(mode: str, kind: type) -> None:
    ownership = ownership_of({**ENV, "MODE": mode})
    assert isinstance(ownership, kind)
    names = [task.name for task in ownership.tasks()]
    assert names and len(set(names)) == len(names)
    ready, why = ownership.readiness()()
    assert not ready and why  # before its tasks ran, a replica is not ready, and says why


#: Lease timings whose derived Kubernetes settings differ from every client default.
TIMING = {
    "RENEW_DEADLINE": "4",
    "LEASE_DURATION": "6",
    "RETRY_PERIOD": "1.5",
    "RESYNC_PERIOD": "12.5",
}
#: What the configuration above gives: a request timeout of the renew deadline, a whole-second
#: window of the resync period, a back-off of 0.2 s up to the retry period (at least 1 s).
REQUEST_S, WINDOW_S, BACKOFF = 4.0, 12, [0.2, 0.4, 0.8, 1.5, 1.5]


class Sent:
    """Every request the official client would send, recorded and answered 404 (no request
    leaves the process; every reader goes on to its next read, every watch backs off)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], Any]] = []

    def request(self, method: str, url: str, query_params: Any = None, **kwargs: Any) -> Any:
        self.requests.append((url, dict(query_params or []), kwargs.get("_request_timeout")))
        refused = ApiException(status=404, reason="refused by the test")
        refused.body = b"{}"
        raise refused


class CountedStop(threading.Event):
    """A stop event that records each back-off wait and is set after `waits` of them."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.waits: list[float] = []
        self._left = waits

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0.0))
        self._left -= 1
        if self._left <= 0:
            self.set()
        return self.is_set()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    recorder = Sent()
    monkeypatch.setattr(
        rest.RESTClientObject,
        "request",
        lambda _rest, method, url, **kwargs: recorder.request(method, url, **kwargs),
    )
    return recorder


def watches_of(mode: str) -> list[ListWatch]:
    tasks = ownership_of({**ENV, **TIMING, "MODE": mode}).tasks()
    return [w for t in tasks if isinstance(w := getattr(t.run, "__self__", None), ListWatch)]


def pinned(sent: Sent, watch: ListWatch) -> tuple[list[Any], list[Any], list[float]]:
    """(list page timeouts, (timeoutSeconds, watch timeouts), back-off waits) of one watch."""
    sent.requests.clear()
    stop = CountedStop(len(BACKOFF))
    watch.follow(stop, listed=False)  # every list attempt refused: the back-off shows
    with pytest.raises(ApiException):
        watch.watch_once(threading.Event())
    pages = [timeout for _url, query, timeout in sent.requests if "watch" not in query]
    watches = [(q["timeoutSeconds"], t) for _url, q, t in sent.requests if "watch" in q]
    return pages, watches, stop.waits


@pytest.mark.parametrize(
    ("mode", "count"), [("active-standby", 3), ("active-active", 4)], ids=["standby", "shards"]
)
def test_every_watch_of_the_daemon_passes_the_settings_derived_from_its_config(
    sent: Sent, mode: str, count: int
) -> None:
    watches = watches_of(mode)
    assert len(watches) == count  # Lease, CiliumVTEPConfig, Lease group (+ CiliumNodes)
    for watch in watches:
        pages, watching, waits = pinned(sent, watch)
        assert pages == [REQUEST_S] * len(BACKOFF), watch.what
        assert watching == [(WINDOW_S, (REQUEST_S, WINDOW_S + REQUEST_S))], watch.what
        assert waits == BACKOFF, watch.what


def test_a_watch_built_without_the_config_keeps_the_client_defaults(sent: Sent) -> None:
    """The data plane's CiliumNode cache: a 30 s window, 30 s per request, 0.5 s to 30 s."""
    cache = CiliumNodeCache(kclient.ApiClient(kclient.Configuration(host=NOWHERE)))
    pages, watching, waits = pinned(sent, cache.watch)
    assert pages == [30.0] * len(BACKOFF)
    assert watching == [(30, (30.0, 60.0))]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_the_operations_commands_give_each_read_ten_seconds(sent: Sent) -> None:
    api_client = kclient.ApiClient(kclient.Configuration(host=NOWHERE))
    gather_kubernetes(api_client, Target(), _Gathered())
    assert len(sent.requests) > 5
    assert {timeout for _url, _query, timeout in sent.requests} == {10.0}
