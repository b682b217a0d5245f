"""Active-active: three real `hybrid-gateway run --no-dataplane` processes share the shards.

Against the test API server and the EC2 emulator, each daemon behind its own recording EC2
proxy. Ownership is read from the servers' side (routes in the emulator, endpoints in the
CiliumVTEPConfig, holders of the shard Leases), and the fencing proof is the same as the
failover tests': every route write and every change of a VTEP endpoint came from the identity
whose latest successful write of that shard's Lease preceded it, within one lease duration.
Figures are printed (run with `-s`); assertions are about order and ownership, never speed.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.timings import HOLDER_LOSS_LEASES
from hybrid_gateway_contract import Env
from hybrid_gateway_contract.plans import PLAN_ANNOTATION, PLAN_LABEL, plan_digest
from hybrid_gateway_contract.sharding import (
    LEASE_GROUP_LABEL,
    ShardPlan,
    member_lease_name,
    plan_shards,
    shard_lease_name,
)
from hybrid_gateway_testkit.daemon import FAST_LEASE, GatewayDaemon
from hybrid_gateway_testkit.ec2emu import VpcWorld, seed_world
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer, lease_writes

pytestmark = pytest.mark.slow

NAMESPACE = "eks-hybrid-nodes-gateway"
LEASE_NAME = "hybrid-gateway-leader"
POD_CIDRS = ["10.80.0.0/16", "10.81.0.0/16"]
VPC_CIDR = "10.0.0.0/16"
SHARDS = 4
NODE_IPS = {"a": "10.0.1.10", "b": "10.0.1.11", "c": "10.0.1.12", "x": "10.0.1.13"}
LEASE_DURATION_S = float(FAST_LEASE[Env.LEASE_DURATION])
PLAN: ShardPlan = plan_shards(
    [ipaddress.IPv4Network(c) for c in POD_CIDRS], [ipaddress.IPv4Network(VPC_CIDR)], SHARDS
)
SHARD_OF_PREFIX = {p: s.index for s in PLAN.shards for p in s.pod_prefixes}
SHARD_OF_ENDPOINT = {name: s.index for s in PLAN.shards for name, _cidr in s.vtep_endpoints}


@dataclass
class Trio:
    world: VpcWorld  # pod_cidrs are the shard prefixes, so `routes` shows every shard route
    direct: Any
    kube: ApiServer
    replicas: dict[str, GatewayDaemon]
    custom: Any  # CustomObjectsApi as the "tester" identity
    leases: Any  # CoordinationV1Api as the "tester" identity
    vtep_history: list[tuple[str, dict[str, tuple[str, str]]]] = field(default_factory=list)

    def endpoints(self) -> dict[str, tuple[str, str]]:
        try:
            obj = self.custom.get_cluster_custom_object(
                "cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway"
            )
        except Exception:
            return {}
        return {e["name"]: (e["tunnelEndpoint"], e["mac"]) for e in obj["spec"]["endpoints"]}

    def owners(self) -> dict[int, str | None]:
        """Shard -> the replica every route of the shard AND its VTEP endpoints point at."""
        routes = self.world.routes(self.direct)
        endpoints = self.endpoints()
        by_eni = {eni: name for name, eni in self.world.enis.items()}
        by_ip = {r.node_ip: name for name, r in self.replicas.items()}
        owners: dict[int, str | None] = {}
        for shard in PLAN.shards:
            targets = {
                by_eni.get(routes[(t, p)]) for t in self.world.table_ids for p in shard.pod_prefixes
            }
            ends = {by_ip.get(endpoints.get(n, ("", ""))[0]) for n, _c in shard.vtep_endpoints}
            macs_ok = all(
                endpoints.get(n, ("", ""))[1]
                == vxlan_device_mac(endpoints.get(n, ("0.0.0.0", ""))[0])
                for n, _c in shard.vtep_endpoints
            )
            both = targets | ends
            owners[shard.index] = next(iter(both)) if len(both) == 1 and macs_ok else None
        return owners

    def holders(self) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for shard in PLAN.shards:
            try:
                lease = self.leases.read_namespaced_lease(
                    f"{LEASE_NAME}-shard-{shard.index}", NAMESPACE
                )
                out[shard.index] = lease.spec.holder_identity or None
            except Exception:
                out[shard.index] = None
        return out

    def wait_settled(self, live: set[str], timeout_s: float = 20.0) -> dict[int, str]:
        """Every shard owned by a live replica, spread evenly, Leases agreeing."""
        state: dict[str, Any] = {}

        def settled() -> bool:
            owners = self.owners()
            holders = self.holders()
            state.update(owners=owners, holders=holders)
            if any(o not in live for o in owners.values()):
                return False
            if {s: f"gw-{o}" for s, o in owners.items()} != holders:
                return False
            loads = [sum(1 for o in owners.values() if o == n) for n in live]
            return max(loads) - min(loads) <= 1

        wait_until(
            f"shards settled on {sorted(live)}",
            settled,
            timeout_s,
            detail=lambda: f"{state} | {self.logs()}",
        )
        return dict(state["owners"])

    def logs(self) -> str:
        return " | ".join(f"{n}: {r.log(1200)}" for n, r in self.replicas.items())


def start_replica(
    name: str,
    kube: ApiServer,
    world: VpcWorld,
    moto_addr: tuple[str, int],
    tmp_path: Path,
    *,
    active_active: bool = True,
    shards: int = SHARDS,
) -> GatewayDaemon:
    replica = GatewayDaemon.create(
        name,
        kube=kube,
        moto_addr=moto_addr,
        world=world,
        node_ip=NODE_IPS[name],
        namespace=NAMESPACE,
        pod_cidrs=POD_CIDRS,
        log_dir=tmp_path,
        resync_period="0.5",
        extra={Env.MODE: "active-active", Env.SHARDS: str(shards)} if active_active else None,
    )
    replica.start()
    return replica


@pytest.fixture
def trio(
    request: pytest.FixtureRequest,
    kube_api: ApiServer,
    moto_addr: tuple[str, int],
    direct: Any,
    tmp_path: Path,
) -> Iterator[Trio]:
    """Replicas a, b and c in active-active mode (or those named by an indirect parameter)."""
    names: tuple[str, ...] = getattr(request, "param", ("a", "b", "c"))
    from kubernetes import client, config

    seeded = seed_world(direct, tables=2, pod_cidrs=POD_CIDRS, instance_names=("a", "b", "c", "x"))
    world = replace(seeded, pod_cidrs=list(SHARD_OF_PREFIX))
    tester = config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    trio = Trio(
        world,
        direct,
        kube_api,
        {},
        client.CustomObjectsApi(tester),
        client.CoordinationV1Api(tester),
    )
    stop = threading.Event()
    recorder = threading.Thread(target=record_vtep_versions, args=(trio, stop), daemon=True)
    recorder.start()
    try:
        for name in names:
            trio.replicas[name] = start_replica(name, kube_api, world, moto_addr, tmp_path)
        for replica in trio.replicas.values():
            replica.wait_serving()
        yield trio
    finally:
        stop.set()
        for replica in trio.replicas.values():
            replica.close()
        recorder.join(5)


def record_vtep_versions(trio: Trio, stop: threading.Event) -> None:
    """Every version of the CiliumVTEPConfig, from a watch: (resourceVersion, endpoints).
    Each new watch resumes from the last version seen, so no version between two windows is
    missed (a missed version would make the next writer look like it changed the endpoints
    the missed one changed)."""
    from kubernetes import watch

    last: dict[str, str] = {}
    while not stop.is_set():
        try:
            for event in watch.Watch().stream(
                trio.custom.list_cluster_custom_object,
                "cilium.io",
                "v2",
                "ciliumvtepconfigs",
                timeout_seconds=2,
                **last,
            ):
                obj = event["object"]
                last["resource_version"] = str(obj["metadata"]["resourceVersion"])
                if event["type"] == "DELETED":
                    continue
                trio.vtep_history.append(
                    (
                        str(obj["metadata"]["resourceVersion"]),
                        {
                            e["name"]: (e["tunnelEndpoint"], e["mac"])
                            for e in obj.get("spec", {}).get("endpoints", [])
                        },
                    )
                )
                if stop.is_set():
                    return
        except Exception:  # e.g. 410 Gone: start over from a fresh list
            last.clear()
            time.sleep(0.1)


# --- the fencing proof ----------------------------------------------------------------------------


def shard_lease_writes(audit: list[dict[str, Any]]) -> dict[int, list[tuple[float, str]]]:
    """Per shard: successful writes of its Lease as (server monotonic time, writer)."""
    return {
        s.index: lease_writes(audit, NAMESPACE, name=shard_lease_name(LEASE_NAME, s.index))
        for s in PLAN.shards
    }


def shard_writes(trio: Trio, audit: list[dict[str, Any]]) -> list[tuple[float, str, int, str]]:
    """Every shard write: route writes seen by the EC2 proxies, and VTEP writes that changed a
    shard's endpoint (from the recorded versions): (time, writer, shard, what)."""
    writes = [
        (c.started_mono, r.identity, SHARD_OF_PREFIX[c.params["DestinationCidrBlock"]], c.action)
        for r in trio.replicas.values()
        for c in r.proxy.snapshot()
        if c.action in ("CreateRoute", "ReplaceRoute", "DeleteRoute")
        and c.params["DestinationCidrBlock"] in SHARD_OF_PREFIX  # not active-standby's routes
    ]
    versions = dict(trio.vtep_history)
    order = [rv for rv, _ in trio.vtep_history]
    seen: dict[str, tuple[str, str]] = {}
    writes_by_rv = {
        str(e["resourceVersion"]): e
        for e in audit
        if "ciliumvtepconfigs" in e["path"]
        and e["verb"] in ("create", "update", "patch")
        and e["status"] in (200, 201)
    }
    for rv in order:
        endpoints = versions[rv]
        changed = {n for n in endpoints if endpoints[n] != seen.get(n)}
        seen = dict(endpoints)
        entry = writes_by_rv.get(rv)
        if entry is None:
            continue
        for name in changed & set(SHARD_OF_ENDPOINT):
            writes.append(
                (
                    float(entry["mono"]),
                    str(entry["identity"]),
                    SHARD_OF_ENDPOINT[name],
                    f"vtep {name}",
                )
            )
    return sorted(writes)


