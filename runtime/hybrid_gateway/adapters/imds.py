"""Region and instance id from the EC2 instance metadata service, IMDSv2 only.

IMDSv2: a session token is obtained with a PUT and sent with every GET (IMDSv1 GETs are refused
on hardened nodes). The region comes from the instance identity document, which states it;
trimming the last letter off the availability zone (as the reference does) is wrong for Local
Zones and Wavelength zones such as `us-east-1-bos-1a`.

Never through a proxy: IMDS is link-local (169.254.169.254 answers only on the instance itself),
so a request sent to an HTTP(S)_PROXY from the environment either fails or, worse, is answered
by the metadata service of the PROXY's host: another instance's identity. `urllib.request.urlopen`
follows those variables (CPython `Lib/urllib/request.py`: the default opener's `ProxyHandler`
reads `getproxies()`), so the requests go through an opener with an empty `ProxyHandler`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

TOKEN_TTL_S = 60


#: An opener that ignores HTTP_PROXY/HTTPS_PROXY/ALL_PROXY (an empty mapping means no proxy).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ImdsError(Exception):
    """The metadata service could not tell us who and where we are."""


@dataclass(frozen=True)
class InstanceIdentity:
    region: str
    instance_id: str
    availability_zone: str


def fetch_identity(endpoint: str, *, timeout_s: float = 2.0, attempts: int = 3) -> InstanceIdentity:
    """Read the identity document over IMDSv2 at `endpoint` (the daemon's configuration
    says which); raise ImdsError with the reason."""
    base = endpoint.rstrip("/")
    last: Exception | None = None
    for _ in range(attempts):
        try:
            token_request = urllib.request.Request(
                f"{base}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
            )
            with _DIRECT.open(token_request, timeout=timeout_s) as reply:
                token = reply.read().decode()
            doc_request = urllib.request.Request(
                f"{base}/latest/dynamic/instance-identity/document",
                headers={"X-aws-ec2-metadata-token": token},
            )
            with _DIRECT.open(doc_request, timeout=timeout_s) as reply:
                document = json.loads(reply.read().decode())
            return InstanceIdentity(
                region=str(document["region"]),
                instance_id=str(document["instanceId"]),
                availability_zone=str(document.get("availabilityZone", "")),
            )
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            last = exc
    raise ImdsError(f"instance metadata at {base} unavailable: {last}")
