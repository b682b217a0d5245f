"""Thin gatherers: EKS and EC2 through boto3, Kubernetes through the official client.

Credentials, region and endpoints follow the SDKs' own conventions (AWS_REGION / profiles,
AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_EKS / AWS_ENDPOINT_URL, KUBECONFIG or in-cluster).
A source that fails is recorded in `Facts.unavailable` with the error, never hidden: the checks
that need it are then skipped and say why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import botocore.exceptions
from kubernetes import client
from kubernetes.client.rest import ApiException

from hybrid_gateway.adapters.ec2 import Ec2Error, Ec2Routes
from hybrid_gateway.adapters.kube_events import CLUSTER_SCOPED_EVENTS_NAMESPACE
from hybrid_gateway.adapters.kube_events import COMPONENT as EVENT_COMPONENT
from hybrid_gateway.adapters.kube_lease import LeaseStore
from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.adapters.kube_vtep import VtepStore
from hybrid_gateway_contract import (
    APP_NAME,
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    CONTAINER_NAME,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    GATEWAY_NODE_LABEL_KEY,
    GATEWAY_NODE_LABEL_VALUE,
    HYBRID_NODE_LABEL_KEY,
    HYBRID_NODE_LABEL_VALUE,
    METRICS_PATH,
    READYZ_PATH,
    VTEP_CONFIGS_PLURAL,
    Env,
    settings,
)
from hybrid_gateway_contract.route_cleanup import Route, gateway_eni_ids, routes_from_describe
from hybrid_gateway_contract.rules import split_list
from hybrid_gateway_contract.settings import Setting, SettingError
from hybrid_gateway_contract.sharding import (
    LEASE_GROUP_LABEL,
    GatewayMode,
    member_lease_name,
    shard_lease_name,
)

from .facts import (
    VPC_FROM_EC2,
    VPC_FROM_FLAG,
    Facts,
    GatewayInstance,
    GatewayPod,
    GatewaySettings,
    GroupLease,
    HybridNode,
    KubeEvent,
    KubeNode,
    LeaseFacts,
    Networks,
    RouteTable,
    SecurityGroup,
    SgRule,
    VtepEndpoint,
    holder_pod,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The operations commands' reads: one short call each, with no lease to keep (a person waits).
SETTINGS = WatchingSettings(request_timeout_s=10.0)
_PROVIDER_ID = re.compile(r"^aws:///[^/]*/(i-[0-9a-f]+)$")
VTEP_CRD_NAME = f"{VTEP_CONFIGS_PLURAL}.{CILIUM_GROUP}"


@dataclass(frozen=True)
class Target:
    """What to inspect, and overrides for what cannot be discovered (None: discover)."""

    cluster: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    deployment: str = APP_NAME
    vpc_id: str | None = None
    vpc_cidrs: tuple[str, ...] | None = None
    remote_node_cidrs: tuple[str, ...] | None = None
    remote_pod_cidrs: tuple[str, ...] | None = None
    service_cidr: str | None = None
    route_table_ids: tuple[str, ...] | None = None
    pod_cidrs: tuple[str, ...] | None = None
    gateway_instance_ids: tuple[str, ...] = ()
    lease_name: str | None = None
    mode: GatewayMode | None = None
    shards: int | None = None
    max_routes_per_table: int | None = None


@dataclass
class _Gathered:
    """Facts under construction."""

    unavailable: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


# --- Kubernetes ----------------------------------------------------------------------------------


def _epoch(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _container_env(template: Any, container_name: str) -> dict[str, str]:
    containers = (template.spec.containers or []) if template and template.spec else []
    chosen = next((c for c in containers if c.name == container_name), None) or (
        containers[0] if containers else None
    )
    return {e.name: e.value for e in (chosen.env or []) if e.value is not None} if chosen else {}


def _pod(pod: Any) -> GatewayPod:
    status = pod.status or client.V1PodStatus()
    conditions = status.conditions or []
    ready_condition = next((c for c in conditions if c.type == "Ready"), None)
    ready = ready_condition is not None and ready_condition.status == "True"
    return GatewayPod(
        name=pod.metadata.name,
        node_name=pod.spec.node_name if pod.spec else None,
        host_ip=status.host_ip,
        phase=status.phase or "Unknown",
        ready=ready,
        ready_reason=_not_ready_reason(status, ready_condition),
    )


def _not_ready_reason(status: Any, ready_condition: Any) -> str:
    """What an operator needs to see about a replica, most telling first: the scheduler's
    reason for a Pending pod (PodScheduled=False: Unschedulable and its message naming the
    untolerated taint or the unmatched selector), each container that waits or crashed, then
    the Ready condition. Field names as the Kubernetes API's PodStatus defines them."""
    reasons: list[str] = []
    scheduled = next((c for c in status.conditions or [] if c.type == "PodScheduled"), None)
    if scheduled is not None and scheduled.status != "True":
        detail = ": ".join(p for p in (scheduled.reason, scheduled.message) if p)
        reasons.append(f"not scheduled: {detail or 'PodScheduled=' + str(scheduled.status)}")
    for container in [*(status.init_container_statuses or []), *(status.container_statuses or [])]:
        state = container.state
        waiting = state.waiting if state is not None else None
        terminated = state.terminated if state is not None else None
        if waiting is not None and waiting.reason:
            reasons.append(
                f"container {container.name} waiting: "
                + ": ".join(p for p in (waiting.reason, waiting.message) if p)
            )
        elif terminated is not None and terminated.reason and not container.ready:
            reasons.append(f"container {container.name} terminated: {terminated.reason}")
    if ready_condition is None:
        reasons.append(f"phase {status.phase or 'Unknown'}")
    else:
        parts = [p for p in (ready_condition.reason, ready_condition.message) if p]
        reasons.append(": ".join(parts) if parts else f"Ready={ready_condition.status}")
    return "; ".join(reasons)


