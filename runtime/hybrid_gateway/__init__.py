"""The EKS Hybrid Nodes gateway daemon.

Layers: `core` is pure (no netlink, AWS or Kubernetes imports); `adapters` are thin, idempotent
wrappers around pyroute2, boto3 and the kubernetes client; the services wire them together.
"""
