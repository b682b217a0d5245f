"""The server process: bind, announce `READY <url>`, serve until told to stop."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socketserver
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from .control import ADMIN_IDENTITY, Control
from .resources import all_types, load_crds
from .server import Handler
from .store import Store
from .tls import make_certificate, server_context

#: The namespaces a new cluster has (`--namespace` adds more).
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class _TcpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a slow or broken
        # client cannot hold up the accept loop.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            secure = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            with contextlib.suppress(OSError):
                secure.close()

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup of the bind address (slow without a resolver).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kube_test_apiserver",
        description="A Kubernetes API server for tests: real semantics, in memory.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig-dir", type=Path, required=True)
    parser.add_argument(
        "--admin-socket", type=Path, help="also serve the admin API on this Unix socket"
    )
    parser.add_argument(
        "--identity", action="append", default=[], help="write a kubeconfig for this identity"
    )
    parser.add_argument(
        "--crd",
        type=Path,
        action="append",
        default=[],
        help="serve the CustomResourceDefinitions in this file or directory (repeatable)",
    )
    parser.add_argument(
        "--namespace", action="append", default=[], help="also create this namespace at start"
    )
    parser.add_argument("--history-size", type=int, default=1000, help="watch events kept")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--max-watch-seconds", type=float, default=1800.0)
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (parent died)"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a self-signed certificate made at start (kubeconfigs carry it)",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


class Serving:
    """A bound server and its serving threads; `stop()` ends them."""

    def __init__(
        self,
        url: str,
        store: Store,
        control: Control,
        servers: list[socketserver.BaseServer],
        admin_socket: Path | None,
    ) -> None:
        self.url, self.store, self.control = url, store, control
        self._servers, self._admin_socket = servers, admin_socket
        self._threads = [
            threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in servers
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.control.stopping.set()
        self.store.wake_all()
        with self.control.lock:
            self.control.lock.notify_all()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        if self._admin_socket is not None:
            self._admin_socket.unlink(missing_ok=True)


def serve(args: argparse.Namespace) -> Serving:
    """Bind and start serving what `args` (see `parse_args`) describe; `CrdError` or `OSError`
    (the address or socket) before anything is served."""
    if args.history_size < 1:
        raise ValueError(f"--history-size must be >= 1, got {args.history_size}")
    crds = load_crds(args.crd)
    args.kubeconfig_dir.mkdir(parents=True, exist_ok=True)

    store = Store(all_types(crds), history_size=args.history_size)
    for name in dict.fromkeys([*INITIAL_NAMESPACES, *args.namespace]):
        store.create(store.namespace_type, None, {"metadata": {"name": name}})
    control = Control(
        kubeconfig_dir=args.kubeconfig_dir,
        bookmark_interval_s=args.bookmark_interval,
        max_watch_s=args.max_watch_seconds,
    )
    handler = type("BoundHandler", (Handler,), {"store": store, "control": control})
    tcp = _TcpServer((args.host, args.port), handler)
    port = tcp.server_address[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    if args.tls:
        cert_path, key_path, control.ca_pem = make_certificate(args.host, args.kubeconfig_dir)
        tcp.tls = server_context(cert_path, key_path)
    control.url = f"{'https' if args.tls else 'http'}://{host}:{port}"
    control.identity(ADMIN_IDENTITY)
    for identity in args.identity:
        control.identity(identity)

    servers: list[socketserver.BaseServer] = [tcp]
    if args.admin_socket is not None:
        if args.admin_socket.exists():
            args.admin_socket.unlink()
        unix_handler = type("UnixHandler", (handler,), {"disable_nagle_algorithm": False})
        servers.append(_UnixServer(str(args.admin_socket), unix_handler))
        os.chmod(args.admin_socket, 0o600)
    return Serving(control.url, store, control, servers, args.admin_socket)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        serving = serve(args)
    except ValueError as exc:  # CrdError among them
        print(exc, file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            # os.read on the raw descriptor: a daemon thread blocked in a buffered read aborts
            # the interpreter at exit.
            while os.read(0, 4096):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    print(f"READY {serving.url}", flush=True)
    while not stop.wait(0.05):
        pass
    serving.stop()
    return 0
