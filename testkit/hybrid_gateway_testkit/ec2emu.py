"""An EC2 API emulator on loopback (moto server), a recording proxy in front of it that can add
latency and inject throttling/5xx faults, and a seeded VPC world.

Everything listens on 127.0.0.1 unless told otherwise (the lab runs the proxy on its control
namespace's address). The proxy parses the EC2 query protocol's `Action` so tests
and benchmarks can count and order calls (e.g. "the last write of the old leader came before the
first write of the new one") without trusting the daemon's own account.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WRITE_ACTIONS = frozenset({"CreateRoute", "ReplaceRoute", "DeleteRoute"})

THROTTLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)
#: EC2's answer to an allowed DryRun request (status 412), and to a denied one (403). moto carries
#: out a CreateRoute/ReplaceRoute with DryRun=true as if the flag were absent (its
#: ec2/responses/route_tables.py never calls `error_on_dryrun`), so the proxy answers route-write
#: dry runs itself, as EC2 does (botocore data/ec2/2016-11-15/service-2.json, `DryRun` of
#: CreateRouteRequest/ReplaceRouteRequest: "DryRunOperation" if allowed, else
#: "UnauthorizedOperation").
DRY_RUN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>DryRunOperation</Code><Message>Request would have succeeded, but DryRun flag is set."
    b"</Message></Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID>"
    b"</Response>"
)
UNAUTHORIZED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this "
    b"operation.</Message></Error></Errors>"
    b"<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)
DRY_RUN_PREFIX = "DryRun:"
INTERNAL_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>InternalError</Code><Message>An internal error has occurred.</Message>"
    b"</Error></Errors><RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)


@dataclass(frozen=True)
class Call:
    """One request seen by the proxy. A route write with DryRun=true changes nothing: its
    `action` is `DryRun:<Action>`, so counts and orders of writes see only real ones."""

    label: str
    action: str
    params: dict[str, str]
    started: float  # time.time() when the request arrived
    started_mono: float  # time.monotonic() then (system-wide: comparable across processes)
    finished: float  # time.time() right before the answer was sent
    status: int
    injected: bool  # the proxy answered with a fault instead of forwarding
    reply: bytes = b""  # the body answered, for the actions in the proxy's `keep_replies`


# (action, sequence number of this action at the proxy) -> None, or (status, body) to answer with
Fault = Callable[[str, int], tuple[int, bytes] | None]
# (action, upstream reply body) -> the body to answer with: state the emulator cannot produce
# (e.g. a blackhole route, a stack being deleted), applied to forwarded replies only
Rewrite = Callable[[str, bytes], bytes]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of parallel writes overflowed it and the
    # dropped SYNs were retried by TCP a second later, which EC2 itself would not cause.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (kill -9 tests) resets its connection: not an error."""


