"""The EC2 emulator's recording proxy: what tests count is what the daemon sent."""

from __future__ import annotations

import http.client
import threading
import time

from hybrid_gateway_testkit.daemon import check_on_in
from hybrid_gateway_testkit.ec2emu import Ec2Proxy, ec2_client, moto_ec2, seed_world

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


def test_kept_describe_instances_answers_say_what_the_client_read_of_the_eni_check() -> None:
    """A test judges "after the replica read the check as ON" from the answer it got (a read
    in flight during the change may be answered from either side of it): the proxy keeps the
    answers of the actions it is asked to, and `check_on_in` reads the primary ENI's flag
    from them as the client's parse does."""
    with moto_ec2() as (host, port):
        direct = ec2_client(f"http://{host}:{port}")
        world = seed_world(direct, tables=1, pod_cidrs=["10.80.0.0/16"], instance_names=("a",))
        proxy = Ec2Proxy((host, port), keep_replies=frozenset({"DescribeInstances"})).start()
        try:
            client = ec2_client(proxy.url)
            read = []
            for on in (False, True, False):
                direct.modify_instance_attribute(
                    InstanceId=world.instances["a"], SourceDestCheck={"Value": on}
                )
                reply = client.describe_instances(InstanceIds=[world.instances["a"]])
                nic = reply["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]
                read.append(bool(nic["SourceDestCheck"]))
                client.describe_route_tables(RouteTableIds=world.table_ids)
            calls = proxy.snapshot()
            kept = [check_on_in(c.reply) for c in calls if c.action == "DescribeInstances"]
            assert kept == read == [False, True, False]
            assert all(c.reply == b"" for c in calls if c.action == "DescribeRouteTables")
        finally:
            proxy.stop()
