"""The EC2 emulator's recording proxy: what tests count is what the daemon sent."""

from __future__ import annotations

import http.client
import threading
import time

from hybrid_gateway_testkit.ec2emu import Ec2Proxy

OK_BODY = b'<?xml version="1.0" encoding="UTF-8"?><Response><RequestID>1</RequestID></Response>'
#: Never contacted: every call in these tests is answered by the proxy itself.
NO_UPSTREAM = ("127.0.0.1", 9)


class SlowHandlerLock:
    """The proxy's lock, slow to take from its handler threads, as on a loaded machine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._test_thread = threading.get_ident()

    def __enter__(self) -> None:
        if threading.get_ident() != self._test_thread:
            time.sleep(0.3)
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def post(proxy: Ec2Proxy, body: str) -> int:
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(
            "POST", "/", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def test_a_call_is_recorded_before_its_reply_reaches_the_client() -> None:
    """A test that resets the proxy right after a call returned must not see that call later."""
    proxy = Ec2Proxy(NO_UPSTREAM, fault=lambda action, seq: (200, OK_BODY)).start()
    proxy._lock = SlowHandlerLock()  # type: ignore[assignment]
    try:
        assert post(proxy, "Action=DescribeRouteTables&Version=2016-11-15") == 200
        assert proxy.count("DescribeRouteTables") == 1
        proxy.reset()
        assert post(proxy, "Action=ReplaceRoute&Version=2016-11-15") == 200
        assert [c.action for c in proxy.snapshot()] == ["ReplaceRoute"]
    finally:
        proxy.stop()
