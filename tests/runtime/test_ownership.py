"""Both modes give the daemon one ownership interface: its tasks, its /readyz check and its
shutdown, so `daemon.run` does not branch on the mode beyond building it."""

from __future__ import annotations

import pytest
from kubernetes import client as kclient

from hybrid_gateway.adapters.kube_events import ObjectRef
from hybrid_gateway.config import load_config
from hybrid_gateway.daemon import (
    ActiveActiveOwnership,
    ActiveStandbyOwnership,
    build_ownership,
)
from hybrid_gateway.leader.assembly import OwnershipInputs
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway.reporting import Reporting
from hybrid_gateway.timings import Timings

ENV = {
    "NODE_IP": "10.0.1.10",
    "VPC_CIDR": "10.0.0.0/16",
    "POD_CIDRS": "10.80.0.0/16",
    "ROUTE_TABLE_IDS": "rtb-0123456789abcdef0",
    "POD_NAME": "gw-0",
    "AWS_REGION": "us-east-1",
    "AWS_INSTANCE_ID": "i-0123456789abcdef0",
}


class NoEvents:
    def emit(self, obj: ObjectRef, reason: str, message: str, *, warning: bool = True) -> None:
        pass


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("active-standby", ActiveStandbyOwnership), ("active-active", ActiveActiveOwnership)],
)
def test_both_modes_build_the_same_ownership_interface(mode: str, kind: type) -> None:
    config = load_config({**ENV, "MODE": mode}, ["--no-dataplane"])
    # Nothing is started here, so no request reaches this address (a closed loopback port).
    api_client = kclient.ApiClient(kclient.Configuration(host="http://127.0.0.1:9"))
    reporting = Reporting(NoEvents(), ObjectRef("v1", "Pod", "gw-0", "ns"), GatewayMetrics())
    inputs = OwnershipInputs(
        config,
        Timings.from_config(config),
        api_client,
        reporting,
        "02:00:0a:00:01:0a",
        lambda: True,
    )
    ownership = build_ownership(inputs, None, None, None)
    assert isinstance(ownership, kind)
    names = [task.name for task in ownership.tasks()]
    assert names and len(set(names)) == len(names)
    ready, why = ownership.readiness()()
    assert not ready and why  # before its tasks ran, a replica is not ready, and says why
