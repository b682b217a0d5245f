"""Region and instance id from IMDSv2, against a small metadata server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hybrid_gateway.adapters.imds import ImdsError, fetch_identity
from hybrid_gateway.config import load_config
from hybrid_gateway.leader.deferred_routes import resolve_identity

TOKEN = "token-123"
DOCUMENT = {
    "region": "us-east-1",
    "instanceId": "i-0123456789abcdef0",
    "availabilityZone": "us-east-1-bos-1a",  # a Local Zone: trimming the AZ gives no region
}


class FakeImds:
    """IMDSv2 only: GETs without a token from a PUT are refused with 401, as on hardened nodes."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                ok = self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                )
                self._reply(200 if ok else 400, TOKEN.encode() if ok else b"")

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._reply(401, b"")
                elif self.path == "/latest/dynamic/instance-identity/document":
                    self._reply(200, json.dumps(DOCUMENT).encode())
                else:
                    self._reply(404, b"")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_identity_comes_from_the_document_over_imdsv2(imds: FakeImds) -> None:
    identity = fetch_identity(imds.url)
    assert (identity.region, identity.instance_id) == ("us-east-1", "i-0123456789abcdef0")
    assert imds.requests[0] == ("PUT", "/latest/api/token")
    assert imds.requests[1] == ("GET", "/latest/dynamic/instance-identity/document")


def test_proxy_variables_are_ignored(imds: FakeImds, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMDS is link-local: a proxy (here a dead one on loopback) must never be used for it."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    dead_proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, dead_proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        # urlopen's default opener reads the environment once, when first used: as in a fresh
        # daemon process, the one it builds now sees these variables
        monkeypatch.setattr(urllib.request, "_opener", None)
        identity = fetch_identity(imds.url, timeout_s=2.0, attempts=1)
    finally:
        dead.close()
    assert identity.instance_id == "i-0123456789abcdef0"
    assert [method for method, _ in imds.requests] == ["PUT", "GET"]


def test_metadata_disabled_is_a_clear_error(imds: FakeImds) -> None:
    """AWS_EC2_METADATA_DISABLED as botocore reads it (botocore/utils.py): IMDS is not asked."""
    cfg = load_config(
        {
            **BASE,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
            "AWS_EC2_METADATA_DISABLED": "True",
        }
    )
    with pytest.raises(ImdsError, match="AWS_REGION and AWS_INSTANCE_ID"):
        resolve_identity(cfg)
    assert imds.requests == []


def test_unreachable_metadata_is_a_clear_error(imds: FakeImds) -> None:
    url = imds.url
    imds.server.shutdown()
    imds.server.server_close()
    with pytest.raises(ImdsError, match="unavailable"):
        fetch_identity(url, timeout_s=0.5, attempts=1)


BASE = {"NODE_IP": "10.0.1.10", "VPC_CIDR": "10.0.0.0/16", "POD_CIDRS": "10.80.0.0/16"}


def test_given_region_and_instance_skip_imds(imds: FakeImds) -> None:
    cfg = load_config(
        {
            **BASE,
            "AWS_REGION": "eu-west-3",
            "AWS_INSTANCE_ID": "i-0fedcba9876543210",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        }
    )
    assert resolve_identity(cfg) == ("eu-west-3", "i-0fedcba9876543210")
    assert imds.requests == []


def test_partial_config_is_completed_from_imds(imds: FakeImds) -> None:
    cfg = load_config(
        {**BASE, "AWS_REGION": "eu-west-3", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url + "/"}
    )
    assert cfg.imds.endpoint == imds.url  # read once, at start-up, like every other setting
    assert resolve_identity(cfg) == ("eu-west-3", "i-0123456789abcdef0")
