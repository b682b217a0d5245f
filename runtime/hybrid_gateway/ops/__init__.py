"""`hybrid-gateway preflight`, `status` and `cleanup`: operations against a live account and
cluster.

A pure core (`facts`, `checks`, `report`, `cleanup_plan`) judges facts that thin gatherers
(`gather`: boto3 for EC2/EKS, the official Kubernetes client) collect, so every check is tested
on plain data and the gatherers against the EC2 emulator and the test API server.
"""
