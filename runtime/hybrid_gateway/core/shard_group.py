"""The shard group's coordination, pure: what one active-active replica concludes from the
Leases it has seen, its own electors and the clock, with no I/O.

`core.shards` decides who should own which shard from an ownership view; this module builds that
view from the Lease observations (`ownership_view`), says when the coordinator must look again
(`next_wait`), paces balancing hand-overs (`HandoverPacing`), turns this replica's ability to
forward into membership and shard hand-overs (`EligibilityWatch`), and judges what a released
shard still leaves pointing at this replica while it drains (`shards_without_new_owner`,
`endpoints_still_here`). The shard group (leader/shards.py) runs these decisions; its builder
(leader/shard_assembly.py) wires it to the API server and EC2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_gateway.core.lease import Observation
from hybrid_gateway.core.shards import ShardOwnership

#: A donor hands over at most one shard per this many lease durations (no flapping: the
#: receiver has taken the last one and the views have settled before the next).
HANDOVER_SPACING_LEASES = 2.0


def live_holder(observation: Observation | None, now: float) -> str | None:
    """The holder of a Lease as observed, while it is neither released nor expired (on our
    own clock, from when we saw it), else None."""
    if observation is None or observation.record.released:
        return None
    if now >= observation.observed_at + observation.record.lease_duration_s:
        return None
    return observation.record.holder


@dataclass(frozen=True)
class SlotState:
    """One shard as this replica holds it: its Lease and whether our elector leads it now."""

    index: int
    lease_name: str
    leading: bool


def ownership_view(
    *,
    me: str,
    me_member: bool,
    member_prefix: str,
    plan_digest: str,
    records: Mapping[str, Observation],
    plans: Mapping[str, str | None],
    slots: Sequence[SlotState],
    now: float,
) -> ShardOwnership:
    """The members (live membership Leases of our plan: a member of another plan owns none of
    our shards; ourselves only while our own membership is valid) and each shard's live
    holder (ourselves while our elector leads it), and for a shard whose Lease expired without
    a release, the holder that let it lapse."""
    members = {
        holder
        for name, observation in records.items()
        if name.startswith(member_prefix)
        and plans.get(name) == plan_digest
        and (holder := live_holder(observation, now))
    }
    members.discard(me)
    if me_member:
        members.add(me)
    holders: dict[int, str | None] = {}
    lapsed: dict[int, str] = {}
    for slot in slots:
        observation = records.get(slot.lease_name)
        holders[slot.index] = me if slot.leading else live_holder(observation, now)
        if holders[slot.index] is None and observation is not None:
            last = observation.record.holder
            if last:  # expired, not released: its holder stopped renewing
                lapsed[slot.index] = last
    return ShardOwnership(len(slots), frozenset(members), holders, lapsed)


def next_wait(
    records: Mapping[str, Observation], me: str, now: float, retry_period_s: float
) -> float:
    """Until the next foreign Lease may expire (its shard becomes free, or a member is gone),
    or a retry period; never below 10 ms."""
    wait = retry_period_s
    for observation in records.values():
        if observation.record.released or observation.record.holder == me:
            continue
        expiry = observation.observed_at + observation.record.lease_duration_s
        if expiry > now:
            wait = min(wait, expiry - now + 0.01)
    return max(0.01, wait)


@dataclass
class HandoverPacing:
    """At most one balancing hand-over per `spacing_s`, and only of a converged shard."""

    spacing_s: float
    last: float = -float("inf")

    def allow(self, now: float, converged: bool) -> bool:
        """Whether a hand-over may start now; if so, it counts from now."""
        if now - self.last < self.spacing_s or not converged:
            return False
        self.last = now
        return True


@dataclass(frozen=True)
class EligibilityStep:
    """What one look at this replica's ability to forward asks the group to do."""

    rejoined: bool = False  # eligible again after a streak: report it
    fell_out: bool = False  # the first look of a streak: report it
    leave_membership: bool = False  # ineligible: hand the membership Lease over now
    give_up_shards: bool = False  # ineligible for the whole bound: hand every shard over


@dataclass
class EligibilityWatch:
    """An ineligible replica gives up its membership at once (the others stop handing it
    shards and place orphans elsewhere) and, once ineligible for `shards_after_s`, every shard
    it holds (once per streak); a data plane that recovers within that bound keeps them."""

    shards_after_s: float
    since: float | None = None
    given_up: bool = False

    def step(self, problem: str | None, now: float) -> EligibilityStep:
        if problem is None:
            rejoined = self.since is not None
            self.since, self.given_up = None, False
            return EligibilityStep(rejoined=rejoined)
        fell_out = self.since is None
        if self.since is None:
            self.since = now
        give_up = not self.given_up and now - self.since >= self.shards_after_s
        return EligibilityStep(fell_out=fell_out, leave_membership=True, give_up_shards=give_up)

    def handed_over(self) -> None:
        """The shards were handed over: not again in this streak."""
        self.given_up = True


def shards_without_new_owner(
    view: ShardOwnership, me: str, released: Sequence[int]
) -> list[int] | None:
    """Of the shards we released, those nobody else holds yet; None when no other member of
    our plan lives (then no one of our plan will take them: only what still points here
    counts)."""
    if not view.members - {me}:
        return None
    return [i for i in released if view.holder(i) in (None, me)]


def endpoints_still_here(
    config: Mapping[str, Any] | None, names: set[str], node_ip: str
) -> list[str]:
    """The VTEP endpoints among `names` that the CiliumVTEPConfig `config` still points at
    `node_ip`, sorted."""
    spec = (config or {}).get("spec") or {}
    return sorted(
        str(e.get("name"))
        for e in spec.get("endpoints") or []
        if isinstance(e, dict) and e.get("name") in names and e.get("tunnelEndpoint") == node_ip
    )
