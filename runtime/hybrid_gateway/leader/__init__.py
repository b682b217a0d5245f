"""Leader-only services: the Lease elector, route ownership and the CiliumVTEPConfig."""