@dataclass
class Ec2Proxy:
    """Forwards to `upstream` (host, port); use one per client whose calls must be told apart."""

    upstream: tuple[str, int]
    label: str = "ec2"
    latency_s: float = 0.0
    fault: Fault | None = None
    rewrite: Rewrite | None = None
    calls: list[Call] = field(default_factory=list)
    listen: tuple[str, int] = ("127.0.0.1", 0)
    keep_replies: frozenset[str] = frozenset()  # actions whose answered body `calls` keeps
    upstream_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._server = _QuietServer(self.listen, self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Ec2Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._counts.clear()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def count(self, *actions: str) -> int:
        return sum(1 for c in self.snapshot() if not actions or c.action in actions)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self._forward("POST")

            def do_GET(self) -> None:
                self._forward("GET")

            def _forward(self, method: str) -> None:
                started, started_mono = time.time(), time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = urllib.parse.urlsplit(self.path).query
                raw = body.decode(errors="replace") if body else query
                params = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                action = params.get("Action", "?")
                dry_run = params.get("DryRun", "").lower() == "true"
                if dry_run and action in WRITE_ACTIONS:
                    action = DRY_RUN_PREFIX + action
                with proxy._lock:
                    seq = proxy._counts.get(action, 0)
                    proxy._counts[action] = seq + 1
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                fault = proxy.fault(action, seq) if proxy.fault else None
                if fault is None and action.startswith(DRY_RUN_PREFIX):
                    fault = (412, DRY_RUN_BODY)  # EC2's answer, not an injected fault
                    injected = False
                else:
                    injected = fault is not None
                if fault is not None:
                    status, payload, headers = fault[0], fault[1], {"Content-Type": "text/xml"}
                else:
                    conn = http.client.HTTPConnection(
                        *proxy.upstream, timeout=proxy.upstream_timeout_s
                    )
                    forward_headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request(method, self.path, body=body, headers=forward_headers)
                    reply = conn.getresponse()
                    status, payload = reply.status, reply.read()
                    if proxy.rewrite is not None:
                        payload = proxy.rewrite(action, payload)
                    headers = {
                        k: v
                        for k, v in reply.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")
                    }
                    conn.close()
                # Recorded BEFORE the reply is sent: a client that got its answer must find
                # the call in `calls`, or a test that resets the proxy after a sync counts that
                # sync's last call as one of the next (seen as a CI flake).
                with proxy._lock:
                    proxy.calls.append(
                        Call(
                            proxy.label,
                            action,
                            params,
                            started,
                            started_mono,
                            time.time(),
                            status,
                            injected,
                            payload if action in proxy.keep_replies else b"",
                        )
                    )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class TlsFront:
    """TLS in front of an HTTP endpoint (an `Ec2Proxy`), as the EC2 API is only reached over
    HTTPS: terminates TLS with `context` and relays the bytes both ways, one upstream
    connection per client connection (so keep-alive reuse is the client's, as with EC2).

    `handshake_delay_s` holds each NEW connection's TLS handshake back (its ServerHello) for
    that long, as a lost packet or a congested path does: the client has already passed every
    check it makes before sending (botocore's `before-send`) and waits inside urllib3's connect.
    `handshakes` holds the monotonic time of every completed handshake.
    """

    def __init__(self, upstream: tuple[str, int], context: ssl.SSLContext) -> None:
        self.upstream = upstream
        self.handshake_delay_s = 0.0
        self.handshakes: list[float] = []
        self._context = context
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> TlsFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closed.set()
        self._thread.join(5.0)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        delay = self.handshake_delay_s
        if delay and self._closed.wait(delay):
            conn.close()
            return
        try:
            conn.settimeout(10.0)
            tls = self._context.wrap_socket(conn, server_side=True)
        except OSError:  # the client gave up waiting for the handshake and closed
            conn.close()
            return
        self.handshakes.append(time.monotonic())
        try:
            upstream = socket.create_connection(self.upstream, timeout=10.0)
        except OSError:
            tls.close()
            return
        tls.settimeout(None)
        upstream.settimeout(None)
        threading.Thread(target=_pump, args=(upstream, tls), daemon=True).start()
        _pump(tls, upstream)

    def __enter__(self) -> TlsFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until either side closes; then shut both down (the other pump ends with them)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the other pump's recv
            with suppress(OSError):
                sock.close()


@contextmanager
def moto_ec2() -> Iterator[tuple[str, int]]:
    """A moto server on 127.0.0.1 (random port); yields (host, port)."""
    import logging

    from moto.server import ThreadedMotoServer

    from .moto_strict import apply

    apply()  # one source/destination check flag per primary ENI, as in EC2
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield server.get_host_and_port()
    finally:
        server.stop()


def ec2_client(endpoint: str, region: str = "us-east-1") -> Any:
    """A boto3 EC2 client for seeding and inspecting the emulator directly (no proxy)."""
    import boto3
    import botocore.config

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    ).client(
        "ec2",
        endpoint_url=endpoint,
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 3}),
    )


@dataclass
class VpcWorld:
    """A VPC with route tables and two gateway instances, each with its primary ENI."""

    vpc_id: str
    subnet_id: str
    table_ids: list[str]
    instances: dict[str, str]  # name -> instance id
    enis: dict[str, str]  # name -> primary ENI id
    pod_cidrs: list[str]

    def routes(self, client: Any) -> dict[tuple[str, str], str]:
        """(table, pod CIDR) -> target (ENI id, gateway id, or 'blackhole'/'absent')."""
        reply = client.describe_route_tables(RouteTableIds=self.table_ids)
        out: dict[tuple[str, str], str] = {
            (t, c): "absent" for t in self.table_ids for c in self.pod_cidrs
        }
        for table in reply["RouteTables"]:
            for route in table["Routes"]:
                key = (table["RouteTableId"], route.get("DestinationCidrBlock", ""))
                if key in out:
                    out[key] = (
                        route.get("NetworkInterfaceId")
                        or route.get("TransitGatewayId")
                        or route.get("GatewayId")
                        or route.get("NatGatewayId")
                        or "unknown"
                    )
        return out

    def all_point_at(self, client: Any, name: str) -> bool:
        return set(self.routes(client).values()) == {self.enis[name]}


def seed_world(
    client: Any, *, tables: int, pod_cidrs: list[str], instance_names: tuple[str, ...] = ("a", "b")
) -> VpcWorld:
    vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    table_ids = [
        client.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(tables)
    ]
    instances: dict[str, str] = {}
    enis: dict[str, str] = {}
    for name in instance_names:
        inst = client.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            InstanceType="c6in.xlarge",
            SubnetId=subnet,
        )["Instances"][0]
        instances[name] = inst["InstanceId"]
        enis[name] = next(
            e["NetworkInterfaceId"]
            for e in inst["NetworkInterfaces"]
            if e["Attachment"]["DeviceIndex"] == 0
        )
        # as deployed (docs/design.md#aws-side): a gateway's primary ENI forwards, its
        # source/dest check is off
        client.modify_network_interface_attribute(
            NetworkInterfaceId=enis[name], SourceDestCheck={"Value": False}
        )
    return VpcWorld(vpc, subnet, table_ids, instances, enis, list(pod_cidrs))


def point_all(client: Any, world: VpcWorld, eni: str) -> None:
    """Make every pod-CIDR route of the world target `eni` (create or replace), directly."""
    current = world.routes(client)
    for (table, cidr), target in current.items():
        call = client.create_route if target == "absent" else client.replace_route
        call(RouteTableId=table, DestinationCidrBlock=cidr, NetworkInterfaceId=eni)
