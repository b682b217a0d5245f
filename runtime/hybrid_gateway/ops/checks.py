"""The preflight checks: pure functions from gathered facts to a verdict, evidence and a fix.

Check IDs are stable (pipelines match on them). A check whose input could not be gathered is
"skipped" and says why; a check that does not apply yet (before install) says so too.
Sources that decide behaviour: the EKS user guide's hybrid-nodes-gateway pages (UDP 8472 both
ways, source/destination check, IMDSv2, labels and taints, SNAT exclusion), Cilium's
pkg/option/config.go for the `cilium-config` keys `enable-vtep` and `enable-l7-proxy` (the
Helm values vtep.enabled and l7Proxy), and the gateway's own contract (Lease, VTEP config).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway.core.routes import ObservedRoute, TargetKind
from hybrid_gateway.core.vtep import (
    AGENT_VTEP_MASK_KEY,
    DEFAULT_AGENT_VTEP_MASK,
    VtepMatchError,
    agent_mask_length,
    endpoints_for_agent_mask,
    plan_mask_problem,
)
from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    GATEWAY_NODE_LABEL_KEY,
    GATEWAY_NODE_LABEL_VALUE,
    GATEWAY_NODE_TAINT_EFFECT,
    GATEWAY_NODE_TAINT_KEY,
    VXLAN_PORT,
)
from hybrid_gateway_contract.rules import CidrField, NetworkRole, check_cidr_plan
from hybrid_gateway_contract.security_groups import HYBRID_POD_CLIENT_PORTS, RETURN_PATH_PROTOCOLS

from .facts import Facts, GatewayInstance, GroupLease, SgRule, leftover_shard_routes
from .report import CheckResult, Verdict, worst
from .shards import (
    ABSENT,
    BLACKHOLE,
    NOT_A_GATEWAY,
    OTHER_GATEWAY,
    OWNER,
    TABLE_NOT_FOUND,
    live_members,
    shard_statuses,
)

Check = Callable[[Facts], CheckResult]
SNAT_EXCLUSION_ENV = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"


def _result(
    check_id: str, title: str, verdict: Verdict, evidence: Iterable[str], fix: str = ""
) -> CheckResult:
    return CheckResult(check_id, title, verdict, tuple(evidence), fix)


def _ok_unless(
    failed: bool, check_id: str, title: str, evidence: Sequence[str], fix: str
) -> CheckResult:
    """Fail with `fix` when `failed`, else ok; the evidence either way."""
    if failed:
        return _result(check_id, title, Verdict.FAIL, evidence, fix)
    return _result(check_id, title, Verdict.OK, evidence)


def _skipped(check_id: str, title: str, why: str) -> CheckResult:
    return CheckResult(check_id, title, Verdict.SKIPPED, (why,))


def _why_missing(facts: Facts, *sources: str) -> str:
    reasons = [f"{s}: {facts.unavailable[s]}" for s in sources if s in facts.unavailable]
    return "; ".join(reasons) if reasons else f"not gathered ({', '.join(sources)})"


def _kube_reason(facts: Facts, *parts: str) -> str | None:
    """Why these Kubernetes reads are missing (the whole API, or one of `parts`), or None."""
    keys = ["kubernetes", *(f"kubernetes/{part}" for part in parts)]
    present = [key for key in keys if key in facts.unavailable]
    return _why_missing(facts, *present) if present else None


def _not_installed(facts: Facts, *parts: str) -> str | None:
    """Why gateway-runtime checks do not apply (the Deployment or `parts` could not be read, or
    there is no Deployment yet), or None when the gateway is deployed."""
    unreadable = _kube_reason(facts, "deployment", *parts)
    if unreadable is not None:
        return unreadable
    if facts.settings is None:
        return _why_missing(facts, "gateway")
    if facts.settings.deployment is None:
        return (
            f"no gateway Deployment in namespace {facts.settings.namespace} "
            "(before install: nothing to check yet)"
        )
    return None


def _networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network]:
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.IPv4Network(cidr, strict=False))
        except ValueError:
            continue
    return out


def _inside(cidr: str, containers: Sequence[ipaddress.IPv4Network]) -> bool:
    """Whether all of `cidr` lies in the union of `containers` (adjacent ones merged, so two
    /17 entries of a prefix list cover a /16)."""
    try:
        network = ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        return False
    return any(network.subnet_of(c) for c in ipaddress.collapse_addresses(containers))


# --- CIDR plan -----------------------------------------------------------------------------------


def check_cidr_plan_disjoint(facts: Facts) -> CheckResult:
    cid, title = "CIDR-PLAN", "VPC, remote node, remote pod and service CIDRs are disjoint"
    net = facts.networks
    if net is None:
        return _skipped(cid, title, _why_missing(facts, "eks"))
    fields = [
        CidrField("VPC CIDRs", NetworkRole.VPC, list(net.vpc_cidrs)),
        CidrField("remoteNodeNetworks", NetworkRole.REMOTE_NODE, list(net.remote_node_cidrs)),
        CidrField("remotePodNetworks", NetworkRole.REMOTE_POD, list(net.remote_pod_cidrs)),
        CidrField(
            "serviceIpv4Cidr",
            NetworkRole.SERVICE,
            [net.service_cidr] if net.service_cidr else [],
            required=False,
            single=True,
        ),
    ]
    problems = check_cidr_plan(fields)
    seen = (
        f"VPC {', '.join(net.vpc_cidrs) or '-'}; remote nodes "
        f"{', '.join(net.remote_node_cidrs) or '-'}; remote pods "
        f"{', '.join(net.remote_pod_cidrs) or '-'}; services {net.service_cidr or '-'} "
        f"(from {net.source}; VPC CIDRs from {net.vpc_source or '-'})"
    )
    if not problems and not net.vpc_cidrs_known:
        # Judged without the VPC's own CIDRs: never a pass (a problem found is still one).
        return _skipped(
            cid,
            title,
            f"the VPC's CIDRs could not be read ({_why_missing(facts, 'ec2')}); give "
            f"--vpc-cidrs to judge without EC2. Seen: {seen}",
        )
    if not problems:
        return _result(cid, title, Verdict.OK, [seen])
    return _result(
        cid,
        title,
        Verdict.FAIL,
        [seen, *(str(p) for p in problems)],
        "Re-plan the addresses so the four kinds of network do not overlap (the cluster's "
        "remoteNetworkConfig cannot overlap the VPC or the service CIDR).",
    )


# --- route tables --------------------------------------------------------------------------------


def check_route_targets(facts: Facts) -> CheckResult:
    cid, title = "ROUTE-TARGETS", "Pod-CIDR routes in the owned tables target the leader's ENI"
    settings = facts.settings
    if settings is None or "ec2" in facts.unavailable:
        return _skipped(cid, title, _why_missing(facts, "gateway", "ec2"))
    if not settings.route_table_ids:
        return _skipped(
            cid, title, "no route tables to check: ROUTE_TABLE_IDS unknown (give --route-table-ids)"
        )
    if facts.active_active:
        return _shard_route_targets(facts, cid)
    leader = facts.leader_instance()
    gateway_enis = {i.primary_eni: i.instance_id for i in facts.instances}
    evidence: list[str] = []
    verdicts: list[Verdict] = []
    fixes: list[str] = []
    for table_id in settings.route_table_ids:
        table = facts.table(table_id)
        if table is None:
            verdicts.append(Verdict.FAIL)
            evidence.append(f"{table_id}: no such route table")
            fixes.append("remove the unknown table from ROUTE_TABLE_IDS")
            continue
        routes = {r.destination: r for r in table.routes}
        for cidr in settings.pod_cidrs:
            route = routes.get(cidr)
            where = f"{table_id} {cidr}"
            if route is None:
                verdicts.append(Verdict.FAIL)
                evidence.append(f"{where}: absent")
                fixes.append("start the gateway: its leader creates missing routes")
            elif facts.route_gone(route):
                verdicts.append(Verdict.FAIL)
                evidence.append(f"{where}: blackhole ({route.target_id or 'no target'} is gone)")
                fixes.append("let the leader replace stale routes (is it running?)")
            elif route.kind in (TargetKind.NETWORK_INTERFACE, TargetKind.INSTANCE):
                if leader is not None and route.target_id == leader.primary_eni:
                    verdicts.append(Verdict.OK)
                    evidence.append(f"{where}: {route.target_id} (leader {leader.instance_id})")
                elif route.target_id in gateway_enis:
                    verdicts.append(Verdict.WARN if leader is not None else Verdict.OK)
                    role = "standby" if leader is not None else "gateway"
                    evidence.append(
                        f"{where}: {route.target_id} ({role} {gateway_enis[route.target_id]})"
                    )
                    fixes.append("the leader moves routes to itself on its next resync")
                else:
                    verdicts.append(Verdict.FAIL)
                    evidence.append(f"{where}: {route.target_id} (not a gateway ENI)")
                    fixes.append("find who owns that ENI route; the gateway replaces it")
            else:
                verdicts.append(Verdict.FAIL)
                evidence.append(f"{where}: {route.kind.value} {route.target_id}")
                fixes.append(
                    f"decide whether the {route.kind.value} route is deliberate; the gateway "
                    "only takes it over with ALLOW_ROUTE_TAKEOVER=true"
                )
        _shard_routes_left(facts, table_id, evidence, verdicts, fixes)
        for found in _stealing_routes(facts, table.routes, settings.pod_cidrs, set(gateway_enis)):
            verdicts.append(Verdict.FAIL)
            evidence.append(f"{table_id} {found}")
            fixes.append("remove the more specific route, or route it through the gateway")
    verdict = worst(verdicts)
    fix = "; ".join(dict.fromkeys(fixes)) if verdict is not Verdict.OK else ""
    return _result(cid, title, verdict, evidence, (fix[:1].upper() + fix[1:] + ".") if fix else "")


def _shard_routes_left(
    facts: Facts, table_id: str, evidence: list[str], verdicts: list[Verdict], fixes: list[str]
) -> None:
    """Active-standby: shard routes active-active left in the table (leftover_shard_routes)."""
    for route in leftover_shard_routes(facts, table_id):
        verdicts.append(Verdict.WARN)
        evidence.append(
            f"{table_id} {route.destination}: {route.target_id} (a shard route left by "
            "active-active; more specific than the pod network, so it wins)"
        )
        fixes.append(
            "the active-standby leader deletes shard routes on its next sync (it needs "
            "ec2:DeleteRoute on the owned tables; see its StaleRoutesDeleted Events)"
        )


def _stealing_routes(
    facts: Facts, routes: Iterable[ObservedRoute], pod_cidrs: Sequence[str], gateway: set[str]
) -> list[str]:
    """Routes more specific than a pod CIDR that do not lead to a gateway: a VPC route table
    picks the longest matching prefix (Amazon VPC user guide, "Route priority"), so they take
    that part of the pods' traffic away from the gateway."""
    pods = _networks(pod_cidrs)
    found: list[str] = []
    for route in routes:
        try:
            network = ipaddress.IPv4Network(route.destination)
        except ValueError:
            continue
        inside = next((p for p in pods if network.subnet_of(p) and network != p), None)
        if inside is None or (route.target_id in gateway and not facts.route_gone(route)):
            continue
        target = f"{route.kind.value} {route.target_id}".strip()
        found.append(
            f"{route.destination}: {target} is more specific than {inside} and takes that part "
            "of the pods' traffic away from the gateway"
        )
    return found


