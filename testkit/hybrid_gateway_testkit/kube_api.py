"""The test API server as the gateway's tests, benchmarks and lab run it: the Cilium CRDs the
gateway reads and writes (test data kept in `crds/`) and the gateway's namespace, passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybrid_gateway_contract import DEFAULT_NAMESPACE
from kube_test_apiserver import ApiServer

#: CiliumNode and CiliumVTEPConfig, as Cilium installs them.
CILIUM_CRDS = (Path(__file__).parent / "crds",)
GATEWAY_NAMESPACES = (DEFAULT_NAMESPACE,)


def start_kube_api(
    workdir: Path, host: str = "127.0.0.1", port: int = 0, netns: str | None = None, **options: Any
) -> ApiServer:
    """`ApiServer.start` (same options) with the Cilium CRDs and the gateway's namespace."""
    return ApiServer.start(
        workdir, host, port, netns, crds=CILIUM_CRDS, namespaces=GATEWAY_NAMESPACES, **options
    )