def assert_only_shard_owners_wrote(trio: Trio) -> int:
    audit = trio.kube.audit()
    held = shard_lease_writes(audit)
    writes = shard_writes(trio, audit)
    for when, who, shard, what in writes:
        times = [t for t, _ in held[shard]]
        i = bisect.bisect_right(times, when) - 1
        assert i >= 0, f"{who} wrote shard {shard} ({what}) before anyone held it"
        since, holder = held[shard][i]
        assert holder == who, f"{who} wrote shard {shard} ({what}) while {holder} held it"
        assert when - since < LEASE_DURATION_S, (
            f"{who} wrote shard {shard} ({what}) {when - since:.3f}s after its last lease write"
        )
    return len(writes)


# --- tests ---------------------------------------------------------------------------------------


def test_three_replicas_spread_the_shards_and_label_their_leases(trio: Trio) -> None:
    owners = trio.wait_settled({"a", "b", "c"})
    loads = sorted(sum(1 for o in owners.values() if o == n) for n in "abc")
    assert loads == [1, 1, 2]
    leases = trio.leases.list_namespaced_lease(
        NAMESPACE, label_selector=f"{LEASE_GROUP_LABEL}={LEASE_NAME}"
    ).items
    names = sorted(lease.metadata.name for lease in leases)
    assert [n for n in names if "-shard-" in n] == [f"{LEASE_NAME}-shard-{i}" for i in range(4)]
    assert len([n for n in names if "-member-" in n]) == 3
    # Readiness and metrics of each replica name its own shards.
    for name, replica in trio.replicas.items():
        mine = sorted(s for s, o in owners.items() if o == name)
        expected = f"ready (owns shards {','.join(map(str, mine))})"
        replica.wait_readyz(answered(200, expected), expected)
        for shard in range(SHARDS):
            held = replica.metric("hybrid_gateway_shard_held", f'shard="{shard}"')
            assert held == (1.0 if shard in mine else 0.0)
        assert replica.metric("hybrid_gateway_shards_held") == len(mine)
        assert replica.metric("hybrid_gateway_members") == 3
    assert assert_only_shard_owners_wrote(trio) > 0