def check_route_coverage(facts: Facts) -> CheckResult:
    cid, title = "ROUTE-COVERAGE", "Every subnet's route table is owned or routes the pod CIDRs"
    settings = facts.settings
    if settings is None or "ec2" in facts.unavailable:
        return _skipped(cid, title, _why_missing(facts, "gateway", "ec2"))
    owned = set(settings.route_table_ids)
    uncovered: list[str] = []
    for table in facts.tables:
        if table.table_id in owned or not table.subnet_ids:
            continue
        destinations = {r.destination for r in table.routes}
        missing = [c for c in settings.pod_cidrs if c not in destinations]
        if missing:
            used_by = ", ".join(table.subnet_ids) + (", main table" if table.main else "")
            uncovered.append(f"{table.table_id} ({used_by}): no route to {', '.join(missing)}")
    if not uncovered:
        return _result(
            cid,
            title,
            Verdict.OK,
            [f"{len(facts.tables)} table(s) in the VPC; owned: {', '.join(sorted(owned)) or '-'}"],
        )
    return _result(
        cid,
        title,
        Verdict.WARN,
        uncovered,
        "Add these tables to ROUTE_TABLE_IDS (routeTableIds) if workloads in their subnets must "
        "reach hybrid pods.",
    )


# --- EC2 -----------------------------------------------------------------------------------------


def _covers_port(rule: SgRule) -> bool:
    if rule.protocol not in ("udp", "-1", "17"):
        return False
    return rule.protocol == "-1" or (
        rule.from_port is not None
        and rule.to_port is not None
        and rule.from_port <= VXLAN_PORT <= rule.to_port
    )


def _covers(rule: SgRule, cidr: str) -> bool:
    """UDP 8472 from/to all of `cidr`: by its IP ranges or a prefix list's entries (resolved
    at gathering; EC2 API reference, IpPermission.PrefixListIds)."""
    return _covers_port(rule) and _inside(cidr, _networks(rule.cidrs))


def _instances_or_skip(facts: Facts, cid: str, title: str) -> CheckResult | None:
    if "ec2" in facts.unavailable:
        return _skipped(cid, title, _why_missing(facts, "ec2"))
    if not facts.instances:
        return _skipped(
            cid,
            title,
            "no gateway instances found (no gateway pods or labelled nodes; give "
            "--gateway-instance-ids)",
        )
    return None


