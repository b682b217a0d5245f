"""EC2 route tables through boto3: thin, translating AWS errors into domain exceptions.

Endpoints follow boto3's own conventions (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`), so tests,
labs and users' tooling redirect it without code here.

Fencing. Reads use the SDK's adaptive retry mode. Route WRITES do not: in adaptive mode the
`ClientRateLimiter` is a handler on the generic `before-send` event (botocore
`retries/adaptive.py`, `register_retry_handler`) whose `on_sending_request` blocks in
`TokenBucket.acquire()` for as long as the bucket needs after a throttle, and botocore's
`HierarchicalEmitter` calls the handlers of the most specific event name first
(`hooks.py`, `_PrefixTrie.prefix_search`), so a guard on `before-send.ec2.CreateRoute` ran
BEFORE that wait and a write that passed it could leave seconds later, after the lease lapsed.
So writes go through a twin client that makes one attempt per call (standard mode,
`total_max_attempts` 1: no limiter, no SDK retry sleeps), we retry here, and the lease guard is
checked twice per attempt: before the attempt and as the LAST handler of the generic
`before-send` event (`register_last`), which `Endpoint._do_get_response` emits right before
`http_session.send` on every attempt (`endpoint.py`); botocore's urllib3 session sends with
`retries=Retry(False)` (`httpsession.py`), so no attempt can hide below it.

That last check still runs BEFORE the connection is taken from the pool: `URLLib3Session.send`
(`httpsession.py`) calls urllib3's `urlopen`, which opens a new connection if the pool has no
live one (`connectionpool.py`, `_get_conn` and `_make_request` -> `_validate_conn`) and only then
sends the request. So how late a guarded write can reach EC2 is bounded by the write client's
timeouts (`WriteTimeouts`, derived from the lease slack in `timings.py`), and the write client's
pool is kept warm while leading (`keep_warm`) so that a write normally needs no new connection.
urllib3 applies `connect_timeout` to each blocking socket operation of the connect (TCP connect
to each resolved address, each read of the TLS handshake: `util/connection.create_connection`
and `connection.HTTPSConnection.connect`), and `read_timeout` to each read of the answer; a
handshake timeout surfaces as a read timeout (`connectionpool._raise_timeout`).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from hybrid_gateway.core.pacing import TokenBucket
from hybrid_gateway.core.routes import ObservedRoute, RouteKey, TargetKind, classify_target

log = logging.getLogger(__name__)

WRITE_OPERATIONS = ("CreateRoute", "ReplaceRoute", "DeleteRoute")
WRITE_ATTEMPTS = 6
WRITE_BACKOFF_BASE_S = 0.2
WRITE_BACKOFF_MAX_S = 5.0
_TABLE_ID = re.compile(r"rtb-[0-9a-f]+")
#: Attempts whose outcome is unknown: the request may have reached EC2 and been applied, but
#: no answer came back (botocore `exceptions.py`: ReadTimeoutError, raised by urllib3 while
#: waiting for the answer; ConnectionClosedError, the connection closed before it).
_OUTCOME_UNKNOWN = (
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)
#: Why an EC2 call failed, as a metric label (a fixed set: codes and exception names vary).
#: Throttling: botocore `retries/standard.py` ThrottlingErrorDetector's codes; refused: the
#: credential and permission codes of "Error codes for the Amazon EC2 API" (Amazon EC2 API
#: Reference, common client errors) and botocore's `NoCredentialsError`; a timeout or an
#: unreachable endpoint: botocore `exceptions.py`, whose class name is the Ec2Error code.
FAILURE_REASONS = ("throttled", "denied", "timeout", "unreachable", "server_error", "other")
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)
# The codes botocore's standard retry mode treats as throttling or transient
# (`retries/standard.py`, ThrottlingErrorDetector and TransientRetryableChecker).
_RETRYABLE_CODES = _THROTTLING_CODES | {
    "PriorRequestNotComplete",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "Unavailable",
}
_DENIED_CODES = frozenset(
    {
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "Blocked",
        "OptInRequired",
        "PendingVerification",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "SignatureDoesNotMatch",
        "RequestExpired",
        "ExpiredToken",
        "NoCredentialsError",
        "PartialCredentialsError",
    }
)
_TIMEOUT_CODES = frozenset({"ReadTimeoutError", "ConnectTimeoutError"})
_UNREACHABLE_CODES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionError",
        "ConnectionClosedError",
        "ProxyConnectionError",
        "SSLError",
        "HTTPClientError",
    }
)
_SERVER_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"})


class Ec2Error(Exception):
    """An EC2 call failed after retries; `code` is the AWS error code if any."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code


