"""One reconcile pass: CiliumNode objects in, kernel tunnel entries on `hybrid_vxlan0` out.

Every pass is a full resync: the whole desired state against a fresh dump of what the kernel
has, so missed watch events, manual edits and half-applied earlier passes are all repaired
the same way.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_gateway.adapters.kube_events import EventSink, ObjectRef
from hybrid_gateway.adapters.netlink import (
    ApplyResult,
    DeviceAction,
    DeviceOutcome,
    DeviceSpec,
    Netlink,
)
from hybrid_gateway.adapters.netlink.proof import Keys as ProofKeys
from hybrid_gateway.core.dataplane import (
    DesiredNodes,
    FdbEntry,
    NodeRecord,
    NodeTunnel,
    PartialApplyError,
    Plan,
    RejectedNode,
    TunnelState,
    desired_nodes,
    desired_state,
    diff,
    node_record,
    tunnel_of,
)
from hybrid_gateway.core.write_ahead import WriteAhead
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_contract import CILIUM_GROUP, CILIUM_VERSION

log = logging.getLogger(__name__)

INVALID_NODE_REASON = "InvalidHybridNode"


@dataclass(frozen=True)
class ReconcileReport:
    """What one pass found and did."""

    tunnels: tuple[NodeTunnel, ...]
    rejected: tuple[RejectedNode, ...]
    plan: Plan
    result: ApplyResult
    device: DeviceOutcome


class TunnelReconciler:
    """Owns `hybrid_vxlan0` and its entries in the namespace of `netlink`."""

    def __init__(
        self,
        *,
        netlink: Netlink,
        device: DeviceSpec,
        vpc_cidrs: Sequence[ipaddress.IPv4Network],
        metrics: GatewayMetrics,
        events: EventSink | None,
        nexthop_objects: bool | None = None,
    ) -> None:
        """`nexthop_objects`: None uses them where the kernel has them (asked once, at the
        first `ensure_device`); False never uses them (tests of the fallback)."""
        self.netlink = netlink
        self.device = device
        self.vpc_cidrs = tuple(vpc_cidrs)
        self.metrics = metrics
        self.events = events
        self._reported: dict[str, str] = {}  # node name -> reason already logged and evented
        self._parsed: Mapping[NodeRecord, NodeTunnel | RejectedNode] = {}  # last pass, reused
        self._baseline: _Baseline | None = None  # what the kernel holds since the last pass
        self._last: _LastPass | None = None  # the last full pass's input and desired state
        self._nexthop_choice = nexthop_objects
        self.nexthop_objects: bool | None = None  # decided at the first ensure_device
        self._ifindex: int | None = None  # the device's, as the last ensure_device found it
        self._ahead: tuple[int, WriteAhead] | None = None  # (listing, plans) of the first list
        self._ahead_keys: list[ProofKeys | None] = []  # per page of that list, its proof keys
        self.written_ahead = 0  # entries the first list's pages added before the first pass

    def _decide_nexthops(self) -> bool:
        """Whether routes use nexthop objects: decided once, logged once, exported as
        `hybrid_gateway_nexthop_objects`."""
        if self.nexthop_objects is None:
            missing = self.netlink.nexthop_support()
            if self._nexthop_choice is False:
                self.nexthop_objects = False
                log.info("per-node routes carry their own gateway (nexthop objects turned off)")
            elif missing is None:
                self.nexthop_objects = True
                log.info("per-node routes use kernel nexthop objects, one per hybrid node")
            else:
                self.nexthop_objects = False
                log.warning(
                    "the kernel lacks nexthop objects (%s): per-node routes carry their own "
                    "gateway, so a first pass over tens of thousands of nodes takes longer "
                    "(docs/dataplane.md, Scale)",
                    missing,
                )
            self.metrics.nexthop_objects.set(1 if self.nexthop_objects else 0)
        return self.nexthop_objects

    def ensure_device(self) -> DeviceOutcome:
        """Adopt, create, fix or recreate the device, and say which in the log."""
        outcome = self.netlink.ensure_device(self.device)
        self._ifindex = outcome.ifindex
        self._decide_nexthops()
        details = "; ".join(outcome.details)
        if outcome.action is DeviceAction.ADOPTED:
            log.info("adopted existing %s (ifindex %d)", self.device.name, outcome.ifindex)
        elif outcome.action is DeviceAction.CREATED:
            log.info("created %s (ifindex %d)", self.device.name, outcome.ifindex)
        elif outcome.action is DeviceAction.FIXED:
            log.warning("fixed %s in place: %s", self.device.name, details)
        else:
            log.warning("recreated %s because %s", self.device.name, details)
        self.metrics.vxlan_interface_up.set(1)
        return outcome

    def reconcile(self, objects: Iterable[NodeRecord | Mapping[str, Any]]) -> ReconcileReport:
        """Bring the kernel to the state the CiliumNode objects ask for; raise PartialApplyError
        if any entry could not be written (the caller resyncs again soon)."""
        records = [o if type(o) is NodeRecord else node_record(o) for o in objects]  # type: ignore[arg-type]
        last = self._last
        ahead, self._ahead = self._ahead, None
        ahead_keys, self._ahead_keys = self._ahead_keys, []
        listed = ahead[1].nodes.desired(records) if last is None and ahead is not None else None
        if last is not None and last.records == records:  # the cache's own objects: fast
            wanted = last.wanted
        elif listed is not None:  # the first pass: decided while the list ran
            wanted = listed
        else:
            previous = ahead[1].nodes.parsed if last is None and ahead is not None else None
            wanted = desired_nodes(records, self.vpc_cidrs, previous or self._parsed)
        self._parsed = wanted.parsed
        self._report_rejected(wanted.rejected)
        outcome = self.netlink.ensure_device(self.device)
        if outcome.action is not DeviceAction.ADOPTED:
            log.warning(
                "%s was %s during reconcile: %s",
                self.device.name,
                outcome.action,
                "; ".join(outcome.details) or "it was missing",
            )
        self.metrics.vxlan_interface_up.set(1)
        nexthops = self._decide_nexthops()
        built = (
            ahead[1].target(listed, nexthop_objects=nexthops)
            if ahead is not None and listed is not None and wanted is listed
            else None
        )
        if last is not None and last.wanted is wanted and last.nexthops == nexthops:
            target = last.target  # the same object: `Netlink.dump` keeps its proof keys
        elif built is not None:  # the first pass: built page by page while the list ran
            target = built
            self.netlink.prepare_proof_from(target, ahead_keys)
        else:
            target = desired_state(wanted.tunnels, nexthop_objects=nexthops)
        self._last = _LastPass(records, wanted, nexthops, target)
        observed = self.netlink.dump(outcome.ifindex, expect=target)
        plan = Plan() if observed is target else diff(target, observed)
        result = self.netlink.apply(outcome.ifindex, plan) if not plan.empty else ApplyResult()
        self._count(result)
        if result.ok:
            self._gauge(len(wanted.tunnels), target)
        else:
            after = self.netlink.dump(outcome.ifindex)
            self._gauge(sum(1 for t in wanted.tunnels if _programmed(t, after)), after)
        if last is None and ahead is not None:  # the first pass says what the list wrote ahead
            log.info(
                "reconciled %d hybrid nodes: %d entries added/replaced (and %d while the list "
                "ran), %d removed, %d failed",
                len(wanted.tunnels),
                result.added,
                self.written_ahead,
                result.removed,
                result.add_errors + result.remove_errors,
            )
        elif not plan.empty:
            log.info(
                "reconciled %d hybrid nodes: %d entries added/replaced, %d removed, %d failed",
                len(wanted.tunnels),
                result.added,
                result.removed,
                result.add_errors + result.remove_errors,
            )
        if not plan.empty and result.ok:  # the next resync will prove what this pass wrote
            self.netlink.prepare_proof(target)
        baseline = self._baseline
        if not result.ok:
            self._baseline = None
        elif baseline is None or not baseline.built_from(outcome.ifindex, wanted.tunnels):
            self._baseline = _Baseline(outcome.ifindex, wanted.tunnels, wanted.rejected)
        if not result.ok:
            raise PartialApplyError(
                f"{result.add_errors + result.remove_errors} tunnel entries failed: "
                + "; ".join(result.errors[:5])
            )
        return ReconcileReport(wanted.tunnels, wanted.rejected, plan, result, outcome)

    def write_ahead(self, listing: int, records: Sequence[NodeRecord]) -> int:
        """Before the first full pass only: add the kernel entries of one page of the CiliumNode
        list numbered `listing` (a new number: the list started over) that the full pass will
        want as they are (`core.write_ahead`), while the list fetches the next page. Returns the
        entries added. Refusals are left to the full pass, which retries and reports them."""
        if self._last is not None or self._ifindex is None:
            return 0
        if self._ahead is None or self._ahead[0] != listing:
            present = self.netlink.dump(self._ifindex)  # what a restart or earlier list left
            self._ahead = (
                listing,
                WriteAhead(present, self.vpc_cidrs, nexthop_objects=self._decide_nexthops()),
            )
            self._ahead_keys = []
        ahead = self._ahead[1]
        plan = ahead.plan(records)
        # the keys that will prove this page's part of the first pass's desired state; none
        # once the list broke name order, as the pass then decides afresh and never joins them
        if ahead.nodes.ordered:
            self._ahead_keys.append(self.netlink.proof_keys(ahead.parts[-1]))
        if plan.empty:
            return 0
        result = self.netlink.apply(self._ifindex, plan)
        self.metrics.vtep_add.inc(result.added)
        self.written_ahead += result.added
        if not result.ok:
            log.debug("writing ahead: %s", "; ".join(result.errors[:5]))
        return result.added

    def reconcile_changed(self, records: Mapping[str, NodeRecord | None]) -> bool:
        """Apply only what changed for these nodes (None: deleted), without dumping the kernel:
        the last full pass's result stands in for the kernel's state, and the next periodic
        full pass repairs anything this misjudges. A watch event so costs its own entries, not
        a pass over every node.

        False (nothing done) when only a full pass is right: no successful full pass yet, or a
        change that touches other nodes (a pod CIDR or node IP another node uses) or a node that
        is or becomes invalid (its rejection is reported by the full pass).
        """
        baseline = self._baseline
        if baseline is None:
            return False
        old: list[NodeTunnel] = []
        new: list[NodeTunnel] = []
        for name, record in records.items():
            if name in baseline.rejected:
                return False
            before = baseline.tunnels.get(name)
            after = None
            if record is not None and record.hybrid:
                verdict = tunnel_of(record, self.vpc_cidrs)
                if not isinstance(verdict, NodeTunnel):
                    return False
                after = verdict
            if before == after:
                continue
            old.extend([before] if before else [])
            new.extend([after] if after else [])
        if not baseline.can_swap(old, new):
            return False
        nexthops = self._decide_nexthops()
        plan = diff(
            desired_state(new, nexthop_objects=nexthops),
            desired_state(old, nexthop_objects=nexthops),
        )
        result = self.netlink.apply(baseline.ifindex, plan) if not plan.empty else ApplyResult()
        self._count(result)
        if not result.ok:
            self._baseline = None
            raise PartialApplyError(
                f"{result.add_errors + result.remove_errors} tunnel entries failed: "
                + "; ".join(result.errors[:5])
            )
        baseline.swap(old, new)
        self.metrics.hybrid_nodes_configured.set(len(baseline.tunnels))
        self.metrics.vxlan_fdb_entries.set(len(baseline.ip_users))
        self.metrics.vxlan_route_count.set(len(baseline.claims))
        if not plan.empty:
            log.info(
                "applied changes of %d hybrid node(s): %d entries added/replaced, %d removed",
                len(records),
                result.added,
                result.removed,
            )
        return True

    def _count(self, result: ApplyResult) -> None:
        self.metrics.vtep_add.inc(result.added)
        self.metrics.vtep_add_errors.inc(result.add_errors)
        self.metrics.vtep_remove.inc(result.removed)
        self.metrics.vtep_remove_errors.inc(result.remove_errors)

    def _gauge(self, configured: int, state: TunnelState) -> None:
        self.metrics.hybrid_nodes_configured.set(configured)
        self.metrics.vxlan_fdb_entries.set(len(state.fdb))
        self.metrics.vxlan_route_count.set(len(state.routes))

    def _report_rejected(self, rejected: Sequence[RejectedNode]) -> None:
        self.metrics.hybrid_nodes_skipped.set(len(rejected))
        current = {r.name: r.reason for r in rejected}
        for node in rejected:
            if self._reported.get(node.name) == node.reason:
                continue
            log.warning("skipping CiliumNode %s: %s", node.name, node.reason)
            if self.events is not None:
                self.events.emit(
                    ObjectRef(
                        api_version=f"{CILIUM_GROUP}/{CILIUM_VERSION}",
                        kind="CiliumNode",
                        name=node.name,
                        uid=node.uid,
                    ),
                    INVALID_NODE_REASON,
                    f"hybrid gateway skips this node: {node.reason}",
                )
        for name in set(self._reported) - set(current):
            log.info("CiliumNode %s is no longer skipped", name)
        self._reported = current


def _programmed(tunnel: NodeTunnel, state: TunnelState) -> bool:
    return (
        state.neighbours.get(tunnel.node_ip) == tunnel.peer_mac
        and all(state.routes.get(c) == tunnel.node_ip for c in tunnel.pod_cidrs)
        and FdbEntry(mac=tunnel.peer_mac, dst=tunnel.node_ip) in state.fdb
    )


@dataclass(frozen=True)
class _LastPass:
    """A full pass's CiliumNode records and what they asked for. The next periodic pass usually
    finds the very same records (the cache hands out its own objects): then it reuses both and
    skips parsing the nodes and building the desired state again (0.4-0.9 s at 50,000 nodes
    here), and `Netlink.dump` gets the same desired state to prove."""

    records: list[NodeRecord]
    wanted: DesiredNodes
    nexthops: bool
    target: TunnelState


class _Baseline:
    """The tunnels the kernel holds after the last full pass, as incremental changes see it."""

    def __init__(
        self, ifindex: int, tunnels: tuple[NodeTunnel, ...], rejected: Sequence[RejectedNode]
    ) -> None:
        self.ifindex = ifindex
        self._source: tuple[NodeTunnel, ...] | None = tunnels  # None once changed by `swap`
        self.tunnels = {t.name: t for t in tunnels}
        self.rejected = {r.name for r in rejected}
        self.claims = {cidr: t.name for t in tunnels for cidr in t.pod_cidrs}
        self.ip_users = Counter(t.node_ip for t in tunnels)

    def can_swap(self, old: Sequence[NodeTunnel], new: Sequence[NodeTunnel]) -> bool:
        """Whether replacing `old` by `new` touches no other node's pod CIDR or node IP."""
        changing = {t.name for t in old} | {t.name for t in new}
        for tunnel in new:
            for cidr in tunnel.pod_cidrs:
                if self.claims.get(cidr, tunnel.name) not in changing:
                    return False
        users = Counter(self.ip_users)
        users.subtract(t.node_ip for t in old)
        users.update(t.node_ip for t in new)
        touched = {t.node_ip for t in old} | {t.node_ip for t in new}
        return all(users[ip] <= 1 for ip in touched) and len(
            {c for t in new for c in t.pod_cidrs}
        ) == sum(len(t.pod_cidrs) for t in new)

    def built_from(self, ifindex: int, tunnels: tuple[NodeTunnel, ...]) -> bool:
        """Whether this is still exactly what a pass over `tunnels` on `ifindex` would build."""
        return self.ifindex == ifindex and self._source is tunnels

    def swap(self, old: Sequence[NodeTunnel], new: Sequence[NodeTunnel]) -> None:
        self._source = None
        for tunnel in old:
            self.tunnels.pop(tunnel.name, None)
            for cidr in tunnel.pod_cidrs:
                self.claims.pop(cidr, None)
            self.ip_users[tunnel.node_ip] -= 1
            if self.ip_users[tunnel.node_ip] <= 0:
                del self.ip_users[tunnel.node_ip]
        for tunnel in new:
            self.tunnels[tunnel.name] = tunnel
            for cidr in tunnel.pod_cidrs:
                self.claims[cidr] = tunnel.name
            self.ip_users[tunnel.node_ip] += 1
