"""The active-active side of a replica, assembled: the shard group wired to its adapters.

Beside the leader's builder (assembly.py) and built from the same inputs: the membership Lease
and its elector, one elector and one `LeaderWork` per shard, the forward prefixes' CiliumNode
watch, the Lease group watch, the active-standby leader's Lease watch and the CiliumVTEPConfig
watch. The group (shards.py) runs them and asks `core.shard_group` and `core.shards` what to
do; everything that talks to the API server or EC2 is made here, once, before anything starts.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from kubernetes import client

from hybrid_gateway.adapters.ec2 import KEEP_WARM_S
from hybrid_gateway.adapters.kube_attempts import single_attempt
from hybrid_gateway.adapters.kube_cilium import CiliumAgentReader
from hybrid_gateway.adapters.kube_lease import LeaseStore, lease_watch
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway.adapters.kube_watch import ListWatch
from hybrid_gateway.leader.assembly import (
    OwnershipInputs,
    WatchHealth,
    config_elector,
    deferred_routes,
    regime_fence,
    vtep_watch,
)
from hybrid_gateway.leader.cilium_match import CiliumMatch
from hybrid_gateway.leader.elector import NoCallbacks
from hybrid_gateway.leader.lease_health import ReportedLease
from hybrid_gateway.leader.service import LeaderWork, WorkRole
from hybrid_gateway.leader.shards import RecordedLease, ShardGroup, ShardRoutes, ShardSlot
from hybrid_gateway.leader.spread import ForwardPrefixes
from hybrid_gateway.leader.vtep import ReplicaVtepWriter
from hybrid_gateway.metrics import GatewayMetrics, ShardMetrics
from hybrid_gateway_contract.plans import PLAN_LABEL, plan_digest, shard_regime
from hybrid_gateway_contract.sharding import LEASE_GROUP_LABEL, member_lease_name, shard_lease_name


def build_shard_group(
    inputs: OwnershipInputs,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ShardGroup:
    """The shard group with every part it runs, wired to the API server and EC2; `clock`
    and `sleep` are the group's own (its view of Lease expiry, its drain's waits)."""
    config, timings, api_client = inputs.config, inputs.timings, inputs.api_client
    reporting, ns = inputs.reporting, config.namespace
    plan = config.shard_plan()
    digest = plan_digest(config.pod_cidrs, config.vpc_cidrs, config.shards)
    # Every Lease of ours names our plan; the fence keeps other modes and plans out.
    labels = {LEASE_GROUP_LABEL: config.lease_name, PLAN_LABEL: digest}
    metrics = ShardMetrics(reporting.metrics.registry)
    routes = deferred_routes(inputs)
    vtep_store = VtepStore(api_client, settings=timings.kube, owner_namespace=ns)
    nodes_health = WatchHealth(
        reporting.reporter(
            "CiliumNode watch (forward prefixes)",
            "kubernetes",
            "CiliumNodeWatchFailed",
            "grant list and watch on ciliumnodes.cilium.io",
        )
    )
    forward = ForwardPrefixes(
        api_client,
        pod_cidrs=config.pod_cidrs,
        shards=config.shards,
        # every table holds one local route per VPC CIDR besides the shard routes
        route_budget=config.max_routes_per_table - len(config.vpc_cidrs),
        table_ids=config.route_table_ids,
        metrics=metrics,
        on_error=nodes_health.on_error,
        on_listed=nodes_health.reporter.succeeded,
        settings=timings.kube,
    )
    member_name = member_lease_name(config.lease_name, config.identity)
    owner = None
    if config.pod_uid:  # garbage-collected with the Pod (the chart passes metadata.uid)
        owner = client.V1OwnerReference(
            api_version="v1", kind="Pod", name=config.identity, uid=config.pod_uid
        )
    membership = ReportedLease(
        LeaseStore(api_client, ns, member_name, labels=labels, owner=owner),
        reporting.reporter(
            f"Lease {ns}/{member_name}",
            "lease",
            "LeaseUnavailable",
            "check POD_NAMESPACE and that the service account may get, create, update, "
            "list and watch Leases in it",
        ),
        holder_loss_s=timings.holder_loss_s,
    )
    group = ShardGroup(
        config=config,
        timings=timings,
        reporting=reporting,
        plan=plan,
        plan_digest=digest,
        metrics=metrics,
        fence=regime_fence(inputs, shard_regime(digest)),
        routes=routes,
        forward=forward,
        vtep_store=vtep_store,
        membership=membership,
        member_lease_name=member_name,
        nodes_health=nodes_health,
        # Whether the hybrid Cilium agents' one VTEP mask matches the plan's endpoint length.
        cilium=CiliumMatch(
            CiliumAgentReader(api_client, settings=timings.kube),
            vpc_cidrs=config.vpc_cidrs,
            plan_endpoints=[c for s in plan.shards for _name, c in s.vtep_endpoints],
            reporting=reporting,
            period_s=config.resync_period_s,
        ),
        dataplane_ready=inputs.dataplane_ready,
        clock=clock,
        sleep=sleep,
    )
    # one CiliumVTEPConfig write covers every shard this replica holds
    vtep_writer = ReplicaVtepWriter(
        vtep_store,
        plan=plan,
        node_ip=config.node_ip,
        mac=inputs.mac,
        fresh_s=config.resync_period_s / 2,
        terms=lambda: {slot.index: slot.work.term_valid for slot in group.slots},
        plan_digest=digest,
    )
    shard_reporter = reporting.reporter(
        f"shard Leases {ns}/{config.lease_name}-shard-*",
        "lease",
        "ShardLeaseUnavailable",
        "grant get, create and update on Leases in the gateway's namespace",
    )
    slots: list[ShardSlot] = []
    for shard in plan.shards:
        name = shard_lease_name(config.lease_name, shard.index)
        work = LeaderWork(
            routes=ShardRoutes(routes, forward, shard.index),
            vtep=vtep_writer.lane(shard.index),
            resync_period_s=config.resync_period_s,
            retry_period_s=config.retry_period_s,
            metrics=reporting.metrics,
            events=reporting.events,
            subject=reporting.subject,
            identity=config.identity,
            role=shard_role(shard.index, metrics),
            fence=group.fence.guard,
            late_write_window_s=timings.late_write_window_s,
            keep_warm=routes.keep_warm,  # one write client: used once per period
            keep_warm_every_s=KEEP_WARM_S,
        )
        elector = config_elector(
            RecordedLease(
                ReportedLease(
                    LeaseStore(api_client, ns, name, labels=labels),
                    shard_reporter,
                    holder_loss_s=timings.holder_loss_s,
                ),
                name,
                group.record_only,
            ),
            config,
            callbacks=work,
            can_acquire=functools.partial(group.may_claim, shard.index),
            # the group watch wakes it on every change and at expiry; polling is the net
            follow_poll_s=config.lease_duration_s,
            log_refusals=False,
        )
        group.fence.protect(elector, work.wait_idle)
        metrics.shard_held.labels(str(shard.index)).set(0)
        slots.append(ShardSlot(shard.index, name, elector, work))
    group_health = WatchHealth(
        reporting.reporter(
            f"Lease group watch {ns} {LEASE_GROUP_LABEL}={config.lease_name}",
            "lease",
            "LeaseWatchFailed",
            "grant list and watch on Leases in the gateway's namespace",
        )
    )
    group_list_watch = ListWatch(
        f"Lease group watch {ns}",
        client.CoordinationV1Api(single_attempt(api_client)).list_namespaced_lease,
        args=(ns,),
        label_selector=f"{LEASE_GROUP_LABEL}={config.lease_name}",
        on_list=group.on_group_list,
        on_event=group.on_group_event,
        on_error=group_health.on_error,
        settings=timings.kube,
    )
    vtep_health, vtep_list_watch = vtep_watch(vtep_store, reporting, timings, group.wake_vtep_lanes)
    standby_leader_health = WatchHealth(
        reporting.reporter(
            f"Lease watch {ns}/{config.lease_name}",
            "lease",
            "LeaseWatchFailed",
            "grant list and watch on Leases in the gateway's namespace",
        )
    )
    standby_leader_watch = lease_watch(
        api_client,
        ns,
        config.lease_name,
        on_seen=group.seen_standby_leader,
        on_listed=standby_leader_health.reporter.succeeded,
        on_error=standby_leader_health.on_error,
        settings=timings.kube,
    )
    group.bind(
        member=config_elector(
            membership, config, callbacks=NoCallbacks(), can_acquire=group.eligible
        ),
        slots=slots,
        vtep_writer=vtep_writer,
        group_watch=(group_health, group_list_watch),
        standby_leader_watch=(standby_leader_health, standby_leader_watch),
        vtep_watch=(vtep_health, vtep_list_watch),
    )
    return group


def shard_role(index: int, metrics: ShardMetrics) -> WorkRole:
    """How shard `index`'s leader work reports its term: Events and the held-shard metric."""

    def on_active(gateway: GatewayMetrics, active: bool) -> None:
        metrics.shard_held.labels(str(index)).set(1 if active else 0)

    return WorkRole(
        f"shard {index}",
        "ShardAcquired",
        f"{{identity}} now owns shard {index}",
        "ShardLost",
        f"{{identity}} no longer owns shard {index}: {{why}}",
        on_active,
    )