def check_security_groups(facts: Facts) -> CheckResult:
    cid, title = "SG-VXLAN", f"Security groups allow UDP {VXLAN_PORT} in and out with remote nodes"
    skip = _instances_or_skip(facts, cid, title)
    if skip is not None:
        return skip
    if facts.networks is None:
        return _skipped(cid, title, _why_missing(facts, "eks"))
    missing: list[str] = []
    via_lists: set[str] = set()
    for instance in facts.instances:
        groups = [
            facts.security_groups[g] for g in instance.security_groups if g in facts.security_groups
        ]
        for cidr in facts.networks.remote_node_cidrs:
            for direction in ("inbound", "outbound"):
                rules = [
                    rule
                    for group in groups
                    for rule in (group.ingress if direction == "inbound" else group.egress)
                ]
                covering = [rule for rule in rules if _covers(rule, cidr)]
                via_lists.update(pl for rule in covering for pl in rule.prefix_lists)
                if not covering:
                    peer = "from" if direction == "inbound" else "to"
                    referenced = sorted(
                        {g for rule in rules if _covers_port(rule) for g in rule.groups}
                    )
                    missing.append(
                        f"{instance.instance_id} ({', '.join(instance.security_groups)}): no "
                        f"{direction} UDP {VXLAN_PORT} {peer} {cidr}"
                        + (
                            f" (rules naming security groups {', '.join(referenced)} admit "
                            "only ENIs in those groups, never on-premises nodes)"
                            if referenced
                            else ""
                        )
                    )
    if not missing:
        return _result(
            cid,
            title,
            Verdict.OK,
            [
                f"UDP {VXLAN_PORT} in and out with {', '.join(facts.networks.remote_node_cidrs)} "
                f"on {', '.join(i.instance_id for i in facts.instances)}"
                + (f" (via prefix list {', '.join(sorted(via_lists))})" if via_lists else "")
            ],
        )
    return _result(
        cid,
        title,
        Verdict.FAIL,
        missing,
        f"Allow UDP {VXLAN_PORT} inbound AND outbound between the gateway nodes' security group "
        "and every remote node network (a missing return-path rule is the most common failure).",
    )


# Replies to hybrid pods' connections that come back through another gateway's ENI: security
# groups track per ENI (hybrid_gateway_contract.security_groups says why and which rules).
_PROTOCOL_NUMBERS = {"tcp": "6", "udp": "17"}


def _admits_replies(rule: SgRule, protocol: str, cidr: str) -> bool:
    if rule.protocol not in (protocol, _PROTOCOL_NUMBERS[protocol], "-1"):
        return False
    low, high = HYBRID_POD_CLIENT_PORTS
    if rule.protocol != "-1" and not (
        rule.from_port is not None
        and rule.to_port is not None
        and rule.from_port <= low
        and high <= rule.to_port
    ):
        return False
    return _inside(cidr, _networks(rule.cidrs))


def check_return_path_security_groups(facts: Facts) -> CheckResult:
    """Every gateway instance admits TCP and UDP from every VPC CIDR to the hybrid pods'
    client ports: a reply to a connection a hybrid pod opened may come back through a gateway
    ENI its request did not leave by (always in active-active mode, during every switch in
    active-standby mode), and that ENI's security groups judge it as new inbound traffic."""
    low, high = HYBRID_POD_CLIENT_PORTS
    cid = "SG-RETURN-PATH"
    title = f"Security groups admit replies from the VPC to hybrid pods' ports {low}-{high}"
    skip = _instances_or_skip(facts, cid, title)
    if skip is not None:
        return skip
    if facts.settings is not None and facts.settings.vpc_cidrs:
        vpc_cidrs: Sequence[str] = facts.settings.vpc_cidrs
    elif facts.networks is not None:
        vpc_cidrs = facts.networks.vpc_cidrs
    else:
        return _skipped(cid, title, _why_missing(facts, "gateway", "eks"))
    missing: list[str] = []
    for instance in facts.instances:
        ingress = [
            rule
            for g in instance.security_groups
            if g in facts.security_groups
            for rule in facts.security_groups[g].ingress
        ]
        for cidr in vpc_cidrs:
            for protocol in RETURN_PATH_PROTOCOLS:
                if not any(_admits_replies(rule, protocol, cidr) for rule in ingress):
                    missing.append(
                        f"{instance.instance_id} ({', '.join(instance.security_groups)}): no "
                        f"inbound {protocol.upper()} {low}-{high} from {cidr}"
                    )
    if not missing:
        return _result(
            cid,
            title,
            Verdict.OK,
            [
                f"TCP and UDP {low}-{high} from {', '.join(vpc_cidrs)} on "
                f"{', '.join(i.instance_id for i in facts.instances)}"
            ],
        )
    mode = "active-active" if facts.active_active else "active-standby"
    when = (
        "on every flow whose two directions cross different gateways"
        if facts.active_active
        else "for a moment after every leader switch"
    )
    return _result(
        cid,
        title,
        Verdict.FAIL if facts.active_active else Verdict.WARN,
        missing,
        f"Allow inbound TCP and UDP {low}-{high} from every VPC CIDR on the gateway nodes' "
        f"security group (the construct creates these rules): in {mode} mode, replies to "
        f"connections hybrid pods open to VPC services are dropped {when}.",
    )


def _per_instance(
    facts: Facts,
    *,
    cid: str,
    title: str,
    bad: Callable[[GatewayInstance], str | None],
    good: Callable[[GatewayInstance], str],
    verdict: Verdict,
    fix: str,
) -> CheckResult:
    skip = _instances_or_skip(facts, cid, title)
    if skip is not None:
        return skip
    problems = [p for p in (bad(i) for i in facts.instances) if p]
    if problems:
        return _result(cid, title, verdict, problems, fix)
    return _result(cid, title, Verdict.OK, [good(i) for i in facts.instances])


def check_source_dest(facts: Facts) -> CheckResult:
    return _per_instance(
        facts,
        cid="EC2-SOURCE-DEST-CHECK",
        title="Source/destination check is off on the gateway ENIs",
        bad=lambda i: (
            f"{i.instance_id} {i.primary_eni}: source/destination check ON"
            if i.source_dest_check
            else None
        ),
        good=lambda i: f"{i.instance_id} {i.primary_eni}: off",
        verdict=Verdict.FAIL,
        fix="Disable source/destination check on the gateway nodes' primary ENI (launch template, "
        "or NodeClass advancedNetworking.sourceDestCheck: DisabledPrimaryENI on Auto Mode).",
    )


def check_imdsv2(facts: Facts) -> CheckResult:
    return _per_instance(
        facts,
        cid="EC2-IMDSV2",
        title="Gateway instances require IMDSv2",
        bad=lambda i: (
            f"{i.instance_id}: HttpTokens={i.http_tokens}" if i.http_tokens != "required" else None
        ),
        good=lambda i: f"{i.instance_id}: HttpTokens=required",
        verdict=Verdict.WARN,
        fix="Set HttpTokens=required in the gateway nodes' launch template (metadata options).",
    )


