"""The EC2 emulator keeps EC2's ONE source/destination check flag per primary ENI.

EC2: the instance attribute `sourceDestCheck` (ModifyInstanceAttribute) is the primary network
interface's `SourceDestCheck` (ModifyNetworkInterfaceAttribute), read back the same through
DescribeInstances, DescribeInstanceAttribute and DescribeNetworkInterfaces. Plain moto keeps two
copies; `moto_strict` (applied by `ec2emu.moto_ec2`) makes them one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hybrid_gateway_testkit.ec2emu import ec2_client, moto_ec2, seed_world


@pytest.fixture(scope="module")
def ec2() -> Iterator[Any]:
    with moto_ec2() as (host, port):
        yield ec2_client(f"http://{host}:{port}")


def flags(ec2: Any, instance: str, eni: str) -> tuple[bool, bool, bool]:
    """(the ENI in DescribeInstances, the instance attribute, DescribeNetworkInterfaces)."""
    reply = ec2.describe_instances(InstanceIds=[instance])
    nic = next(
        n
        for n in reply["Reservations"][0]["Instances"][0]["NetworkInterfaces"]
        if n["Attachment"]["DeviceIndex"] == 0
    )
    attribute = ec2.describe_instance_attribute(InstanceId=instance, Attribute="sourceDestCheck")
    described = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])
    return (
        bool(nic["SourceDestCheck"]),
        bool(attribute["SourceDestCheck"]["Value"]),
        bool(described["NetworkInterfaces"][0]["SourceDestCheck"]),
    )


def test_the_instance_attribute_and_the_primary_eni_are_one_flag(ec2: Any) -> None:
    world = seed_world(ec2, tables=1, pod_cidrs=["10.80.0.0/16"], instance_names=("a",))
    instance, eni = world.instances["a"], world.enis["a"]
    assert flags(ec2, instance, eni) == (False, False, False)  # seeded off through the ENI
    ec2.modify_instance_attribute(InstanceId=instance, SourceDestCheck={"Value": True})
    assert flags(ec2, instance, eni) == (True, True, True)
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": False})
    assert flags(ec2, instance, eni) == (False, False, False)
