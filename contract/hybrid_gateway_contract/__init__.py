"""The names and numbers the construct library, the chart and the runtime must agree on.

Dependency-free on purpose: the CDK side and the gateway image both import it, so a label,
port or environment variable name can never drift between what is deployed and what runs.
Values follow the reference implementation and the EKS documentation (drop-in compatible).
"""

from __future__ import annotations

from typing import Final

# --- Data plane (Cilium VTEP contract) ---------------------------------------------------------
VXLAN_DEVICE: Final = "hybrid_vxlan0"
VXLAN_VNI: Final = 2  # Cilium's "world" identity; Cilium's VTEP support requires 2.
VXLAN_PORT: Final = 8472  # Cilium's default VXLAN UDP destination port.
VXLAN_OVERHEAD_BYTES: Final = 50
DEFAULT_VXLAN_MTU: Final = 1450  # The MTU Cilium uses on its VTEP routes.

# --- Kubernetes objects ------------------------------------------------------------------------
HYBRID_NODE_LABEL_KEY: Final = "eks.amazonaws.com/compute-type"
HYBRID_NODE_LABEL_VALUE: Final = "hybrid"

GATEWAY_NODE_LABEL_KEY: Final = "hybrid-gateway-node"
GATEWAY_NODE_LABEL_VALUE: Final = "true"
GATEWAY_NODE_TAINT_KEY: Final = "hybrid-gateway-node"
GATEWAY_NODE_TAINT_VALUE: Final = "true"
GATEWAY_NODE_TAINT_EFFECT: Final = "NoSchedule"

DEFAULT_NAMESPACE: Final = "eks-hybrid-nodes-gateway"
DEFAULT_SERVICE_ACCOUNT: Final = "eks-hybrid-nodes-gateway"
APP_NAME: Final = "eks-hybrid-nodes-gateway"
CONTAINER_NAME: Final = "gateway"
DEFAULT_LEASE_NAME: Final = "hybrid-gateway-leader"

CILIUM_GROUP: Final = "cilium.io"
CILIUM_VERSION: Final = "v2"
CILIUM_NODES_PLURAL: Final = "ciliumnodes"
VTEP_CONFIGS_PLURAL: Final = "ciliumvtepconfigs"
VTEP_CONFIG_KIND: Final = "CiliumVTEPConfig"
VTEP_CONFIG_NAME: Final = "hybrid-gateway"
MAX_VTEP_ENDPOINTS: Final = 8  # Size of Cilium's VTEP BPF map.
# The Cilium agents' configuration (Helm chart ConfigMap), read for its `vtep-mask`.
CILIUM_CONFIG_NAMESPACE: Final = "kube-system"
CILIUM_CONFIG_NAME: Final = "cilium-config"

# --- Ports and probes --------------------------------------------------------------------------
HEALTH_PORT: Final = 8088
HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"
METRICS_PORT: Final = 10080
METRICS_PATH: Final = "/metrics"
#: The gateway pod's `terminationGracePeriodSeconds`: after SIGTERM the kubelet waits this long
#: before it kills the container (Kubernetes docs, "Termination of Pods"). The
#: chart renders it and the daemon fits its shutdown (an active-active drain) inside it.
TERMINATION_GRACE_PERIOD_S: Final = 30

# --- Leader election defaults (seconds; the reference's values) ---------------------------------
DEFAULT_LEASE_DURATION_S: Final = 3.0
DEFAULT_RENEW_DEADLINE_S: Final = 2.0
DEFAULT_RETRY_PERIOD_S: Final = 1.0
DEFAULT_RESYNC_PERIOD_S: Final = 30.0  # Full re-check of routes and VTEP config (drift repair).


class Env:
    """Environment variable names read by the runtime and set by the chart.

    The first block is the reference chart's surface (keep the names); the second block is
    ours, for settings the reference hard-codes.
    """

    NODE_IP: Final = "NODE_IP"
    VPC_CIDR: Final = "VPC_CIDR"
    POD_CIDRS: Final = "POD_CIDRS"
    ROUTE_TABLE_IDS: Final = "ROUTE_TABLE_IDS"
    LEADER_ELECTION_ID: Final = "LEADER_ELECTION_ID"
    AWS_REGION: Final = "AWS_REGION"
    AWS_INSTANCE_ID: Final = "AWS_INSTANCE_ID"
    POD_NAME: Final = "POD_NAME"
    POD_NAMESPACE: Final = "POD_NAMESPACE"
    NODE_NAME: Final = "NODE_NAME"
    DEBUG: Final = "DEBUG"

    LEASE_DURATION: Final = "LEASE_DURATION"
    RENEW_DEADLINE: Final = "RENEW_DEADLINE"
    RETRY_PERIOD: Final = "RETRY_PERIOD"
    VXLAN_MTU: Final = "VXLAN_MTU"
    RESYNC_PERIOD: Final = "RESYNC_PERIOD"
    ALLOW_ROUTE_TAKEOVER: Final = "ALLOW_ROUTE_TAKEOVER"
    LOG_FORMAT: Final = "LOG_FORMAT"
    HEALTH_ADDR: Final = "HEALTH_ADDR"  # host:port of /healthz and /readyz (default :8088)
    METRICS_ADDR: Final = "METRICS_ADDR"  # host:port of /metrics (default :10080)
    MODE: Final = "MODE"  # active-standby (default) or active-active
    SHARDS: Final = "SHARDS"  # active-active: how many shards (a power of two, default 4)
    MAX_ROUTES_PER_TABLE: Final = "MAX_ROUTES_PER_TABLE"  # the VPC route quota (default 500)
    POD_UID: Final = "POD_UID"  # active-active: owner of the replica's membership Lease


VTEP_ENDPOINT_NAME: Final = "vpc-gateway"  # the reference's endpoint name (internal/cilium/vtep.go)


def vtep_endpoint_name(index: int, total: int) -> str:
    """Name of the index-th CiliumVTEPConfig endpoint, in VPC_CIDR order.

    `vpc-gateway` for a single VPC CIDR, the reference's name, so taking over the object it
    wrote changes nothing; `vpc-gateway-<i>` when there are several.
    """
    if total < 1 or not 0 <= index < total:
        raise ValueError(f"endpoint index {index} out of range for {total} VPC CIDR(s)")
    return VTEP_ENDPOINT_NAME if total == 1 else f"{VTEP_ENDPOINT_NAME}-{index}"