def failure_reason(error: Ec2Error) -> str:
    """One of FAILURE_REASONS for `error`."""
    for reason, codes in (
        ("throttled", _THROTTLING_CODES),
        ("denied", _DENIED_CODES),
        ("timeout", _TIMEOUT_CODES),
        ("unreachable", _UNREACHABLE_CODES),
        ("server_error", _SERVER_CODES),
    ):
        if error.code in codes:
            return reason
    return "other"


class WriteNotAllowedError(Exception):
    """Raised by the write guard: the lease is no longer held, so no write may be sent."""


@dataclass(frozen=True)
class PrimaryInterface:
    """The instance's primary ENI (DeviceIndex 0 on NetworkCardIndex 0)."""

    eni_id: str
    source_dest_check: bool


@dataclass(frozen=True)
class WriteTimeouts:
    """The route-write client's botocore `connect_timeout` and `read_timeout`."""

    connect_s: float
    read_s: float

    @property
    def attempt_s(self) -> float:
        """The longest one write attempt keeps its request open (one connect, one read)."""
        return self.connect_s + self.read_s


#: The default timings' (3/2/1 s: 1 s of slack) write timeouts; see `timings.py`.
DEFAULT_WRITE_TIMEOUTS = WriteTimeouts(connect_s=0.5, read_s=0.5)
#: While leading, the write client's pool is used at least this often (`keep_warm`). EC2 does
#: not document how long it keeps an idle connection open; a few seconds is far inside any
#: keep-alive timeout in common use, and costs one DescribeRouteTables per period.
KEEP_WARM_S = 5.0


def make_client(region: str, *, max_attempts: int = 8, pool_size: int = 64) -> Any:
    """An EC2 client with adaptive retries and a connection pool sized for parallel writes."""
    config = botocore.config.Config(
        region_name=region,
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        max_pool_connections=pool_size,
        connect_timeout=5,
        read_timeout=15,
        user_agent_appid="eks-hybrid-nodes-gateway",  # type: ignore[call-arg]
    )
    return boto3.session.Session().client("ec2", config=config)


def single_attempt_twin(client: Any, timeouts: WriteTimeouts = DEFAULT_WRITE_TIMEOUTS) -> Any:
    """A client like `client` (region, endpoint, pool) that never retries itself and gives
    each attempt at most `timeouts`."""
    config = client.meta.config.merge(
        botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=timeouts.connect_s,
            read_timeout=timeouts.read_s,
        )
    )
    return boto3.session.Session().client(
        "ec2",
        region_name=client.meta.region_name,
        endpoint_url=client.meta.endpoint_url,
        config=config,
    )


def _error(operation: str, exc: Exception) -> Ec2Error:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return Ec2Error(operation, str(err.get("Code", "Unknown")), str(err.get("Message", "")))
    return Ec2Error(operation, type(exc).__name__, str(exc))


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, botocore.exceptions.ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return status >= 500 or code in _RETRYABLE_CODES
    return isinstance(
        exc,
        (
            botocore.exceptions.ConnectionError,
            botocore.exceptions.HTTPClientError,
        ),
    )


def primary_interface(reply: Mapping[str, Any], instance_id: str) -> PrimaryInterface:
    """The ENI at DeviceIndex 0 on NetworkCardIndex 0 in a DescribeInstances reply.

    An instance with several network cards has a DeviceIndex-0 interface on EACH card; the
    primary one is on card 0 (EC2 user guide, "Network cards"). A reply without
    NetworkCardIndex comes from a single-card instance: card 0.
    """
    for reservation in reply.get("Reservations", []):
        for instance in reservation.get("Instances", []):
            for eni in instance.get("NetworkInterfaces", []):
                attachment = eni.get("Attachment", {})
                card = attachment.get("NetworkCardIndex", 0)
                if attachment.get("DeviceIndex") == 0 and card == 0:
                    return PrimaryInterface(
                        str(eni["NetworkInterfaceId"]), bool(eni.get("SourceDestCheck", True))
                    )
    raise Ec2Error(
        "DescribeInstances", "NoPrimaryInterface", f"{instance_id} has no ENI 0 on card 0"
    )


