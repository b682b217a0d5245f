"""A fault-injecting HTTP proxy in front of the EC2 emulator, for the `ec2-throttle` drill.

While the control file exists and holds a fraction f (0..1), that fraction of the requests is
answered `503 RequestLimitExceeded` the way EC2 throttles; the rest are forwarded unchanged.
Deterministic: every k-th request fails, k = round(1/f). Counts go to the events log.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from urllib.parse import urlsplit

from hybrid_gateway_testkit.ec2emu import THROTTLE_BODY, Ec2Proxy
from hybrid_gateway_testkit.lab.events import EventLog


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

    def fault(action: str, seq: int) -> tuple[int, bytes] | None:
        every = throttle_every(args.control)
        with lock:
            counter["requests"] += 1
            fail = every > 0 and counter["requests"] % every == 0
            if fail:
                counter["throttled"] += 1
        if not fail:
            return None
        events.write("ec2-throttled", total=counter["throttled"])
        return 503, THROTTLE_BODY

    host, _, port = args.listen.rpartition(":")
    proxy = Ec2Proxy(
        (upstream.hostname or "", upstream.port or 80),
        label="lab",
        fault=fault,
        listen=(host, int(port)),
        upstream_timeout_s=10.0,
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait(args.max_runtime_s)
    proxy.stop()
    events.write("ec2-proxy-stop", **counter)
    events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
