"""The test API server as the gateway's tests, benchmarks and lab run it: the Cilium CRDs the
gateway reads and writes (test data kept in `crds/`) and the gateway's namespace, passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybrid_gateway_contract import DEFAULT_NAMESPACE
from kube_test_apiserver import ApiServer

#: The test API server's niceness. The real control plane (kube-apiserver on EKS's own
#: instances) does not share the gateways' CPUs, so its answers do not wait for them; here it
#: shares two cores with the daemons, hybrid-node agents, probes and any other load, and a
#: machine-wide stall once kept it from answering Lease renewals within the renew deadline in
#: two labs at the same second: survivors lost shards no failure had touched. Scheduled ahead of
#: them, it answers as a separate control plane would; the daemons keep the default.
CONTROL_PLANE_NICE = -10
#: CiliumNode and CiliumVTEPConfig, as Cilium installs them.
CILIUM_CRDS = (Path(__file__).parent / "crds",)
GATEWAY_NAMESPACES = (DEFAULT_NAMESPACE,)


def start_kube_api(
    workdir: Path, host: str = "127.0.0.1", port: int = 0, netns: str | None = None, **options: Any
) -> ApiServer:
    """`ApiServer.start` (same options) with the Cilium CRDs and the gateway's namespace, at
    CONTROL_PLANE_NICE unless `nice` is given."""
    options.setdefault("nice", CONTROL_PLANE_NICE)
    return ApiServer.start(
        workdir, host, port, netns, crds=CILIUM_CRDS, namespaces=GATEWAY_NAMESPACES, **options
    )
