"""Health (`/healthz`, `/readyz`) and metrics (`/metrics`) HTTP endpoints.

`/healthz` answers "is the process alive and are its loops turning" (a stuck loop gets the pod
restarted); `/readyz` answers "does this replica do its job right now": the data plane is ready
and, on the leader, the routes and the CiliumVTEPConfig have converged. Both are evaluated on
every request, never latched. A failing check answers 503 with the reason as the body, as the
reference gateway's own health server does (its internal/health/server_test.go vectors, ported in
tests/runtime/test_reference_vectors.py).

Neither listener may keep the daemon from starting or a thread forever: binding does no DNS
lookup, and a connection that sends nothing is closed after `idle_timeout_s`.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, exposition

from hybrid_gateway_contract import HEALTHZ_PATH, METRICS_PATH, READYZ_PATH

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]

#: A client that opens a connection and sends nothing is dropped after this many seconds.
IDLE_TIMEOUT_S = 10.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        """Bind without looking the address up in DNS.

        CPython's `HTTPServer.server_bind` (Lib/http/server.py) sets
        `self.server_name = socket.getfqdn(host)`; for "" that is a lookup of the host name,
        which waits out the resolver's timeouts (10 s with glibc defaults) when DNS is
        unreachable, before the daemon could serve its probes. `server_name` is only read by
        CGI handlers, so the bound address is good enough.
        """
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


def _health_handler(
    alive: Check, ready: Check, idle_timeout_s: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = idle_timeout_s  # socketserver.StreamRequestHandler applies it to the socket

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == HEALTHZ_PATH:
                ok, text = alive()
            elif path == READYZ_PATH:
                ok, text = ready()
            else:
                self.send_error(404)
                return
            body = (text + "\n").encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health: " + format, *args)

    return Handler


def _metrics_handler(
    registry: CollectorRegistry, idle_timeout_s: float
) -> type[BaseHTTPRequestHandler]:
    base: type[BaseHTTPRequestHandler] = exposition.MetricsHandler.factory(registry)

    class Handler(base):  # type: ignore[valid-type, misc]
        timeout = idle_timeout_s

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path.split("?", 1)[0] != METRICS_PATH:
                self.send_error(404)
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class HttpEndpoints:
    """Both listeners, each served from its own thread."""

    def __init__(
        self,
        *,
        health_addr: tuple[str, int],
        metrics_addr: tuple[str, int],
        alive: Check,
        ready: Check,
        registry: CollectorRegistry,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.health = _Server(health_addr, _health_handler(alive, ready, idle_timeout_s))
        self.metrics = _Server(metrics_addr, _metrics_handler(registry, idle_timeout_s))
        self._threads = [
            threading.Thread(target=s.serve_forever, name=name, daemon=True)
            for s, name in ((self.health, "health-http"), (self.metrics, "metrics-http"))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for server in (self.health, self.metrics):
            server.shutdown()
            server.server_close()
