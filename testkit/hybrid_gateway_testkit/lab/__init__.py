"""The single-machine lab: the whole hybrid gateway in network namespaces, with failover drills.

`python -m hybrid_gateway_testkit.lab --drill NAME` (or `make lab DRILL=NAME`) builds the world,
runs the real `hybrid-gateway run` daemons in it, drives one drill and reports the measured loss.
"""