def _node(node: Any) -> KubeNode:
    provider = (node.spec.provider_id or "") if node.spec else ""
    match = _PROVIDER_ID.match(provider)
    addresses = (node.status.addresses or []) if node.status else []
    internal = next((a.address for a in addresses if a.type == "InternalIP"), None)
    taints = tuple(
        (t.key, t.value or "", t.effect) for t in ((node.spec.taints or []) if node.spec else [])
    )
    return KubeNode(
        name=node.metadata.name,
        labels=dict(node.metadata.labels or {}),
        taints=taints,
        internal_ip=internal,
        instance_id=match.group(1) if match else None,
    )


def _hybrid_node(obj: Mapping[str, Any]) -> HybridNode:
    spec = obj.get("spec") or {}
    internal = next(
        (a.get("ip") for a in spec.get("addresses") or [] if a.get("type") == "InternalIP"), None
    )
    return HybridNode(
        name=str(obj.get("metadata", {}).get("name", "")),
        internal_ip=internal,
        pod_cidrs=tuple((spec.get("ipam") or {}).get("podCIDRs") or ()),
    )


def _reported_by_gateway(event: Any) -> bool:
    source = event.source.component if event.source else None
    return EVENT_COMPONENT in (event.reporting_component, source)


def _read_or_none(call: Any, *args: Any) -> Any:
    try:
        return call(*args, _request_timeout=SETTINGS.request_timeout_s)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


KUBE = "kubernetes"


class _KubeDownError(Exception):
    """The API cannot be used at all (unreachable, 401, 5xx): stop asking it."""


def _kube_part(into: _Gathered, part: str, read: Callable[[], None]) -> None:
    """Run one read; a refusal of just this read (403, ...) is recorded under
    `kubernetes/<part>`, anything else marks the whole API unavailable and ends the gathering."""
    try:
        read()
    except Exception as exc:
        cause = exc if isinstance(exc, ApiException) else exc.__cause__
        status = cause.status if isinstance(cause, ApiException) else None
        if status is not None and status not in (401, 429) and status < 500:
            into.unavailable[f"{KUBE}/{part}"] = _describe_error(cause or exc)
            return
        into.unavailable[KUBE] = _describe_error(cause or exc)
        raise _KubeDownError() from exc


