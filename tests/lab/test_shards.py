"""Pure parts of the active-active lab: the world's addresses, Cilium-like endpoint matching,
the VPC router's longest prefix, the counters, per-shard loss, time to move, the victim."""

from __future__ import annotations

import ipaddress
import shutil

import pytest

from hybrid_gateway_testkit.lab import counters
from hybrid_gateway_testkit.lab.__main__ import main as lab_main
from hybrid_gateway_testkit.lab.active_active import counters_follow
from hybrid_gateway_testkit.lab.agent import (
    VtepEndpoint,
    agent_vtep_mask,
    cidr_mask_of,
    endpoints_of,
    read_agent_vtep_mask,
    steered_prefixes,
)
from hybrid_gateway_testkit.lab.analysis import flow_stats, parse_probe_lines
from hybrid_gateway_testkit.lab.control import agent_mask_for
from hybrid_gateway_testkit.lab.drills import pick_victim
from hybrid_gateway_testkit.lab.probe import _endpoint
from hybrid_gateway_testkit.lab.shards import (
    CLOUD_TO_HYBRID,
    HYBRID_TO_CLOUD,
    flow_shard,
    held_shards,
    move_timings,
    shard_losses,
    spread_ok,
)
from hybrid_gateway_testkit.lab.topology import (
    LabPlan,
    active_active_plan,
    cidrset_sequential,
    sequential_plan,
)
from hybrid_gateway_testkit.lab.vpc_router import longest_match
from kube_test_apiserver import ApiServer

PLAN = active_active_plan(shards=4, gateways=2)
SHARDS = PLAN.shard_plan()


def test_every_shard_has_a_probed_pod_and_a_cloud_address_of_its_own() -> None:
    assert [n.pod_cidr for n in PLAN.nodes] == [
        "10.100.0.0/24", "10.100.64.0/24", "10.100.128.0/24", "10.100.192.0/24",
    ]  # fmt: skip
    assert PLAN.cloud_targets == ("10.0.13.20", "10.0.77.20", "10.0.141.20", "10.0.205.20")
    for i, node, target in PLAN.shard_pairs():
        assert flow_shard(SHARDS, node.pod_ip) == (i, CLOUD_TO_HYBRID)
        assert flow_shard(SHARDS, target) == (i, HYBRID_TO_CLOUD)
        # Outside the endpoint's first /24: a /24 lookup mask would miss it.
        endpoint = ipaddress.IPv4Network(SHARDS.shards[i].vtep_endpoints[0][1])
        first24 = next(endpoint.subnets(new_prefix=24))
        assert ipaddress.IPv4Address(target) not in first24
    assert flow_shard(SHARDS, "192.168.100.11") is None
    assert len({n.node_ip for n in PLAN.nodes}) == 4
    assert [g.name for g in active_active_plan(shards=4, gateways=3).gateways] == [
        "gw-a", "gw-b", "gw-c",
    ]  # fmt: skip
    assert active_active_plan(shards=8).cloud_targets[1] == "10.0.45.20"  # /19 endpoints


