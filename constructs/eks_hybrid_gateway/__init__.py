"""AWS CDK constructs for the Amazon EKS Hybrid Nodes gateway."""
