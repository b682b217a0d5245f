"""Tools for testing the gateway without a cluster: never shipped in the gateway image."""
