"""Which replica should own which shard (active-active mode), pure.

Every replica computes the same answer from the same view (the live members and the live shard
holders, as seen on the Leases), so replicas claim disjoint shards without talking to each
other; when their views differ for a moment, the Lease's optimistic concurrency still lets only
one of them win a shard (409 for the other). The decision never moves a shard away from a live
owner except to even out the load, one shard at a time:

- sticky: a shard whose owner is alive stays with it;
- orphans (no live owner: never taken, released, or the owner's Lease expired) go to the live
  member with the fewest shards, ties broken by rendezvous hashing (highest score wins), so a
  failure moves only the failed replica's shards and spreads them evenly;
- balance: when one member owns at least two shards more than another, the most loaded member
  hands over one shard (the one the least loaded member scores highest on); repeated until the
  spread is at most one. A hand-over only happens between live members, so a returning replica
  gets shards back one at a time (the caller spaces hand-overs out), never by flapping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass


def rendezvous_score(shard: int, member: str) -> int:
    """Highest-random-weight score of `member` for `shard`: stable across processes."""
    digest = hashlib.sha256(f"{shard}/{member}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class ShardView:
    """What one replica knows: the shard count, the live members (replicas whose membership
    Lease is live: ready to forward), and each shard's live holder (None when it has none)."""

    shard_count: int
    members: frozenset[str]
    holders: Mapping[int, str | None]

    def holder(self, shard: int) -> str | None:
        return self.holders.get(shard)


@dataclass(frozen=True)
class Move:
    shard: int
    donor: str
    receiver: str


@dataclass(frozen=True)
class ShardDecision:
    claim: frozenset[int]  # free shards this replica should try to acquire now
    release: int | None  # a shard to hand over (balance), or None


def _counts(owners: Mapping[int, str], members: frozenset[str]) -> dict[str, int]:
    counts = dict.fromkeys(members, 0)
    for owner in owners.values():
        if owner in counts:
            counts[owner] += 1
    return counts


def target_owners(view: ShardView) -> dict[int, str]:
    """The owner every shard should have: live members keep theirs, orphans go to the least
    loaded members (ties: highest rendezvous score). Shards held by a replica that is not a
    member (its membership lapsed but its shard Lease is live) stay with it: nobody can take
    them before that Lease expires. Empty when there are no members."""
    owners: dict[int, str] = {}
    for shard in range(view.shard_count):
        holder = view.holder(shard)
        if holder is not None:
            owners[shard] = holder
    if not view.members:
        return owners
    counts = _counts(owners, view.members)
    for shard in range(view.shard_count):
        if shard in owners:
            continue
        chosen = min(view.members, key=lambda m: (counts[m], -rendezvous_score(shard, m), m))
        owners[shard] = chosen
        counts[chosen] += 1
    return owners


def rebalance_move(view: ShardView) -> Move | None:
    """The one hand-over that evens out the load next, or None when the spread between live
    members is at most one. None as well while any shard has no live holder: orphans are
    placed first, and a shard released a moment ago must land before the next move is
    chosen (its receiver does not own it yet), or two donors would serve one receiver."""
    if len(view.members) < 2:
        return None
    held = {s: h for s in range(view.shard_count) if (h := view.holder(s)) is not None}
    if len(held) < view.shard_count:
        return None
    counts = _counts(held, view.members)
    donor = max(counts, key=lambda m: (counts[m], m))
    receiver = min(counts, key=lambda m: (counts[m], m))
    if counts[donor] - counts[receiver] < 2:
        return None
    shards = [s for s, h in held.items() if h == donor]
    shard = max(shards, key=lambda s: (rendezvous_score(s, receiver), -s))
    return Move(shard, donor, receiver)


def fair_share(shard_count: int, member_count: int) -> int:
    """The most shards one member should own: ceil(S / N)."""
    return -(-shard_count // max(1, member_count))


def decide(
    view: ShardView,
    me: str,
    *,
    orphaned_for: Mapping[int, float],
    grace_s: float,
) -> ShardDecision:
    """What `me` should do now.

    Claim the free shards the target assigns to me. A free shard that has stayed free for
    `grace_s` (its target owner may be stuck) may be claimed by any member under its fair
    share, so one slow replica cannot hold a shard up. Release the shard `rebalance_move`
    names when I am its donor. A replica that is not a member claims nothing.
    """
    if me not in view.members:
        return ShardDecision(frozenset(), None)
    target = target_owners(view)
    held = sum(1 for s in range(view.shard_count) if view.holder(s) == me)
    share = fair_share(view.shard_count, len(view.members))
    claim: set[int] = set()
    for shard in range(view.shard_count):
        if view.holder(shard) is not None:
            continue
        if target.get(shard) == me or (
            orphaned_for.get(shard, 0.0) >= grace_s and held + len(claim) < share
        ):
            claim.add(shard)
    move = rebalance_move(view)
    release = move.shard if move is not None and move.donor == me else None
    return ShardDecision(frozenset(claim), release)