@pytest.mark.parametrize(
    ("shards", "gateways", "message"),
    [(3, 2, "power of two"), (16, 2, "power of two"), (2, 4, "gateways: 4"), (2, 3, "< gateways")],
)
def test_plans_the_lab_cannot_build_are_refused(shards: int, gateways: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        active_active_plan(shards=shards, gateways=gateways)


EPS = [
    VtepEndpoint("10.0.0.0/18", "10.0.0.11", "02:aa:00:00:00:0b"),
    VtepEndpoint("10.0.64.0/18", "10.0.0.12", "02:aa:00:00:00:0c"),
]


def test_hash_lookup_keys_every_endpoint_under_the_one_mask() -> None:
    # The endpoints' own length as cidrMask: each steers exactly its CIDR.
    routes = steered_prefixes(EPS, "255.255.192.0", "hash")
    assert {p: ep.tunnel_endpoint for p, ep in routes.items()} == {
        "10.0.0.0/18": "10.0.0.11",
        "10.0.64.0/18": "10.0.0.12",
    }
    # The CRD's default /24 mask: only each endpoint's first /24 is steered.
    assert list(steered_prefixes(EPS, "255.255.255.0", "hash")) == ["10.0.0.0/24", "10.0.64.0/24"]
    # A mask shorter than the endpoints: both keys collide, the last endpoint written wins.
    collided = steered_prefixes(EPS, "255.255.0.0", "hash")
    assert {p: ep.tunnel_endpoint for p, ep in collided.items()} == {"10.0.0.0/16": "10.0.0.12"}


def test_lpm_lookup_uses_each_endpoints_own_prefix() -> None:
    wide = [VtepEndpoint("10.0.0.0/16", "10.0.0.11", "02:aa:00:00:00:0b"), EPS[1]]
    routes = steered_prefixes(wide, "255.255.255.0", "lpm")
    assert list(routes) == ["10.0.0.0/16", "10.0.64.0/18"]
    with pytest.raises(ValueError, match="vtep match 'exact'"):
        steered_prefixes(EPS, match="exact")


def test_the_agents_mask_comes_from_cilium_config_with_the_agents_default() -> None:
    assert agent_vtep_mask(None) == "255.255.255.0"  # no cilium-config
    assert agent_vtep_mask({"enable-vtep": "true"}) == "255.255.255.0"
    assert agent_vtep_mask({"vtep-mask": " "}) == "255.255.255.0"
    assert agent_vtep_mask({"vtep-mask": "255.255.192.0"}) == "255.255.192.0"
    with pytest.raises(ValueError, match=r"vtep-mask='255\.0\.255\.0'"):
        agent_vtep_mask({"vtep-mask": "255.0.255.0"})
    # The lab's agents get the mask the construct's Cilium values would set.
    assert agent_mask_for(PLAN) == "255.255.192.0"  # 4 shards of a /16: /18 endpoints
    assert agent_mask_for(active_active_plan(shards=8, gateways=3)) == "255.255.224.0"
    assert agent_mask_for(LabPlan()) == "255.255.0.0"  # active-standby: the VPC CIDR


def test_a_gateway_relying_on_spec_cidr_mask_would_steer_only_the_first_24_of_each_endpoint(
    kube_api: ApiServer,
) -> None:
    """The lab's agent matches with the `vtep-mask` it reads from kube-system/cilium-config in
    the API server, as the Cilium agent does; `spec.cidrMask` does not count. A gateway that
    wrote /18 endpoints with cidrMask 255.255.192.0, on agents left at their default mask,
    reaches only the first /24 of each endpoint: 10.0.1.5 (in 10.0.0.0/18, past its first /24)
    would not come back through the tunnel. With the agents' mask set, the /18s are steered."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("agent-hn1")))
    core = client.CoreV1Api(api)
    written = {
        "spec": {
            "cidrMask": "255.255.192.0",
            "endpoints": [
                {"name": f"e{i}", "cidr": e.cidr, "tunnelEndpoint": e.tunnel_endpoint, "mac": e.mac}
                for i, e in enumerate(EPS)
            ],
        }
    }
    try:
        assert read_agent_vtep_mask(core) == "255.255.255.0"  # no cilium-config at all
        core.create_namespaced_config_map(
            "kube-system", {"metadata": {"name": "cilium-config"}, "data": {"enable-vtep": "true"}}
        )
        mask = read_agent_vtep_mask(core)
        steered = steered_prefixes(endpoints_of(written), mask)
        assert list(steered) == ["10.0.0.0/24", "10.0.64.0/24"]
        assert longest_match({p: e.tunnel_endpoint for p, e in steered.items()}, "10.0.1.5") is None
        core.patch_namespaced_config_map(
            "cilium-config", "kube-system", {"data": {"vtep-mask": "255.255.192.0"}}
        )
        steered = steered_prefixes(endpoints_of(written), read_agent_vtep_mask(core))
        assert list(steered) == ["10.0.0.0/18", "10.0.64.0/18"]
        assert longest_match({p: e.tunnel_endpoint for p, e in steered.items()}, "10.0.1.5") == (
            "10.0.0.11"
        )
    finally:
        api.close()


def test_cidr_mask_defaults_like_the_crd() -> None:
    assert cidr_mask_of({"spec": {"cidrMask": "255.255.192.0"}}) == "255.255.192.0"
    assert cidr_mask_of({"spec": {"endpoints": []}}) == "255.255.255.0"
    assert cidr_mask_of(None) == "255.255.255.0"


def test_router_picks_the_longest_matching_route() -> None:
    routes = {"10.100.0.0/16": "10.0.0.11", "10.100.64.0/18": "10.0.0.12", "10.100.128.0/18": None}
    assert longest_match(routes, "10.100.64.5") == "10.0.0.12"
    assert longest_match(routes, "10.100.0.5") == "10.0.0.11"
    assert longest_match(routes, "10.100.128.5") == "10.0.0.11"  # a withdrawn route is no route
    assert longest_match(routes, "10.101.0.1") is None


def test_counter_rules_cover_every_shard_both_ways() -> None:
    script = counters.ruleset(SHARDS, "10.100.0.0/16", 9000)
    assert "hook forward priority 0; policy accept;" in script
    assert 'ip daddr 10.100.64.0/18 udp dport 9000 counter comment "to_hybrid/1"' in script
    assert (
        "ip saddr 10.100.0.0/16 ip daddr 10.0.192.0/18 udp dport 9000 counter "
        'comment "to_cloud/3"' in script
    )
    assert script.count(" counter ") == 8


def _rule(comment: str, packets: int, table: str = counters.TABLE) -> dict[str, object]:
    counter = {"counter": {"packets": packets, "bytes": 1}}
    return {"rule": {"table": table, "comment": comment, "expr": [{"match": {}}, counter]}}


def test_counters_parse_sums_rules_of_a_shard_and_ignores_others() -> None:
    listing = {
        "nftables": [
            {"metainfo": {}},
            _rule("to_hybrid/0", 5),
            _rule("to_hybrid/0", 2),  # a second pod CIDR of the same shard
            _rule("to_cloud/1", 7),
            _rule("to_cloud/x", 9),
            _rule("something else", 9),
            _rule("to_hybrid/0", 100, table="other"),
        ]
    }
    assert counters.parse(listing) == {("to_hybrid", 0): 7, ("to_cloud", 1): 7}


def test_carried_and_following_the_owners() -> None:
    before = {"gw-a": {("to_hybrid", 0): 10}, "gw-b": {}}
    after = {
        "gw-a": {("to_hybrid", 0): 60, ("to_cloud", 0): 50},
        "gw-b": {("to_hybrid", 1): 40, ("to_cloud", 1): 40},
    }
    carried = counters.carried(before, after, 2)
    assert [(c.shard, c.direction, c.by_gateway) for c in carried] == [
        (0, "to_hybrid", {"gw-a": 50, "gw-b": 0}),
        (0, "to_cloud", {"gw-a": 50, "gw-b": 0}),
        (1, "to_hybrid", {"gw-a": 0, "gw-b": 40}),
        (1, "to_cloud", {"gw-a": 0, "gw-b": 40}),
    ]
    assert counters_follow(carried, {0: "gw-a", 1: "gw-b"})
    assert not counters_follow(carried, {0: "gw-a", 1: "gw-a"})  # gw-b carried shard 1
    after["gw-a"][("to_cloud", 1)] = 1  # one packet of shard 1 through gw-a too
    assert not counters_follow(counters.carried(before, after, 2), {0: "gw-a", 1: "gw-b"})
    idle = counters.carried(after, after, 2)
    assert not counters_follow(idle, {0: "gw-a", 1: "gw-b"})  # nobody carried anything


def test_shard_losses_split_flows_by_the_shard_that_carries_them() -> None:
    lines = []
    for seq in range(10):
        t = 100 + seq * 0.01
        lines.append(f"tx,10.0.13.20,10.100.0.5,{seq},{t}")  # shard 0, all delivered
        lines.append(f"rx,10.0.13.20,10.100.0.5,{seq},{t},{t + 0.001}")
        lines.append(f"tx,10.100.64.5,10.0.77.20,{seq},{t}")  # shard 1, seq 3-6 lost
        if not 3 <= seq <= 6:
            lines.append(f"rx,10.100.64.5,10.0.77.20,{seq},{t},{t + 0.001}")
        lines.append(f"tx,10.0.0.20,192.168.100.11,{seq},{t}")  # no shard: left out
    losses = shard_losses(SHARDS, flow_stats(parse_probe_lines(lines)))
    assert [loss.total_lost for loss in losses] == [0, 4, 0, 0]
    assert losses[0].sent == {CLOUD_TO_HYBRID: 10, HYBRID_TO_CLOUD: 0}
    assert losses[1].lost == {CLOUD_TO_HYBRID: 0, HYBRID_TO_CLOUD: 4}
    assert losses[1].longest_window_s == pytest.approx(0.04)
    assert losses[0].longest_window_s == 0.0


def test_time_to_move_per_step_and_none_until_every_node_followed() -> None:
    shard = SHARDS.shards[1]  # 10.100.64.0/18, endpoint 10.0.64.0/18
    new = ("gw-a", "10.0.0.11")
    monitor = [
        {"t": 9.0, "shard_holders": ["gw-a", "gw-b"], "routes": {"10.100.64.0/18": "gw-b"}},
        {"t": 12.5, "shard_holders": ["gw-a", "gw-a"], "routes": {"10.100.64.0/18": "gw-b"},
         "vteps": {"10.0.64.0/18": "gw-a"}},
        {"t": 12.7, "shard_holders": ["gw-a", "gw-a"], "routes": {"10.100.64.0/18": "gw-a"},
         "vteps": {"10.0.64.0/18": "gw-a"}},
    ]  # fmt: skip
    router = [
        {"t": 11.0, "kind": "router-switch", "cidr": "10.100.0.0/18", "via": "10.0.0.11"},
        {"t": 13.2, "kind": "router-switch", "cidr": "10.100.64.0/18", "via": "10.0.0.11"},
    ]

    def switch(t: float, ip: str) -> dict[str, object]:
        return {"t": t, "kind": "vtep-switch",
                "endpoints": [{"cidr": "10.0.64.0/18", "tunnelEndpoint": ip}]}  # fmt: skip

    agents = {"hn1": [switch(12.6, "10.0.0.11")], "hn2": [switch(12.8, "10.0.0.11")]}
    timings = move_timings(shard, *new, 10.0, monitor=monitor, router=router, agents=agents)
    assert timings == pytest.approx({
        "lease_taken": 2.5, "ec2_routes_moved": 2.7, "vpc_router_switched": 3.2,
        "vtep_config_moved": 2.5, "hybrid_nodes_switched": 2.8,
    })  # fmt: skip
    agents["hn3"] = [switch(12.6, "10.0.0.12")]  # one node never followed
    late = move_timings(shard, *new, 10.0, monitor=monitor, router=router, agents=agents)
    assert late["hybrid_nodes_switched"] is None
    assert move_timings(shard, *new, 20.0, monitor=monitor, router=router, agents=agents) == {
        "lease_taken": None, "ec2_routes_moved": None, "vpc_router_switched": None,
        "vtep_config_moved": None, "hybrid_nodes_switched": None,
    }  # fmt: skip


def test_held_shards_from_the_daemons_metrics() -> None:
    text = "\n".join([
        "# HELP hybrid_gateway_shard_held 1 while this replica owns the shard",
        'hybrid_gateway_shard_held{shard="0"} 1.0',
        'hybrid_gateway_shard_held{shard="1"} 0.0',
        'hybrid_gateway_shard_held{shard="3"} 1.0',
        'hybrid_gateway_shard_owner_info{owner="gw-a",shard="2"} 1.0',
        "hybrid_gateway_shards_held 2.0",
    ])  # fmt: skip
    assert held_shards(text) == [0, 3]
    assert held_shards("") == []


def test_spread_and_victim() -> None:
    assert spread_ok({0: "a", 1: "b", 2: "a", 3: "b"}, ["a", "b"])
    assert not spread_ok({0: "a", 1: "a", 2: "a", 3: "b"}, ["a", "b"])  # 3 vs 1
    assert not spread_ok({0: "a", 1: "a"}, ["a", "b"])  # b owns nothing
    assert not spread_ok({0: "a", 1: "c"}, ["a", "b"])  # c is not a member
    assert spread_ok({0: "a", 1: "b", 2: "c", 3: "a"}, ["a", "b", "c"])
    assert pick_victim({0: "b", 1: "a", 2: "a", 3: "b"}) == "b"  # tie: owner of shard 0
    assert pick_victim({0: "b", 1: "a", 2: "a", 3: "c"}) == "a"  # the most shards


def test_probe_peers_may_name_their_own_source() -> None:
    assert _endpoint("10.100.0.5:9000") == ("10.100.0.5", 9000, None)
    assert _endpoint("10.100.0.5:9000@10.0.13.20") == ("10.100.0.5", 9000, "10.0.13.20")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--drill", "kill-owner"], "--drill kill-owner needs --mode active-active"),
        (["--drill", "kill-leader", "--mode", "active-active"], "needs --mode active-standby"),
        (["--drill", "kill-owner", "--mode", "active-active", "--shards", "3"], "shards: 3"),
        (["--drill", "kill-owner", "--mode", "active-active", "--gateways", "4"], "--gateways"),
        (["--drill", "kill-owner", "--mode", "active-active", "--vtep-match", "x"], "vtep-match"),
        (["--drill", "kill-leader", "--sequential-nodes", "4"], "needs --mode active-active"),
    ],
)
def test_cli_refuses_a_drill_in_the_wrong_mode_or_a_world_it_cannot_build(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        lab_main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_counters_need_nft_and_say_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="make system-deps"):
        counters.require_nft()


def test_mismatched_pairs_cross_to_the_next_shard() -> None:
    plan = active_active_plan(shards=4, gateways=2)
    pairs = plan.mismatched_pairs()
    assert [(i, j) for i, _, j, _ in pairs] == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert [target for *_, target in pairs] == [*plan.cloud_targets[1:], plan.cloud_targets[0]]


def test_tcp_classes_split_by_kind_opener_and_pairing() -> None:
    """Recomputed from raw lines: a mismatched call failing while both its shards kept their
    owner counts against `failed_on_kept_shards`; one touching a moved shard does not; a
    reopened long-lived connection is counted, in the class of its kind."""
    from hybrid_gateway_testkit.lab.shards import tcp_classes

    plan = active_active_plan(shards=4, gateways=2)
    t = plan.cloud_targets
    pods = [node.pod_ip for node in plan.nodes]
    lines = [
        f"tcp,{t[0]},{pods[0]},0,1.0,1.1,1,call",  # matched, opened by the cloud
        f"tcp,{t[1]},{pods[0]},0,1.0,2.0,0",  # mismatched (0 <- 1), old 7-field line
        f"tcp,{pods[2]},{t[3]},0,1.0,2.0,0,call",  # mismatched, pod-opened, shards 2 and 3
        f"tcp,{pods[1]},{t[2]},0,1.0,1.1,1,conn",
        f"tcp,{pods[1]},{t[2]},1,2.0,2.1,1,conn+reopen",
    ]
    classes = tcp_classes(
        plan.shard_plan(), parse_probe_lines(lines).tcp, {plan.cloud_pod_ip, *t}, moved={3}
    )
    assert set(classes) == {
        "call/cloud/matched",
        "call/cloud/mismatched",
        "call/hybrid/mismatched",
        "conn/hybrid/mismatched",
    }
    assert classes["call/cloud/mismatched"]["failed_on_kept_shards"] == 1
    assert classes["call/hybrid/mismatched"]["failed"] == 1
    assert classes["call/hybrid/mismatched"]["failed_on_kept_shards"] == 0  # shard 3 moved
    assert classes["conn/hybrid/mismatched"]["calls"] == 2
    assert classes["conn/hybrid/mismatched"]["connections_reopened"] == 1


@pytest.mark.parametrize(("shards", "gateways"), [(2, 2), (4, 2), (4, 3), (8, 3)])
def test_the_lab_routes_what_the_daemons_spread(shards: int, gateways: int) -> None:
    """The lab checks routes and counts traffic by the plan's pod prefixes; the daemons route
    the spread of the hybrid nodes' pod CIDRs (contract/spread.py). With one node at the start
    of each equal prefix the two are the same, so the lab's expectations are the daemons'."""
    from hybrid_gateway_contract.spread import spread_pod_prefixes
    from hybrid_gateway_testkit.lab.topology import active_active_plan

    plan = active_active_plan(shards=shards, gateways=gateways)
    spread = spread_pod_prefixes(
        [ipaddress.IPv4Network(plan.pod_cidrs)],
        [n.pod_cidr for n in plan.nodes],
        shards,
        route_budget=50 - 1,
    )
    assert spread.tolerance >= 0  # a spread, not the fallback
    assert spread.prefixes == tuple(s.pod_prefixes for s in plan.equal_cut_plan().shards)
    assert plan.shard_plan() == plan.equal_cut_plan()


def test_cidrset_hands_node_cidrs_out_from_the_start_of_the_pool() -> None:
    """cilium/cilium pkg/ipam/cidrset/cidr_set.go: index k of a fresh set is the k-th node."""
    assert cidrset_sequential("10.100.0.0/16", 24, 3) == [
        "10.100.0.0/24", "10.100.1.0/24", "10.100.2.0/24",
    ]  # fmt: skip
    assert cidrset_sequential("10.8.0.0/13", 25, 2) == ["10.8.0.0/25", "10.8.0.128/25"]
    with pytest.raises(ValueError, match="count: 257"):
        cidrset_sequential("10.100.0.0/16", 24, 257)
    with pytest.raises(ValueError, match="mask size: /15"):
        cidrset_sequential("10.100.0.0/16", 15, 1)


def test_the_sequential_world_pairs_nodes_by_the_spread_not_the_equal_cut() -> None:
    plan = sequential_plan(nodes=4, shards=4, gateways=2)
    assert [n.pod_cidr for n in plan.nodes] == cidrset_sequential(plan.pod_cidrs, 24, 4)
    equal, forward = plan.equal_cut_plan(), plan.shard_plan()
    # Under the equal cut every node sits in shard 0: one gateway would carry all their pods.
    assert [plan.node_shard(n, equal) for n in plan.nodes] == [0, 0, 0, 0]
    assert [i for i, _, _ in plan.shard_pairs()] == [0, 1, 2, 3]
    assert forward.shards[0].pod_prefixes == ("10.100.0.0/24",)
    assert forward.shards[3].pod_prefixes[0] == "10.100.3.0/24"
    # The return path stays the equal cut's, and every pair's two ends are its shard's.
    assert [s.vtep_endpoints for s in forward.shards] == [s.vtep_endpoints for s in equal.shards]
    for i, node, target in plan.shard_pairs():
        assert flow_shard(forward, node.pod_ip) == (i, CLOUD_TO_HYBRID)
        assert flow_shard(forward, target) == (i, HYBRID_TO_CLOUD)
    assert [(i, j) for i, _, j, _ in plan.mismatched_pairs()] == [(0, 1), (1, 2), (2, 3), (3, 0)]
    six = sequential_plan(nodes=6, shards=4, gateways=3)
    assert [i for i, _, _ in six.shard_pairs()] == [0, 0, 1, 2, 3, 3]
    assert [(i, j) for i, _, j, _ in six.mismatched_pairs()][-1] == (3, 0)


@pytest.mark.parametrize(
    ("nodes", "shards", "message"),
    [(3, 4, "nodes: 3"), (9, 4, "nodes: 9")],
)
def test_sequential_worlds_the_lab_cannot_probe_are_refused(
    nodes: int, shards: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sequential_plan(nodes=nodes, shards=shards)


@pytest.mark.parametrize("shards", [2, 4])
def test_every_sequential_world_gives_each_shard_a_node_to_probe(shards: int) -> None:
    """Every size the lab takes builds, each shard with a node behind it under the spread (5
    nodes over 4 shards once left shard 1 empty: two cuts preferred the same aligned
    address; the contract now keeps every shard a node)."""
    for nodes in range(shards, 9):
        plan = sequential_plan(nodes=nodes, shards=shards)
        forward = plan.shard_plan()
        assert {plan.node_shard(n, forward) for n in plan.nodes} == set(range(shards))