def check_node_label_taint(facts: Facts) -> CheckResult:
    """The gateway nodes as Kubernetes knows them (the nodes its pods run on, the nodes
    labelled for it, and the nodes of gateway instances found otherwise), so the check runs on
    Kubernetes data alone when EC2 cannot be read. The taint is judged by key and effect: the
    AWS guide's Auto Mode NodePool taints `hybrid-gateway-node:NoSchedule` without a value and
    the reference chart tolerates it with `operator: Exists` (aws/eks-hybrid-nodes-gateway
    deploy/auto.yaml, charts/.../templates/deployment.yaml); so does ours."""
    cid, title = "NODE-LABEL-TAINT", "Gateway nodes carry the gateway label and taint"
    unreadable = _kube_reason(facts, "nodes")
    if unreadable is not None:
        return _skipped(cid, title, unreadable)
    instance_ids = {i.instance_id for i in facts.instances}
    pod_nodes = {p.node_name for p in facts.pods if p.node_name}
    nodes = sorted(
        (
            n
            for n in facts.nodes.values()
            if n.name in pod_nodes
            or n.labels.get(GATEWAY_NODE_LABEL_KEY) == GATEWAY_NODE_LABEL_VALUE
            or (n.instance_id is not None and n.instance_id in instance_ids)
        ),
        key=lambda n: n.name,
    )
    if not nodes:
        return _skipped(
            cid,
            title,
            f"no gateway nodes: no node runs a gateway pod or is labelled "
            f"{GATEWAY_NODE_LABEL_KEY}={GATEWAY_NODE_LABEL_VALUE}",
        )
    label = f"{GATEWAY_NODE_LABEL_KEY}={GATEWAY_NODE_LABEL_VALUE}"
    taint = f"{GATEWAY_NODE_TAINT_KEY}:{GATEWAY_NODE_TAINT_EFFECT}"
    evidence: list[str] = []
    verdicts: list[Verdict] = []
    for node in nodes:
        has_label = node.labels.get(GATEWAY_NODE_LABEL_KEY) == GATEWAY_NODE_LABEL_VALUE
        found = [
            f"{key}={value}:{effect}" if value else f"{key}:{effect}"
            for key, value, effect in node.taints
            if key == GATEWAY_NODE_TAINT_KEY and effect == GATEWAY_NODE_TAINT_EFFECT
        ]
        verdicts.append(
            Verdict.FAIL if not has_label else Verdict.WARN if not found else Verdict.OK
        )
        evidence.append(
            f"{node.name} ({node.instance_id or 'no EC2 instance ID'}): label {label} "
            f"{'present' if has_label else 'MISSING'}, taint "
            + (f"{found[0]} present" if found else f"{taint} MISSING")
        )
    verdict = worst(verdicts)
    fix = (
        f"Label the gateway nodes {label} and taint them {taint} (any value; node group labels "
        "and taints, or the Auto Mode NodePool's)."
        if verdict is not Verdict.OK
        else ""
    )
    return _result(cid, title, verdict, evidence, fix)


# --- Cilium --------------------------------------------------------------------------------------


def check_vtep_crd(facts: Facts) -> CheckResult:
    cid, title = "CILIUM-VTEP-CRD", "The ciliumvtepconfigs.cilium.io CRD exists"
    if facts.vtep_crd is None:
        return _skipped(cid, title, _kube_reason(facts, "crd") or "not gathered")
    if facts.vtep_crd:
        return _result(cid, title, Verdict.OK, ["customresourcedefinition present"])
    return _result(
        cid,
        title,
        Verdict.FAIL,
        ["customresourcedefinitions/ciliumvtepconfigs.cilium.io not found"],
        "Install an EKS Cilium build with VTEP support (>= 1.17.13-1, 1.18.8-1 or 1.19.2-1), "
        "which brings the CiliumVTEPConfig CRD.",
    )


def _kube_object_absent(facts: Facts, cid: str, title: str, part: str, absent: str) -> CheckResult:
    """Skipped: the object could not be read, or (if it could) `absent` says what is not there."""
    return _skipped(cid, title, _kube_reason(facts, part) or absent)


def _cilium_config_or_skip(facts: Facts, cid: str, title: str) -> CheckResult | None:
    if facts.cilium_config is None:
        return _kube_object_absent(
            facts,
            cid,
            title,
            "cilium-config",
            "no kube-system/cilium-config ConfigMap (is Cilium installed?)",
        )
    return None


def check_vtep_enabled(facts: Facts) -> CheckResult:
    cid, title = "CILIUM-VTEP-ENABLED", "Cilium has VTEP enabled in VXLAN tunnel mode"
    skip = _cilium_config_or_skip(facts, cid, title)
    if skip is not None:
        return skip
    config = facts.cilium_config or {}
    keys = ("enable-vtep", "routing-mode", "tunnel-protocol", "tunnel-port")
    seen = {k: config.get(k, "<unset>") for k in keys}
    evidence = [", ".join(f"{k}={v}" for k, v in seen.items())]
    # tunnel-port: the agents' VXLAN port (Helm tunnelPort); empty or 0 means the protocol's
    # default, 8472 for VXLAN (cilium/cilium pkg/defaults TunnelPortVXLAN). The gateway's
    # device listens on 8472 only.
    port = (config.get("tunnel-port") or "").strip()
    bad = (
        config.get("enable-vtep") != "true"
        or config.get("routing-mode", "tunnel") != "tunnel"
        or config.get("tunnel-protocol", "vxlan") != "vxlan"
        or port not in ("", "0", str(VXLAN_PORT))
    )
    return _ok_unless(
        bad,
        cid,
        title,
        evidence,
        "Set the Cilium Helm values vtep.enabled=true, routingMode=tunnel, "
        f"tunnelProtocol=vxlan and tunnelPort={VXLAN_PORT} (or unset), then restart the Cilium "
        "agents.",
    )


def check_l7_proxy(facts: Facts) -> CheckResult:
    cid, title = "CILIUM-L7-PROXY", "Cilium's L7 proxy is off (VTEP requires it)"
    skip = _cilium_config_or_skip(facts, cid, title)
    if skip is not None:
        return skip
    value = (facts.cilium_config or {}).get("enable-l7-proxy", "<unset: default true>")
    if value == "false":
        return _result(cid, title, Verdict.OK, ["enable-l7-proxy=false"])
    return _result(
        cid,
        title,
        Verdict.FAIL,
        [f"enable-l7-proxy={value}"],
        "Set the Cilium Helm value l7Proxy=false and restart the Cilium agents.",
    )


def check_hybrid_nodes(facts: Facts) -> CheckResult:
    cid, title = (
        "CILIUM-HYBRID-NODES",
        "Hybrid CiliumNodes have an InternalIP and pod CIDRs in range",
    )
    # In range: the node's IP in remoteNodeNetworks (the gateway's security group and the
    # VXLAN peers follow them; EKS user guide, hybrid nodes networking) and its pod CIDRs in
    # remotePodNetworks.
    unreadable = _kube_reason(facts, "ciliumnodes")
    if unreadable is not None:
        return _skipped(cid, title, unreadable)
    if not facts.hybrid_nodes:
        return _result(
            cid,
            title,
            Verdict.WARN,
            ["no CiliumNode labelled eks.amazonaws.com/compute-type=hybrid"],
            "Join hybrid nodes with Cilium running on them; until then there is nothing to route.",
        )
    pod_networks = _networks(facts.networks.remote_pod_cidrs) if facts.networks else []
    node_networks = _networks(facts.networks.remote_node_cidrs) if facts.networks else []
    problems: list[str] = []
    for node in facts.hybrid_nodes:
        if not node.internal_ip:
            problems.append(f"{node.name}: no InternalIP in spec.addresses")
        elif node_networks and not _inside(f"{node.internal_ip}/32", node_networks):
            problems.append(
                f"{node.name}: InternalIP {node.internal_ip} outside the remote node networks "
                "(the gateway's security group admits VXLAN only from those)"
            )
        if not node.pod_cidrs:
            problems.append(f"{node.name}: no spec.ipam.podCIDRs")
        outside = [c for c in node.pod_cidrs if pod_networks and not _inside(c, pod_networks)]
        if outside:
            problems.append(
                f"{node.name}: pod CIDR(s) {', '.join(outside)} outside the remote pod networks"
            )
    if problems:
        return _result(
            cid,
            title,
            Verdict.FAIL,
            problems,
            "Give Cilium's cluster-pool IPAM pod CIDRs inside the cluster's remotePodNetworks, "
            "and make sure each hybrid node reports an InternalIP inside remoteNodeNetworks.",
        )
    seen = [f"{n.name}: {n.internal_ip} pods {', '.join(n.pod_cidrs)}" for n in facts.hybrid_nodes]
    if facts.networks is None:  # the range half could not be judged: no pass
        return _skipped(
            cid,
            title,
            f"pod CIDRs not compared with remotePodNetworks ({_why_missing(facts, 'eks')}); "
            f"seen: {'; '.join(seen)}",
        )
    return _result(cid, title, Verdict.OK, seen)


