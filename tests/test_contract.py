"""The shared contract: the values other systems (Cilium, the reference chart) depend on."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

import hybrid_gateway_contract as contract
from hybrid_gateway.core.mac import hybrid_node_peer_mac, vxlan_device_mac


def test_cilium_vtep_contract_values() -> None:
    assert (contract.VXLAN_VNI, contract.VXLAN_PORT) == (2, 8472)
    assert contract.VXLAN_DEVICE == "hybrid_vxlan0"
    assert contract.DEFAULT_VXLAN_MTU + contract.VXLAN_OVERHEAD_BYTES == 1500


def test_endpoint_names_follow_vpc_cidr_order() -> None:
    # One VPC CIDR: the reference's name (internal/cilium/vtep.go vtepEndpointName).
    assert contract.vtep_endpoint_name(0, 1) == "vpc-gateway"
    names = [contract.vtep_endpoint_name(i, 3) for i in range(3)]
    assert names == ["vpc-gateway-0", "vpc-gateway-1", "vpc-gateway-2"]
    with pytest.raises(ValueError, match="out of range"):
        contract.vtep_endpoint_name(3, 3)


@pytest.mark.parametrize("node_ip", ["10.0.1.10", "192.168.100.7", "172.31.255.254"])
def test_device_mac_follows_the_spec_formula(node_ip: str) -> None:
    """sha256 over the IPv4-mapped address, 6 bytes, first octet locally administered unicast."""
    raw = hashlib.sha256(ipaddress.IPv6Address(f"::ffff:{node_ip}").packed).digest()[:6]
    first = (raw[0] & 0xFE) | 0x02
    want = ":".join(f"{b:02x}" for b in bytes([first]) + raw[1:])
    mac = vxlan_device_mac(node_ip)
    assert mac == want
    assert int(mac[:2], 16) & 0x03 == 0x02
    assert mac == vxlan_device_mac(node_ip)


def test_peer_mac_embeds_the_node_octets() -> None:
    assert hybrid_node_peer_mac("10.80.0.5") == "02:00:0a:50:00:05"
