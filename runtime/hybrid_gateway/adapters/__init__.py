"""Thin wrappers around netlink, EC2 and Kubernetes that translate errors into domain exceptions."""
