"""The reference CDK app (`cdk.json`): the example stacks, configured from cdk.json context.

`cdk synth` works offline: account, region and availability zones are fixed in the context
(replace them with yours before `cdk deploy <stack>`, see the `//` entry of cdk.json). The
gateway image is built from `runtime/Dockerfile` at deploy time, unless the context value
`eks-hybrid-gateway:image` names a prebuilt image (`cdk synth -c eks-hybrid-gateway:image=URI`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk

from eks_hybrid_gateway import GatewayImage
from examples.auto_mode import AutoModeGatewayStack
from examples.existing_cluster import ExistingClusterGatewayStack
from examples.new_cluster import NewClusterWithGatewayStack
from examples.two_stacks import PlatformClusterStack, PlatformGatewayStack, add_platform

CONFIG_KEY = "eks-hybrid-gateway:reference"
IMAGE_KEY = "eks-hybrid-gateway:image"


@dataclass
class ReferenceStacks:
    """Every stack of the reference app."""

    new: NewClusterWithGatewayStack
    existing: ExistingClusterGatewayStack
    auto_mode: AutoModeGatewayStack
    platform_cluster: PlatformClusterStack
    platform_gateway: PlatformGatewayStack


def build(app: cdk.App) -> ReferenceStacks:
    """Add the reference stacks to `app`."""
    config: dict[str, Any] = app.node.get_context(CONFIG_KEY)
    image_uri = app.node.try_get_context(IMAGE_KEY)
    image = GatewayImage.from_registry(image_uri) if image_uri else GatewayImage.from_asset()
    env = cdk.Environment(account=config["account"], region=config["region"])
    networks = {
        "remote_node_networks": config["remoteNodeNetworks"],
        "remote_pod_networks": config["remotePodNetworks"],
    }
    new = NewClusterWithGatewayStack(
        app, "HybridGatewayNewCluster", env=env, vpc_cidr=config["vpcCidr"], image=image, **networks
    )
    existing_config: dict[str, Any] = config["existingCluster"]
    existing = ExistingClusterGatewayStack(
        app,
        "HybridGatewayExistingCluster",
        env=env,
        cluster_name=existing_config["clusterName"],
        kubectl_role_arn=existing_config["kubectlRoleArn"],
        kubectl_lambda_role_arn=existing_config.get("kubectlLambdaRoleArn"),
        cluster_security_group_id=existing_config["clusterSecurityGroupId"],
        vpc_id=existing_config["vpcId"],
        vpc_cidr=existing_config["vpcCidr"],
        availability_zones=existing_config["availabilityZones"],
        private_subnet_ids=existing_config["privateSubnetIds"],
        private_route_table_ids=existing_config["privateRouteTableIds"],
        public_subnet_ids=existing_config.get("publicSubnetIds", []),
        public_route_table_ids=existing_config.get("publicRouteTableIds", []),
        image=image,
        **networks,
    )
    auto_mode = AutoModeGatewayStack(
        app,
        "HybridGatewayAutoMode",
        env=env,
        vpc_cidr=config["autoMode"]["vpcCidr"],
        service_cidr=config["autoMode"]["serviceCidr"],
        image=image,
        **networks,
    )
    platform_cluster, platform_gateway = add_platform(
        app,
        "HybridGatewayPlatform",
        env=env,
        vpc_cidr=config["platform"]["vpcCidr"],
        image=image,
        **networks,
    )
    return ReferenceStacks(new, existing, auto_mode, platform_cluster, platform_gateway)


if __name__ == "__main__":
    cdk_app = cdk.App()
    build(cdk_app)
    cdk_app.synth()