def _no_vtep_config(cid: str, title: str, whose: str, why: str) -> CheckResult:
    return _result(
        cid,
        title,
        Verdict.FAIL,
        ["no CiliumVTEPConfig hybrid-gateway"],
        f"Check {whose} RBAC on ciliumvtepconfigs: {why}.",
    )


def check_vtep_config(facts: Facts) -> CheckResult:
    cid, title = "VTEP-CONFIG", "CiliumVTEPConfig points at the leader with its MAC"
    why = _not_installed(facts, "lease", "vtep-config")
    if why is not None:
        return _skipped(cid, title, why)
    settings = facts.settings
    assert settings is not None
    if facts.active_active:
        return _shard_vtep_config(facts, cid)
    leader = facts.leader_pod()
    if leader is None or not leader.host_ip:
        return _skipped(cid, title, "no leader pod with a host IP to compare with (GATEWAY-LEASE)")
    if facts.vtep_endpoints is None:
        return _no_vtep_config(cid, title, "the leader's logs and its", "it creates the object")
    expected_mac = vxlan_device_mac(leader.host_ip)
    standby_ips = {p.host_ip: p.name for p in facts.pods if p.name != leader.name and p.host_ip}
    problems: list[str] = []
    for endpoint in facts.vtep_endpoints:
        if endpoint.tunnel_endpoint != leader.host_ip:
            who = (
                f"the standby {standby_ips[endpoint.tunnel_endpoint]}"
                if endpoint.tunnel_endpoint in standby_ips
                else "no gateway replica"
            )
            problems.append(
                f"{endpoint.name}: tunnelEndpoint {endpoint.tunnel_endpoint} is {who}, "
                f"leader {leader.name} is {leader.host_ip}"
            )
        elif endpoint.mac.lower() != expected_mac:
            problems.append(
                f"{endpoint.name}: mac {endpoint.mac}, the leader's device has {expected_mac}"
            )
    cidrs = sorted(e.cidr for e in facts.vtep_endpoints)
    expected = _expected_endpoint_cidrs(facts)
    if cidrs != sorted(expected):
        problems.append(
            f"endpoint CIDRs {', '.join(cidrs)} != {', '.join(expected)} (VPC_CIDR "
            f"{', '.join(settings.vpc_cidrs)}"
            + (" cut to the Cilium agents' vtep-mask)" if expected != settings.vpc_cidrs else ")")
        )
    endpoint_networks = _networks(cidrs)
    unreached = [c for c in (facts.vpc_cidrs_read or ()) if not _inside(c, endpoint_networks)]
    if unreached:
        problems.append(
            f"VPC CIDR(s) {', '.join(unreached)} have no VTEP endpoint: hybrid pods' traffic to "
            "them does not enter the tunnel, so hosts there get no replies"
        )
    if problems:
        return _result(
            cid,
            title,
            Verdict.FAIL,
            problems,
            "Give VPC_CIDR every CIDR of the VPC (vpcCidrs); otherwise the leader corrects the "
            "object on its next resync: if it persists, check the leader's logs and its RBAC on "
            "ciliumvtepconfigs."
            if unreached
            else "The leader corrects the object on its next resync; if it persists, check the "
            "leader's logs and its RBAC on ciliumvtepconfigs.",
        )
    return _result(
        cid,
        title,
        Verdict.OK,
        [
            f"{e.name}: {e.cidr} via {e.tunnel_endpoint} ({leader.name}) mac {e.mac}"
            for e in facts.vtep_endpoints
        ],
    )


def _agent_mask(facts: Facts) -> int | None:
    """The hybrid Cilium agents' vtep-mask length, None when unknown or unreadable."""
    if facts.cilium_config is None:
        return None
    try:
        return agent_mask_length(facts.cilium_config)
    except VtepMatchError:
        return None


def _expected_endpoint_cidrs(facts: Facts) -> tuple[str, ...]:
    """The active-standby endpoints the leader publishes: VPC_CIDR cut to the agents' mask
    (`endpoints_for_agent_mask`, as the daemon does), or VPC_CIDR as is when that is unknown
    or impossible (CILIUM-VTEP-MATCH reports why)."""
    settings = facts.settings
    assert settings is not None
    mask = _agent_mask(facts)
    try:
        vpcs = [ipaddress.IPv4Network(c) for c in settings.vpc_cidrs]
        if mask is None or not vpcs:
            return tuple(settings.vpc_cidrs)
        return tuple(str(c) for c in endpoints_for_agent_mask(vpcs, mask))
    except ValueError:
        return tuple(settings.vpc_cidrs)


def check_gateway_cidrs(facts: Facts) -> CheckResult:
    """The gateway routes only what POD_CIDRS names and returns only what VPC_CIDR names: a
    remote pod network, a hybrid node's pod CIDR or a VPC CIDR outside them is unreachable."""
    cid, title = "GATEWAY-CIDRS", "POD_CIDRS and VPC_CIDR cover the pod networks and the VPC"
    settings = facts.settings
    if settings is None:
        return _skipped(cid, title, _why_missing(facts, "gateway"))
    why = _not_installed(facts)
    if why is not None:
        return _skipped(cid, title, why)
    pods = _networks(settings.pod_cidrs)
    vpcs = _networks(settings.vpc_cidrs)
    problems: list[str] = []
    unread: list[str] = []
    if facts.networks is not None:
        for cidr in facts.networks.remote_pod_cidrs:
            if not _inside(cidr, pods):
                problems.append(
                    f"remotePodNetworks {cidr} is not in POD_CIDRS: no VPC route reaches its pods"
                )
    else:
        unread.append(f"remotePodNetworks ({_why_missing(facts, 'eks')})")
    if _kube_reason(facts, "ciliumnodes") is None:
        remote = _networks(facts.networks.remote_pod_cidrs) if facts.networks else []
        for node in facts.hybrid_nodes:
            # Outside remotePodNetworks too is CILIUM-HYBRID-NODES's finding, not this one's.
            outside = [
                c
                for c in node.pod_cidrs
                if not _inside(c, pods) and (not remote or _inside(c, remote))
            ]
            if outside:
                problems.append(
                    f"CiliumNode {node.name} pod CIDR(s) {', '.join(outside)} not in POD_CIDRS: "
                    "no VPC route reaches those pods"
                )
    else:
        unread.append(f"CiliumNodes ({_kube_reason(facts, 'ciliumnodes')})")
    if facts.vpc_cidrs_read is not None:
        for cidr in facts.vpc_cidrs_read:
            if not _inside(cidr, vpcs):
                problems.append(
                    f"VPC CIDR {cidr} is not in VPC_CIDR: no VTEP endpoint covers it, so traffic "
                    "between its hosts and hybrid pods does not come back"
                )
        for cidr in settings.vpc_cidrs:
            if not _inside(cidr, _networks(facts.vpc_cidrs_read)):
                problems.append(f"VPC_CIDR {cidr} is not a CIDR of the VPC")
    else:
        unread.append(f"the VPC's CIDRs ({_why_missing(facts, 'ec2')})")
    seen = (
        f"POD_CIDRS {', '.join(settings.pod_cidrs) or '-'}; VPC_CIDR "
        f"{', '.join(settings.vpc_cidrs) or '-'}; VPC "
        f"{', '.join(facts.vpc_cidrs_read) if facts.vpc_cidrs_read is not None else 'not read'}"
    )
    if problems:
        return _result(
            cid,
            title,
            Verdict.FAIL,
            [seen, *problems],
            "Add the missing networks to the gateway's POD_CIDRS / VPC_CIDR (construct props "
            "remotePodNetworks / vpcCidrs, chart podCIDRs / vpcCIDR) and roll it out.",
        )
    if unread:
        return _skipped(cid, title, f"not compared with {'; '.join(unread)}. Seen: {seen}")
    return _result(cid, title, Verdict.OK, [seen])


