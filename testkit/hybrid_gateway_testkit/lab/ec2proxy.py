"""A fault-injecting HTTP proxy in front of the EC2 emulator, for the `ec2-throttle` drill.

While the control file exists and holds a fraction f (0..1), that fraction of the requests is
answered `503 RequestLimitExceeded` the way EC2 throttles; the rest are forwarded unchanged.
Deterministic: every k-th request fails, k = round(1/f). Counts go to the events log.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from hybrid_gateway_testkit.lab.events import EventLog

THROTTLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>lab-throttle</RequestID></Response>"
)


def throttle_every(control: Path) -> int:
    """Pure-ish: 0 when not throttling, else fail every k-th request."""
    try:
        fraction = float(control.read_text().strip() or "0")
    except (OSError, ValueError):
        return 0
    if fraction <= 0:
        return 0
    return max(1, round(1 / min(fraction, 1.0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT")
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--max-runtime-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    upstream = urlsplit(args.upstream)
    events = EventLog(args.events)
    lock = threading.Lock()
    counter = {"requests": 0, "throttled": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            every = throttle_every(args.control)
            with lock:
                counter["requests"] += 1
                fail = every > 0 and counter["requests"] % every == 0
                if fail:
                    counter["throttled"] += 1
            if fail:
                events.write("ec2-throttled", total=counter["throttled"])
                self.send_response(503)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(THROTTLE_BODY)))
                self.end_headers()
                self.wfile.write(THROTTLE_BODY)
                return
            conn = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=10)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        def do_GET(self) -> None:
            self.do_POST()

    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    stop.wait(args.max_runtime_s)
    server.shutdown()
    events.write("ec2-proxy-stop", **counter)
    events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
