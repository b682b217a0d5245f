"""Traffic probes: sequence-numbered UDP at a fixed rate both ways, and a TCP request/response.

Each probe process writes a raw CSV log of every probe it sent or received, with times from the
machine-wide monotonic clock (the same in every namespace):

    tx,<src>,<dst>,<seq>,<t_send>
    rx,<src>,<dst>,<seq>,<t_send>,<t_recv>
    tcp,<src>,<dst>,<seq>,<t_start>,<t_end>,<ok 0|1>[,<kind call|conn>]

`call` is a connection per request (a webhook call), `conn` one request/response on a
long-lived connection (`tcp-client --persistent`): opened once and kept through timeouts (TCP
retransmits once the path is back), reopened only when the connection itself is lost (reset,
closed), and the first request on a reopened connection is logged as `conn+reopen`.

The TCP request/response can run over TLS (`--tls-cert/--tls-key` on the server, `--tls-ca` on the
client, which verifies the server's certificate and address), as an API server calls an
admission webhook: a full handshake per connection.

Run inside a namespace: `python -m hybrid_gateway_testkit.lab.probe udp|tcp-server|tcp-client ...`.
Every loop is bounded by `--max-runtime-s`; SIGTERM stops sending, keeps receiving for a grace
period (so packets in flight are counted), then flushes the log and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import select
import signal
import socket
import socketserver
import ssl
import struct
import threading
import time
from pathlib import Path

MAGIC = 0x48475750  # "HGWP"
_PACKET = struct.Struct("!IId")  # magic, seq, t_send
UDP_PAYLOAD_BYTES = 64


def encode(seq: int, t_send: float) -> bytes:
    return _PACKET.pack(MAGIC, seq, t_send).ljust(UDP_PAYLOAD_BYTES, b"\0")


def decode(data: bytes) -> tuple[int, float] | None:
    if len(data) < _PACKET.size:
        return None
    magic, seq, t_send = _PACKET.unpack_from(data)
    return (seq, t_send) if magic == MAGIC else None


def start_barrier(ready: Path | None, go: Path | None, stop: threading.Event) -> None:
    """Say we are listening (`ready` file), then wait for the `go` file: every probe starts
    sending only once every receiver is bound, so start-up never counts as loss."""
    if ready is not None:
        ready.touch()
    deadline = time.monotonic() + 60.0
    while go is not None and not go.exists() and not stop.is_set():
        if time.monotonic() > deadline:
            raise SystemExit(f"no go file {go} within 60 s")
        time.sleep(0.01)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


Peer = tuple[str, int, str | None]  # host, port, source address (None: the probe's --bind)


def run_udp(
    *,
    bind: str,
    port: int,
    peers: list[Peer],
    rate: float,
    log: Path,
    max_runtime_s: float,
    grace_s: float,
    ready: Path | None = None,
    go: Path | None = None,
) -> None:
    """Send seq 0,1,2,... to every peer at `rate` per second each; log every send and receipt.

    A peer may name its own source address: the probe then also listens there (same port), so
    one process can stand for several cloud addresses, each paired with its own peer."""
    stop = _stop_event()
    sockets: dict[str, socket.socket] = {}
    for source in [bind, *(src for _, _, src in peers if src)]:
        if source not in sockets:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((source, port))
            sock.setblocking(False)
            sockets[source] = sock
    start_barrier(ready, go, stop)
    interval = 1.0 / rate
    lines: list[str] = []
    start = time.monotonic()
    deadline = start + max_runtime_s
    seq = 0
    send_until: float | None = None
    while True:
        now = time.monotonic()
        if send_until is None and (stop.is_set() or now >= deadline):
            send_until = now
        if send_until is not None and now >= send_until + grace_s:
            break
        next_send = start + seq * interval
        if send_until is None and now >= next_send:
            for host, peer_port, src in peers:
                source = src or bind
                t = time.monotonic()
                # No route / unreachable during a failover: still a sent probe.
                with contextlib.suppress(OSError):
                    sockets[source].sendto(encode(seq, t), (host, peer_port))
                lines.append(f"tx,{source},{host},{seq},{t:.6f}")
            seq += 1
            continue
        wait = max(0.0, (next_send if send_until is None else now + 0.05) - now)
        readable, _, _ = select.select(list(sockets.values()), [], [], min(wait, 0.05))
        for sock in readable:
            local = sock.getsockname()[0]
            while True:
                try:
                    data, (src, _) = sock.recvfrom(2048)
                except OSError:  # drained (BlockingIOError) or an ICMP error queued on it
                    break
                t_recv = time.monotonic()
                decoded = decode(data)
                if decoded is not None:
                    rseq, t_send = decoded
                    lines.append(f"rx,{src},{local},{rseq},{t_send:.6f},{t_recv:.6f}")
    for sock in sockets.values():
        sock.close()
    log.write_text("\n".join(lines) + "\n")


class _EchoHandler(socketserver.StreamRequestHandler):
    """Answers every request line until the caller closes. A caller whose request (or FIN)
    died with a failed gateway must not hold a handler forever: the connection times out
    after the server's idle timeout instead."""

    timeout = 2.0
    tls: ssl.SSLContext | None = None  # set on a subclass for a TLS responder

    def setup(self) -> None:
        if self.tls is not None:  # the handshake runs here, on the handler's own thread
            self.request.settimeout(self.timeout)
            try:
                self.request = self.tls.wrap_socket(self.request, server_side=True)
            except (OSError, ssl.SSLError):
                self.request = None
                return
        super().setup()
        self.connection.settimeout(getattr(self.server, "idle_timeout_s", self.timeout))

    def finish(self) -> None:
        if self.request is not None:
            with contextlib.suppress(OSError):
                super().finish()

    def handle(self) -> None:
        if self.request is None:  # the handshake failed: the caller counts a failed call
            return
        try:
            while True:
                line = self.rfile.readline(256)
                if not line:
                    return
                self.wfile.write(b"ok " + line)
        except OSError:  # timed out or reset: the caller counts it as a failed call
            return


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    idle_timeout_s = 2.0


