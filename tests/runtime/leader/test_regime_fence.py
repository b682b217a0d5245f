"""The replica's regime fence (leader/regime.py) and the CiliumVTEPConfig's plan marks
(leader/vtep.py), on a fake clock, a scripted Lease reader and an in-memory object."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.core.lease import LeaseRecord
from hybrid_gateway.core.routes import RoutePlan
from hybrid_gateway.core.vtep import CRD_DEFAULT_CIDR_MASK
from hybrid_gateway.leader.elector import Term
from hybrid_gateway.leader.regime import RegimeFence, feed_event, feed_list
from hybrid_gateway.leader.routes import SyncResult
from hybrid_gateway.leader.service import LeaderWork
from hybrid_gateway.leader.vtep import ReplicaVtepWriter, VtepOwner
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_contract.plans import (
    ACTIVE_STANDBY_REGIME,
    PLAN_ANNOTATION,
    PLAN_LABEL,
    shard_regime,
)
from hybrid_gateway_contract.sharding import plan_shards

LEASE = "hybrid-gateway-leader"
MINE = shard_regime("bbbb")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(holder: str | None, renew: str = "t1") -> LeaseRecord:
    return LeaseRecord(holder, 15.0, renew, 0, "1")


class Reader:
    def __init__(self) -> None:
        self.states: list[tuple[str, LeaseRecord, Mapping[str, str]]] = []
        self.reads = 0
        self.fail: Exception | None = None

    def read(self, timeout_s: float) -> list[tuple[str, LeaseRecord, Mapping[str, str]]]:
        self.reads += 1
        if self.fail is not None:
            raise self.fail
        return list(self.states)


class Elector:
    def __init__(self) -> None:
        self.leading = True
        self.handovers = 0

    def request_handover(self, wait_idle: Callable[[float], bool]) -> None:
        self.handovers += 1


def fence_for(regime: str, reader: Reader, clock: Clock) -> RegimeFence:
    return RegimeFence(
        regime=regime, lease_name=LEASE, reader=reader, read_timeout_s=1.0, clock=clock
    )


def term(acquired_at: float) -> Term:
    return Term(1, acquired_at, lambda: True)


def test_the_first_write_of_a_term_rereads_the_leases_and_sees_a_simultaneous_winner() -> None:
    clock, reader = Clock(), Reader()
    fence = fence_for(MINE, reader, clock)
    assert not fence.blocked()  # the watch has not seen the active-standby leader yet
    reader.states = [(LEASE, record("gw-x"), {})]  # it acquired at the same moment
    assert not fence.guard(term(acquired_at=clock.now))
    assert reader.reads == 1
    clock.now += 1
    assert not fence.guard(term(acquired_at=90.0))  # no new read: the view is newer than it
    assert reader.reads == 1
    feed_event(fence, "MODIFIED", {"metadata": {"name": LEASE}, "spec": {"holderIdentity": ""}})
    assert fence.guard(term(acquired_at=90.0))  # released: our writes may go
    assert not fence.guard(term(acquired_at=clock.now))  # a later term reads again: held
    assert reader.reads == 2
    reader.states = [(LEASE, record(None, "t2"), {})]
    clock.now += 1
    assert fence.guard(term(acquired_at=clock.now))
    assert reader.reads == 3


def test_a_failed_reread_withholds_the_write() -> None:
    clock, reader = Clock(), Reader()
    fence = fence_for(MINE, reader, clock)
    reader.fail = RuntimeError("connection refused")
    assert not fence.guard(term(acquired_at=clock.now))
    assert fence.last_error == "connection refused"
    reader.fail = None
    assert fence.guard(term(acquired_at=clock.now))


def test_a_lease_of_another_regime_blocks_until_released_or_expired_on_our_clock() -> None:
    clock, reader = Clock(), Reader()
    fence = fence_for(ACTIVE_STANDBY_REGIME, reader, clock)
    spec: dict[str, Any] = {"holderIdentity": "gw-b", "leaseDurationSeconds": 15}
    item: dict[str, Any] = {
        "metadata": {"name": f"{LEASE}-shard-0", "labels": {PLAN_LABEL: "aaaa"}},
        "spec": spec,
    }
    feed_list(fence, [item])
    assert fence.blocked()
    assert fence.decision().describe() == "active-active/aaaa (gw-b)"
    clock.now += 14.9
    assert fence.blocked()
    clock.now += 0.2
    assert not fence.blocked()  # not renewed for a lease duration: expired
    feed_list(fence, [item | {"spec": spec | {"renewTime": "2026-01-01T00:00:01Z"}}])
    assert fence.blocked()
    feed_list(fence, [])  # gone from the group list
    assert not fence.blocked()
    member = {"metadata": {"name": f"{LEASE}-member-0a1b", "labels": {PLAN_LABEL: "aaaa"}}}
    feed_list(fence, [member | {"spec": {"holderIdentity": "gw-b", "leaseDurationSeconds": 15}}])
    assert not fence.blocked()  # a member writes nothing


def test_the_outranked_regime_hands_its_leases_over_and_the_other_waits() -> None:
    clock, reader = Clock(), Reader()
    standby_side = fence_for(ACTIVE_STANDBY_REGIME, reader, clock)
    shard_side = fence_for(MINE, reader, clock)
    leader, owner = Elector(), Elector()
    standby_side.protect(leader, lambda timeout: True)
    shard_side.protect(owner, lambda timeout: True)
    leases: list[tuple[str, LeaseRecord, dict[str, str]]] = [
        (f"{LEASE}-shard-0", record("gw-b"), {PLAN_LABEL: "bbbb"}),
        (LEASE, record("gw-x"), {}),
    ]
    for fence in (standby_side, shard_side):
        for name, rec, labels in leases:
            fence.seen(name, rec, labels)
    assert leader.handovers >= 1  # active-standby yields to any active-active plan
    assert owner.handovers == 0  # ... which waits, writing nothing meanwhile
    assert not shard_side.decision().may_write


def vtep_obj(
    endpoints: list[dict[str, str]], *, mask: str | None, plan: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpoints": endpoints}
    if mask is not None:
        spec["cidrMask"] = mask
    annotations = {PLAN_ANNOTATION: plan} if plan else None
    return {
        "metadata": {"name": "hybrid-gateway", "resourceVersion": "3", "annotations": annotations},
        "spec": spec,
    }


class Store:
    """An in-memory CiliumVTEPConfig that, like the API server, defaults cidrMask."""

    name = "hybrid-gateway"

    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.obj = obj
        self.writes = 0

    def get(self) -> dict[str, Any] | None:
        return self.obj

    def _store(self, body: dict[str, Any]) -> None:
        self.writes += 1
        body["spec"].setdefault("cidrMask", CRD_DEFAULT_CIDR_MASK)
        self.obj = body

    def create(self, body: dict[str, Any], may_write: Callable[[], bool]) -> None:
        self._store(body)

    def replace(self, body: dict[str, Any], may_write: Callable[[], bool]) -> None:
        self._store(body)

    def owned(self, observed: dict[str, Any] | None) -> bool:
        return True  # writes no owner (tests/runtime/leader/test_vtep_owner_adoption.py does)


def ep(name: str, cidr: str, ip: str) -> dict[str, str]:
    return {"name": name, "tunnelEndpoint": ip, "cidr": cidr, "mac": "02:00:00:00:00:01"}


def test_switching_back_resets_the_mask_and_the_plan_then_stays_put() -> None:
    store = Store(
        vtep_obj(
            [ep("vpc-gateway-0", "10.0.0.0/17", "10.0.1.11")], mask="255.255.128.0", plan="bbbb"
        )
    )
    owner = VtepOwner(
        store,  # type: ignore[arg-type]
        vpc_cidrs=[ipaddress.IPv4Network("10.0.0.0/16")],
        node_ip="10.0.1.13",
        mac="02:00:00:00:00:01",
    )
    assert owner.sync(lambda: True)
    assert store.obj is not None
    assert store.obj["spec"]["cidrMask"] == CRD_DEFAULT_CIDR_MASK
    assert not (store.obj["metadata"].get("annotations") or {})
    assert [e["cidr"] for e in store.obj["spec"]["endpoints"]] == ["10.0.0.0/16"]
    assert owner.sync(lambda: True) and store.writes == 1


def test_a_new_plan_keeps_none_of_an_old_plans_endpoints_and_a_mixed_plan_resets_the_mask() -> None:
    vpcs = [ipaddress.IPv4Network("10.0.0.0/16"), ipaddress.IPv4Network("10.1.0.0/24")]
    plan = plan_shards([ipaddress.IPv4Network("10.80.0.0/16")], vpcs, 2)
    assert plan.vtep_prefix_length is None  # /16 and /24 cannot share one length in 8
    names = [name for s in plan.shards for name, _c in s.vtep_endpoints]
    cidrs = [c for s in plan.shards for _n, c in s.vtep_endpoints]
    # an older plan wrote the same names and CIDRs, pointing at gateways that are gone
    old = vtep_obj(
        [ep(n, c, "10.0.1.99") for n, c in zip(names, cidrs, strict=True)],
        mask="255.255.192.0",
        plan="aaaa",
    )
    store = Store(old)
    # the replica's single VTEP writer (one write for every shard it holds) carries the plan
    writer = ReplicaVtepWriter(
        store,  # type: ignore[arg-type]
        plan=plan,
        node_ip="10.0.1.10",
        mac="02:00:00:00:00:01",
        fresh_s=0.0,  # every sync reads the object again
        plan_digest="cccc",
    )
    assert writer.sync(0, lambda: True)
    assert store.obj is not None
    assert {e["tunnelEndpoint"] for e in store.obj["spec"]["endpoints"]} == {"10.0.1.10"}
    assert store.obj["spec"]["cidrMask"] == CRD_DEFAULT_CIDR_MASK
    assert store.obj["metadata"]["annotations"] == {PLAN_ANNOTATION: "cccc"}
    assert writer.sync(0, lambda: True) and store.writes == 1


class _NoRoutes:
    def sync(self, may_write: Callable[[], bool], *, takeover: bool = False) -> SyncResult:
        return SyncResult(RoutePlan())


class _Events:
    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        pass


def test_another_shards_endpoints_go_out_only_after_the_fence_reread_for_its_new_term() -> None:
    """The replica's one VTEP write carries every shard whose term is valid (`terms`: each
    shard work's `term_valid`). A shard whose term started after the fence's last read must
    pass that read too, like every write guard of its term: another regime that acquired at
    the same moment (the watch has not shown it yet) is seen and nothing is written. With
    the term's validity alone, shard 0's lane would publish shard 1's endpoint meanwhile."""
    clock, reader = Clock(), Reader()
    fence = fence_for(MINE, reader, clock)
    plan = plan_shards(
        [ipaddress.IPv4Network("10.80.0.0/16")], [ipaddress.IPv4Network("10.0.0.0/16")], 2
    )
    store = Store(None)
    works: list[LeaderWork] = []
    writer = ReplicaVtepWriter(
        store,  # type: ignore[arg-type]
        plan=plan,
        node_ip="10.0.1.10",
        mac="02:00:00:00:00:01",
        fresh_s=0.0,
        terms=lambda: {i: work.term_valid for i, work in enumerate(works)},
        clock=clock,
    )
    for index in range(2):
        works.append(
            LeaderWork(
                routes=_NoRoutes(),
                vtep=writer.lane(index),
                resync_period_s=16.0,
                retry_period_s=1.0,
                metrics=GatewayMetrics(),
                events=_Events(),
                subject=ObjectRef("v1", "Pod", "gw-a", "ns"),
                identity="gw-a",
                clock=clock,
                fence=fence.guard,
            )
        )

    def lead(index: int) -> Term:
        started = Term(1, clock.now, lambda: True)
        works[index].started_leading(started)
        works[index].step()  # applies the term as the work's run loop does
        return started

    term0 = lead(0)
    clock.now += 0.1
    assert fence.guard(term0) and reader.reads == 1  # shard 0's first write: one fresh read
    clock.now += 1
    lead(1)  # shard 1 taken now; another plan's owner took a Lease at the same moment
    reader.states = [(f"{LEASE}-shard-3", record("gw-z"), {PLAN_LABEL: "aaaa"})]
    assert writer.sync(0, lambda: fence.guard(term0)) is False  # the other plan is seen ...
    assert store.writes == 0  # ... before anything is written
    assert reader.reads == 2  # by shard 1's term, which reread the Leases
    assert not works[1].term_valid()
