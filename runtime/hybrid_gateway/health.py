"""Health (`/healthz`, `/readyz`) and metrics (`/metrics`) HTTP endpoints.

`/healthz` answers "is the process alive and are its loops turning" (a stuck loop gets the pod
restarted); `/readyz` answers "does this replica do its job right now": the data plane is ready
and, on the leader, the routes and the CiliumVTEPConfig have converged. Both are evaluated on
every request, never latched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, exposition

from hybrid_gateway_contract import HEALTHZ_PATH, METRICS_PATH, READYZ_PATH

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _health_handler(alive: Check, ready: Check) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
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


def _metrics_handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    base: type[BaseHTTPRequestHandler] = exposition.MetricsHandler.factory(registry)

    class Handler(base):  # type: ignore[valid-type, misc]
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
    ) -> None:
        self.health = _Server(health_addr, _health_handler(alive, ready))
        self.metrics = _Server(metrics_addr, _metrics_handler(registry))
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