def run_tcp_server(
    bind: str,
    port: int,
    max_runtime_s: float,
    ready: Path | None,
    idle_timeout_s: float = 2.0,
    *,
    tls: tuple[Path, Path] | None = None,
) -> None:
    """A webhook-like responder: one response line per request line, until the caller closes
    or stays silent for `idle_timeout_s` (over TLS with `tls` = (certificate, key))."""
    stop = _stop_event()
    handler: type[_EchoHandler] = _EchoHandler
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        handler = type("_TlsEchoHandler", (_EchoHandler,), {"tls": context})
    with _Server((bind, port), handler) as server:
        server.idle_timeout_s = idle_timeout_s
        start_barrier(ready, None, stop)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
        thread.start()
        stop.wait(max_runtime_s)
        server.shutdown()
        thread.join(5)


def run_tcp_client(
    *,
    bind: str,
    targets: list[Peer],
    interval_s: float,
    timeout_s: float,
    log: Path,
    max_runtime_s: float,
    go: Path | None = None,
    persistent: bool = False,
    tls_ca: Path | None = None,
) -> None:
    """One thread per target: connect, send a request, read the answer, every `interval_s`.
    With `persistent` the connection stays open across requests and is reopened only after a
    failed one (a long-lived connection: does it survive a failover?). With `tls_ca` every
    connection is TLS, the server verified against it."""
    stop = _stop_event()
    context = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca is not None else None
    kind = "conn" if persistent else "call"
    lines: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_runtime_s
    start_barrier(None, go, stop)

    def call(conn: socket.socket, pending: bytearray, seq: int) -> bool:
        """Send request `seq` and read answers until its own (a long-lived connection may
        still deliver answers to requests that timed out before)."""
        conn.sendall(f"call {seq}\n".encode())
        want = f"ok call {seq}".encode()
        end = time.monotonic() + timeout_s
        while True:
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending[:] = rest
                if line == want:
                    return True
            conn.settimeout(max(0.001, end - time.monotonic()))
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionResetError("closed by the responder")
            pending += chunk

    def loop(host: str, port: int, src: str | None) -> None:
        source = src or bind
        seq = 0
        start = time.monotonic()
        conn: socket.socket | None = None
        pending = bytearray()
        opened = 0
        while not stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            ok = False
            this_kind = kind
            try:
                if conn is None:
                    conn = socket.create_connection(
                        (host, port), timeout=timeout_s, source_address=(source, 0)
                    )
                    if context is not None:  # a failed handshake is an OSError (SSLError)
                        conn = context.wrap_socket(conn, server_hostname=host)
                    pending.clear()
                    opened += 1
                    if persistent and opened > 1:  # the long-lived connection was lost
                        this_kind = f"{kind}+reopen"
                ok = call(conn, pending, seq)
            except TimeoutError:
                ok = False  # a long-lived connection stays: TCP retransmits after a failover
            except OSError:
                ok = False
                if conn is not None:
                    with contextlib.suppress(OSError):
                        conn.close()
                    conn = None
            if conn is not None and not persistent:
                with contextlib.suppress(OSError):
                    conn.close()
                conn = None
            t1 = time.monotonic()
            with lock:
                lines.append(f"tcp,{source},{host},{seq},{t0:.6f},{t1:.6f},{int(ok)},{this_kind}")
            seq += 1
            next_at = start + seq * interval_s
            stop.wait(max(0.0, next_at - time.monotonic()))
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    threads = [threading.Thread(target=loop, args=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.write_text("\n".join(lines) + "\n")


def _endpoint(text: str) -> Peer:
    """`HOST:PORT`, or `HOST:PORT@SOURCE` to send from SOURCE instead of --bind."""
    address, _, source = text.partition("@")
    host, _, port = address.rpartition(":")
    return host, int(port), source or None


def main(argv: list[str] | None = None) -> int:
    # A probe that does not stop on SIGTERM is asked for its stacks (SIGUSR1) before the kill.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    udp = sub.add_parser("udp")
    udp.add_argument("--bind", required=True)
    udp.add_argument("--port", type=int, required=True)
    udp.add_argument("--peer", action="append", default=[], type=_endpoint)
    udp.add_argument("--rate", type=float, default=100.0)
    udp.add_argument("--log", type=Path, required=True)
    udp.add_argument("--grace-s", type=float, default=1.0)
    udp.add_argument("--max-runtime-s", type=float, default=600.0)
    srv = sub.add_parser("tcp-server")
    srv.add_argument("--bind", required=True)
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--max-runtime-s", type=float, default=600.0)
    srv.add_argument("--idle-timeout-s", type=float, default=2.0)
    srv.add_argument("--tls-cert", type=Path, default=None)
    srv.add_argument("--tls-key", type=Path, default=None)
    cli = sub.add_parser("tcp-client")
    cli.add_argument("--bind", required=True)
    cli.add_argument("--target", action="append", default=[], type=_endpoint)
    cli.add_argument("--interval-s", type=float, default=0.1)
    cli.add_argument("--timeout-s", type=float, default=1.0)
    cli.add_argument("--log", type=Path, required=True)
    cli.add_argument("--max-runtime-s", type=float, default=600.0)
    cli.add_argument("--persistent", action="store_true")
    cli.add_argument("--tls-ca", type=Path, default=None)
    for p in (udp, srv, cli):
        p.add_argument("--ready-file", type=Path, default=None)
        p.add_argument("--go-file", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "udp":
        run_udp(
            bind=args.bind,
            port=args.port,
            peers=args.peer,
            rate=args.rate,
            log=args.log,
            max_runtime_s=args.max_runtime_s,
            grace_s=args.grace_s,
            ready=args.ready_file,
            go=args.go_file,
        )
    elif args.cmd == "tcp-server":
        tls = (args.tls_cert, args.tls_key) if args.tls_cert is not None else None
        run_tcp_server(
            args.bind, args.port, args.max_runtime_s, args.ready_file, args.idle_timeout_s, tls=tls
        )
    else:
        run_tcp_client(
            bind=args.bind,
            targets=args.target,
            interval_s=args.interval_s,
            timeout_s=args.timeout_s,
            log=args.log,
            max_runtime_s=args.max_runtime_s,
            go=args.go_file,
            persistent=args.persistent,
            tls_ca=args.tls_ca,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