def check_vtep_match(facts: Facts) -> CheckResult:
    """The CiliumVTEPConfig version this gateway writes is served, and the agents' one VTEP
    mask matches the endpoints the gateway publishes exactly (core.vtep: upstream Cilium's
    hash keyed by destination & vtep-mask; the LPM design, cilium/cilium PR 44188, was closed
    unmerged, and its successor is a different resource, cilium.io/v2alpha1
    spec.vtepEndpoints)."""
    cid, title = "CILIUM-VTEP-MATCH", "Cilium can match the gateway's VTEP endpoints"
    if facts.vtep_crd is None:
        return _skipped(cid, title, _kube_reason(facts, "crd") or "not gathered")
    if not facts.vtep_crd:
        return _skipped(cid, title, "no ciliumvtepconfigs.cilium.io CRD (CILIUM-VTEP-CRD)")
    served = ", ".join(facts.vtep_crd_versions) or "none"
    if CILIUM_VERSION not in facts.vtep_crd_versions:
        return _result(
            cid,
            title,
            Verdict.FAIL,
            [f"ciliumvtepconfigs.cilium.io serves {served}, not {CILIUM_VERSION}"],
            f"Install an EKS Cilium build whose CiliumVTEPConfig is {CILIUM_GROUP}/"
            f"{CILIUM_VERSION} (spec.endpoints), the version this gateway writes.",
        )
    skip = _cilium_config_or_skip(facts, cid, title)
    if skip is not None:
        return skip
    config = facts.cilium_config or {}
    try:
        mask = agent_mask_length(config)
    except VtepMatchError as exc:
        return _result(
            cid, title, Verdict.FAIL, [str(exc)], "Set Cilium's Helm value vtep.mask to a netmask."
        )
    raw = (config.get(AGENT_VTEP_MASK_KEY) or "").strip()
    seen = (
        f"CRD serves {served}; {AGENT_VTEP_MASK_KEY}="
        + (raw if raw else f"<unset: agent default {DEFAULT_AGENT_VTEP_MASK}>")
        + f" (/{mask})"
    )
    settings = facts.settings
    if settings is None or not settings.vpc_cidrs:
        return _skipped(cid, title, f"VPC_CIDR unknown (give --vpc-cidrs). Seen: {seen}")
    fix = "Set the mask on Cilium as the evidence says, or change VPC_CIDR."
    if facts.active_active:
        plan = facts.shard_plan()
        if plan is None:
            return _skipped(cid, title, _no_plan(facts))
        endpoints = [cidr for shard in plan.shards for _name, cidr in shard.vtep_endpoints]
        problem = plan_mask_problem(endpoints, mask)
        if problem is not None:
            return _result(cid, title, Verdict.FAIL, [seen, problem], fix)
        return _result(cid, title, Verdict.OK, [seen, f"endpoints {', '.join(endpoints)}"])
    try:
        vpcs = [ipaddress.IPv4Network(c) for c in settings.vpc_cidrs]
        cut = endpoints_for_agent_mask(vpcs, mask)
    except ValueError as exc:
        return _result(cid, title, Verdict.FAIL, [seen, str(exc)], fix)
    return _result(cid, title, Verdict.OK, [seen, f"endpoints {', '.join(str(c) for c in cut)}"])


# --- VPC CNI -------------------------------------------------------------------------------------


def check_snat_exclusion(facts: Facts) -> CheckResult:
    cid, title = "VPC-CNI-SNAT", f"aws-node's {SNAT_EXCLUSION_ENV} covers the remote pod networks"
    if facts.aws_node_env is None:
        return _kube_object_absent(
            facts,
            cid,
            title,
            "aws-node",
            "no kube-system/aws-node DaemonSet (not the Amazon VPC CNI)",
        )
    if facts.networks is None:
        return _skipped(cid, title, _why_missing(facts, "eks"))
    raw = facts.aws_node_env.get(SNAT_EXCLUSION_ENV, "")
    excluded = _networks(c.strip() for c in raw.split(",") if c.strip())
    missing = [c for c in facts.networks.remote_pod_cidrs if not _inside(c, excluded)]
    evidence = [f"{SNAT_EXCLUSION_ENV}={raw or '<unset>'}"]
    if not missing:
        return _result(cid, title, Verdict.OK, evidence)
    return _result(
        cid,
        title,
        Verdict.FAIL,
        [*evidence, f"not excluded: {', '.join(missing)}"],
        f"Add the remote pod networks to {SNAT_EXCLUSION_ENV} on the aws-node DaemonSet "
        "(ClusterIP traffic from cloud pods to hybrid pods needs it).",
    )


# --- the gateway ---------------------------------------------------------------------------------


def check_lease(facts: Facts) -> CheckResult:
    cid, title = "GATEWAY-LEASE", "The leader Lease is held and fresh"
    if facts.active_active:
        return _shard_leases(facts, cid)
    why = _not_installed(facts, "lease")
    if why is not None:
        return _skipped(cid, title, why)
    settings = facts.settings
    assert settings is not None
    lease = facts.lease
    name = f"{settings.namespace}/{settings.lease_name}"
    fix = "Check the gateway pods' logs and their access to the Lease (RBAC, API reachability)."
    if lease is None:
        return _result(cid, title, Verdict.FAIL, [f"Lease {name} not found"], fix)
    if not lease.holder:
        return _result(cid, title, Verdict.FAIL, [f"Lease {name} has no holder"], fix)
    duration = lease.duration_s or 0.0
    # Judged at the moment it was read: the slower reads after it must not age it.
    age = facts.time_of(lease) - lease.renew_time if lease.renew_time is not None else None
    seen = (
        f"{name} held by {lease.holder}, renewed "
        f"{'never' if age is None else f'{age:.1f}s ago'} (duration {duration:g}s, "
        f"{lease.transitions} transition(s))"
    )
    if age is None or age > duration:
        return _result(cid, title, Verdict.FAIL, [seen, "stale: the holder stopped renewing"], fix)
    if facts.leader_pod() is None:
        if facts.holder_pod_exists is False:
            left = max(0.0, duration - age)
            return _result(
                cid,
                title,
                Verdict.FAIL,
                [
                    seen,
                    f"holder {lease.holder} is a pod that no longer exists: no replica can "
                    f"take over until the Lease expires (in {left:.0f}s)",
                ],
                f"Delete the Lease (kubectl -n {settings.namespace} delete lease "
                f"{settings.lease_name}) so a running replica takes over now, then find why "
                f"{lease.holder} stopped without releasing it (killed, or its node failed).",
            )
        return _result(
            cid,
            title,
            Verdict.WARN,
            [seen, f"holder {lease.holder} is not a pod of the gateway Deployment"],
            "Check that POD_NAME is the pod name (downward API) in the gateway Deployment.",
        )
    leader = facts.leader_pod()
    if leader is not None and leader.name != lease.holder:
        seen += f" (the reference gateway's identity: pod {leader.name} on {leader.node_name})"
    return _result(cid, title, Verdict.OK, [seen])