def gather_kubernetes(api_client: client.ApiClient, target: Target, into: _Gathered) -> None:
    """Deployment settings, pods, nodes, Lease, Cilium objects, aws-node, Events."""
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    ns = target.namespace

    def deployment() -> None:
        found = _read_or_none(apps.read_namespaced_deployment, target.deployment, ns)
        env = _container_env(found.spec.template, CONTAINER_NAME) if found else {}
        selector = (
            dict(found.spec.selector.match_labels or {}) if found and found.spec.selector else {}
        )
        into.values["settings"] = GatewaySettings(
            namespace=ns,
            deployment=target.deployment if found else None,
            replicas=int(found.spec.replicas or 0) if found else 0,
            vpc_cidrs=target.vpc_cidrs or settings.VPC_CIDR.read(env),
            pod_cidrs=target.pod_cidrs or settings.POD_CIDRS.read(env),
            route_table_ids=tuple(
                target.route_table_ids or split_list(env.get(Env.ROUTE_TABLE_IDS, ""))
            ),
            lease_name=target.lease_name or env.get(Env.LEADER_ELECTION_ID) or DEFAULT_LEASE_NAME,
            pod_selector=selector,
            **shard_settings(target, env),
        )
        pods: list[GatewayPod] = []
        if selector:
            label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            listed = core.list_namespaced_pod(
                ns, label_selector=label_selector, _request_timeout=SETTINGS.request_timeout_s
            )
            pods = sorted((_pod(p) for p in listed.items), key=lambda p: p.name)
        into.values["pods"] = tuple(pods)

    def nodes() -> None:
        listed = core.list_node(_request_timeout=SETTINGS.request_timeout_s).items
        into.values["nodes"] = {n.metadata.name: _node(n) for n in listed}

    def lease_name() -> str:
        settings = into.values.get("settings")
        if isinstance(settings, GatewaySettings):
            return settings.lease_name
        return target.lease_name or DEFAULT_LEASE_NAME

    def lease() -> None:
        name = lease_name()
        record = LeaseStore(api_client, ns, name).get(SETTINGS.request_timeout_s)
        read_at = time.time()  # its age is judged now, not after the slower reads
        if record is None:
            return
        raw = _read_or_none(client.CoordinationV1Api(api_client).read_namespaced_lease, name, ns)
        lease = LeaseFacts(
            holder=record.holder,
            renew_time=_epoch(record.renew_time),
            acquire_time=_epoch(raw.spec.acquire_time) if raw and raw.spec else None,
            duration_s=record.lease_duration_s,
            transitions=record.transitions,
            read_at=read_at,
        )
        into.values["lease"] = lease
        if lease.holder:
            into.values["holder_pod_exists"] = _holder_pod_exists(lease.holder)

    def _holder_pod_exists(holder: str) -> bool | None:
        """Whether the holder still exists: as a listed gateway pod, as the node of one (the
        reference's `<hostname>_<uuid>` identity), or as any pod of that name in the namespace
        (a pod the Deployment does not select: a POD_NAME problem, not a vanished holder)."""
        listed: tuple[GatewayPod, ...] = into.values.get("pods", ())
        if holder_pod(listed, holder) is not None:
            return True
        try:
            return _read_or_none(core.read_namespaced_pod, holder, ns) is not None
        except ApiException:  # refused or failing: unknown, and the Lease itself still counts
            return None

    def lease_group() -> None:
        """Active-active: the shard and membership Leases, in one list by the group label
        (the selector every replica's group watch uses)."""
        settings = into.values.get("settings")
        if not isinstance(settings, GatewaySettings) or not settings.active_active:
            return
        name = settings.lease_name
        listed = client.CoordinationV1Api(api_client).list_namespaced_lease(
            ns,
            label_selector=f"{LEASE_GROUP_LABEL}={name}",
            _request_timeout=SETTINGS.request_timeout_s,
        )
        shard_names = {shard_lease_name(name, i): i for i in range(settings.shards)}
        shards: dict[int, GroupLease] = {}
        members: list[GroupLease] = []
        read_at = time.time()
        for item in listed.items:
            found = GroupLease(item.metadata.name, replace(_lease_facts(item), read_at=read_at))
            if found.name in shard_names:
                shards[shard_names[found.name]] = found
            elif found.lease.holder and found.name == member_lease_name(name, found.lease.holder):
                members.append(found)
        into.values["shard_leases"] = shards
        into.values["member_leases"] = tuple(sorted(members, key=lambda m: m.lease.holder or ""))

    def crd() -> None:
        extensions = client.ApiextensionsV1Api(api_client)
        found = _read_or_none(extensions.read_custom_resource_definition, VTEP_CRD_NAME)
        into.values["vtep_crd"] = found is not None
        into.values["vtep_crd_versions"] = tuple(
            v.name for v in ((found.spec.versions or []) if found is not None else []) if v.served
        )

    def cilium_config() -> None:
        found = _read_or_none(core.read_namespaced_config_map, "cilium-config", "kube-system")
        into.values["cilium_config"] = dict(found.data or {}) if found is not None else None

    def cilium_nodes() -> None:
        hybrid = custom.list_cluster_custom_object(
            CILIUM_GROUP,
            CILIUM_VERSION,
            CILIUM_NODES_PLURAL,
            label_selector=f"{HYBRID_NODE_LABEL_KEY}={HYBRID_NODE_LABEL_VALUE}",
            _request_timeout=SETTINGS.request_timeout_s,
        )
        into.values["hybrid_nodes"] = tuple(
            sorted((_hybrid_node(o) for o in hybrid.get("items", [])), key=lambda n: n.name)
        )

    def vtep_config() -> None:
        vtep = VtepStore(api_client, settings=SETTINGS).get()
        into.values["vtep_endpoints"] = (
            tuple(
                VtepEndpoint(
                    name=str(e.get("name", "")),
                    tunnel_endpoint=str(e.get("tunnelEndpoint", "")),
                    cidr=str(e.get("cidr", "")),
                    mac=str(e.get("mac", "")),
                )
                for e in (vtep.get("spec") or {}).get("endpoints") or []
            )
            if vtep is not None
            else None
        )

    def aws_node() -> None:
        found = _read_or_none(apps.read_namespaced_daemon_set, "aws-node", "kube-system")
        into.values["aws_node_env"] = (
            _container_env(found.spec.template, "aws-node") if found is not None else None
        )

    def events() -> None:
        # The gateway's Events about its pods live in its namespace; those about cluster-scoped
        # objects (CiliumNodes, the CiliumVTEPConfig) in "default" (kube_events), told apart
        # there by the reporting component.
        listed = list(
            core.list_namespaced_event(ns, _request_timeout=SETTINGS.request_timeout_s).items
        )
        if ns != CLUSTER_SCOPED_EVENTS_NAMESPACE:
            elsewhere = core.list_namespaced_event(
                CLUSTER_SCOPED_EVENTS_NAMESPACE, _request_timeout=SETTINGS.request_timeout_s
            ).items
            listed += [e for e in elsewhere if _reported_by_gateway(e)]
        into.values["events"] = tuple(
            sorted(
                (
                    KubeEvent(
                        time=_epoch(e.last_timestamp or e.event_time or e.first_timestamp),
                        kind=e.type or "Normal",
                        reason=e.reason or "",
                        message=e.message or "",
                        involved=f"{e.involved_object.kind}/{e.involved_object.name}",
                    )
                    for e in listed
                ),
                key=lambda e: e.time or 0.0,
            )
        )

    parts: tuple[tuple[str, Callable[[], None]], ...] = (
        ("deployment", deployment),
        ("nodes", nodes),
        ("lease", lease),
        ("lease-group", lease_group),
        ("crd", crd),
        ("cilium-config", cilium_config),
        ("ciliumnodes", cilium_nodes),
        ("vtep-config", vtep_config),
        ("aws-node", aws_node),
        ("events", events),
    )
    with contextlib.suppress(_KubeDownError):
        for part, read in parts:
            _kube_part(into, part, read)


