"""The shard assignment: even spread, minimal movement, one owner per shard, convergence."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_gateway.core.shards import (
    ShardOwnership,
    decide,
    fair_share,
    rebalance_move,
    target_owners,
)

NAMES = [f"gw-{c}" for c in "abcdefgh"]


def _settle(shards: int, members: list[str], holders: dict[int, str | None]) -> dict[int, str]:
    """Run every member's decision until nothing changes: claims of the same free shard are
    resolved as the Lease does (the first writer wins), releases free the shard. Bounded."""
    holders = dict(holders)
    for _ in range(10 * shards + 10):
        changed = False
        for me in members:
            view = ShardOwnership(shards, frozenset(members), holders)
            decision = decide(view, me, orphaned_for={}, grace_s=1.0)
            for shard in sorted(decision.claim):
                if holders.get(shard) is None:  # a create/update at the observed version
                    holders[shard] = me
                    changed = True
            if decision.release is not None:
                holders[decision.release] = None
                changed = True
        if not changed:
            break
    else:
        raise AssertionError(f"did not settle: {holders}")
    assert all(holders.get(s) is not None for s in range(shards))
    return {s: h for s, h in holders.items() if h is not None}


def _loads(owners: dict[int, str], members: list[str]) -> list[int]:
    return [sum(1 for o in owners.values() if o == m) for m in members]


@given(
    shards=st.sampled_from([2, 4, 8, 16, 32]),
    n=st.integers(min_value=1, max_value=6),
)
def test_from_nothing_every_shard_gets_one_owner_and_the_spread_is_at_most_one(
    shards: int, n: int
) -> None:
    members = NAMES[:n]
    owners = _settle(shards, members, {})
    loads = _loads(owners, members)
    assert sum(loads) == shards
    assert max(loads) - min(loads) <= 1
    assert max(loads) <= fair_share(shards, n)


@settings(max_examples=200)
@given(
    shards=st.sampled_from([2, 4, 8, 16]),
    n=st.integers(min_value=2, max_value=6),
    data=st.data(),
)
def test_a_member_leaving_moves_only_its_own_shards(
    shards: int, n: int, data: st.DataObject
) -> None:
    members = NAMES[:n]
    before = _settle(shards, members, {})
    gone = data.draw(st.sampled_from(members))
    survivors = [m for m in members if m != gone]
    holders: dict[int, str | None] = {s: (None if o == gone else o) for s, o in before.items()}
    # Right after the failure, before any balancing hand-over: survivors keep every shard.
    view = ShardOwnership(shards, frozenset(survivors), holders)
    target = target_owners(view)
    for shard, owner in before.items():
        if owner != gone:
            assert target[shard] == owner
    after = _settle(shards, survivors, holders)
    moved = {s for s in before if before[s] != after[s]}
    orphaned = {s for s, o in before.items() if o == gone}
    # Orphans move; beyond them only balancing hand-overs, and only as many as needed.
    loads = _loads(after, survivors)
    assert max(loads) - min(loads) <= 1
    assert orphaned <= moved
    assert len(moved - orphaned) <= max(0, len(orphaned) - 1)


@settings(max_examples=200)
@given(
    shards=st.sampled_from([2, 4, 8, 16]),
    n=st.integers(min_value=1, max_value=5),
    data=st.data(),
)
def test_a_member_joining_takes_only_its_fair_share_one_shard_at_a_time(
    shards: int, n: int, data: st.DataObject
) -> None:
    members = NAMES[:n]
    before = _settle(shards, members, {})
    newcomer = NAMES[n]
    grown = [*members, newcomer]
    view = ShardOwnership(shards, frozenset(grown), dict(before))
    # Every donor hands over at most one shard per round.
    releases = [decide(view, m, orphaned_for={}, grace_s=1.0).release for m in grown]
    assert sum(r is not None for r in releases) <= 1
    after = _settle(shards, grown, dict(before))
    moved = {s for s in before if before[s] != after[s]}
    assert all(after[s] == newcomer for s in moved)  # nothing moves between old members
    assert len(moved) == shards // len(grown)  # exactly the newcomer's floor share


@settings(max_examples=300)
@given(
    shards=st.sampled_from([2, 4, 8]),
    members=st.sets(st.sampled_from(NAMES[:5]), min_size=0, max_size=5),
    holders=st.lists(st.sampled_from([None, *NAMES[:6]]), min_size=8, max_size=8),
    orphan_ages=st.lists(st.floats(min_value=0, max_value=3), min_size=8, max_size=8),
    lapsed=st.lists(st.sampled_from([None, *NAMES[:6]]), min_size=8, max_size=8),
)
def test_no_two_members_claim_the_same_shard_from_the_same_view_and_nobody_claims_a_held_one(
    shards: int,
    members: set[str],
    holders: list[str | None],
    orphan_ages: list[float],
    lapsed: list[str | None],
) -> None:
    view = ShardOwnership(
        shards,
        frozenset(members),
        dict(enumerate(holders[:shards])),
        {s: h for s, h in enumerate(lapsed[:shards]) if h is not None and holders[s] is None},
    )
    ages = dict(enumerate(orphan_ages[:shards]))
    targeted: dict[int, str] = {}
    for me in sorted(members):
        decision = decide(view, me, orphaned_for={s: 0.0 for s in ages}, grace_s=1.0)
        for shard in decision.claim:
            assert view.holder(shard) is None
            assert shard not in targeted, f"shard {shard} claimed by {targeted.get(shard)} and {me}"
            targeted[shard] = me
        if decision.release is not None:
            assert view.holder(decision.release) == me
    # A shard free for twice the grace period is tried by every member, even above its fair
    # share (the Lease lets one win); before that only by its target; never a held shard.
    for me in sorted(members):
        decision = decide(view, me, orphaned_for=ages, grace_s=1.0)
        late = {s for s in decision.claim if targeted.get(s) != me}
        assert all(view.holder(s) is None for s in decision.claim)
        assert all(ages[s] >= 2.0 for s in late)
        assert {s for s in range(shards) if view.holder(s) is None and ages[s] >= 2.0} <= (
            decision.claim
        )


def test_a_non_member_claims_nothing_and_keeps_its_live_shards_in_the_target() -> None:
    view = ShardOwnership(4, frozenset({"gw-a"}), {0: "gw-z", 1: None, 2: None, 3: None})
    assert decide(view, "gw-z", orphaned_for={}, grace_s=1.0).claim == frozenset()
    assert target_owners(view) == {0: "gw-z", 1: "gw-a", 2: "gw-a", 3: "gw-a"}


def test_no_hand_over_when_the_spread_is_one_and_one_when_it_is_two() -> None:
    members = frozenset({"gw-a", "gw-b"})
    assert rebalance_move(ShardOwnership(3, members, {0: "gw-a", 1: "gw-a", 2: "gw-b"})) is None
    move = rebalance_move(ShardOwnership(4, members, {0: "gw-a", 1: "gw-a", 2: "gw-a", 3: "gw-b"}))
    assert move is not None and move.donor == "gw-a" and move.receiver == "gw-b"
    # While a shard is free (just released, or orphaned), nobody hands over another.
    assert (
        rebalance_move(ShardOwnership(4, members, {0: "gw-a", 1: "gw-a", 2: "gw-a", 3: None}))
        is None
    )


def test_the_assignment_is_the_same_in_every_process_order() -> None:
    """Rendezvous ties and orphan order do not depend on set iteration order."""
    results = set()
    for order in itertools.permutations(NAMES[:3]):
        view = ShardOwnership(8, frozenset(order), {})
        results.add(tuple(sorted(target_owners(view).items())))
    assert len(results) == 1


def test_a_member_that_let_a_shard_lease_lapse_is_given_no_orphan_until_it_is_taken() -> None:
    """gw-a's shard 0 Lease expired (not released) while its membership is still live: the
    orphans go to gw-b although gw-a is the least loaded; once shard 0 has a holder again,
    gw-a is a receiver like any member."""
    members = frozenset({"gw-a", "gw-b"})
    view = ShardOwnership(4, members, {0: None, 1: "gw-b", 2: "gw-b", 3: None}, {0: "gw-a"})
    assert target_owners(view) == dict.fromkeys(range(4), "gw-b")
    assert decide(view, "gw-b", orphaned_for={}, grace_s=1.0).claim == {0, 3}
    assert decide(view, "gw-a", orphaned_for={}, grace_s=1.0).claim == frozenset()
    taken = ShardOwnership(4, members, {0: "gw-b", 1: "gw-b", 2: "gw-b", 3: None}, {0: "gw-a"})
    assert target_owners(taken)[3] == "gw-a"
    # Everyone lapsed (an API outage for all): nobody is passed over.
    both = ShardOwnership(2, members, {0: None, 1: None}, {0: "gw-a", 1: "gw-b"})
    assert set(target_owners(both).values()) == {"gw-a", "gw-b"}
