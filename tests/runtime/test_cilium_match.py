"""A real daemon (active-standby leader) reads the hybrid Cilium agents' `vtep-mask` from
kube-system/cilium-config, at start and every resync period, and publishes what the agents can
match: VPC_CIDR cut to the mask when the cut fits Cilium's 8 endpoints; otherwise it is not
ready, says why in /readyz, and files a Warning Event `VtepMaskMismatch` (it cannot change the
agents' mask), until cilium-config is fixed. Upstream Cilium keys its VTEP map by destination &
vtep-mask (cilium/cilium bpf/lib/vtep.h, pkg/maps/vtep/vtep.go; default 255.255.255.0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config

from hybrid_gateway.core.mac import vxlan_device_mac
from hybrid_gateway_testkit.ec2emu import Ec2Proxy, VpcWorld
from hybrid_gateway_testkit.waiting import wait_until
from kube_test_apiserver import ApiServer

from .test_vtep_and_events import NAMESPACE, NODE_IP, VTEP, get, start_daemon

CILIUM_CONFIG = ("cilium-config", "kube-system")


def test_the_leader_publishes_what_the_agents_mask_can_match_and_refuses_what_it_cannot(
    kube_api: ApiServer, world: VpcWorld, ec2_proxy: Ec2Proxy, tmp_path: Path
) -> None:
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    # VPC_CIDR 10.0.0.0/16,10.1.0.0/16 (start_daemon); the agents' mask /17.
    core.create_namespaced_config_map(
        "kube-system",
        {
            "metadata": {"name": "cilium-config"},
            "data": {"enable-vtep": "true", "vtep-mask": "255.255.128.0"},
        },
    )
    proc, _log, _metrics, health = start_daemon(
        kube_api, world, ec2_proxy, tmp_path, RESYNC_PERIOD="1"
    )
    mac = vxlan_device_mac(NODE_IP)

    def cidrs() -> list[str] | None:
        try:
            obj: dict[str, Any] = custom.get_cluster_custom_object(*VTEP)
        except client.ApiException:
            return None
        endpoints = obj["spec"]["endpoints"]
        assert all(e["tunnelEndpoint"] == NODE_IP and e["mac"] == mac for e in endpoints)
        return [e["cidr"] for e in endpoints]

    def reasons() -> list[str]:
        return [e.reason for e in core.list_namespaced_event(NAMESPACE).items]

    try:
        cut = ["10.0.0.0/17", "10.0.128.0/17", "10.1.0.0/17", "10.1.128.0/17"]
        wait_until("the /16s cut to the agents' /17", lambda: cidrs() == cut, 20.0)
        wait_until("ready", lambda: get(health, "/readyz") == (200, "ready (leader)\n"), 20.0)

        # The mask back to the agents' default /24: 512 endpoints would be needed.
        core.patch_namespaced_config_map(*CILIUM_CONFIG, {"data": {"vtep-mask": None}})
        wait_until("not ready", lambda: get(health, "/readyz")[0] == 503, 20.0)
        status, body = get(health, "/readyz")
        assert status == 503, body
        assert "Cilium cannot match the VTEP endpoints" in body, body
        assert "need 512 endpoints of /24" in body and "vtep.mask=255.255.0.0" in body, body
        wait_until("a VtepMaskMismatch Event", lambda: "VtepMaskMismatch" in reasons(), 20.0)
        [event] = [
            e for e in core.list_namespaced_event(NAMESPACE).items if e.reason == "VtepMaskMismatch"
        ]
        assert event.type == "Warning" and event.involved_object.name == "gw-a"
        # What it publishes meanwhile: VPC_CIDR as is (the reference's object), never a cut
        # the agents would mismatch.
        wait_until("VPC_CIDR as is", lambda: cidrs() == ["10.0.0.0/16", "10.1.0.0/16"], 20.0)

        # Fixed on the Cilium side: ready again, without a restart.
        core.patch_namespaced_config_map(*CILIUM_CONFIG, {"data": {"vtep-mask": "255.255.0.0"}})
        wait_until("ready again", lambda: get(health, "/readyz")[0] == 200, 20.0)
        wait_until("a VtepMaskMatched Event", lambda: "VtepMaskMatched" in reasons(), 20.0)
        assert cidrs() == ["10.0.0.0/16", "10.1.0.0/16"]
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)


def test_an_active_active_replica_is_not_ready_while_the_agents_mask_differs_from_the_plan(
    kube_api: ApiServer, world: VpcWorld, ec2_proxy: Ec2Proxy, tmp_path: Path
) -> None:
    """Two shards over 10.0.0.0/16,10.1.0.0/16: four /17 endpoints, which only a /17 mask
    matches; the agents' default /24 keys each by its first /24."""
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig("tester")))
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(
        "kube-system", {"metadata": {"name": "cilium-config"}, "data": {"enable-vtep": "true"}}
    )
    proc, _log, _metrics, health = start_daemon(
        kube_api, world, ec2_proxy, tmp_path, RESYNC_PERIOD="1", MODE="active-active", SHARDS="2"
    )
    try:
        wait_until(
            "unready: the mask",
            lambda: "Cilium cannot match the VTEP endpoints" in get(health, "/readyz")[1],
            30.0,
        )
        status, body = get(health, "/readyz")
        assert status == 503 and "endpoints of /17 under the Cilium agents' vtep-mask /24" in body
        assert "vtep.mask=255.255.128.0" in body, body
        core.patch_namespaced_config_map(*CILIUM_CONFIG, {"data": {"vtep-mask": "255.255.128.0"}})
        wait_until(
            "the mask no longer in the way",
            lambda: "Cilium cannot match" not in get(health, "/readyz")[1],
            30.0,
        )
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)