def _lease_facts(lease: Any) -> LeaseFacts:
    spec = lease.spec or client.V1LeaseSpec()
    return LeaseFacts(
        holder=spec.holder_identity or None,
        renew_time=_epoch(spec.renew_time),
        acquire_time=_epoch(spec.acquire_time),
        duration_s=float(spec.lease_duration_seconds)
        if spec.lease_duration_seconds is not None
        else None,
        transitions=int(spec.lease_transitions or 0),
    )


def shard_settings(target: Target, env: Mapping[str, str]) -> dict[str, Any]:
    """MODE, SHARDS and MAX_ROUTES_PER_TABLE from the gateway container's environment, read by
    the contract's codec as the daemon reads them; overrides win. A value the daemon would
    refuse at start-up is named in `setting_problems` (SHARD-PLAN reports it) and the default
    used meanwhile."""
    problems: list[str] = []

    def read(setting: Setting[T], override: T | None) -> T:
        if override is not None:
            return override
        try:
            return setting.read(env)
        except SettingError as exc:
            problems.append(str(exc))
            return setting.default

    return {
        "mode": read(settings.MODE, target.mode),
        "shards": read(settings.SHARDS, target.shards),
        "max_routes_per_table": read(settings.MAX_ROUTES_PER_TABLE, target.max_routes_per_table),
        "setting_problems": tuple(problems),
    }


# --- EKS -----------------------------------------------------------------------------------------


