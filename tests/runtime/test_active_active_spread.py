"""Active-active forward prefixes follow the allocated node CIDRs, with real daemons.

Two `hybrid-gateway run --no-dataplane` processes in active-active mode against the test API
server and the EC2 emulator. The hybrid CiliumNodes carry /25 pod CIDRs allocated the way
Cilium's cluster-pool IPAM allocates them: in order from the start of the pool
(cilium/cilium pkg/ipam/cidrset/cidr_set.go `AllocateNext`). The equal cut would route all of
the first hundred behind one shard; the routes the daemons write must instead be the spread
(contract/spread.py) of the CiliumNodes they see, each shard's prefixes at its owner's ENI,
and when the cluster grows the owners write the new prefixes and delete the retired ones,
each only for the shards it holds.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway_contract import Env
from hybrid_gateway_contract.sharding import ShardPlan, plan_shards
from hybrid_gateway_contract.spread import Spread, spread_pod_prefixes
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.daemon import DaemonProcess, daemon_env
from hybrid_gateway_testkit.ec2emu import Ec2Proxy, Fault, VpcWorld, seed_world
from kube_test_apiserver import ApiServer

pytestmark = pytest.mark.slow

NAMESPACE = "eks-hybrid-nodes-gateway"
POD_CIDR = "10.80.0.0/16"
VPC_CIDR = "10.0.0.0/16"
SHARDS = 4
NODE_IPS = {"a": "10.0.1.10", "b": "10.0.1.11"}
POOL = list(ipaddress.IPv4Network(POD_CIDR).subnets(new_prefix=25))
BUDGET = 50 - 1  # the default quota, one local route
PLAN: ShardPlan = plan_shards(
    [ipaddress.IPv4Network(POD_CIDR)], [ipaddress.IPv4Network(VPC_CIDR)], SHARDS
)
VTEP = ("cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway")


def expected(count: int) -> Spread:
    return spread_pod_prefixes(
        [ipaddress.IPv4Network(POD_CIDR)],
        [str(n) for n in POOL[:count]],
        SHARDS,
        route_budget=BUDGET,
    )


class Pair:
    def __init__(self, direct: Any, world: VpcWorld, admin: Any, leases: Any) -> None:
        self.direct = direct
        self.world = world
        self.admin = admin
        self.leases = leases
        self.replicas: dict[str, tuple[DaemonProcess, Ec2Proxy]] = {}
        self.nodes = 0

    def add_nodes(self, count: int) -> None:
        """The next `count` node CIDRs of the pool, as cidrset hands them out."""
        for i in range(self.nodes, self.nodes + count):
            body = cilium_node(
                f"hybrid-{i:04d}", f"192.168.{i // 250}.{i % 250 + 1}", [str(POOL[i])]
            )
            self.admin.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", body)
        self.nodes += count

    def shard_routes(self) -> dict[str, dict[str, str]]:
        """Per table: destination -> ENI, for the routes strictly inside the pod CIDR."""
        pod = ipaddress.IPv4Network(POD_CIDR)
        reply = self.direct.describe_route_tables(RouteTableIds=self.world.table_ids)
        out: dict[str, dict[str, str]] = {}
        for table in reply["RouteTables"]:
            routes = out.setdefault(table["RouteTableId"], {})
            for route in table["Routes"]:
                dest = route.get("DestinationCidrBlock", "")
                net = ipaddress.IPv4Network(dest)
                if net != pod and net.subnet_of(pod):
                    routes[dest] = route.get("NetworkInterfaceId") or route.get("State", "?")
        return out

    def holders(self) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for shard in range(SHARDS):
            try:
                lease = self.leases.read_namespaced_lease(
                    f"hybrid-gateway-leader-shard-{shard}", NAMESPACE
                )
                out[shard] = lease.spec.holder_identity or None
            except Exception:
                out[shard] = None
        return out

    def wait_routes_follow(self, spread: Spread, timeout_s: float = 60.0) -> dict[int, str]:
        """Every table holds exactly the spread's prefixes, each at its shard holder's ENI,
        the holders spread 2/2 over the pair. Returns shard -> replica name."""
        enis = {f"gw-{n}": self.world.enis[n] for n in self.replicas}
        state: dict[str, Any] = {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            holders = self.holders()
            routes = self.shard_routes()
            state.update(holders=holders, routes=routes)
            if all(holders[s] in enis for s in range(SHARDS)):
                want = {
                    p: enis[str(holders[s])]
                    for s, prefixes in enumerate(spread.prefixes)
                    for p in prefixes
                }
                loads = [sum(1 for h in holders.values() if h == f"gw-{n}") for n in "ab"]
                if all(r == want for r in routes.values()) and loads == [2, 2]:
                    return {s: str(h)[3:] for s, h in holders.items()}
            time.sleep(0.1)
        logs = " | ".join(f"{n}: {d.log(1500)}" for n, (d, _p) in self.replicas.items())
        raise AssertionError(f"routes do not follow {spread.prefixes}: {state} | {logs}")


@pytest.fixture
def pair(
    kube_api: ApiServer, moto_addr: tuple[str, int], direct: Any, tmp_path: Path
) -> Iterator[Pair]:
    world = seed_world(direct, tables=2, pod_cidrs=[POD_CIDR], instance_names=("a", "b"))
    admin_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig("admin-user")))
    pair = Pair(
        direct,
        world,
        client.CustomObjectsApi(admin_client),
        client.CoordinationV1Api(admin_client),
    )
    try:
        yield pair
    finally:
        for daemon, proxy in pair.replicas.values():
            daemon.stop()
            proxy.stop()
        admin_client.close()


def start(
    pair: Pair,
    name: str,
    kube: ApiServer,
    moto_addr: tuple[str, int],
    tmp: Path,
    *,
    instance_id: str | None = "",
    fault: Fault | None = None,
) -> None:
    proxy = Ec2Proxy(moto_addr, label=f"gw-{name}", fault=fault).start()
    env = daemon_env(
        kubeconfig=kube.kubeconfig(f"gw-{name}"),
        identity=f"gw-{name}",
        namespace=NAMESPACE,
        node_ip=NODE_IPS[name],
        pod_cidrs=[POD_CIDR],
        vpc_cidr=VPC_CIDR,
        route_table_ids=pair.world.table_ids,
        instance_id=pair.world.instances[name] if instance_id == "" else instance_id,
        ec2_url=proxy.url,
        resync_period="0.5",
        extra={Env.MODE: "active-active", Env.SHARDS: str(SHARDS)},
    )
    daemon = DaemonProcess(env=env, log_path=tmp / f"gw-{name}.log", args=("--no-dataplane",))
    daemon.start()
    pair.replicas[name] = (daemon, proxy)


def _share(spread: Spread, owners: dict[int, str], name: str, nodes: int) -> float:
    """The share of the allocated node CIDRs behind `name`'s shards."""
    nets = [
        ipaddress.IPv4Network(p)
        for s, prefixes in enumerate(spread.prefixes)
        if owners[s] == name
        for p in prefixes
    ]
    return sum(1 for n in POOL[:nodes] if any(n.subnet_of(p) for p in nets)) / nodes