def test_a_killed_replicas_shards_move_and_the_others_never_do(trio: Trio) -> None:
    before = trio.wait_settled({"a", "b", "c"})
    victim = max("abc", key=lambda n: (sum(1 for o in before.values() if o == n), n))
    samples: list[tuple[float, dict[int, str | None]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), trio.owners()))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(0.3)
    killed_at = time.monotonic()
    trio.replicas[victim].signal(signal.SIGKILL)
    survivors = set("abc") - {victim}
    after = trio.wait_settled(survivors)
    stop.set()
    sampler.join(5)
    samples.append((time.monotonic(), trio.owners()))  # the sampler may not have seen the end
    moved = sorted(s for s, o in before.items() if o == victim)
    for when, owners in samples:
        for shard, owner in before.items():
            if owner != victim:
                assert owners[shard] == owner, f"shard {shard} of {owner} changed at {when}"
    for shard in moved:
        assert after[shard] in survivors
        switched = next(
            t for t, owners in samples if t > killed_at and owners[shard] == after[shard]
        )
        print(
            f"shard {shard}: {victim} -> {after[shard]} {switched - killed_at:.2f}s after the kill"
        )
    assert assert_only_shard_owners_wrote(trio) > 0


def test_sigterm_hands_the_shards_over_before_the_leases_expire(trio: Trio) -> None:
    before = trio.wait_settled({"a", "b", "c"})
    victim = next(n for n in "abc" if any(o == n for o in before.values()))
    theirs = [s for s, o in before.items() if o == victim]
    audit_before = shard_lease_writes(trio.kube.audit())
    last_renewal = {s: audit_before[s][-1][0] for s in theirs}
    trio.replicas[victim].signal(signal.SIGTERM)
    assert trio.replicas[victim].wait(15) == 0
    after = trio.wait_settled(set("abc") - {victim})
    writes = shard_lease_writes(trio.kube.audit())
    for shard in theirs:
        taken = next(
            t for t, who in writes[shard] if who == f"gw-{after[shard]}" and t > last_renewal[shard]
        )
        # released by the stopping replica: taken before its last renewal could have expired
        print(f"shard {shard}: taken {taken - last_renewal[shard]:.2f}s after the last renewal")
        assert taken - last_renewal[shard] < LEASE_DURATION_S
    assert assert_only_shard_owners_wrote(trio) > 0


