"""The Lambda code of the route-cleanup custom resource (shipped as package data)."""
