"""The lab's AWS side in the EC2 emulator: VPC, subnet, route table, one instance per gateway host.

Only fake credentials are ever used (`FAKE_AWS_ENV`); the endpoint is the emulator inside the lab.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig

from hybrid_gateway_testkit.lab.topology import LabPlan

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

REGION = "us-east-1"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
LAB_AMI = "ami-12c6146b"  # an image id the emulator knows


def ec2_client(endpoint: str, *, attempts: int = 2) -> EC2Client:
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_AWS_ENV["AWS_SESSION_TOKEN"],
        config=BotoConfig(
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=2,
            read_timeout=5,
        ),
    )


@dataclass(frozen=True)
class GatewayInstance:
    host: str
    instance_id: str
    eni_id: str
    private_ip: str


@dataclass(frozen=True)
class Ec2Lab:
    vpc_id: str
    subnet_id: str
    route_table_id: str
    instances: dict[str, GatewayInstance]

    def host_of_eni(self, eni_id: str) -> str | None:
        for inst in self.instances.values():
            if eni_id in (inst.eni_id, inst.instance_id):
                return inst.host
        return None


def create_lab(ec2: EC2Client, plan: LabPlan) -> Ec2Lab:
    """VPC + subnet + route table, and an instance with a primary ENI per gateway host."""
    vpc_id = ec2.create_vpc(CidrBlock=plan.vpc_cidr)["Vpc"]["VpcId"]
    subnet_cidr = str(
        ipaddress.IPv4Network(f"{plan.router_vpc_ip}/{plan.subnet_prefix}", strict=False)
    )
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"]
    rtb = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet_id)
    instances: dict[str, GatewayInstance] = {}
    for gw in plan.gateways:
        inst = ec2.run_instances(
            ImageId=LAB_AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType="c6in.xlarge",
            SubnetId=subnet_id,
            PrivateIpAddress=gw.ip,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": gw.name}]}
            ],
        )["Instances"][0]
        primary = next(n for n in inst["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)
        ec2.modify_network_interface_attribute(
            NetworkInterfaceId=primary["NetworkInterfaceId"], SourceDestCheck={"Value": False}
        )
        instances[gw.name] = GatewayInstance(
            gw.name, inst["InstanceId"], primary["NetworkInterfaceId"], primary["PrivateIpAddress"]
        )
    return Ec2Lab(vpc_id, subnet_id, rtb, instances)


def pod_cidr_targets(ec2: EC2Client, route_table_id: str) -> dict[str, str]:
    """Destination CIDR -> ENI (or instance) id of every non-local route in the table."""
    table = ec2.describe_route_tables(RouteTableIds=[route_table_id])["RouteTables"][0]
    return route_targets(table)


def route_targets(table: Any) -> dict[str, str]:
    """Pure: the ENI/instance targets of a DescribeRouteTables entry, by destination CIDR."""
    out: dict[str, str] = {}
    for route in table.get("Routes", []):
        dest = route.get("DestinationCidrBlock")
        target = route.get("NetworkInterfaceId") or route.get("InstanceId")
        if dest and target:
            out[dest] = target
    return out
