"""Who may lead: real `hybrid-gateway run --no-dataplane` processes against the test API server
and the EC2 emulator, each behind its own recording EC2 proxy.

- A replica without an instance identity (IMDS refused, no AWS_INSTANCE_ID) cannot move the VPC
  routes: it is not ready, it leaves a free Lease to a replica that can, and it takes over only as
  the last one left, loudly (log, Event, metric, /readyz); a replica that can own routes and
  starts later gets the Lease from it.
- A leader whose primary ENI's source/destination check is turned back on (an operator's
  ModifyInstanceAttribute; the emulator keeps EC2's one flag per primary ENI, see
  testkit moto_strict) stops writing routes to that ENI and hands over to the standby.

Ownership is read from the servers' side (routes in the emulator, the CiliumVTEPConfig, the
Lease writes in the API server's audit); assertions are about order and ownership.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.daemon import FAST_LEASE, GatewayDaemon
from hybrid_gateway_testkit.ec2emu import VpcWorld, seed_world
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer, lease_writes

pytestmark = pytest.mark.slow

NAMESPACE = "eks-hybrid-nodes-gateway"
POD_CIDRS = ["10.80.0.0/16", "10.81.0.0/16"]
NODE_IPS = {"a": "10.0.1.10", "b": "10.0.1.11", "c": "10.0.1.12"}
WRITES = ("CreateRoute", "ReplaceRoute", "DeleteRoute")
LEASE_DURATION_S = float(FAST_LEASE["LEASE_DURATION"])
#: Timings.yield_retry_s at the fast lease timings (YIELD_RETRY_LEASES lease durations).
YIELD_RETRY_S = 10 * LEASE_DURATION_S


@dataclass
class World:
    vpc: VpcWorld
    direct: Any
    kube: ApiServer
    moto_addr: tuple[str, int]
    tmp_path: Path
    custom: Any
    core: Any
    gateways: dict[str, GatewayDaemon]

    def start(self, name: str, *, identity_known: bool = True) -> GatewayDaemon:
        """Gateway `name`, started and serving; without `identity_known` it cannot resolve its
        ENI (`GatewayDaemon.create`)."""
        gw = GatewayDaemon.create(
            name,
            kube=self.kube,
            moto_addr=self.moto_addr,
            world=self.vpc,
            node_ip=NODE_IPS[name],
            namespace=NAMESPACE,
            pod_cidrs=POD_CIDRS,
            log_dir=self.tmp_path,
            resync_period="0.3",
            identity_known=identity_known,
        )
        self.gateways[name] = gw
        gw.start()
        gw.wait_serving()
        return gw

    def vtep_endpoint(self) -> str | None:
        try:
            obj = self.custom.get_cluster_custom_object(
                "cilium.io", "v2", "ciliumvtepconfigs", "hybrid-gateway"
            )
        except Exception:
            return None
        endpoint = obj["spec"]["endpoints"][0]
        assert endpoint["mac"] == vxlan_device_mac(endpoint["tunnelEndpoint"])
        return str(endpoint["tunnelEndpoint"])

    def vtep_owner(self) -> str | None:
        endpoint = self.vtep_endpoint()
        return next((n for n, ip in NODE_IPS.items() if ip == endpoint), None)

    def route_owner(self) -> str | None:
        targets = set(self.vpc.routes(self.direct).values())
        return next((n for n, eni in self.vpc.enis.items() if targets == {eni}), None)

    def owner(self) -> str | None:
        """The gateway that every route AND the CiliumVTEPConfig point at."""
        vtep = self.vtep_owner()
        return vtep if vtep is not None and vtep == self.route_owner() else None

    def holder(self) -> str | None:
        writes = lease_writes(self.kube.audit(), NAMESPACE, name="hybrid-gateway-leader")
        return writes[-1][1] if writes else None

    def events(self, reason: str, identity: str) -> list[str]:
        items = self.core.list_namespaced_event(NAMESPACE).items
        return [
            e.message for e in items if e.reason == reason and e.involved_object.name == identity
        ]

    def logs(self) -> str:
        return " | ".join(f"{n}: {g.log(1500)}" for n, g in self.gateways.items())


@pytest.fixture
def world(
    kube_api: ApiServer, moto_addr: tuple[str, int], direct: Any, tmp_path: Path
) -> Iterator[World]:
    vpc = seed_world(direct, tables=2, pod_cidrs=POD_CIDRS, instance_names=("a", "b", "c", "x"))
    tester = config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    w = World(
        vpc,
        direct,
        kube_api,
        moto_addr,
        tmp_path,
        client.CustomObjectsApi(tester),
        client.CoreV1Api(tester),
        {},
    )
    try:
        yield w
    finally:
        for gw in w.gateways.values():
            gw.close()


def test_a_standby_without_instance_identity_is_not_ready_and_leaves_the_lease_to_one_that_can(
    world: World,
) -> None:
    """Three replicas: a leads, b has no instance identity, c can own routes. b says it is not
    ready and why; when a is killed, c (not b) takes over, every time b could have raced it."""
    a = world.start("a")
    wait_until("a owns routes and VTEP", lambda: world.owner() == "a", 20.0)
    b = world.start("b", identity_known=False)
    c = world.start("c")
    _, body = b.wait_readyz(
        lambda s, t: s == 503 and "cannot own routes" in t, "b names what it cannot do"
    )
    assert "instance identity" in body, body
    assert b.metric("hybrid_gateway_replica_eligible") == 0.0
    c.wait_readyz(lambda s, t: (s, t) == (200, "ready (standby)\n"), "c ready as standby")

    killed_at = time.monotonic()
    a.stop()
    wait_until("c owns routes and VTEP", lambda: world.owner() == "c", 20.0)
    time.sleep(2 * LEASE_DURATION_S)  # b's head start is over: it must still not have taken it
    audit = world.kube.audit()
    after = [who for t, who in lease_writes(audit, NAMESPACE) if t > killed_at]
    assert "gw-b" not in after, world.logs()
    assert b.proxy.count(*WRITES) == 0
    assert world.owner() == "c"
    print(f"\nkill -9 of a: c owns routes+VTEP {time.monotonic() - killed_at:.2f}s later, b never")


def test_the_last_replica_left_takes_over_loudly_and_yields_to_one_that_can(world: World) -> None:
    """b (no instance identity) alone: it takes the Lease only after its head start and says so
    in its log, an Event, a metric and /readyz. a (can own routes) starts later: b releases the
    Lease to it within the retry period of its hand-over, and a moves routes and VTEP config."""
    b = world.start("b", identity_known=False)
    started = time.monotonic()
    wait_until("b leads", lambda: world.vtep_owner() == "b", 20.0)
    audit = world.kube.audit()
    first = next(t for t, who in lease_writes(audit, NAMESPACE) if who == "gw-b")
    # not at once: it left the free Lease to a replica that can own routes for a lease duration
    assert first - b.started_at >= LEASE_DURATION_S, first - b.started_at
    _, body = b.wait_readyz(
        lambda s, t: s == 503 and "leader WITHOUT" in t, "b names leading without routes"
    )
    assert "instance identity" in body
    wait_until(
        "metric of a leader without route ownership",
        lambda: b.metric("hybrid_gateway_leader_without_route_ownership") == 1.0,
    )
    wait_until("Event LeaderCannotOwnRoutes", lambda: world.events("LeaderCannotOwnRoutes", "gw-b"))
    assert "taking it as the last one left" in b.log_path.read_text()
    assert world.route_owner() is None  # nobody could move them

    a = world.start("a")
    a_started = time.monotonic()
    wait_until("a owns routes and VTEP", lambda: world.owner() == "a", YIELD_RETRY_S + 20.0)
    assert world.events("LeaderYielding", "gw-b")
    a.wait_readyz(lambda s, t: (s, t) == (200, "ready (leader)\n"), "a ready as leader")
    b.wait_readyz(lambda s, t: s == 503 and "standby cannot own routes" in t, "b unready standby")
    assert b.metric("hybrid_gateway_leader_without_route_ownership") == 0.0
    assert b.proxy.count(*WRITES) == 0
    print(
        f"\nlast one left: b led {first - started:.2f}s after its start; a owned routes+VTEP "
        f"{time.monotonic() - a_started:.2f}s after it started"
    )


def test_a_leader_whose_eni_check_is_turned_on_stops_writing_routes_and_hands_over(
    world: World,
) -> None:
    a = world.start("a")
    wait_until("a owns routes and VTEP", lambda: world.owner() == "a", 20.0)
    b = world.start("b")
    b.wait_readyz(lambda s, t: (s, t) == (200, "ready (standby)\n"), "b ready as standby")
    # keep a writing: one route keeps being pointed elsewhere
    table, cidr = world.vpc.table_ids[0], POD_CIDRS[0]
    world.direct.replace_route(
        RouteTableId=table, DestinationCidrBlock=cidr, NetworkInterfaceId=world.vpc.enis["x"]
    )
    wait_until("a repaired the route", lambda: world.owner() == "a")
    turned_on_mono = time.monotonic()
    # as an operator would: the INSTANCE attribute (EC2 keeps one flag with the primary ENI's)
    world.direct.modify_instance_attribute(
        InstanceId=world.vpc.instances["a"], SourceDestCheck={"Value": True}
    )
    world.direct.replace_route(
        RouteTableId=table, DestinationCidrBlock=cidr, NetworkInterfaceId=world.vpc.enis["x"]
    )
    wait_until("b owns routes and VTEP", lambda: world.owner() == "b", 20.0)
    took = time.monotonic() - turned_on_mono
    # a read the flag as on, then sent no route write
    late = a.writes_after_check_read_on(WRITES)
    assert late == [], f"a wrote routes to an ENI that drops forwarded packets: {late}"
    a.wait_readyz(
        lambda s, t: s == 503 and "source/destination check is ON" in t, "a names its ENI"
    )
    assert a.metric("hybrid_gateway_primary_eni_source_dest_check") == 1.0
    assert world.events("SourceDestCheckEnabled", "gw-a")
    assert world.events("LeaderYielding", "gw-a")
    assert world.holder() == "gw-b"
    print(f"\nENI check turned on at the leader: b owns routes+VTEP {took:.2f}s later")

    # turned off again: a is a ready standby again and b keeps the lease
    world.direct.modify_instance_attribute(
        InstanceId=world.vpc.instances["a"], SourceDestCheck={"Value": False}
    )
    a.wait_readyz(lambda s, t: (s, t) == (200, "ready (standby)\n"), "a ready standby again")
    assert world.holder() == "gw-b"
