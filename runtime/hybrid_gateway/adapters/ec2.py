"""EC2 route tables through boto3: thin, translating AWS errors into domain exceptions.

Endpoints follow boto3's own conventions (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`), so tests,
labs and users' tooling redirect it without code here. Retries use the SDK's adaptive mode, which
also rate-limits the client when EC2 throttles. A write guard is checked by a botocore hook
immediately before EVERY HTTP attempt of a route write, retries included: a replica whose lease
is no longer valid cannot send one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from hybrid_gateway.core.routes import ObservedRoute, RouteKey, classify_target

log = logging.getLogger(__name__)

WRITE_OPERATIONS = ("CreateRoute", "ReplaceRoute")
_TABLE_ID = re.compile(r"rtb-[0-9a-f]+")


class Ec2Error(Exception):
    """An EC2 call failed after the SDK's retries; `code` is the AWS error code if any."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code


class WriteNotAllowedError(Exception):
    """Raised by the write guard: the lease is no longer held, so no write may be sent."""


def make_client(region: str, *, max_attempts: int = 8, pool_size: int = 32) -> Any:
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


def _error(operation: str, exc: Exception) -> Ec2Error:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return Ec2Error(operation, str(err.get("Code", "Unknown")), str(err.get("Message", "")))
    return Ec2Error(operation, type(exc).__name__, str(exc))


class Ec2Routes:
    """The four EC2 calls the leader needs."""

    def __init__(self, client: Any, write_guard: Callable[[], bool] | None = None) -> None:
        self._client = client
        self._guard = write_guard
        for operation in WRITE_OPERATIONS:
            client.meta.events.register(f"before-send.ec2.{operation}", self._check_guard)

    def _check_guard(self, request: Any, **_: Any) -> None:
        if self._guard is not None and not self._guard():
            raise WriteNotAllowedError("lease not held: route write suppressed")

    def primary_eni(self, instance_id: str) -> str:
        """The ENI at DeviceIndex 0 of the instance (one DescribeInstances call)."""
        try:
            reply = self._client.describe_instances(InstanceIds=[instance_id])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _error("DescribeInstances", exc) from exc
        for reservation in reply.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                for eni in instance.get("NetworkInterfaces", []):
                    if eni.get("Attachment", {}).get("DeviceIndex") == 0:
                        return str(eni["NetworkInterfaceId"])
        raise Ec2Error("DescribeInstances", "NoPrimaryInterface", f"{instance_id} has no ENI 0")

    def describe_routes(self, table_ids: Sequence[str]) -> dict[str, list[ObservedRoute]]:
        """Every route of every table, in ONE DescribeRouteTables call (pages followed).

        EC2 fails the whole call if one id does not exist; the missing ids named in the error
        are then dropped and the rest described again, so one stale id in ROUTE_TABLE_IDS
        cannot stop the repair of every other table. Missing tables are absent from the result.
        """
        wanted = list(table_ids)
        for _ in range(len(wanted) + 1):
            try:
                return self._describe(wanted)
            except Ec2Error as exc:
                missing = set(_TABLE_ID.findall(str(exc))) & set(wanted)
                if exc.code != "InvalidRouteTableID.NotFound" or not missing:
                    raise
                log.error("route table(s) %s do not exist", ", ".join(sorted(missing)))
                wanted = [t for t in wanted if t not in missing]
                if not wanted:
                    return {}
        raise Ec2Error("DescribeRouteTables", "InvalidRouteTableID.NotFound", "no table found")

    def _describe(self, table_ids: Sequence[str]) -> dict[str, list[ObservedRoute]]:
        tables: dict[str, list[ObservedRoute]] = {}
        kwargs: dict[str, Any] = {"RouteTableIds": list(table_ids)}
        try:
            while True:
                reply = self._client.describe_route_tables(**kwargs)
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

    def create_route(self, key: RouteKey, eni_id: str) -> None:
        self._write("CreateRoute", self._client.create_route, key, eni_id)

    def replace_route(self, key: RouteKey, eni_id: str) -> None:
        self._write("ReplaceRoute", self._client.replace_route, key, eni_id)

    def _write(
        self, operation: str, call: Callable[..., Mapping[str, Any]], key: RouteKey, eni: str
    ) -> None:
        try:
            call(
                RouteTableId=key.table_id,
                DestinationCidrBlock=key.destination,
                NetworkInterfaceId=eni,
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _error(operation, exc) from exc


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
    )
