"""The daemon's periods and limits come from one value object, and their relations hold for any
valid configuration: a loop is declared stuck only after its longest legitimate wait."""

from __future__ import annotations

import pytest

from hybrid_gateway.config import load_config
from hybrid_gateway.timings import HOLDER_LOSS_LEASES, Timings

BASE = {"NODE_IP": "10.0.1.10", "VPC_CIDR": "10.0.0.0/16", "POD_CIDRS": "10.80.0.0/16"}


@pytest.mark.parametrize(
    "env",
    [
        {},  # the reference's 3 / 2 / 1 s, resync 30 s
        {"LEASE_DURATION": "1", "RENEW_DEADLINE": "0.6", "RETRY_PERIOD": "0.15"},
        {"LEASE_DURATION": "60", "RENEW_DEADLINE": "40", "RETRY_PERIOD": "10"},
        {"RESYNC_PERIOD": "0.3"},
        {"RESYNC_PERIOD": "10m"},
    ],
)
def test_every_loop_gets_longer_than_its_longest_wait(env: dict[str, str]) -> None:
    config = load_config({**BASE, **env})
    t = Timings.from_config(config)
    # the elector: a retry period between rounds of a read and a write, each one API timeout
    assert t.stale_elector_s > t.retry_period_s + 2 * t.api_timeout_s
    # leader work: a lane sleeps up to a resync period between passes
    assert t.stale_leader_work_s > t.resync_period_s
    # a watch: a window plus its request timeout, then the longest back-off
    assert t.stale_watch_s > t.watch_window_s + t.api_timeout_s + t.watch_max_backoff_s
    # no replica turns unready before a dead holder's lease could even have run out
    assert t.holder_loss_s == HOLDER_LOSS_LEASES * t.lease_duration_s > t.lease_duration_s
    # route start-up: one attempt, then its back-off
    assert t.stale_route_start_s > t.start_retry_max_s
    # watch windows and start-up retries never spin
    assert t.watch_window_s >= 1.0 and t.start_retry_max_s >= 1.0


def test_defaults() -> None:
    t = Timings.from_config(load_config(BASE))
    assert (t.api_timeout_s, t.watch_window_s, t.watch_max_backoff_s) == (2.0, 30.0, 1.0)
    assert (t.stale_elector_s, t.stale_leader_work_s, t.holder_loss_s) == (20.0, 150.0, 15.0)


@pytest.mark.parametrize(
    ("env", "connect_s", "read_s"),
    [
        ({}, 0.5, 0.5),  # 1 s of slack: half each
        ({"LEASE_DURATION": "1", "RENEW_DEADLINE": "0.6", "RETRY_PERIOD": "0.15"}, 0.25, 0.25),
        ({"LEASE_DURATION": "60", "RENEW_DEADLINE": "40", "RETRY_PERIOD": "10"}, 5.0, 10.0),
    ],
)
def test_a_route_write_attempt_fits_in_the_lease_slack(
    env: dict[str, str], connect_s: float, read_s: float
) -> None:
    """A write whose last check passed at the end of validity must have reached EC2 or been
    abandoned before another replica may acquire (floored for tiny slacks, capped for big)."""
    t = Timings.from_config(load_config({**BASE, **env}))
    assert (t.ec2_write_connect_timeout_s, t.ec2_write_read_timeout_s) == (connect_s, read_s)
    assert t.late_write_window_s == connect_s + read_s
    if t.lease_slack_s >= 0.5:
        assert t.late_write_window_s <= t.lease_slack_s
