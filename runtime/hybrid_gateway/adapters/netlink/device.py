"""The VXLAN device `hybrid_vxlan0`: adopt, fix in place, create or recreate it; read its state.

Taking over from the reference gateway (aws/eks-hybrid-nodes-gateway, internal/vxlan/
interface.go `Setup`): it creates `hybrid_vxlan0` through vishvananda/netlink with only VNI,
port, local address and learning off, sets the MAC derived from the node IP and brings it up;
no address and no MTU, so the kernel leaves 1500 on a VXLAN device without a lower device
(measured; 50 bytes more than the 1450 Cilium's VTEP routes use). Such a device passes every
identity check below and is kept: only its MTU is fixed in place, without a blip.
A device that could not carry our tunnels as we program them (another kind, VNI, port, local
address, learning on, metadata mode `external`, a `remote`/`group` default destination, a
lower `dev`, the `gbp` extension) is deleted and created again.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from hybrid_gateway.adapters.netlink.wire import (
    AF_INET,
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDRMSG,
    IFF_UP,
    IFLA_IFNAME,
    RTM_GETADDR,
    RouteSocket,
    attrs_of,
)


class DeviceAction(enum.StrEnum):
    """What `ensure_device` did to the device."""

    ADOPTED = "adopted"  # correct as it was
    CREATED = "created"  # there was none
    FIXED = "fixed"  # MAC, MTU, addresses or state corrected in place
    RECREATED = "recreated"  # deleted and created again: its VXLAN parameters were wrong


@dataclass(frozen=True)
class DeviceSpec:
    """What `hybrid_vxlan0` must look like (docs/design.md#tunnel)."""

    name: str
    vni: int
    port: int
    local: ipaddress.IPv4Address
    mac: str
    mtu: int


@dataclass(frozen=True)
class DeviceOutcome:
    """What `ensure_device` did, on which device index, and why."""

    action: DeviceAction
    ifindex: int
    details: tuple[str, ...] = ()


def ensure_device(ipr: IPRoute, spec: DeviceSpec) -> DeviceOutcome:
    """Adopt a correct device as is; fix MAC/MTU/up/addresses in place; recreate a device whose
    kind or VXLAN parameters are wrong (see the module docstring)."""
    found = ipr.link_lookup(ifname=spec.name)
    if not found:
        return DeviceOutcome(DeviceAction.CREATED, _create(ipr, spec))
    link = ipr.link("get", index=found[0])[0]
    wrong = identity_problems(link, spec)
    if wrong:
        ipr.link("del", index=link["index"])
        return DeviceOutcome(DeviceAction.RECREATED, _create(ipr, spec), tuple(wrong))
    fixes = _fix_in_place(ipr, link, spec)
    action = DeviceAction.FIXED if fixes else DeviceAction.ADOPTED
    return DeviceOutcome(action, int(link["index"]), tuple(fixes))


def identity_problems(link: Any, spec: DeviceSpec) -> list[str]:
    """Why an existing device cannot be fixed in place (empty: it can be adopted)."""
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    if kind != "vxlan":
        return [f"kind is {kind!r}, want 'vxlan'"]
    data = info.get_attr("IFLA_INFO_DATA")
    have = {
        "VNI": data.get_attr("IFLA_VXLAN_ID"),
        "port": data.get_attr("IFLA_VXLAN_PORT"),
        "local": data.get_attr("IFLA_VXLAN_LOCAL"),
        "learning": data.get_attr("IFLA_VXLAN_LEARNING"),
    }
    want = {"VNI": spec.vni, "port": spec.port, "local": str(spec.local), "learning": 0}
    problems = [f"{k} is {have[k]!r}, want {want[k]!r}" for k in want if have[k] != want[k]]
    if data.get_attr("IFLA_VXLAN_COLLECT_METADATA"):
        problems.append("external (metadata mode) is set, want per-device VNI")
    group = data.get_attr("IFLA_VXLAN_GROUP") or data.get_attr("IFLA_VXLAN_GROUP6")
    if group and group not in ("0.0.0.0", "::"):
        problems.append(f"remote/group is {group}, want none (destinations come from the FDB)")
    lower = data.get_attr("IFLA_VXLAN_LINK")
    if lower:
        problems.append(f"dev (lower device) is ifindex {lower}, want none")
    if data.get_attr("IFLA_VXLAN_GBP") is not None:
        problems.append("gbp is set, want plain VXLAN (Cilium VTEP)")
    return problems


def _fix_in_place(ipr: IPRoute, link: Any, spec: DeviceSpec) -> list[str]:
    index = int(link["index"])
    fixes: list[str] = []
    mac = str(link.get_attr("IFLA_ADDRESS")).lower()
    if mac != spec.mac:
        ipr.link("set", index=index, address=spec.mac)
        fixes.append(f"MAC {mac} -> {spec.mac}")
    mtu = link.get_attr("IFLA_MTU")
    if mtu != spec.mtu:
        ipr.link("set", index=index, mtu=spec.mtu)
        fixes.append(f"MTU {mtu} -> {spec.mtu}")
    for addr in ipr.get_addr(index=index):
        if addr["family"] != AF_INET:
            continue  # the kernel's IPv6 link-local address, if any, is harmless
        text = f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"
        ipr.addr("del", index=index, address=addr.get_attr("IFA_ADDRESS"),
                 prefixlen=addr["prefixlen"])  # fmt: skip
        fixes.append(f"removed address {text}")
    if not link["flags"] & IFF_UP:
        ipr.link("set", index=index, state="up")
        fixes.append("set up")
    return fixes


def _create(ipr: IPRoute, spec: DeviceSpec) -> int:
    ipr.link(
        "add",
        ifname=spec.name,
        kind="vxlan",
        vxlan_id=spec.vni,
        vxlan_port=spec.port,
        vxlan_local=str(spec.local),
        vxlan_learning=0,
        address=spec.mac,
        mtu=spec.mtu,
    )
    index = int(ipr.link_lookup(ifname=spec.name)[0])
    ipr.link("set", index=index, state="up")
    return index


def device_with_address(sock: RouteSocket, ip: ipaddress.IPv4Address) -> str | None:
    """Name of the device holding `ip` (the primary NIC for the node IP)."""
    request = IFADDRMSG.pack(AF_INET, 0, 0, 0, 0)
    index = None
    for data, start, end in sock.dump(RTM_GETADDR, request):
        _family, _plen, _flags, _scope, ifindex = IFADDRMSG.unpack_from(data, start)
        attrs = attrs_of(data, start + IFADDRMSG.size, end)
        if attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS)) == ip.packed:
            index = ifindex
    if index is None:
        return None
    link = sock.get_link(None, index)
    if link is None:
        return None
    return link[2].get(IFLA_IFNAME, b"").rstrip(b"\0").decode() or None
