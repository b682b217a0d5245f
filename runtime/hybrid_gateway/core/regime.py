"""One regime at a time: which writer may write routes and the CiliumVTEPConfig, pure.

A regime is the mode and plan a writer works under (`hybrid_gateway_contract.plans`): the
active-standby leader, or the shard owners of one active-active plan. During a migration, a
rollback or a plan change two regimes run side by side (a rolling update surges one new pod
while the old ones still run), and they must never write at once. The rule, on both sides:

- acquire a Lease only while no Lease of another regime is live;
- before the first write of a term, read the other regime's Leases again from the API server
  (after our own acquisition was stored): of two writers that acquired at the same time, at
  least one sees the other, as in Dekker's mutual exclusion (write your flag, then read theirs);
- write only while no Lease of another regime is live;
- of two regimes that both hold a live Lease, the lower-ranked one gives its Leases up at once
  (`must_yield`), and the higher-ranked one waits until they are released or expired.

The ranking is fixed so the outcome never depends on timing: any active-active plan outranks
active-standby, and between plans the larger digest wins. It only decides who waits when both
started together; in every ordinary rollout the newcomers find the old regime live and never
acquire while it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hybrid_gateway_contract.plans import ACTIVE_STANDBY_REGIME, PLAN_LABEL, shard_regime


@dataclass(frozen=True)
class Writer:
    """A live Lease that entitles its holder to write: its name, holder and regime."""

    lease: str
    holder: str
    regime: str


def rank(regime: str) -> tuple[int, int, str]:
    """Orders regimes: active-standby < unlabelled active-active < active-active by digest."""
    if regime == ACTIVE_STANDBY_REGIME:
        return (0, 0, "")
    digest = regime.partition("/")[2]
    return (1, 0, "") if digest == "unlabelled" else (1, 1, digest)


@dataclass(frozen=True)
class FenceDecision:
    others: tuple[Writer, ...]  # live writers of other regimes
    must_yield: bool  # one of them outranks us: give our Leases up

    @property
    def may_write(self) -> bool:
        return not self.others

    def describe(self) -> str:
        """The others for readiness, logs and Events: 'active-standby (gw-a)'."""
        by_regime: dict[str, set[str]] = {}
        for writer in self.others:
            by_regime.setdefault(writer.regime, set()).add(writer.holder)
        return "; ".join(
            f"{regime} ({', '.join(sorted(holders))})"
            for regime, holders in sorted(by_regime.items())
        )


def fence(mine: str, live: Iterable[Writer]) -> FenceDecision:
    """What a writer of regime `mine` may do, given every live writer it knows of."""
    others = tuple(sorted((w for w in live if w.regime != mine), key=lambda w: w.lease))
    return FenceDecision(others, any(rank(w.regime) > rank(mine) for w in others))


def lease_regime(name: str, lease_name: str, labels: Mapping[str, str] | None) -> str | None:
    """The regime a Lease's holder writes under, or None for a Lease that entitles no write
    (a membership Lease, anything else carrying the group label)."""
    if name == lease_name:
        return ACTIVE_STANDBY_REGIME
    prefix = f"{lease_name}-shard-"
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
        return shard_regime((labels or {}).get(PLAN_LABEL))
    return None
