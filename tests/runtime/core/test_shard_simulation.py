"""Shard ownership over fake time: replicas deciding from a shared Lease view, one of them stuck.

A model of the coordinator loop (leader/shards.ShardGroup.step): every replica looks at the
Leases each tick, claims what its decision gives it (a free Lease is taken by the first writer,
as the API server's optimistic concurrency does), hands over at most one shard per
`HANDOVER_SPACING_LEASES` lease durations, and renews what it holds. A stuck replica keeps its
membership Lease but never takes a shard (its shard Lease writes fail, its elector is wedged):
the others must neither wait for it forever nor keep handing it shards it then drops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hybrid_gateway.core.shard_group import HANDOVER_SPACING_LEASES
from hybrid_gateway.core.shards import ShardCoordination, ShardOwnership, target_owners

LEASE_S = 3.0
TICK_S = 0.5


@dataclass
class _Replica:
    name: str
    stuck: bool
    brain: ShardCoordination
    last_handover: float = -float("inf")
    handovers: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class _World:
    shards: int
    replicas: list[_Replica]
    holders: dict[int, str | None]
    now: float = 0.0
    history: list[dict[int, str | None]] = field(default_factory=list)

    def view(self) -> ShardOwnership:
        members = frozenset(r.name for r in self.replicas)
        return ShardOwnership(self.shards, members, dict(self.holders))

    def tick(self) -> None:
        for replica in self.replicas:
            decision = replica.brain.decide(self.view(), self.now)
            if replica.stuck:
                continue  # member, but none of its shard Lease writes ever lands
            for shard in sorted(decision.claim):
                if self.holders.get(shard) is None:
                    self.holders[shard] = replica.name
            if decision.release is not None:
                spacing = HANDOVER_SPACING_LEASES * LEASE_S
                if self.now - replica.last_handover >= spacing:
                    replica.last_handover = self.now
                    replica.handovers.append((self.now, decision.release))
                    self.holders[decision.release] = None
        self.history.append(dict(self.holders))
        self.now += TICK_S

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds / TICK_S)):
            self.tick()


def _world(shards: int, names: list[str], stuck: set[str]) -> _World:
    replicas = [
        _Replica(name, name in stuck, ShardCoordination(name, grace_s=LEASE_S)) for name in names
    ]
    return _World(shards, replicas, dict.fromkeys(range(shards)))


def _stuck_name(shards: int) -> str:
    """The member that today's target gives orphans first (so it is the stuck one that
    matters): whichever of gw-a / gw-b the rendezvous hash favours for shard 0 of `shards`."""
    from hybrid_gateway.core.shards import target_owners

    target = target_owners(ShardOwnership(shards, frozenset({"gw-a", "gw-b"}), {}))
    return target[0]


def test_a_stuck_member_cannot_starve_orphans_even_above_the_fair_share() -> None:
    """4 shards, 2 members, one stuck: the healthy one takes all four within the grace period
    (plus a tick), although that is twice its fair share."""
    stuck = _stuck_name(4)
    world = _world(4, ["gw-a", "gw-b"], {stuck})
    healthy = "gw-b" if stuck == "gw-a" else "gw-a"
    world.run(LEASE_S + 2 * TICK_S)
    assert world.holders == dict.fromkeys(range(4), healthy)


def test_a_stuck_receiver_cannot_make_a_shard_bounce() -> None:
    """Over ten minutes the healthy member hands a shard to the stuck one only a few times:
    each stall passes the receiver over for 4, 8, 16, 32, then at most 64 lease durations, so
    six hand-overs in 600 s with 3 s leases, each leaving the shard dark for one grace period.
    Without the memory, a hand-over follows every spacing (two lease durations)."""
    stuck = _stuck_name(4)
    world = _world(4, ["gw-a", "gw-b"], {stuck})
    world.run(600.0)
    healthy = next(r for r in world.replicas if r.name != stuck)
    assert len(healthy.handovers) <= 6, healthy.handovers
    dark = sum(1 for h in world.history for s in range(4) if h[s] is None) * TICK_S
    assert dark <= 6 * LEASE_S * 2, f"{dark} shard-seconds without an owner"


def test_a_recovered_member_gets_its_fair_share_back() -> None:
    """The stall is remembered for a while, not forever: once the stuck member works again
    it is handed its share (two of four) within the longest back-off."""
    stuck = _stuck_name(4)
    world = _world(4, ["gw-a", "gw-b"], {stuck})
    world.run(300.0)
    next(r for r in world.replicas if r.name == stuck).stuck = False
    world.run(ShardCoordination.MAX_STALL_LEASES * LEASE_S + 10 * LEASE_S)
    loads = sorted(sum(1 for h in world.holders.values() if h == r.name) for r in world.replicas)
    assert loads == [2, 2]


def test_healthy_members_spread_evenly_without_stalls() -> None:
    for shards, names in ((4, ["gw-a", "gw-b"]), (8, ["gw-a", "gw-b", "gw-c"])):
        world = _world(shards, names, set())
        world.run(60.0)
        loads = [sum(1 for h in world.holders.values() if h == n) for n in names]
        assert sum(loads) == shards and max(loads) - min(loads) <= 1
        assert not any(r.brain.stalled(world.now) for r in world.replicas)


RETRY_S = 1.0  # the daemon's default retry period at 3 s leases


@dataclass
class _Lease:
    holder: str
    expires: float  # on the deciding replicas' clock


def _claims_after_a_death(
    members: list[str], shards: int, linger_s: float
) -> tuple[set[int], dict[int, float]]:
    """Members share `shards` evenly; at t=0 the first one dies. Its shard Leases, last renewed
    0.5 s before, expire at LEASE_S - 0.5; its membership Lease, renewed after them or its last
    renewal seen later (the watch delivers it late), stays live `linger_s` longer. The survivors
    decide every quarter retry period (the elector's back-off) from the same view; a free Lease
    goes to the first claimant. Returns the orphans and, per orphan taken, how long after its
    expiry that was."""
    brains = {m: ShardCoordination(m, grace_s=LEASE_S) for m in members}
    owners = target_owners(ShardOwnership(shards, frozenset(members), {}))
    dead = members[0]
    expiry = LEASE_S - 0.5
    leases = {s: _Lease(o, expiry if o == dead else float("inf")) for s, o in owners.items()}
    orphans = {s for s, o in owners.items() if o == dead}
    assert orphans, owners
    taken: dict[int, float] = {}
    now = 0.0
    while len(taken) < len(orphans) and now < 10 * LEASE_S:
        live = {m for m in members if m != dead or now < expiry + linger_s}
        holders = {
            s: (lease.holder if now < lease.expires else None) for s, lease in leases.items()
        }
        lapsed = {s: lease.holder for s, lease in leases.items() if holders[s] is None}
        view = ShardOwnership(shards, frozenset(live), holders, lapsed)
        for member in members[1:]:
            for shard in sorted(brains[member].decide(view, now).claim):
                if leases[shard].expires <= now:  # the Lease lets the first writer win
                    leases[shard] = _Lease(member, float("inf"))
                    taken[shard] = now - expiry
        now += RETRY_S / 4
    return orphans, taken


@pytest.mark.parametrize("linger_s", [0.0, 0.9, 2.0, LEASE_S - 0.1])
@pytest.mark.parametrize(
    ("members", "shards"), [(["gw-a", "gw-b"], 4), (["gw-a", "gw-b", "gw-c"], 8)]
)
def test_a_dead_owners_shards_are_claimed_within_a_retry_period_of_their_expiry(
    members: list[str], shards: int, linger_s: float
) -> None:
    """The survivors are at or above their fair share while the dead owner still counts as a
    member: without a designated successor, its orphans waited for its membership to run out
    (or for the grace period). Now each is claimed within one retry period of its expiry,
    however long the dead owner's membership lingers."""
    orphans, taken = _claims_after_a_death(members, shards, linger_s)
    assert set(taken) == orphans, f"orphans never taken: {orphans - set(taken)}"
    late = {s: t for s, t in taken.items() if t > RETRY_S}
    assert not late, f"orphans taken late after their expiry: {late}"
