"""The keys that prove a desired state, joined from the keys of its parts (adapters/netlink/
proof.py `joined_keys`): the first pass after a paged list uses them instead of computing the
keys of the whole state. They must be exactly the whole state's keys, or none."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_gateway.adapters.netlink.proof import expected_keys, joined_keys
from hybrid_gateway.core.dataplane import NodeTunnel, desired_state, merge_states

IPS = [ipaddress.IPv4Address(f"172.16.0.{i}") for i in range(1, 5)]
CIDRS = [ipaddress.IPv4Network(f"10.200.{i}.0/24") for i in range(6)]

tunnels = st.lists(
    st.builds(
        lambda name, ip, cidrs: NodeTunnel(name, ip, tuple(cidrs)),
        st.from_regex(r"n-[a-f]{1,3}", fullmatch=True),
        st.sampled_from(IPS),
        st.lists(st.sampled_from(CIDRS), min_size=1, max_size=2, unique=True),
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(tunnels, st.integers(min_value=1, max_value=4), st.booleans())
def test_joined_keys_are_the_whole_states_keys_or_none(
    nodes: list[NodeTunnel], size: int, nexthop_objects: bool
) -> None:
    """Nodes here may share IPs and pod CIDRs across parts, so later parts replace earlier
    entries (a route's gateway, a neighbour's or nexthop's owner): then the union may have keys
    the whole state lacks, and none is given rather than wrong ones."""
    parts = [
        desired_state(nodes[i : i + size], nexthop_objects=nexthop_objects)
        for i in range(0, len(nodes), size)
    ]
    whole = desired_state(nodes, nexthop_objects=nexthop_objects)
    assert merge_states(parts) == whole
    joined = joined_keys([expected_keys(part) for part in parts], whole)
    if joined is not None:
        assert joined == expected_keys(whole)
    cidrs = [c for t in nodes for c in t.pod_cidrs]
    replaced = len(cidrs) != len(set(cidrs)) or len(nodes) != len({t.node_ip for t in nodes})
    if not replaced:
        assert joined is not None, "no entry replaced: the keys join"


def test_a_replaced_route_gives_no_keys() -> None:
    """The same pod CIDR in two parts (the full pass's node filter rejects that, but the join
    must not depend on it): the union holds a key for the first gateway, which the whole state
    lacks."""
    first = NodeTunnel("n-a", IPS[0], (CIDRS[0],))
    second = NodeTunnel("n-b", IPS[1], (CIDRS[0],))
    parts = [desired_state([first]), desired_state([second])]
    whole = desired_state([first, second])
    assert joined_keys([expected_keys(part) for part in parts], whole) is None


def test_a_part_without_keys_gives_none() -> None:
    part = desired_state([NodeTunnel("n-a", IPS[0], (CIDRS[0],))])
    assert joined_keys([expected_keys(part), None], part) is None