def gather_eks(eks: Any, target: Target, into: _Gathered) -> None:
    """remoteNetworkConfig, the service CIDR and the VPC from DescribeCluster; overrides win.

    Shapes as botocore's eks service model names them (cluster.remoteNetworkConfig
    .remoteNodeNetworks[].cidrs, .remotePodNetworks[].cidrs; kubernetesNetworkConfig
    .serviceIpv4Cidr; resourcesVpcConfig.vpcId). The EC2/EKS emulator (moto 5.2, moto/eks
    models.py and responses.py) stores and returns remoteNetworkConfig but no vpcId, so the VPC
    is also found from the cluster's subnets (DescribeSubnets) when vpcId is absent.
    """
    remote_nodes = target.remote_node_cidrs
    remote_pods = target.remote_pod_cidrs
    service = target.service_cidr
    vpc_id = target.vpc_id
    sources: list[str] = []
    if target.cluster and eks is not None:
        try:
            cluster = eks.describe_cluster(name=target.cluster)["cluster"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            into.unavailable["eks"] = f"DescribeCluster {target.cluster}: {_describe_error(exc)}"
            cluster = None
        if cluster is not None:
            sources.append("eks:DescribeCluster")
            remote = cluster.get("remoteNetworkConfig") or {}
            if remote_nodes is None:
                remote_nodes = tuple(
                    c for n in remote.get("remoteNodeNetworks") or [] for c in n.get("cidrs") or []
                )
            if remote_pods is None:
                remote_pods = tuple(
                    c for n in remote.get("remotePodNetworks") or [] for c in n.get("cidrs") or []
                )
            if service is None:
                service = (cluster.get("kubernetesNetworkConfig") or {}).get("serviceIpv4Cidr")
            vpc_config = cluster.get("resourcesVpcConfig") or {}
            if vpc_id is None:
                vpc_id = vpc_config.get("vpcId")
            into.values["cluster_subnets"] = tuple(vpc_config.get("subnetIds") or ())
    elif target.cluster:
        into.unavailable["eks"] = "no EKS client: no AWS region (set AWS_REGION or --region)"
    elif remote_nodes is None or remote_pods is None:
        into.unavailable["eks"] = (
            "no --cluster given and no --remote-node-cidrs/--remote-pod-cidrs overrides"
        )
    overridden = [
        flag
        for flag, value in (
            ("--remote-node-cidrs", target.remote_node_cidrs),
            ("--remote-pod-cidrs", target.remote_pod_cidrs),
            ("--service-cidr", target.service_cidr),
        )
        if value is not None
    ]
    sources.extend(overridden)
    failed = into.unavailable.get("eks")
    into.values["vpc_id"] = vpc_id
    if remote_nodes is not None and remote_pods is not None:
        if failed is not None:  # overrides cover it: say so where the plan is shown
            sources.append(f"{failed}, so overrides only")
        into.values["networks"] = Networks(
            vpc_cidrs=(),
            remote_node_cidrs=tuple(remote_nodes),
            remote_pod_cidrs=tuple(remote_pods),
            service_cidr=service,
            source=", ".join(sources) or "overrides",
        )
        into.unavailable.pop("eks", None)


# --- EC2 -----------------------------------------------------------------------------------------


def _prefix_list_ids(permissions: Iterable[Mapping[str, Any]]) -> set[str]:
    return {
        r["PrefixListId"]
        for p in permissions
        for r in p.get("PrefixListIds") or []
        if r.get("PrefixListId")
    }


def _rules(
    permissions: Iterable[Mapping[str, Any]], prefix_lists: Mapping[str, tuple[str, ...]]
) -> tuple[SgRule, ...]:
    """Permissions as EC2 returns them (IpPermissions: IpRanges, PrefixListIds,
    UserIdGroupPairs), with each named prefix list's entries added to the rule's CIDRs."""
    rules: list[SgRule] = []
    for p in permissions:
        lists = tuple(
            r["PrefixListId"] for r in p.get("PrefixListIds") or [] if r.get("PrefixListId")
        )
        rules.append(
            SgRule(
                protocol=str(p.get("IpProtocol", "")),
                from_port=p.get("FromPort"),
                to_port=p.get("ToPort"),
                cidrs=(
                    *(r["CidrIp"] for r in p.get("IpRanges") or [] if r.get("CidrIp")),
                    *(c for pl in lists for c in prefix_lists.get(pl, ())),
                ),
                prefix_lists=lists,
                groups=tuple(
                    g["GroupId"] for g in p.get("UserIdGroupPairs") or [] if g.get("GroupId")
                ),
            )
        )
    return tuple(rules)


def _prefix_list_entries(ec2: Any, ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each customer-managed prefix list's CIDRs (GetManagedPrefixListEntries, paginated).
    AWS-managed lists (S3, DynamoDB, CloudFront) hold no on-prem network and read the same."""
    entries: dict[str, tuple[str, ...]] = {}
    for list_id in sorted(ids):
        cidrs: list[str] = []
        paginator = ec2.get_paginator("get_managed_prefix_list_entries")
        for page in paginator.paginate(PrefixListId=list_id):
            cidrs.extend(e["Cidr"] for e in page.get("Entries") or [] if e.get("Cidr"))
        entries[list_id] = tuple(cidrs)
    return entries


def _instance(raw: Mapping[str, Any]) -> GatewayInstance:
    primary: Mapping[str, Any] = next(
        (
            e
            for e in raw.get("NetworkInterfaces") or []
            if (e.get("Attachment") or {}).get("DeviceIndex") == 0
        ),
        {},
    )
    return GatewayInstance(
        instance_id=str(raw["InstanceId"]),
        state=str((raw.get("State") or {}).get("Name", "unknown")),
        private_ip=str(raw.get("PrivateIpAddress", "")),
        primary_eni=str(primary.get("NetworkInterfaceId", "")),
        source_dest_check=bool(primary.get("SourceDestCheck", raw.get("SourceDestCheck", True))),
        http_tokens=str((raw.get("MetadataOptions") or {}).get("HttpTokens", "optional")),
        security_groups=tuple(
            g["GroupId"] for g in primary.get("Groups") or raw.get("SecurityGroups") or []
        ),
    )


def gather_ec2(
    ec2: Any, instance_ids: Sequence[str], owned: Sequence[str], into: _Gathered
) -> None:
    """Gateway instances and their security groups, the VPC's CIDRs and route tables, and which
    ENI route targets still exist."""
    try:
        instances: list[GatewayInstance] = []
        vpc_id = into.values.get("vpc_id")
        if instance_ids:
            reply = ec2.describe_instances(InstanceIds=list(instance_ids))
            into.values["gateway_enis"] = gateway_eni_ids(reply.get("Reservations", []))
            raw = [i for r in reply.get("Reservations", []) for i in r.get("Instances", [])]
            instances = sorted((_instance(i) for i in raw), key=lambda i: i.instance_id)
            vpc_id = vpc_id or next((i.get("VpcId") for i in raw if i.get("VpcId")), None)
        into.values["instances"] = tuple(instances)
        subnets = into.values.get("cluster_subnets") or ()
        if not vpc_id and subnets:
            described = ec2.describe_subnets(SubnetIds=list(subnets[:1]))["Subnets"]
            vpc_id = described[0]["VpcId"] if described else None
        group_ids = sorted({g for i in instances for g in i.security_groups})
        groups = (
            ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"] if group_ids else []
        )
        lists = _prefix_list_entries(
            ec2,
            {
                pl
                for g in groups
                for pl in _prefix_list_ids(
                    [*(g.get("IpPermissions") or []), *(g.get("IpPermissionsEgress") or [])]
                )
            },
        )
        into.values["security_groups"] = {
            g["GroupId"]: SecurityGroup(
                g["GroupId"],
                _rules(g.get("IpPermissions") or [], lists),
                _rules(g.get("IpPermissionsEgress") or [], lists),
            )
            for g in groups
        }
        vpc_tables: list[Mapping[str, Any]] = []
        vpc_subnets: set[str] = set()
        if vpc_id:
            vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
            into.values["vpc_cidrs"] = tuple(
                a["CidrBlock"]
                for a in vpc.get("CidrBlockAssociationSet") or [{"CidrBlock": vpc["CidrBlock"]}]
                if (a.get("CidrBlockState") or {}).get("State", "associated") == "associated"
            )
            vpc_tables = ec2.describe_route_tables(
                Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
            )["RouteTables"]
            vpc_subnets = {
                n["SubnetId"]
                for n in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
                    "Subnets"
                ]
            }
        table_ids = sorted({t["RouteTableId"] for t in vpc_tables} | set(owned))
        routes = Ec2Routes(ec2).describe_routes(table_ids) if table_ids else {}
        by_id = {t["RouteTableId"]: t for t in vpc_tables}
        # Subnets without an explicit association use the main table.
        explicit = {
            a["SubnetId"]
            for t in vpc_tables
            for a in t.get("Associations") or []
            if a.get("SubnetId")
        }
        implicit = tuple(sorted(vpc_subnets - explicit))
        tables: list[RouteTable] = []
        for table_id in table_ids:
            if table_id not in routes:
                continue
            associations = (by_id.get(table_id) or {}).get("Associations") or []
            main = any(a.get("Main") for a in associations)
            explicit_here = [a["SubnetId"] for a in associations if a.get("SubnetId")]
            tables.append(
                RouteTable(
                    table_id=table_id,
                    vpc_id=str((by_id.get(table_id) or {}).get("VpcId", vpc_id or "")),
                    subnet_ids=tuple(sorted([*explicit_here, *(implicit if main else ())])),
                    main=main,
                    routes=tuple(routes[table_id]),
                )
            )
        into.values["tables"] = tuple(tables)
        into.values["missing_tables"] = tuple(t for t in owned if t not in routes)
        targets = sorted(
            {
                r.target_id
                for t in tables
                for r in t.routes
                if r.target_id.startswith("eni-") and not r.blackhole
            }
        )
        existing = frozenset(e for e in targets if _eni_exists(ec2, e))
        into.values["existing_enis"] = existing
        present = [t for t in owned if t in routes]
        raw_tables = (
            ec2.describe_route_tables(RouteTableIds=present)["RouteTables"] if present else []
        )
        into.values["owned_routes"] = tuple(
            _as_ec2_reports(r, existing) for r in routes_from_describe(raw_tables)
        )
        into.values["tables"] = _with_prefix_lists(ec2, tuple(tables), raw_tables, into)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, Ec2Error) as exc:
        into.unavailable["ec2"] = _describe_error(exc)


def _with_prefix_lists(
    ec2: Any,
    tables: tuple[RouteTable, ...],
    raw_tables: Sequence[Mapping[str, Any]],
    into: _Gathered,
) -> tuple[RouteTable, ...]:
    """The owned tables with their routes to IPv4 prefix lists and each list's max entries
    (DescribeManagedPrefixLists): the VPC quota counts such a route at the list's max entries
    (Amazon VPC user guide, "Amazon VPC quotas", customer-managed prefix lists)."""
    referenced = {
        str(t["RouteTableId"]): [
            str(r["DestinationPrefixListId"])
            for r in t.get("Routes") or []
            if r.get("DestinationPrefixListId")
        ]
        for t in raw_tables
    }
    ids = sorted({i for lists in referenced.values() for i in lists})
    if not ids:
        return tables
    try:
        reply = ec2.describe_managed_prefix_lists(PrefixListIds=ids)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        into.unavailable["prefix-lists"] = _describe_error(exc)
        return tables
    entries = {
        str(p["PrefixListId"]): int(p.get("MaxEntries") or 0)
        for p in reply.get("PrefixLists") or []
        if p.get("AddressFamily", "IPv4") == "IPv4"
    }
    return tuple(
        replace(
            t,
            prefix_list_routes=tuple(
                (i, entries[i]) for i in referenced.get(t.table_id, []) if i in entries
            ),
        )
        for t in tables
    )


def _as_ec2_reports(route: Route, existing_enis: frozenset[str]) -> Route:
    """A route to an ENI that no longer exists is a blackhole: EC2 reports it so, the emulator
    keeps saying `active`; mark it the way EC2 would, so both read the same."""
    eni = route.network_interface_id
    if eni and route.state != "blackhole" and eni not in existing_enis:
        return replace(route, state="blackhole")
    return route


def _eni_exists(ec2: Any, eni_id: str) -> bool:
    try:
        ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "InvalidNetworkInterfaceID.NotFound":
            return False
        raise
    return True


# --- all of it -----------------------------------------------------------------------------------


def gateway_instance_ids(into: _Gathered, target: Target) -> list[str]:
    """Overrides, nodes labelled as gateway nodes, and the nodes the gateway pods run on."""
    nodes: Mapping[str, KubeNode] = into.values.get("nodes", {})
    pod_nodes = {p.node_name for p in into.values.get("pods", ())}
    found = set(target.gateway_instance_ids)
    for node in nodes.values():
        labelled = node.labels.get(GATEWAY_NODE_LABEL_KEY) == GATEWAY_NODE_LABEL_VALUE
        if node.instance_id and (labelled or node.name in pod_nodes):
            found.add(node.instance_id)
    return sorted(found)


def gather(
    target: Target,
    *,
    ec2: Any,
    eks: Any,
    kube: client.ApiClient | None,
    now: float | None = None,
) -> Facts:
    into = _Gathered()
    if kube is not None:
        gather_kubernetes(kube, target, into)
    else:
        into.unavailable[KUBE] = "no kubeconfig or in-cluster configuration"
    if "settings" not in into.values:
        into.values["settings"] = GatewaySettings(
            namespace=target.namespace,
            deployment=None,
            replicas=0,
            vpc_cidrs=tuple(target.vpc_cidrs or ()),
            pod_cidrs=tuple(target.pod_cidrs or ()),
            route_table_ids=tuple(target.route_table_ids or ()),
            lease_name=target.lease_name or DEFAULT_LEASE_NAME,
            **shard_settings(target, {}),
        )
    gather_eks(eks, target, into)
    settings: GatewaySettings = into.values["settings"]
    if ec2 is not None:
        gather_ec2(ec2, gateway_instance_ids(into, target), settings.route_table_ids, into)
    else:
        into.unavailable["ec2"] = "no EC2 client"
    networks: Networks | None = into.values.get("networks")
    vpc_cidrs = target.vpc_cidrs or into.values.get("vpc_cidrs") or settings.vpc_cidrs
    if networks is not None:
        vpc_source = (
            VPC_FROM_FLAG
            if target.vpc_cidrs
            else VPC_FROM_EC2
            if into.values.get("vpc_cidrs") is not None
            else f"the gateway's {Env.VPC_CIDR} (the VPC was not read)"
            if vpc_cidrs
            else "nowhere (the VPC was not read)"
        )
        networks = replace(networks, vpc_cidrs=tuple(vpc_cidrs), vpc_source=vpc_source)
    if not settings.pod_cidrs and networks is not None:
        settings = replace(settings, pod_cidrs=networks.remote_pod_cidrs)
    if not settings.vpc_cidrs and vpc_cidrs:
        settings = replace(settings, vpc_cidrs=tuple(vpc_cidrs))
    values = into.values
    return Facts(
        now=time.time() if now is None else now,
        networks=networks,
        settings=settings,
        tables=values.get("tables", ()),
        missing_tables=values.get("missing_tables", ()),
        instances=values.get("instances", ()),
        security_groups=values.get("security_groups", {}),
        existing_enis=values.get("existing_enis", frozenset()),
        owned_routes=values.get("owned_routes", ()),
        gateway_enis=values.get("gateway_enis", frozenset()),
        nodes=values.get("nodes", {}),
        pods=values.get("pods", ()),
        lease=values.get("lease"),
        shard_leases=values.get("shard_leases", {}),
        member_leases=values.get("member_leases", ()),
        vtep_crd=values.get("vtep_crd"),
        vtep_crd_versions=values.get("vtep_crd_versions", ()),
        cilium_config=values.get("cilium_config"),
        hybrid_nodes=values.get("hybrid_nodes", ()),
        vtep_endpoints=values.get("vtep_endpoints"),
        aws_node_env=values.get("aws_node_env"),
        events=values.get("events", ()),
        vpc_cidrs_read=values.get("vpc_cidrs"),
        holder_pod_exists=values.get("holder_pod_exists"),
        unavailable=dict(into.unavailable),
    )


CONFIGURED_METRIC = "hybrid_gateway_hybrid_nodes_configured"


def _http_get(url: str, timeout_s: float) -> tuple[int, str] | None:
    """(status, body) of a replica endpoint, None when it cannot be reached."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return int(reply.status), reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:  # 503 from /readyz is an answer, not a failure
        return int(exc.code), exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.info("%s not reachable: %s", url, exc)
        return None


def scrape_configured(host: str, port: int, timeout_s: float = 2.0) -> int | None:
    """`hybrid_gateway_hybrid_nodes_configured` from a replica's /metrics, None if unreachable."""
    answer = _http_get(f"http://{host}:{port}{METRICS_PATH}", timeout_s)
    if answer is None or answer[0] != 200:
        return None
    for line in answer[1].splitlines():
        name, _, value = line.partition(" ")
        if name == CONFIGURED_METRIC:
            try:
                return int(float(value.strip()))
            except ValueError:
                return None
    return None


def scrape_readiness(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    """The replica's own account of its readiness (its /readyz answer), None if unreachable."""
    answer = _http_get(f"http://{host}:{port}{READYZ_PATH}", timeout_s)
    if answer is None:
        return None
    status, body = answer
    verdict = "ready" if status == 200 else f"not ready ({status})"
    text = " ".join(body.split())
    return f"{verdict}: {text}" if text else verdict