def test_a_returning_replica_gets_shards_back_one_at_a_time_without_flapping(
    trio: Trio, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    trio.wait_settled({"a", "b", "c"})
    trio.replicas["c"].signal(signal.SIGKILL)
    trio.replicas["c"].wait(10)
    two = trio.wait_settled({"a", "b"})
    returned_at = time.monotonic()
    trio.replicas["c"] = start_replica("c", kube_api, trio.world, moto_addr, tmp_path)
    three = trio.wait_settled({"a", "b", "c"}, timeout_s=30)
    moved = [s for s in two if two[s] != three[s]]
    assert moved and all(three[s] == "c" for s in moved), (two, three)
    # Each moved shard was released by its donor once, spaced by the hand-over spacing.
    writes = shard_lease_writes(trio.kube.audit())
    takes = sorted(t for s in moved for t, who in writes[s] if who == "gw-c" and t > returned_at)
    firsts = [min(t for t, who in writes[s] if who == "gw-c" and t > returned_at) for s in moved]
    offsets = [round(t - returned_at, 2) for t in sorted(firsts)]
    print(f"returned replica took shards {moved} at {offsets}s")
    assert len(takes) >= len(moved)
    for s in moved:
        holders_after = [who for t, who in writes[s] if t > returned_at]
        changes = sum(1 for x, y in itertools.pairwise(holders_after) if x != y)
        assert changes <= 1, f"shard {s} flapped: {holders_after}"
    assert assert_only_shard_owners_wrote(trio) > 0


def test_twenty_random_kill_and_restart_rounds_and_no_write_by_a_non_owner(
    trio: Trio, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    rng = random.Random(11)
    trio.wait_settled({"a", "b", "c"})
    for round_number in range(20):
        victim = rng.choice("abc")
        how = rng.choice([signal.SIGKILL, signal.SIGTERM])
        trio.replicas[victim].signal(how)
        trio.replicas[victim].wait(15)
        trio.wait_settled(set("abc") - {victim}, timeout_s=20)
        trio.replicas[victim].proxy.stop()
        trio.replicas[victim] = start_replica(victim, kube_api, trio.world, moto_addr, tmp_path)
        trio.replicas[victim].wait_serving()
        if round_number % 5 == 4:
            trio.wait_settled({"a", "b", "c"}, timeout_s=30)
    trio.wait_settled({"a", "b", "c"}, timeout_s=30)
    count = assert_only_shard_owners_wrote(trio)
    print(f"20 rounds: {count} shard writes, none by a non-owner")


def test_a_partitioned_replica_stops_writing_before_its_shards_are_taken(trio: Trio) -> None:
    before = trio.wait_settled({"a", "b", "c"})
    victim = next(n for n in "abc" if any(o == n for o in before.values()))
    replica = trio.replicas[victim]
    cut_at = time.monotonic()
    trio.kube.partition(replica.identity)
    after = trio.wait_settled(set("abc") - {victim})
    for shard, owner in before.items():
        if owner != victim:
            assert after[shard] == owner  # nobody else's shard moved
    writes = shard_lease_writes(trio.kube.audit())
    mine = [s for s, o in before.items() if o == victim]
    taken = min(t for s in mine for t, who in writes[s] if t > cut_at and who != replica.identity)
    own = [t for t, who, _s, _w in shard_writes(trio, trio.kube.audit()) if who == replica.identity]
    assert not own or max(own) < taken
    # Still cut off, it knows it owns nothing and is no member any more.
    assert replica.running
    wait_for_metric(replica, "hybrid_gateway_shards_held", 0.0)
    print(f"partition: shards {mine} taken {taken - cut_at:.2f}s after the cut")
    trio.kube.heal(replica.identity)
    trio.wait_settled({"a", "b", "c"}, timeout_s=30)
    assert assert_only_shard_owners_wrote(trio) > 0


def test_a_replica_whose_eni_drops_forwarded_packets_takes_no_shard(
    trio: Trio, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    trio.wait_settled({"a", "b", "c"})
    eni = trio.world.enis["c"]
    trio.direct.modify_network_interface_attribute(
        NetworkInterfaceId=eni, SourceDestCheck={"Value": True}
    )
    trio.replicas["c"].signal(signal.SIGKILL)
    trio.replicas["c"].wait(10)
    trio.replicas["c"].proxy.stop()
    trio.replicas["c"] = start_replica("c", kube_api, trio.world, moto_addr, tmp_path)
    replica = trio.replicas["c"]
    replica.wait_readyz(lambda status, body: status == 503 and eni in body, f"unready naming {eni}")
    trio.wait_settled({"a", "b"})
    time.sleep(3 * LEASE_DURATION_S)  # long enough to have claimed its share if it could
    assert "c" not in trio.owners().values()
    assert replica.metric("hybrid_gateway_shards_held") == 0.0
    trio.direct.modify_network_interface_attribute(
        NetworkInterfaceId=eni, SourceDestCheck={"Value": False}
    )
    trio.wait_settled({"a", "b", "c"}, timeout_s=30)
    assert assert_only_shard_owners_wrote(trio) > 0


def test_an_owner_whose_eni_stops_forwarding_gives_up_membership_then_its_shards(
    trio: Trio,
) -> None:
    """Eligibility is checked during a term, not only when a Lease is taken: c owns shards, then
    an operator turns its source/destination check back on (the instance attribute: one flag
    with the primary ENI's in EC2). c gives up its membership first, then, after the bound
    (two lease durations), hands its shards over; a and b take them; c writes no route to its
    ENI after it read the flag, and says why it is not ready."""
    owners = trio.wait_settled({"a", "b", "c"})
    assert "c" in owners.values()
    c = trio.replicas["c"]
    member = member_lease_name(LEASE_NAME, c.identity)
    turned_on_mono = time.monotonic()
    trio.direct.modify_instance_attribute(
        InstanceId=trio.world.instances["c"], SourceDestCheck={"Value": True}
    )
    trio.wait_settled({"a", "b"}, timeout_s=30)
    moved = time.monotonic() - turned_on_mono
    audit = trio.kube.audit()
    member_release = max(
        t for t, who in lease_writes(audit, NAMESPACE, name=member) if who == c.identity
    )
    taken = min(
        t
        for writes in shard_lease_writes(audit).values()
        for (t, who), (_, before) in zip(writes[1:], writes, strict=False)
        if t > turned_on_mono and before == c.identity and who != c.identity
    )
    assert member_release < taken  # membership first, then the shards
    assert taken - member_release >= 0.5 * LEASE_DURATION_S  # shards only after the bound
    late = c.writes_after_check_read_on(("CreateRoute", "ReplaceRoute"))
    assert late == [], f"c wrote routes to an ENI that drops forwarded packets: {late}"
    c.wait_readyz(lambda s, b: s == 503 and "source/destination check is ON" in b, "c names it")
    wait_for_metric(c, "hybrid_gateway_shards_held", 0.0)
    print(f"\nENI check on at an owner: its shards owned by the others {moved:.2f}s later")
    trio.direct.modify_instance_attribute(
        InstanceId=trio.world.instances["c"], SourceDestCheck={"Value": False}
    )
    trio.wait_settled({"a", "b", "c"}, timeout_s=40)
    assert assert_only_shard_owners_wrote(trio) > 0


def test_a_replica_refused_its_leases_with_403_loses_its_shards_loudly(trio: Trio) -> None:
    """RBAC taken away from one replica (every Lease call answered 403): its shards move to the
    others, and it says why in its metrics, Events and, after several lease durations, its
    readiness; given back, it rejoins."""
    before = trio.wait_settled({"a", "b", "c"})
    victim = next(n for n in "abc" if any(o == n for o in before.values()))
    replica = trio.replicas[victim]
    trio.kube.inject_errors(replica.identity, code=403, count=100_000, resource="leases")
    after = trio.wait_settled(set("abc") - {victim})
    assert all(after[s] == o for s, o in before.items() if o != victim)
    wait_for_metric(replica, "hybrid_gateway_shards_held", 0.0)
    errors = replica.metric("hybrid_gateway_api_errors_total", 'api="lease",operation="update"')
    assert errors is not None and errors > 0
    replica.wait_readyz(
        lambda status, body: status == 503 and "403" in body, "unready naming the 403", 20
    )
    from kubernetes import client

    events = client.CoreV1Api(trio.leases.api_client).list_namespaced_event(NAMESPACE).items
    reasons = {e.reason for e in events if e.involved_object.name == replica.identity}
    assert {"ShardLost", "ShardLeaseUnavailable"} <= reasons, reasons
    trio.kube.inject_errors(replica.identity, count=0, resource="leases")
    trio.wait_settled({"a", "b", "c"}, timeout_s=30)
    assert assert_only_shard_owners_wrote(trio) > 0


@pytest.mark.parametrize("trio", [()], indirect=True)
def test_switching_from_active_standby_waits_for_its_leader_then_takes_every_shard(
    trio: Trio, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    """A rolling update from active-standby: the new replicas claim nothing (no route, no VTEP
    write) while the old leader holds its Lease, and everything once it released it."""
    old = start_replica("a", kube_api, trio.world, moto_addr, tmp_path, active_active=False)
    trio.replicas["a"] = old
    old.wait_readyz(answered(200, "ready (leader)"), "the old leader ready")
    for name in ("b", "c"):
        trio.replicas[name] = start_replica(name, kube_api, trio.world, moto_addr, tmp_path)
    for name in ("b", "c"):
        trio.replicas[name].wait_readyz(
            lambda status, body: "waiting for active-standby (gw-a) to stop" in body, "waiting"
        )
    time.sleep(2 * LEASE_DURATION_S)
    assert shard_writes(trio, trio.kube.audit()) == []
    assert all(h is None for h in trio.holders().values())
    old.signal(signal.SIGTERM)
    assert old.wait(15) == 0
    owners = trio.wait_settled({"b", "c"})
    audit = trio.kube.audit()
    released = max(
        float(e["mono"])
        for e in audit
        if e["identity"] == "gw-a" and e["name"] == LEASE_NAME and e["verb"] == "update"
    )
    taken = [min(t for t, _who in writes) for writes in shard_lease_writes(audit).values()]
    assert all(t > released for t in taken)  # no shard Lease before the old leader let go
    print(f"migration: shards taken {[round(t - released, 2) for t in taken]}s after the release")
    assert sorted(owners.values()) == ["b", "b", "c", "c"]
    assert assert_only_shard_owners_wrote(trio) > 0


def answered(status: int, body: str) -> Callable[[int, str], bool]:
    return lambda got_status, got_body: (got_status, got_body.strip()) == (status, body)


def wait_for_metric(
    replica: GatewayDaemon, name: str, value: float, timeout_s: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while replica.metric(name) != value:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{name} of {replica.identity} never {value}: {replica.metric(name)}"
            )
        time.sleep(0.05)


# --- one regime at a time: migration, rollback, plan changes -------------------------------------
# A regime is the mode and plan a replica writes under (hybrid_gateway_contract.plans). The proof
# is server-side: every route write any replica sent (its EC2 proxy) and every CiliumVTEPConfig
# write the API server stored (its audit), in time order, grouped by the writer's regime: the
# regimes follow each other and never interleave.

AS = "active-standby"


def data_writes(trio: Trio, audit: list[dict[str, Any]]) -> list[tuple[float, str, str]]:
    """Every route write sent and every stored CiliumVTEPConfig write: (time, writer, what)."""
    writes = [
        (c.started_mono, r.identity, f"{c.action} {c.params['DestinationCidrBlock']}")
        for r in trio.replicas.values()
        for c in r.proxy.snapshot()
        if c.action in ("CreateRoute", "ReplaceRoute", "DeleteRoute")
    ]
    writes += [
        (float(e["mono"]), str(e["identity"]), f"vtep {e['verb']}")
        for e in audit
        if "ciliumvtepconfigs" in e["path"]
        and e["verb"] in ("create", "update", "patch")
        and e["status"] in (200, 201)
    ]
    return sorted(writes)


def regime_gap(trio: Trio, old: set[str], new: set[str]) -> float:
    """Seconds from the old regime's last Lease write (the last one's SIGTERM release) to the
    new regime's first data write, from the servers' records (a figure, not asserted)."""
    audit = trio.kube.audit()
    released = max(when for when, who in lease_writes(audit, NAMESPACE) if who in old)
    first_new = min(when for when, who, _what in data_writes(trio, audit) if who in new)
    return first_new - released


def regime_sequence(trio: Trio, regime_of: dict[str, str]) -> list[str]:
    """The regimes of all data writes in time order, consecutive repeats collapsed."""
    sequence: list[str] = []
    for _when, who, _what in data_writes(trio, trio.kube.audit()):
        regime = regime_of[who]
        if not sequence or sequence[-1] != regime:
            sequence.append(regime)
    return sequence


def table_routes(trio: Trio) -> dict[tuple[str, str], str]:
    """(table, destination) -> target of every route but the local one, in the owned tables."""
    reply = trio.direct.describe_route_tables(RouteTableIds=trio.world.table_ids)
    return {
        (table["RouteTableId"], route["DestinationCidrBlock"]): str(
            route.get("NetworkInterfaceId") or route.get("GatewayId") or "?"
        )
        for table in reply["RouteTables"]
        for route in table["Routes"]
        if route.get("GatewayId") != "local" and route.get("DestinationCidrBlock")
    }


def vtep_object(trio: Trio) -> dict[str, Any]:
    return dict(
        trio.custom.get_cluster_custom_object(
            "cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway"
        )
    )


def vtep_spec(trio: Trio) -> dict[str, Any]:
    return dict(vtep_object(trio)["spec"])


@pytest.mark.parametrize("trio", [()], indirect=True)
def test_migration_with_a_standby_never_lets_both_modes_write(
    trio: Trio, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    """A rolling update from active-standby with the old standby still running: when the old
    leader stops, its standby and the new shard owners race for the free Leases. Whoever
    wins, the other writes nothing until it stopped: the writes of the two modes follow each
    other and never interleave."""
    old = start_replica("a", kube_api, trio.world, moto_addr, tmp_path, active_active=False)
    trio.replicas["a"] = old
    old.wait_readyz(answered(200, "ready (leader)"), "the old leader ready")
    trio.replicas["x"] = start_replica(
        "x", kube_api, trio.world, moto_addr, tmp_path, active_active=False
    )
    trio.replicas["x"].wait_readyz(answered(200, "ready (standby)"), "the old standby ready")
    for name in ("b", "c"):
        trio.replicas[name] = start_replica(name, kube_api, trio.world, moto_addr, tmp_path)
        trio.replicas[name].wait_serving()
    old.signal(signal.SIGTERM)
    assert old.wait(15) == 0
    time.sleep(3 * LEASE_DURATION_S)  # the race is over; the loser waits
    standby = trio.replicas["x"]
    if standby.readyz() == (200, "ready (leader)\n") or "leader" in standby.readyz()[1]:
        print("migration race: the old standby won; the shard owners wait for it")
        standby.signal(signal.SIGTERM)  # the rollout removes it next
        assert standby.wait(15) == 0
    else:
        print(f"migration race: the shard owners won; the old standby: {standby.readyz()}")
        time.sleep(HOLDER_LOSS_LEASES * LEASE_DURATION_S)
        status, body = standby.readyz()
        assert status == 200 and "waiting for active-active/" in body, body
    trio.wait_settled({"b", "c"}, timeout_s=30)
    regimes = {"gw-a": AS, "gw-x": AS, "gw-b": "aa", "gw-c": "aa"}
    assert regime_sequence(trio, regimes) == [AS, "aa"]
    gap = regime_gap(trio, {"gw-a", "gw-x"}, {"gw-b", "gw-c"})
    print(f"migration: first shard write {gap:.2f}s after the last active-standby release")
    assert assert_only_shard_owners_wrote(trio) > 0


@pytest.mark.parametrize("trio", [("b", "c")], indirect=True)
def test_rollback_to_active_standby_waits_for_the_last_shard_owner_and_removes_shard_routes(
    trio: Trio, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    """A rolling update back to active-standby: the new replica stays a standby while any
    shard owner holds a live shard Lease; once the last one stopped it leads, and its first
    sync removes the shard routes and the shard endpoints and resets `cidrMask`, with no
    manual step. The two modes' writes never interleave."""
    trio.wait_settled({"b", "c"})
    assert vtep_spec(trio)["cidrMask"] == "255.255.192.0"  # the plan's /18 endpoints
    new = start_replica("x", kube_api, trio.world, moto_addr, tmp_path, active_active=False)
    trio.replicas["x"] = new
    new.wait_readyz(
        lambda status, body: status == 200 and "waiting for active-active/" in body,
        "the new replica waiting for the shard owners",
    )
    assert "gw-b" in new.readyz()[1] and "gw-c" in new.readyz()[1]
    # longer than a replica may go without seeing a live holder of its own Lease: waiting for
    # another regime keeps it ready, or a surge rollout would never remove the old pods
    time.sleep((HOLDER_LOSS_LEASES + 1) * LEASE_DURATION_S)
    status, body = new.readyz()
    assert status == 200 and "waiting for active-active/" in body, body
    assert not [w for w in data_writes(trio, trio.kube.audit()) if w[1] == "gw-x"]
    trio.replicas["b"].signal(signal.SIGTERM)
    assert trio.replicas["b"].wait(15) == 0
    trio.wait_settled({"c"}, timeout_s=30)
    assert not [w for w in data_writes(trio, trio.kube.audit()) if w[1] == "gw-x"]
    trio.replicas["c"].signal(signal.SIGTERM)
    assert trio.replicas["c"].wait(15) == 0
    # The last shard owner stayed until the leader's writes had moved what pointed at it
    # (the leader never takes a shard Lease: waiting for a new holder would last the whole
    # drain budget).
    drained = trio.replicas["c"].log(100_000)
    assert "moved in" in drained and "stopping with" not in drained, drained[-3000:]
    new.wait_readyz(answered(200, "ready (leader)"), "the new leader ready", timeout_s=30)
    eni = trio.world.enis["x"]
    expected = {(t, c): eni for t in trio.world.table_ids for c in POD_CIDRS}
    wait_until(
        "only the leader's routes",
        lambda: table_routes(trio) == expected,
        30.0,
        poll_s=0.1,
        detail=trio.logs,
    )
    spec = vtep_spec(trio)
    assert spec.get("cidrMask") == "255.255.255.0"  # reset: the CRD's default again
    assert PLAN_ANNOTATION not in (vtep_object(trio)["metadata"].get("annotations") or {})
    assert [(e["cidr"], e["tunnelEndpoint"]) for e in spec["endpoints"]] == [
        (VPC_CIDR, NODE_IPS["x"])
    ]
    regimes = {"gw-b": "aa", "gw-c": "aa", "gw-x": AS}
    assert regime_sequence(trio, regimes) == ["aa", AS]
    print(
        f"rollback: first leader write {regime_gap(trio, {'gw-b', 'gw-c'}, {'gw-x'}):.2f}s "
        "after the last shard owner's release"
    )


def plan_of(shards: int) -> ShardPlan:
    return plan_shards(
        [ipaddress.IPv4Network(c) for c in POD_CIDRS], [ipaddress.IPv4Network(VPC_CIDR)], shards
    )


def serves_plan(trio: Trio, plan: ShardPlan, live: set[str]) -> bool:
    """The tables hold exactly the plan's routes (nothing of another cut), each to a live
    replica, and the CiliumVTEPConfig exactly the plan's endpoints, each to a live replica."""
    routes = table_routes(trio)
    prefixes = {p for s in plan.shards for p in s.pod_prefixes}
    enis = {trio.world.enis[n] for n in live}
    if set(routes) != {(t, p) for t in trio.world.table_ids for p in prefixes}:
        return False
    if not set(routes.values()) <= enis:
        return False
    endpoints = vtep_spec(trio)["endpoints"]
    cidrs = sorted(c for s in plan.shards for _n, c in s.vtep_endpoints)
    ips = {NODE_IPS[n] for n in live}
    return sorted(e["cidr"] for e in endpoints) == cidrs and all(
        e["tunnelEndpoint"] in ips for e in endpoints
    )


@pytest.mark.parametrize("trio", [()], indirect=True)
@pytest.mark.parametrize("change", [(4, 2), (2, 4)], ids=["4-to-2", "2-to-4"])
def test_a_shard_count_change_waits_for_the_old_plan_and_removes_its_cut(
    trio: Trio,
    kube_api: ApiServer,
    moto_addr: tuple[str, int],
    tmp_path: Path,
    change: tuple[int, int],
) -> None:
    """A rolling update that changes SHARDS: the new replicas claim nothing while a shard Lease
    of the old plan is live; after the last old replica stopped they take every shard of the
    new plan, delete every route of the old cut (after 4 -> 2 the old /18s would keep beating
    the new /17s), publish the new endpoints with the new plan's mask, and name the plan. The
    two plans' writes never interleave."""
    old_shards, new_shards = change
    old_plan, new_plan = plan_of(old_shards), plan_of(new_shards)
    for name in ("b", "c"):
        trio.replicas[name] = start_replica(
            name, kube_api, trio.world, moto_addr, tmp_path, shards=old_shards
        )
    wait_until(
        "the old plan served",
        lambda: serves_plan(trio, old_plan, {"b", "c"}),
        30.0,
        poll_s=0.1,
        detail=trio.logs,
    )
    for name in ("a", "x"):
        trio.replicas[name] = start_replica(
            name, kube_api, trio.world, moto_addr, tmp_path, shards=new_shards
        )
    for name in ("a", "x"):
        trio.replicas[name].wait_readyz(
            lambda status, body: status == 200 and "waiting for active-active/" in body,
            "the new replicas waiting for the old plan",
        )
    time.sleep(2 * LEASE_DURATION_S)
    assert not [w for w in data_writes(trio, trio.kube.audit()) if w[1] in ("gw-a", "gw-x")]
    for name in ("b", "c"):
        trio.replicas[name].signal(signal.SIGTERM)
        assert trio.replicas[name].wait(15) == 0
    # The last old-plan replica's drain ends when the new plan's writes have moved its
    # endpoints and retired its routes, not at the end of the drain budget: after 4 -> 2 nobody
    # ever takes the old shards 2 and 3, and waiting for a new holder of those would last it out.
    drained = trio.replicas["c"].log(100_000)
    assert "moved in" in drained and "stopping with" not in drained, drained[-3000:]
    wait_until(
        "the new plan served",
        lambda: serves_plan(trio, new_plan, {"a", "x"}),
        30.0,
        poll_s=0.1,
        detail=trio.logs,
    )
    assert new_plan.vtep_prefix_length is not None
    assert vtep_spec(trio)["cidrMask"] == str(
        ipaddress.IPv4Network(f"0.0.0.0/{new_plan.vtep_prefix_length}").netmask
    )
    digest = plan_digest(
        [ipaddress.IPv4Network(c) for c in POD_CIDRS],
        [ipaddress.IPv4Network(VPC_CIDR)],
        new_shards,
    )
    assert vtep_object(trio)["metadata"]["annotations"][PLAN_ANNOTATION] == digest
    for index in range(new_shards):
        lease = trio.leases.read_namespaced_lease(shard_lease_name(LEASE_NAME, index), NAMESPACE)
        assert lease.metadata.labels[PLAN_LABEL] == digest
    deleted = [w for w in data_writes(trio, trio.kube.audit()) if w[2].startswith("DeleteRoute")]
    old_cut = {p for s in old_plan.shards for p in s.pod_prefixes}
    assert {w[2].split()[1] for w in deleted} == old_cut  # every old route, by a new owner
    assert {w[1] for w in deleted} <= {"gw-a", "gw-x"}
    regimes = {"gw-b": "old", "gw-c": "old", "gw-a": "new", "gw-x": "new"}
    assert regime_sequence(trio, regimes) == ["old", "new"]
    gap = regime_gap(trio, {"gw-b", "gw-c"}, {"gw-a", "gw-x"})
    print(
        f"plan change {old_shards} -> {new_shards}: first new-plan write {gap:.2f}s after the "
        f"last old-plan release; {len(deleted)} old routes deleted"
    )
