"""cdk-nag AwsSolutions acknowledgements for what aws-cdk-lib's EKS constructs create.

The gateway construct acknowledges its own findings itself. These cover the cluster and the
kubectl provider that the examples get from aws-cdk-lib, each with the reason it is accepted.
"""

from __future__ import annotations

from eks_hybrid_gateway.nag import managed_policy_rule

KUBECTL_PROVIDER_FINDINGS: dict[str, str] = {
    managed_policy_rule("service-role/AWSLambdaBasicExecutionRole"): (
        "aws-cdk-lib's kubectl provider functions write their logs with the AWS basic "
        "execution policy"
    ),
    managed_policy_rule("service-role/AWSLambdaVPCAccessExecutionRole"): (
        "aws-cdk-lib's kubectl handler can run in the cluster VPC and needs the AWS ENI policy"
    ),
    managed_policy_rule("AmazonEC2ContainerRegistryReadOnly"): (
        "aws-cdk-lib's kubectl handler pulls Helm charts from ECR, and the cluster's own nodes "
        "(Auto Mode's built-in node pools, the system node group) pull images with it"
    ),
    managed_policy_rule("AmazonEC2ContainerRegistryPullOnly"): (
        "aws-cdk-lib's kubectl handler for an imported cluster pulls Helm charts from ECR; "
        "the AWS policy grants pull only"
    ),
    "L1": (
        "the kubectl handler's runtime is pinned by aws-cdk-lib to the version its kubectl "
        "layer is built for"
    ),
}

CLUSTER_FINDINGS: dict[str, str] = {
    managed_policy_rule("AmazonEKSClusterPolicy"): (
        "the EKS cluster role needs the control plane policy AWS maintains alongside EKS"
    ),
}

AUTO_MODE_CLUSTER_FINDINGS: dict[str, str] = {
    **{
        managed_policy_rule(name): (
            "the EKS cluster role of an Auto Mode cluster needs the policies AWS maintains "
            "for its compute, storage, load balancing and networking"
        )
        for name in (
            "AmazonEKSComputePolicy",
            "AmazonEKSBlockStoragePolicy",
            "AmazonEKSLoadBalancingPolicy",
            "AmazonEKSNetworkingPolicy",
        )
    },
    managed_policy_rule("AmazonEKSWorkerNodePolicy"): (
        "Auto Mode's built-in node pools need the node policy AWS maintains"
    ),
}

NODEGROUP_CLUSTER_FINDINGS: dict[str, str] = {
    managed_policy_rule("AmazonEKSWorkerNodePolicy"): (
        "the system node group's kubelet needs the node policy AWS maintains alongside EKS"
    ),
    managed_policy_rule("AmazonEKS_CNI_Policy"): (
        "aws-node (VPC CNI) on the system nodes assigns pod addresses from the node's ENIs"
    ),
}


def kubectl_provider_wiring_findings(handler_id: str, condition_id: str) -> dict[str, str]:
    """Findings naming the logical IDs of the kubectl handler and its ECR Public condition."""
    public_ecr = (
        f'IAM4[Policy::{{"Fn::If":["{condition_id}",{{"Fn::Join":["",["arn:",'
        '{"Ref":"AWS::Partition"},'
        '":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly"]]},'
        '{"Ref":"AWS::NoValue"}]}]'
    )
    return {
        public_ecr: (
            "aws-cdk-lib's kubectl handler pulls public Helm charts where ECR Public exists"
        ),
        f"IAM5[Resource::<{handler_id}.Arn>:*]": (
            "the provider framework invokes any version of its own kubectl handler function"
        ),
    }
