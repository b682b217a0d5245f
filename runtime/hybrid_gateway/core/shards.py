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
- a dead owner is no successor: a member that let a shard Lease expire (not released) is given
  no orphan while that Lease stays expired. Its membership Lease may outlive its shard Leases
  (renewed after them, or its renewal seen later), and until then it would otherwise be the
  least loaded member and the target of its own orphans: the live members would wait for its
  membership to run out (or for the grace below) before anyone claimed them. So each orphan
  of a dead owner has one designated successor among the others, who claims it at expiry;
- balance: when one member owns at least two shards more than another, the most loaded member
  hands over one shard (the one the least loaded member scores highest on); repeated until the
  spread is at most one. A hand-over only happens between live members, so a returning replica
  gets shards back one at a time (the caller spaces hand-overs out), never by flapping;
- no starving, no bouncing (`ShardCoordination`): a member that was given a free shard and did
  not take it within the grace period (its Lease writes fail, its elector is wedged, it is
  overloaded) is passed over for a while, doubling with each repeat: orphans go to the others,
  even above their fair share, and no hand-over is aimed at it. A shard free for twice the
  grace period is claimed by every member (the Lease lets one win), whatever the views say.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field


def rendezvous_score(shard: int, member: str) -> int:
    """Highest-random-weight score of `member` for `shard`: stable across processes."""
    digest = hashlib.sha256(f"{shard}/{member}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class ShardOwnership:
    """What one replica knows: the shard count, the live members (replicas whose membership
    Lease is live: ready to forward), each shard's live holder (None when it has none), and
    for a shard whose Lease expired without a release, the holder that let it expire."""

    shard_count: int
    members: frozenset[str]
    holders: Mapping[int, str | None]
    lapsed: Mapping[int, str] = field(default_factory=dict)

    def holder(self, shard: int) -> str | None:
        return self.holders.get(shard)

    def lapsed_holders(self) -> frozenset[str]:
        """Holders that stopped renewing a shard Lease nobody has taken since: presumed dead."""
        return frozenset(h for s, h in self.lapsed.items() if self.holder(s) is None)


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


def _receivers(view: ShardOwnership, avoid: frozenset[str]) -> frozenset[str]:
    """The members that may be given a shard: all but the stalled ones and those that let a
    shard Lease lapse, or all if that leaves none (then the grace rule decides)."""
    return (view.members - avoid - view.lapsed_holders()) or view.members


def target_owners(view: ShardOwnership, *, avoid: frozenset[str] = frozenset()) -> dict[int, str]:
    """The owner every shard should have: live members keep theirs, orphans go to the least
    loaded members not in `avoid` and not lapsed (ties: highest rendezvous score). Shards
    held by a replica that is not a member (its membership lapsed but its shard Lease is
    live) stay with it: nobody can take them before that Lease expires. Empty when there are
    no members."""
    owners: dict[int, str] = {}
    for shard in range(view.shard_count):
        holder = view.holder(shard)
        if holder is not None:
            owners[shard] = holder
    if not view.members:
        return owners
    receivers = _receivers(view, avoid)
    counts = _counts(owners, receivers)
    for shard in range(view.shard_count):
        if shard in owners:
            continue
        chosen = min(receivers, key=lambda m: (counts[m], -rendezvous_score(shard, m), m))
        owners[shard] = chosen
        counts[chosen] += 1
    return owners


def rebalance_move(view: ShardOwnership, *, avoid: frozenset[str] = frozenset()) -> Move | None:
    """The one hand-over that evens out the load next, or None when the spread between live
    members (receivers: not in `avoid`) is at most one. None as well while any shard has no
    live holder: orphans are placed first, and a shard released a moment ago must land before
    the next move is chosen (its receiver does not own it yet), or two donors would serve one
    receiver."""
    if len(view.members) < 2:
        return None
    held = {s: h for s in range(view.shard_count) if (h := view.holder(s)) is not None}
    if len(held) < view.shard_count:
        return None
    counts = _counts(held, view.members)
    receivers = view.members - avoid
    if not receivers:
        return None
    donor = max(counts, key=lambda m: (counts[m], m))
    receiver = min(receivers, key=lambda m: (counts[m], m))
    if counts[donor] - counts[receiver] < 2:
        return None
    shards = [s for s, h in held.items() if h == donor]
    shard = max(shards, key=lambda s: (rendezvous_score(s, receiver), -s))
    return Move(shard, donor, receiver)


def fair_share(shard_count: int, member_count: int) -> int:
    """The most shards one member should own: ceil(S / N)."""
    return -(-shard_count // max(1, member_count))


def decide(
    view: ShardOwnership,
    me: str,
    *,
    orphaned_for: Mapping[int, float],
    grace_s: float,
    stalled: frozenset[str] = frozenset(),
) -> ShardDecision:
    """What `me` should do now.

    Claim the free shards the target (passing over the `stalled` members) assigns to me. A
    free shard that has stayed free for twice `grace_s` is claimed by every member, even
    above its fair share: views that disagree about who is stalled cannot leave a shard
    dark (the Lease lets one claimant win; balancing evens the load out afterwards). Release
    the shard `rebalance_move` names when I am its donor. A non-member claims nothing.
    """
    if me not in view.members:
        return ShardDecision(frozenset(), None)
    target = target_owners(view, avoid=stalled)
    claim: set[int] = set()
    for shard in range(view.shard_count):
        if view.holder(shard) is not None:
            continue
        if target.get(shard) == me or orphaned_for.get(shard, 0.0) >= 2 * grace_s:
            claim.add(shard)
    move = rebalance_move(view, avoid=stalled)
    release = move.shard if move is not None and move.donor == me else None
    return ShardDecision(frozenset(claim), release)


@dataclass
class _Orphan:
    since: float  # free since (on this replica's clock)
    target: str | None  # the member the target gave it when last looked at
    target_since: float


@dataclass
class _Stall:
    until: float
    strikes: int


@dataclass
class ShardCoordination:
    """One replica's memory between decisions: how long each free shard has been free, and
    which members were given one and did not take it (stalled).

    A member whose assigned free shard stays free for `grace_s` is stalled for
    INITIAL_STALL_LEASES grace periods, doubling with each repeat up to MAX_STALL_LEASES; a
    stalled member is given no orphan and no hand-over, so a stuck receiver costs one grace
    period per stall, not one per hand-over spacing. Seen holding a shard while not stalled,
    a member's strikes are forgotten. Every replica observes the same Leases, so they agree on
    who is stalled up to their observation times. Pure: the caller passes the time.
    """

    me: str
    grace_s: float
    _orphans: dict[int, _Orphan] = field(default_factory=dict)
    _stalls: dict[str, _Stall] = field(default_factory=dict)

    INITIAL_STALL_LEASES = 4.0
    MAX_STALL_LEASES = 64.0

    def stalled(self, now: float) -> frozenset[str]:
        return frozenset(m for m, stall in self._stalls.items() if stall.until > now)

    def observe(self, view: ShardOwnership, now: float) -> frozenset[str]:
        """Fold a view in; returns the members stalled by this observation (to report)."""
        for member in list(self._stalls):
            if member not in view.members:
                del self._stalls[member]
        for shard in range(view.shard_count):
            holder = view.holder(shard)
            if holder is None:
                continue
            self._orphans.pop(shard, None)
            stall = self._stalls.get(holder)
            if stall is not None and stall.until <= now:
                del self._stalls[holder]  # it takes shards again
        newly: set[str] = set()
        target = target_owners(view, avoid=self.stalled(now))
        for shard in range(view.shard_count):
            if view.holder(shard) is not None:
                continue
            chosen = target.get(shard)
            orphan = self._orphans.get(shard)
            if orphan is None:
                self._orphans[shard] = _Orphan(now, chosen, now)
                continue
            if orphan.target != chosen:
                orphan.target, orphan.target_since = chosen, now
                continue
            late = chosen is not None and now - orphan.target_since >= self.grace_s
            if late and chosen not in self.stalled(now) and len(view.members) > 1:
                assert chosen is not None
                newly.add(chosen)
                self._stall(chosen, now)
                target = target_owners(view, avoid=self.stalled(now))
                orphan.target, orphan.target_since = target.get(shard), now
        return frozenset(newly)

    def _stall(self, member: str, now: float) -> None:
        previous = self._stalls.get(member)
        strikes = (previous.strikes if previous is not None else 0) + 1
        leases = min(self.MAX_STALL_LEASES, self.INITIAL_STALL_LEASES * 2 ** (strikes - 1))
        self._stalls[member] = _Stall(now + leases * self.grace_s, strikes)

    def orphaned_for(self, now: float) -> dict[int, float]:
        return {shard: now - orphan.since for shard, orphan in self._orphans.items()}

    def decide(self, view: ShardOwnership, now: float) -> ShardDecision:
        """`decide` for `self.me` after folding `view` in."""
        self.observe(view, now)
        return decide(
            view,
            self.me,
            orphaned_for=self.orphaned_for(now),
            grace_s=self.grace_s,
            stalled=self.stalled(now),
        )