def check_replicas(facts: Facts) -> CheckResult:
    cid, title = "GATEWAY-REPLICAS", "Both gateway replicas are ready"
    if facts.active_active:
        title = "At least two gateway replicas, all ready (active-active)"
    why = _not_installed(facts)
    if why is not None:
        return _skipped(cid, title, why)
    settings = facts.settings
    assert settings is not None
    if settings.replicas < 2:  # the AWS guide's two gateway nodes; the construct refuses fewer
        return _result(
            cid,
            title,
            Verdict.FAIL,
            [f"{settings.namespace}/{settings.deployment}: replicas {settings.replicas}"],
            "Run at least 2 replicas on 2 gateway nodes (construct prop replicas, chart "
            "replicas): with one, "
            + (
                "a failure leaves every shard without an owner."
                if facts.active_active
                else "a failure has no standby to fail over to."
            ),
        )
    ready = [p for p in facts.pods if p.ready]
    evidence = [
        f"{p.name} on {p.node_name or '-'}: {'ready' if p.ready else 'NOT ready'} "
        f"({p.ready_reason})"
        for p in facts.pods
    ] or ["no gateway pods"]
    evidence.insert(0, f"{len(ready)}/{settings.replicas} ready")
    fix = "Look at the unready pods' readiness reason, Events and logs."
    if not ready:
        return _result(cid, title, Verdict.FAIL, evidence, fix)
    if len(ready) < settings.replicas:
        return _result(
            cid,
            title,
            Verdict.WARN,
            evidence,
            fix
            + (
                " Until it is ready, the ready ones carry every shard."
                if facts.active_active
                else " Without a ready standby a failover has nowhere to go."
            ),
        )
    return _result(cid, title, Verdict.OK, evidence)


# --- active-active -------------------------------------------------------------------------------


def _no_plan(facts: Facts) -> str:
    return _kube_reason(facts, "deployment") or "no shard plan from these settings (SHARD-PLAN)"


def _shard_route_targets(facts: Facts, cid: str) -> CheckResult:
    title = "Shard routes in the owned tables target their shard owner's ENI"
    plan = facts.shard_plan()
    settings = facts.settings
    if plan is None or settings is None:
        return _skipped(cid, title, _no_plan(facts))
    outcomes = {
        OWNER: (Verdict.OK, ""),
        OTHER_GATEWAY: (
            Verdict.WARN,
            "the shard's owner moves its routes to itself on its next resync (is it running?)",
        ),
        ABSENT: (Verdict.FAIL, "start the gateway: each shard's owner creates its routes"),
        BLACKHOLE: (Verdict.FAIL, "let the shard's owner replace stale routes (is it running?)"),
        NOT_A_GATEWAY: (
            Verdict.FAIL,
            "find who owns that ENI route; the shard's owner replaces it",
        ),
        TABLE_NOT_FOUND: (Verdict.FAIL, "remove the unknown table from ROUTE_TABLE_IDS"),
    }
    takeover = (
        Verdict.FAIL,
        "decide whether that route is deliberate; the gateway only takes it over with "
        "ALLOW_ROUTE_TAKEOVER=true",
    )
    evidence: list[str] = []
    verdicts: list[Verdict] = []
    fixes: list[str] = []
    at_owner = 0
    views = shard_statuses(facts, plan)
    for view in views:
        owner = (
            f"owner {view.instance.instance_id}"
            if view.instance
            else f"holder {view.holder} on no gateway instance"
            if view.holder
            else "no holder"
        )
        for route in view.routes:
            verdict, fix = outcomes.get(route.points_at, takeover)
            verdicts.append(verdict)
            if route.points_at == OWNER:
                at_owner += 1
                continue  # counted, not listed: the exceptions are what an operator needs
            evidence.append(
                f"{route.table_id} {route.destination} (shard {view.index}, {owner}): "
                f"{route.points_at}" + (f" {route.target}" if route.target else "")
            )
            if fix:
                fixes.append(fix)
    evidence.insert(
        0,
        f"{at_owner} of {sum(len(v.routes) for v in views)} shard routes target their shard "
        f"owner's ENI ({len(settings.route_table_ids)} table(s))",
    )
    leftovers = [
        f"{table_id} {cidr}: whole pod CIDR route left from active-standby (carries only what "
        "no shard route covers)"
        for table_id in settings.route_table_ids
        for cidr in settings.pod_cidrs
        if (table := facts.table(table_id)) is not None
        and any(r.destination == cidr for r in table.routes)
    ]
    evidence.extend(leftovers)
    verdict = worst(verdicts)
    fix = "; ".join(dict.fromkeys(fixes)) if verdict is not Verdict.OK else ""
    return _result(cid, title, verdict, evidence, (fix[:1].upper() + fix[1:] + ".") if fix else "")


def _shard_vtep_config(facts: Facts, cid: str) -> CheckResult:
    title = "CiliumVTEPConfig holds every shard's endpoints at their owner with its MAC"
    plan = facts.shard_plan()
    if plan is None:
        return _skipped(cid, title, _no_plan(facts))
    if facts.vtep_endpoints is None:
        return _no_vtep_config(cid, title, "the shard owners' logs and their", "they create it")
    evidence: list[str] = []
    bad = False
    for view in shard_statuses(facts, plan):
        for endpoint in view.endpoints:
            bad = bad or endpoint.points_at != OWNER
            evidence.append(
                f"{endpoint.name} {endpoint.cidr} (shard {view.index}, owner "
                f"{view.holder or 'none'}): {endpoint.points_at}"
                + (f" {endpoint.tunnel_endpoint}" if endpoint.tunnel_endpoint else "")
            )
    planned = {name for shard in plan.shards for name, _cidr in shard.vtep_endpoints}
    for extra in (e for e in facts.vtep_endpoints if e.name not in planned):
        bad = True
        evidence.append(f"{extra.name} {extra.cidr}: not in the shard plan")
    return _ok_unless(
        bad,
        cid,
        title,
        evidence,
        "Each shard's owner corrects its endpoints on its next resync; if it persists, check "
        "the owners' logs and their RBAC on ciliumvtepconfigs.",
    )