class Ec2Routes:
    """The EC2 calls the leader needs. Writes take the lease guard per call."""

    def __init__(
        self,
        client: Any,
        *,
        write_timeouts: WriteTimeouts = DEFAULT_WRITE_TIMEOUTS,
        sleep: Callable[[float], None] = time.sleep,
        pacing: TokenBucket | None = None,
    ) -> None:
        self._client = client
        self._pacing = pacing  # active-active: every write attempt takes a token first
        self.write_timeouts = write_timeouts
        self._writer = single_attempt_twin(client, write_timeouts)
        self._writer_used = -float("inf")  # time.monotonic() the write client last answered
        self._sleep = sleep
        self._local = threading.local()  # .guard: the guard of the write this thread sends
        self._writer.meta.events.register_last("before-send", self._last_check)

    def _last_check(self, request: Any, event_name: str = "", **_: Any) -> None:
        """The last handler before the bytes go out (see the module docstring)."""
        if event_name.rsplit(".", 1)[-1] not in WRITE_OPERATIONS:
            return
        guard = getattr(self._local, "guard", None)
        if guard is None or not guard():
            raise WriteNotAllowedError("lease not valid: route write withheld")

    def primary_interface(self, instance_id: str) -> PrimaryInterface:
        """One DescribeInstances call; see `primary_interface`."""
        try:
            reply = self._client.describe_instances(InstanceIds=[instance_id])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _error("DescribeInstances", exc) from exc
        return primary_interface(reply, instance_id)

    def describe_routes(
        self, table_ids: Sequence[str], *, through_writer: bool = False
    ) -> dict[str, list[ObservedRoute]]:
        """Every route of every table, in ONE DescribeRouteTables call (pages followed).

        EC2 fails the whole call if one id does not exist; the missing ids named in the error
        are then dropped and the rest described again, so one stale id in ROUTE_TABLE_IDS
        cannot stop the repair of every other table. Missing tables are absent from the result.
        `through_writer`: sent by the write client (one attempt, its short timeouts), which
        keeps that client's connection open as `keep_warm` does.
        """
        wanted = list(table_ids)
        client = self._writer if through_writer else self._client
        for _ in range(len(wanted) + 1):
            try:
                described = self._describe(client, wanted)
                if through_writer:
                    self._writer_used = time.monotonic()
                return described
            except Ec2Error as exc:
                missing = set(_TABLE_ID.findall(str(exc))) & set(wanted)
                if exc.code != "InvalidRouteTableID.NotFound" or not missing:
                    raise
                log.error("route table(s) %s do not exist", ", ".join(sorted(missing)))
                wanted = [t for t in wanted if t not in missing]
                if not wanted:
                    return {}
        raise Ec2Error("DescribeRouteTables", "InvalidRouteTableID.NotFound", "no table found")

    def _describe(self, client: Any, table_ids: Sequence[str]) -> dict[str, list[ObservedRoute]]:
        tables: dict[str, list[ObservedRoute]] = {}
        kwargs: dict[str, Any] = {"RouteTableIds": list(table_ids)}
        try:
            while True:
                reply = client.describe_route_tables(**kwargs)
                for table in reply.get("RouteTables", []):
                    tables[str(table["RouteTableId"])] = [
                        _observed(route)
                        for route in table.get("Routes", [])
                        if route.get("DestinationCidrBlock")
                    ]
                token = reply.get("NextToken")
                if not token:
                    return tables
                kwargs["NextToken"] = token
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _error("DescribeRouteTables", exc) from exc

    def keep_warm(self, table_id: str, every_s: float = KEEP_WARM_S) -> bool:
        """One cheap read through the write client's pool unless it was used within `every_s`,
        so its connection stays open and a route write does not wait for a new one (urllib3's
        pool hands out its most recently returned connection first: a LIFO queue). True if
        a call was made and answered."""
        if time.monotonic() - self._writer_used < every_s:
            return False
        try:
            self._writer.describe_route_tables(RouteTableIds=[table_id])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            log.debug("keeping the route-write connection open failed: %s", exc)
            return False
        self._writer_used = time.monotonic()
        return True

    def write_allowed(self, operation: str, key: RouteKey, eni_id: str) -> bool:
        """Whether IAM lets this replica make this route write, asked with EC2's DryRun: True on
        `DryRunOperation`, False on `UnauthorizedOperation` (the `DryRun` member of
        CreateRouteRequest / ReplaceRouteRequest, botocore `data/ec2/2016-11-15/service-2.json`);
        any other answer raises Ec2Error. Sent by the read client: a dry run writes nothing,
        so it needs no lease guard. EC2 never carries out a DryRun request; an emulator that
        does (moto answers route writes as if DryRun were absent) must not be pointed at one.
        """
        call = (
            self._client.create_route if operation == "CreateRoute" else self._client.replace_route
        )
        try:
            call(
                RouteTableId=key.table_id,
                DestinationCidrBlock=key.destination,
                NetworkInterfaceId=eni_id,
                DryRun=True,
            )
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "DryRunOperation":
                return True
            if code == "UnauthorizedOperation":
                return False
            raise _error(operation, exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise _error(operation, exc) from exc
        raise Ec2Error(operation, "DryRunIgnored", "the endpoint carried out a DryRun request")

    def create_route(self, key: RouteKey, eni_id: str, guard: Callable[[], bool]) -> None:
        self._write("CreateRoute", key, eni_id, guard)

    def replace_route(self, key: RouteKey, eni_id: str, guard: Callable[[], bool]) -> None:
        self._write("ReplaceRoute", key, eni_id, guard)

    def delete_route(self, key: RouteKey, guard: Callable[[], bool]) -> None:
        """Delete a route; one already gone (InvalidRoute.NotFound, as EC2 answers a
        DeleteRoute of a missing destination) is not an error: the outcome is the same."""
        try:
            self._write("DeleteRoute", key, "", guard)
        except Ec2Error as exc:
            if exc.code != "InvalidRoute.NotFound":
                raise

    def _write(self, operation: str, key: RouteKey, eni: str, guard: Callable[[], bool]) -> None:
        """Up to WRITE_ATTEMPTS attempts, each checked against `guard` at the last moment;
        throttling and transient errors back off (full jitter), and the wait ends early when
        the guard turns false.

        After an attempt whose outcome is unknown (`_OUTCOME_UNKNOWN`: EC2 may have applied
        it), the table is described before the next attempt and before giving up: a write
        already applied is not sent again, so it takes no second token of the account's
        bucket for mutating actions (each request takes one: "Request throttling for the
        Amazon EC2 API", Amazon EC2 Developer Guide) and a CreateRoute is not refused as
        `RouteAlreadyExists` by its own first attempt. The describe is a read (the
        non-mutating bucket); every write attempt still passes the guard as before."""
        writer = self._writer
        calls = {
            "CreateRoute": writer.create_route,
            "ReplaceRoute": writer.replace_route,
            "DeleteRoute": writer.delete_route,
        }
        call = calls[operation]
        target = {} if operation == "DeleteRoute" else {"NetworkInterfaceId": eni}
        unknown = False  # an earlier attempt may have been applied
        for attempt in range(WRITE_ATTEMPTS):
            if unknown and self._applied(operation, key, eni):
                return
            if self._pacing is not None:
                self._wait(self._pacing.reserve(), guard)
            if not guard():
                raise WriteNotAllowedError("lease not valid: route write withheld")
            try:
                self._local.guard = guard
                call(RouteTableId=key.table_id, DestinationCidrBlock=key.destination, **target)
                self._writer_used = time.monotonic()
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                unknown = unknown or isinstance(exc, _OUTCOME_UNKNOWN)
                if attempt + 1 >= WRITE_ATTEMPTS or not _retryable(exc):
                    if unknown and self._applied(operation, key, eni):
                        return
                    raise _error(operation, exc) from exc
                cap = min(WRITE_BACKOFF_MAX_S, WRITE_BACKOFF_BASE_S * 2**attempt)
                delay = random.uniform(0, cap)
                log.debug("%s %s: %s; retrying in %.2fs", operation, key.destination, exc, delay)
                self._wait(delay, guard)
            finally:
                self._local.guard = None
        raise AssertionError("unreachable")

    def _applied(self, operation: str, key: RouteKey, eni: str) -> bool:
        """Whether the table already shows what `operation` makes of `key` (the route to our
        ENI; for a delete, no static route), by one describe of that table through the write
        client. False if it cannot be read: the write is then sent again, as without this."""
        try:
            routes = self._describe(self._writer, [key.table_id]).get(key.table_id, [])
        except Ec2Error as exc:
            log.debug("%s %s: could not read the table back: %s", operation, key.destination, exc)
            return False
        self._writer_used = time.monotonic()
        static = [r for r in routes if r.destination == key.destination and not r.propagated]
        if operation == "DeleteRoute":
            applied = not static
        else:
            applied = any(
                r.kind is TargetKind.NETWORK_INTERFACE and r.target_id == eni and not r.blackhole
                for r in static
            )
        if applied:
            log.info(
                "%s %s in %s: an attempt that got no answer was applied; not sent again",
                operation,
                key.destination,
                key.table_id,
            )
        return applied

    def _wait(self, delay_s: float, guard: Callable[[], bool]) -> None:
        deadline = time.monotonic() + delay_s
        while (left := deadline - time.monotonic()) > 0:
            if not guard():
                raise WriteNotAllowedError("lease not valid: route write withheld")
            self._sleep(min(0.05, left))


def _observed(route: Mapping[str, Any]) -> ObservedRoute:
    kind, target = classify_target(
        network_interface_id=route.get("NetworkInterfaceId"),
        instance_id=route.get("InstanceId"),
        gateway_id=route.get("GatewayId"),
        transit_gateway_id=route.get("TransitGatewayId"),
        nat_gateway_id=route.get("NatGatewayId"),
        peering_id=route.get("VpcPeeringConnectionId"),
        egress_only_gateway_id=route.get("EgressOnlyInternetGatewayId"),
    )
    return ObservedRoute(
        destination=str(route["DestinationCidrBlock"]),
        kind=kind,
        target_id=target,
        blackhole=route.get("State") == "blackhole",
        propagated=route.get("Origin") == "EnableVgwRoutePropagation",
    )
