"""Every period, timeout and staleness limit of the daemon, derived once from the config.

One value object instead of numbers computed where they are used: the relations between them
(a watch window bounded by its request timeout, a loop declared stuck only after its longest
legitimate wait) are visible, and tests can build the same figures the daemon uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybrid_gateway.adapters.kube_settings import WatchingSettings
from hybrid_gateway.config import Config

#: A pass of any loop (a reconcile of thousands of nodes, an EC2 sync under throttling) that takes
#: longer than this is stuck: liveness fails and the pod is restarted.
STUCK_PASS_S = 120.0
#: "Several lease durations": a replica that has seen no live Lease holder (neither itself nor
#: another renewing) for this many lease durations cannot take part in the election: not ready.
HOLDER_LOSS_LEASES = 5
#: Longest wait for leader work and the elector to stop on SIGTERM before giving up on release.
SHUTDOWN_JOIN_S = 10.0
#: Longest wait for the other loops (watches, data plane, Events) to stop.
SHUTDOWN_REST_S = 3.0
#: Bounds of the route-write client's timeouts: the floor keeps a write possible on a very small
#: slack, the caps are the SDK-style values a large slack would otherwise exceed.
EC2_WRITE_TIMEOUT_FLOOR_S = 0.25
EC2_WRITE_CONNECT_CAP_S = 5.0
EC2_WRITE_READ_CAP_S = 15.0
#: Longest period between two reads of the primary ENI's source/destination check: a check
#: turned back on is noticed within this, and every packet the ENI forwards meanwhile is lost.
#: One DescribeInstances per replica per period: 0.5/s, against a per-API bucket that refills
#: at 20 tokens/s for non-mutating actions (EC2 developer guide, "Request throttling for the
#: Amazon EC2 API"), so two or three replicas use a few percent of it.
ENI_CHECK_MAX_S = 2.0
#: An active-active replica that cannot forward gives up its membership at once and its shards
#: after this many lease durations (a data plane that recovers within it keeps them).
INELIGIBLE_SHARDS_AFTER_LEASES = 2.0
#: A leader that cannot own routes and took the lease as the last replica able to take it
#: releases it again this often, so a replica that can own routes and started since takes over.
YIELD_RETRY_LEASES = 10.0


@dataclass(frozen=True)
class Timings:
    lease_duration_s: float
    renew_deadline_s: float
    retry_period_s: float
    resync_period_s: float
    kube: WatchingSettings  # every Kubernetes request's timeouts and the watches' back-off
    start_retry_max_s: float  # longest pause between IMDS / EC2 preparation attempts
    stale_elector_s: float
    stale_leader_work_s: float
    stale_dataplane_s: float
    stale_route_start_s: float
    stale_watch_s: float
    stale_events_s: float
    holder_loss_s: float
    eni_check_s: float  # period of the primary ENI's source/destination check re-read
    head_start_s: float  # how long a replica that cannot own routes leaves a free lease to others
    yield_retry_s: float
    ineligible_shards_after_s: float
    shutdown_join_s: float = SHUTDOWN_JOIN_S
    shutdown_rest_s: float = SHUTDOWN_REST_S

    @property
    def api_timeout_s(self) -> float:
        """One Lease or CiliumVTEPConfig request."""
        return self.kube.request_timeout_s

    @property
    def watch_window_s(self) -> float:
        """One watch request's window (server side)."""
        return float(self.kube.server_timeout_s)

    @property
    def watch_max_backoff_s(self) -> float:
        """The longest pause between failed watch attempts."""
        return self.kube.backoff_max_s

    @property
    def lease_slack_s(self) -> float:
        """How long after a holder's writes must stop (its validity ends) another replica may
        take the Lease at the earliest: lease duration minus renew deadline."""
        return self.lease_duration_s - self.renew_deadline_s

    @property
    def ec2_write_connect_timeout_s(self) -> float:
        """Half the slack each for connecting and for the answer: a route write whose last
        guard passed in the last instant of validity has reached EC2 or been abandoned before
        another replica may take the Lease (docs/daemon.md, "What EC2 fencing guarantees")."""
        return min(EC2_WRITE_CONNECT_CAP_S, max(EC2_WRITE_TIMEOUT_FLOOR_S, self.lease_slack_s / 2))

    @property
    def ec2_write_read_timeout_s(self) -> float:
        return min(EC2_WRITE_READ_CAP_S, max(EC2_WRITE_TIMEOUT_FLOOR_S, self.lease_slack_s / 2))

    @property
    def late_write_window_s(self) -> float:
        """After acquiring, how long a write of the previous holder may still reach EC2: its
        validity ended before our acquisition, and one write attempt keeps its request open at
        most one connect plus one read timeout. Routes are re-checked until then."""
        return self.ec2_write_connect_timeout_s + self.ec2_write_read_timeout_s

    @classmethod
    def from_config(cls, config: Config) -> Timings:
        api_timeout = max(0.5, config.renew_deadline_s)
        window = max(5.0, min(60.0, config.resync_period_s))
        max_backoff = max(1.0, config.retry_period_s)
        start_retry_max = min(30.0, max(1.0, config.resync_period_s))
        return cls(
            lease_duration_s=config.lease_duration_s,
            renew_deadline_s=config.renew_deadline_s,
            retry_period_s=config.retry_period_s,
            resync_period_s=config.resync_period_s,
            kube=WatchingSettings.derived(
                window_s=window, request_timeout_s=api_timeout, max_backoff_s=max_backoff
            ),
            start_retry_max_s=start_retry_max,
            # the elector waits one retry period between rounds of at most a few timeouts
            stale_elector_s=10 * config.retry_period_s + 10.0,
            # a lane sleeps up to a resync period between passes
            stale_leader_work_s=config.resync_period_s + STUCK_PASS_S,
            # the data plane beats while it waits, so only a pass counts
            stale_dataplane_s=STUCK_PASS_S,
            # one IMDS / EC2 attempt, then a back-off wait
            stale_route_start_s=STUCK_PASS_S + start_retry_max,
            # a watch beats per event and per window; a window ends by its request timeout
            stale_watch_s=2 * (window + api_timeout) + max_backoff + 10.0,
            stale_events_s=STUCK_PASS_S,
            holder_loss_s=HOLDER_LOSS_LEASES * config.lease_duration_s,
            eni_check_s=max(0.2, min(ENI_CHECK_MAX_S, config.resync_period_s)),
            # a replica that can own routes is woken by the release or expiry and acquires
            # within a round: one lease duration is many rounds
            head_start_s=config.lease_duration_s,
            yield_retry_s=YIELD_RETRY_LEASES * config.lease_duration_s,
            ineligible_shards_after_s=INELIGIBLE_SHARDS_AFTER_LEASES * config.lease_duration_s,
        )
