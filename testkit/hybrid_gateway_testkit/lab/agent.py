"""The lab agent of one hybrid node: what Cilium's VTEP support does, in kernel terms.

It registers the node as a CiliumNode (hybrid label, InternalIP, pod CIDR), then watches the
`CiliumVTEPConfig` named `hybrid-gateway` through the official Kubernetes client and, for every
endpoint, points the node's pod traffic for that endpoint's destinations at the tunnel
endpoint: FDB entry (MAC -> tunnel endpoint), permanent neighbour (endpoint IP -> MAC), then the
route in the pod table, in that order; entries of a replaced endpoint are removed afterwards.

Which destinations an endpoint takes follows Cilium's lookup (`--vtep-match`):

- `hash` (default): upstream Cilium's `cilium_vtep_map` is a BPF hash keyed by
  `daddr & vtep_mask`, ONE mask for every endpoint, the agent's own: cilium/cilium
  bpf/lib/vtep.h (`BPF_MAP_TYPE_HASH`, key `vtep_ip`), pkg/maps/vtep/vtep.go `newKey` (masks
  with `option.Config.VtepCidrMask`), the datapath's `VTEP_MASK` from the same option; the
  option is the agent flag / `cilium-config` key `vtep-mask` (pkg/option/config.go `VtepMask`),
  default "255.255.255.0" (the daemon's flag registration). So the agent reads `vtep-mask` from
  kube-system/`cilium-config` once at start, as the Cilium agent takes its configuration at
  start (a change needs an agent restart); the object's `spec.cidrMask` is not read. Each
  endpoint's key is its CIDR's network address under that mask, the CIDR's own prefix length
  is ignored, two endpoints with the same key overwrite each other, and a destination matches
  when `daddr & mask` is a key: in kernel terms the endpoint steers
  `<network & mask>/<mask length>`.
- `lpm`: the later LPM-trie shape of that CRD: each endpoint steers its own CIDR, the longest
  matching one wins.

Run inside the hybrid node's namespace:
`python -m hybrid_gateway_testkit.lab.agent --kubeconfig K --node-name hn1 --node-ip ... ...`.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_gateway_contract import (
    CILIUM_CONFIG_NAME,
    CILIUM_CONFIG_NAMESPACE,
    CILIUM_GROUP,
    CILIUM_NODES_PLURAL,
    CILIUM_VERSION,
    VTEP_CONFIG_NAME,
    VTEP_CONFIGS_PLURAL,
)
from hybrid_gateway_testkit.cilium import cilium_node
from hybrid_gateway_testkit.lab.events import EventLog


@dataclass(frozen=True)
class VtepEndpoint:
    cidr: str
    tunnel_endpoint: str
    mac: str


DEFAULT_CIDR_MASK = "255.255.255.0"
"""`spec.cidrMask` when the object leaves it unset (the CiliumVTEPConfig CRD's default). What
the gateway wrote, for the lab's monitor: the agents match with their own `vtep-mask`."""
AGENT_VTEP_MASK_KEY = "vtep-mask"
DEFAULT_AGENT_VTEP_MASK = "255.255.255.0"
"""The Cilium agent's `--vtep-mask` default, used when `cilium-config` has no such key."""
VTEP_MATCHES = ("hash", "lpm")


def cidr_mask_of(obj: dict[str, Any] | None) -> str:
    """Pure: the object's `spec.cidrMask`, or the CRD default (observed, never matched on)."""
    mask = ((obj or {}).get("spec") or {}).get("cidrMask")
    return str(mask) if mask else DEFAULT_CIDR_MASK


def agent_vtep_mask(config: Mapping[str, str] | None) -> str:
    """Pure: the mask the agent matches with, from `cilium-config`'s data (None: no such
    ConfigMap); the agent's default when the key is absent or empty. Raises ValueError for a
    value that is not an IPv4 netmask (the agent refuses to start on it)."""
    raw = ((config or {}).get(AGENT_VTEP_MASK_KEY) or "").strip() or DEFAULT_AGENT_VTEP_MASK
    try:
        ipaddress.IPv4Network(f"0.0.0.0/{raw}")
    except ValueError as exc:
        raise ValueError(f"cilium-config {AGENT_VTEP_MASK_KEY}={raw!r}: not a netmask") from exc
    return raw


def read_agent_vtep_mask(core: Any) -> str:
    """The agent's mask from kube-system/cilium-config through `core` (a CoreV1Api); the
    default when the ConfigMap does not exist; other API errors are raised (retry)."""
    from kubernetes.client.rest import ApiException

    try:
        config = core.read_namespaced_config_map(CILIUM_CONFIG_NAME, CILIUM_CONFIG_NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return agent_vtep_mask(None)
    return agent_vtep_mask({k: str(v) for k, v in (config.data or {}).items()})


def steered_prefixes(
    endpoints: list[VtepEndpoint], mask: str = DEFAULT_AGENT_VTEP_MASK, match: str = "hash"
) -> dict[str, VtepEndpoint]:
    """Pure: destination prefix -> endpoint, as the node's Cilium would match (see the module
    docstring). With `hash`, endpoints whose keys collide: the last one written wins."""
    if match not in VTEP_MATCHES:
        raise ValueError(f"vtep match {match!r}: one of {', '.join(VTEP_MATCHES)}")
    out: dict[str, VtepEndpoint] = {}
    for ep in endpoints:
        cidr = ipaddress.IPv4Network(ep.cidr, strict=False)
        if match == "hash":
            length = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
            cidr = ipaddress.IPv4Network(f"{cidr.network_address}/{length}", strict=False)
        out.pop(str(cidr), None)  # re-insert: the latest write is the one kept
        out[str(cidr)] = ep
    return out


def endpoints_of(obj: dict[str, Any] | None) -> list[VtepEndpoint]:
    """Pure: the endpoints of a CiliumVTEPConfig object (empty when absent)."""
    if not obj:
        return []
    out = []
    for ep in obj.get("spec", {}).get("endpoints", []) or []:
        try:
            out.append(VtepEndpoint(ep["cidr"], ep["tunnelEndpoint"], ep["mac"].lower()))
        except (KeyError, AttributeError):
            continue
    return out


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=10, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


class VtepProgrammer:
    """Kernel state of the node's VTEP device for the current endpoints."""

    def __init__(
        self, device: str, table: int, vpc_cidr: str, events: EventLog, match: str = "hash"
    ) -> None:
        self.device, self.table, self.vpc_cidr, self.events = device, table, vpc_cidr, events
        self.match = match
        self.current: list[VtepEndpoint] = []
        self.mask = DEFAULT_AGENT_VTEP_MASK
        self.routes: dict[str, VtepEndpoint] = {}

    def apply(self, endpoints: list[VtepEndpoint], mask: str = DEFAULT_AGENT_VTEP_MASK) -> None:
        if endpoints == self.current and mask == self.mask:
            return
        routes = steered_prefixes(endpoints, mask, self.match)
        for ep in endpoints:  # FDB, then neighbour (docs/design.md#tunnel order)
            _run(["bridge", "fdb", "replace", ep.mac, "dev", self.device,
                  "dst", ep.tunnel_endpoint, "self", "permanent"])  # fmt: skip
            _run(["ip", "neigh", "replace", ep.tunnel_endpoint, "lladdr", ep.mac,
                  "dev", self.device, "nud", "permanent"])  # fmt: skip
        for prefix, ep in routes.items():  # then the routes
            _run(["ip", "route", "replace", prefix, "via", ep.tunnel_endpoint,
                  "dev", self.device, "onlink", "table", str(self.table)])  # fmt: skip
        for prefix in set(self.routes) - set(routes):
            # The VPC CIDR itself goes back to the blackhole it started as; a narrower prefix
            # goes away (a blackhole there would shadow a wider prefix that now steers it).
            verb = ["replace", "blackhole"] if prefix == self.vpc_cidr else ["del"]
            subprocess.run(["ip", "route", *verb, prefix, "table", str(self.table)],
                           capture_output=True, check=False)  # fmt: skip
        for old in self.current:
            if not any(ep.tunnel_endpoint == old.tunnel_endpoint for ep in endpoints):
                subprocess.run(["ip", "neigh", "del", old.tunnel_endpoint, "dev", self.device],
                               capture_output=True, check=False)  # fmt: skip
            if not any(ep.mac == old.mac for ep in endpoints):
                subprocess.run(["bridge", "fdb", "del", old.mac, "dev", self.device, "self"],
                               capture_output=True, check=False)  # fmt: skip
        self.current, self.mask, self.routes = endpoints, mask, routes
        self.events.write(
            "vtep-switch",
            endpoints=[
                {"cidr": e.cidr, "tunnelEndpoint": e.tunnel_endpoint, "mac": e.mac}
                for e in endpoints
            ],
            mask=mask,
            routes={prefix: ep.tunnel_endpoint for prefix, ep in routes.items()},
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--vpc-cidr", required=True)
    parser.add_argument("--table", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--vtep-match", choices=VTEP_MATCHES, default="hash")
    parser.add_argument("--max-runtime-s", type=float, default=3600.0)
    args = parser.parse_args(argv)

    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    events = EventLog(args.events)
    kube = config.new_client_from_config(config_file=args.kubeconfig)
    api = client.CustomObjectsApi(kube)
    deadline = time.monotonic() + args.max_runtime_s

    mask: str | None = None  # the agent's one VTEP mask, read once at start
    while mask is None and not stop.is_set() and time.monotonic() < deadline:
        try:
            mask = read_agent_vtep_mask(client.CoreV1Api(kube))
            events.write("agent-config", vtep_mask=mask)
        except Exception as exc:
            events.write("agent-error", error=f"{type(exc).__name__}: {exc}")
            stop.wait(0.5)
    mask = mask or DEFAULT_AGENT_VTEP_MASK

    body = cilium_node(args.node_name, args.node_ip, [args.pod_cidr])
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            try:
                api.create_cluster_custom_object(
                    CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, body
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                current = api.get_cluster_custom_object(
                    CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, args.node_name
                )
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                api.replace_cluster_custom_object(
                    CILIUM_GROUP, CILIUM_VERSION, CILIUM_NODES_PLURAL, args.node_name, body
                )
            events.write("ciliumnode-registered", node=args.node_name, ip=args.node_ip)
            break
        except Exception as exc:
            events.write("agent-error", error=f"{type(exc).__name__}: {exc}")
            stop.wait(0.5)

    programmer = VtepProgrammer(args.device, args.table, args.vpc_cidr, events, args.vtep_match)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            listing = api.list_cluster_custom_object(
                CILIUM_GROUP, CILIUM_VERSION, VTEP_CONFIGS_PLURAL
            )
            mine = next(
                (o for o in listing.get("items", []) if o["metadata"]["name"] == VTEP_CONFIG_NAME),
                None,
            )
            programmer.apply(endpoints_of(mine), mask)
            rv = listing["metadata"]["resourceVersion"]
            w = watch.Watch()
            for event in w.stream(
                api.list_cluster_custom_object,
                CILIUM_GROUP,
                CILIUM_VERSION,
                VTEP_CONFIGS_PLURAL,
                resource_version=rv,
                timeout_seconds=5,
            ):
                obj = event["object"]
                if event["type"] == "ERROR" or stop.is_set():
                    break
                if obj.get("metadata", {}).get("name") != VTEP_CONFIG_NAME:
                    continue
                if event["type"] == "DELETED":
                    programmer.apply([], mask)
                else:
                    programmer.apply(endpoints_of(obj), mask)
            w.stop()
        except Exception as exc:  # relist after any failure
            events.write("agent-error", error=f"{type(exc).__name__}: {exc}")
            stop.wait(0.5)
    events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