def test_forward_prefixes_follow_sequentially_allocated_nodes_and_move_as_they_grow(
    pair: Pair, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    pair.add_nodes(100)
    for name in "ab":
        start(pair, name, kube_api, moto_addr, tmp_path)
    for daemon, _proxy in pair.replicas.values():
        daemon.wait_serving()
    first = expected(100)
    owners = pair.wait_routes_follow(first)
    for name in "ab":
        share = _share(first, owners, name, 100)
        assert abs(share - 0.5) <= 0.2 * 0.5, (name, share)
    # Each replica's metrics show the split it computed: every node CIDR behind one shard.
    for daemon, _proxy in pair.replicas.values():
        per_shard = [
            daemon.metric("hybrid_gateway_shard_node_cidrs", f'shard="{s}"') for s in range(SHARDS)
        ]
        assert sum(v or 0 for v in per_shard) == 100 and all(v == 25 for v in per_shard)
    calls_before = {n: len(proxy.snapshot()) for n, (_d, proxy) in pair.replicas.items()}

    # The cluster grows: 60 more nodes. The new prefixes replace the old ones in every table.
    pair.add_nodes(60)
    second = expected(160)
    assert second.prefixes != first.prefixes
    assert pair.wait_routes_follow(second) == owners  # nobody handed a shard over meanwhile
    final = {p for shard in second.prefixes for p in shard}
    retired = {p for shard in first.prefixes for p in shard} - final
    assert retired, "the growth must retire some prefix for this test to mean anything"
    # The nodes arrive one by one, so the daemons may have computed any spread on the way.
    # Whichever: a prefix was written only by the holder of its shard in that spread, and a
    # retired prefix was deleted only by the holder of the shard whose prefixes in that spread
    # hold its first address; at the end no retired prefix is left in any table.
    spreads = [expected(n) for n in range(100, 161)]

    def holders_of(prefix: str) -> set[str]:
        return {owners[s] for sp in spreads for s, ps in enumerate(sp.prefixes) if prefix in ps}

    def deleters_of(prefix: str) -> set[str]:
        first_address = ipaddress.IPv4Network(prefix).network_address
        return {
            owners[s]
            for sp in spreads
            for s, ps in enumerate(sp.prefixes)
            if any(first_address in ipaddress.IPv4Network(p) for p in ps)
        }

    deleted: set[str] = set()
    for name, (_daemon, proxy) in pair.replicas.items():
        for call in proxy.snapshot()[calls_before[name] :]:
            dest = str(call.params.get("DestinationCidrBlock"))
            if call.action in ("CreateRoute", "ReplaceRoute"):
                assert name in holders_of(dest), (name, call.action, dest)
            elif call.action == "DeleteRoute":
                assert dest not in final and name in deleters_of(dest), (name, dest)
                deleted.add(dest)
    assert retired <= deleted
    for name in "ab":
        share = _share(second, owners, name, 160)
        assert abs(share - 0.5) <= 0.2 * 0.5, (name, share)


def test_a_replica_that_cannot_own_shards_is_not_ready(
    pair: Pair, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    """Readiness in active-active mode means "member, or about to be": a new replica that
    cannot resolve its instance identity (IMDS unreachable, no AWS_INSTANCE_ID) can never
    prepare route ownership, owns nothing and must not count as ready, or a rolling update
    would stop the last owner for it."""
    start(pair, "a", kube_api, moto_addr, tmp_path, instance_id=None)
    daemon, _proxy = pair.replicas["a"]
    daemon.wait_serving()
    answers = []
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # from the start on: never ready
        answers.append(daemon.readyz())
        time.sleep(0.1)
    assert {status for status, _body in answers} == {503}, answers
    _status, body = answers[-1]
    assert "cannot own shards yet" in body and "instance identity" in body, body
    members = pair.leases.list_namespaced_lease(NAMESPACE).items
    assert not [m for m in members if "-member-" in m.metadata.name]


def test_a_stopping_replica_stays_until_its_shards_routes_and_endpoints_have_moved(
    pair: Pair, kube_api: ApiServer, moto_addr: tuple[str, int], tmp_path: Path
) -> None:
    """SIGTERM (a rolling update, a node drain): the replica releases its shards at once and
    then keeps running (its node keeps forwarding) until the new owner's routes and VTEP
    endpoints are in place; only then does it exit. The new owner's route writes are slowed
    down (1.5 s each at its EC2 endpoint, as a throttled account would: longer than a lease, and
    short enough that the moved shards' writes end inside the drain's floor, DRAIN_FLOOR_S, on a
    loaded machine), and still every one finished before the exit, by the emulator proxy's
    clock. Most of the drain is the replica's write pacing, not the write time: b spent its
    burst on its own shards just before, so the moved shards' 18 writes (and the retries of
    attempts whose answer outlasted the read timeout) leave one every 0.4 s (core/pacing.py):
    moved in 8.2 s with 1.5 s writes, 8.7 s with 3 s writes (over 12 s in one loaded CI run),
    against the drain's 12 s."""
    slow = threading.Event()

    def slow_writes(action: str, _seq: int) -> tuple[int, bytes] | None:
        if slow.is_set() and action in ("CreateRoute", "ReplaceRoute"):
            time.sleep(1.5)
        return None  # then forwarded as usual

    pair.add_nodes(100)
    start(pair, "a", kube_api, moto_addr, tmp_path)
    start(pair, "b", kube_api, moto_addr, tmp_path, fault=slow_writes)
    for daemon, _proxy in pair.replicas.values():
        daemon.wait_serving()
    spread = expected(100)
    owners = pair.wait_routes_follow(spread)
    moving = sorted(s for s, o in owners.items() if o == "a")
    leaving, _proxy_a = pair.replicas["a"]
    _daemon_b, proxy_b = pair.replicas["b"]
    slow.set()
    signalled = time.time()
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(30) == 0
    exited = time.time()
    # At the moment it is gone, everything it carried already points at b.
    routes = pair.shard_routes()
    names = [n for s in moving for n, _c in PLAN.shards[s].vtep_endpoints]
    obj = pair.admin.get_cluster_custom_object(*VTEP)
    tunnel = {e["name"]: e["tunnelEndpoint"] for e in obj["spec"]["endpoints"]}
    assert all(tunnel[n] == NODE_IPS["b"] for n in names), tunnel
    b_eni = pair.world.enis["b"]
    assert all(set(r.values()) == {b_eni} for r in routes.values()), routes
    writes = [
        c
        for c in proxy_b.snapshot()
        if c.action in ("CreateRoute", "ReplaceRoute") and c.started >= signalled
    ]
    assert writes, "b took the shards over with route writes"
    assert max(c.finished for c in writes) <= exited
    assert "moved in" in leaving.log()
