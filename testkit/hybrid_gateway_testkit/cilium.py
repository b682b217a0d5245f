"""Cilium test data shared by the fixtures, the lab and the benchmarks: CiliumNode objects as
Cilium's agent registers them."""

from __future__ import annotations

from typing import Any

from hybrid_gateway_contract import (
    CILIUM_GROUP,
    CILIUM_VERSION,
    HYBRID_NODE_LABEL_KEY,
    HYBRID_NODE_LABEL_VALUE,
)


def cilium_node(
    name: str, ip: str | None, pod_cidrs: list[str], *, hybrid: bool = True
) -> dict[str, Any]:
    """A CiliumNode with the fields the gateway's data plane reads: the hybrid label (unless
    `hybrid` is False: a cloud node), the InternalIP (none if `ip` is None) and the pod CIDRs."""
    labels = {HYBRID_NODE_LABEL_KEY: HYBRID_NODE_LABEL_VALUE} if hybrid else {}
    addresses = [{"type": "InternalIP", "ip": ip}] if ip else []
    return {
        "apiVersion": f"{CILIUM_GROUP}/{CILIUM_VERSION}",
        "kind": "CiliumNode",
        "metadata": {"name": name, "labels": labels},
        "spec": {"addresses": addresses, "ipam": {"podCIDRs": pod_cidrs}},
    }