def _shard_leases(facts: Facts, cid: str) -> CheckResult:
    title = "Every shard Lease is held and fresh, by a gateway replica"
    why = _not_installed(facts, "lease", "lease-group")
    if why is not None:
        return _skipped(cid, title, why)
    plan = facts.shard_plan()
    if plan is None:
        return _skipped(cid, title, _no_plan(facts))
    evidence: list[str] = []
    verdicts: list[Verdict] = []
    for view in shard_statuses(facts, plan):
        seen = f"{view.lease_name}: {view.lease_state}"
        if view.lease is not None and view.holder:
            lease = view.lease.lease
            age = facts.time_of(lease) - lease.renew_time if lease.renew_time is not None else None
            seen += (
                f", held by {view.holder}, renewed "
                f"{'never' if age is None else f'{age:.1f}s ago'} "
                f"(duration {lease.duration_s or 0:g}s)"
            )
        if view.lease_state != "live":
            verdicts.append(Verdict.FAIL)
        elif view.holder_pod is None:
            verdicts.append(Verdict.WARN)
            seen += ": not a pod of the gateway Deployment"
        else:
            verdicts.append(Verdict.OK)
        evidence.append(seen)
    members = live_members(facts)
    evidence.append(
        f"{len(members)} live member(s): {', '.join(m.lease.holder or '' for m in members) or '-'}"
    )
    settings = facts.settings
    assert settings is not None
    if facts.lease is not None and GroupLease(settings.lease_name, facts.lease).live(facts.now):
        verdicts.append(Verdict.WARN)
        evidence.append(
            f"the active-standby leader Lease {settings.lease_name} is still held by "
            f"{facts.lease.holder}: no shard is claimed until it stops"
        )
    verdict = worst(verdicts)
    fix = (
        "Check the gateway pods' logs and /readyz, and their access to Leases (get, create, "
        "update, list and watch in the gateway's namespace)."
        if verdict is not Verdict.OK
        else ""
    )
    return _result(cid, title, verdict, evidence, fix)


def check_shard_plan(facts: Facts) -> CheckResult:
    cid, title = "SHARD-PLAN", "The shard settings make a valid plan (active-active)"
    settings = facts.settings
    if settings is None:
        return _skipped(cid, title, _why_missing(facts, "gateway"))
    if not settings.active_active:  # judged only for settings the daemon refuses in any mode
        return _ok_unless(
            bool(settings.setting_problems),
            cid,
            "MODE, SHARDS and MAX_ROUTES_PER_TABLE are valid",
            [f"MODE={settings.mode.value}", *settings.setting_problems],
            "Fix the gateway's environment: the daemon refuses to start with it.",
        )
    if not settings.pod_cidrs or not settings.vpc_cidrs:
        return _skipped(cid, title, "POD_CIDRS or VPC_CIDR unknown (give --pod-cidrs, --vpc-cidrs)")
    problems = [*settings.setting_problems, *(str(p) for p in facts.shard_plan_problems())]
    seen = (
        f"SHARDS={settings.shards}, MAX_ROUTES_PER_TABLE={settings.max_routes_per_table}, pod "
        f"CIDRs {', '.join(settings.pod_cidrs)}, VPC CIDRs {', '.join(settings.vpc_cidrs)}"
    )
    plan = facts.shard_plan()
    if not problems and plan is not None:
        return _result(
            cid,
            title,
            Verdict.OK,
            [
                seen,
                f"{plan.count} shards, {plan.routes_per_table()} shard routes per table, "
                f"{plan.vtep_endpoint_count} VTEP endpoints"
                + (f" of /{plan.vtep_prefix_length}" if plan.vtep_prefix_length else ""),
            ],
        )
    return _result(
        cid,
        title,
        Verdict.FAIL,
        [seen, *problems],
        "Choose SHARDS (construct prop shards) that the pod networks and the route quota allow; "
        "the daemon refuses to start with these settings.",
    )


def check_route_quota(facts: Facts) -> CheckResult:
    """Room for the shard routes in every owned table. The VPC quota counts non-propagated
    routes, IPv4 and IPv6 separately (Amazon VPC user guide, "Amazon VPC quotas", route tables:
    "Routes per route table (non-propagated routes) ... enforced separately for IPv4 routes and
    IPv6 routes"), and a route to a prefix list at the list's max entries (same page,
    customer-managed prefix lists), so the IPv4 static routes there now, the prefix-list routes
    at their max entries and the shard prefixes not yet there must fit MAX_ROUTES_PER_TABLE."""
    cid, title = "ROUTE-QUOTA", "The owned route tables have room for the shard routes"
    settings = facts.settings
    if settings is None or "ec2" in facts.unavailable:
        return _skipped(cid, title, _why_missing(facts, "gateway", "ec2"))
    plan = facts.shard_plan()
    if plan is None:
        return _skipped(cid, title, _no_plan(facts))
    prefixes = [p for shard in plan.shards for p in shard.pod_prefixes]
    limit = settings.max_routes_per_table
    evidence: list[str] = []
    full = False
    for table_id in settings.route_table_ids:
        table = facts.table(table_id)
        if table is None:
            continue  # ROUTE-TARGETS names it
        static = {r.destination for r in table.routes if not r.propagated}
        missing = [p for p in prefixes if p not in static]
        # a route to a prefix list counts at the list's max entries (VPC quotas page)
        listed = sum(entries for _id, entries in table.prefix_list_routes)
        total = len(static) + listed + len(missing)
        full = full or total > limit
        lists = (
            f" + {listed} for {len(table.prefix_list_routes)} prefix list route(s) at their "
            "max entries"
            if table.prefix_list_routes
            else ""
        )
        evidence.append(
            f"{table_id}: {len(static)} static route(s) now{lists} + {len(missing)} shard "
            f"route(s) to add = {total} of {limit}" + (" (TOO MANY)" if total > limit else "")
        )
    if not full:
        return _result(cid, title, Verdict.OK, evidence or ["no owned tables found"])
    return _result(
        cid,
        title,
        Verdict.FAIL,
        evidence,
        "Raise the VPC quota 'Routes per route table' and MAX_ROUTES_PER_TABLE, remove unused "
        "routes, or use fewer shards: a shard owner cannot create a route beyond the quota.",
    )


#: Judged only in active-active mode, after the common ones.
ACTIVE_ACTIVE_CHECKS: tuple[Check, ...] = (check_shard_plan, check_route_quota)


PREFLIGHT_CHECKS: tuple[Check, ...] = (
    check_cidr_plan_disjoint,
    check_route_targets,
    check_route_coverage,
    check_security_groups,
    check_return_path_security_groups,
    check_source_dest,
    check_imdsv2,
    check_node_label_taint,
    check_vtep_crd,
    check_vtep_enabled,
    check_vtep_match,
    check_l7_proxy,
    check_hybrid_nodes,
    check_gateway_cidrs,
    check_vtep_config,
    check_snat_exclusion,
    check_lease,
    check_replicas,
)


def run_checks(facts: Facts, checks: Sequence[Check] | None = None) -> list[CheckResult]:
    """`checks`, by default every preflight check of the gateway's mode."""
    if checks is None:
        checks = PREFLIGHT_CHECKS
        if facts.active_active:
            checks = (*checks, *ACTIVE_ACTIVE_CHECKS)
        elif facts.settings is not None and facts.settings.setting_problems:
            checks = (*checks, check_shard_plan)  # the daemon would not start: say why
    return [check(facts) for check in checks]
