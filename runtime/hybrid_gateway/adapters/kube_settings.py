"""How long the daemon's Kubernetes calls may take, and how its watches reconnect: one value.

Modelled on kopf's settings (kopf/_cogs/configs/configuration.py): its `WatchingSettings`
holds a watch's `server_timeout`, `client_timeout`, `connect_timeout` and `reconnect_backoff`,
its `NetworkingSettings.request_timeout` the timeout of every short call. Here they are one
frozen value, derived from the daemon's configuration in one place (`timings.Timings
.from_config`), and every list-watch and single request of the kube adapters takes it, so the
relations between the numbers hold by construction:

- `server_timeout_s` is the `timeoutSeconds` of one watch request: the API server ends the
  window cleanly after it (k8s.io/apiserver pkg/endpoints/handlers/get.go). client-go's
  reflector asks for 5 to 10 minutes (tools/cache/reflector.go `minWatchTimeout`); ours is
  bounded by the resync period, because a watch that has not ended a window in time is
  declared stuck (`Timings.stale_watch_s`) and that must come sooner.
- `connect_timeout_s` and `client_timeout_s` are the watch's client-side (connect, read)
  timeouts, which the kubernetes client turns into `urllib3.Timeout(connect=, read=)`
  (kubernetes/client/rest.py `_request_timeout` as a pair): connecting gets one request
  timeout; a read may wait for the whole window plus one request timeout (a quiet watch sends
  nothing until the server ends it), so a hung server ends the watch after one bound.
- `request_timeout_s` bounds one single call (a get, a write, a list page): the daemon
  derives it from the renew deadline, as client-go's leader election bounds a renewal by
  `RenewDeadline` (tools/leaderelection/leaderelection.go `renew`).
- `backoff_initial_s` .. `backoff_max_s`: the pause after a failed list or watch, doubled up
  to the maximum (`core.backoff.Backoff`); client-go's reflector backs off 800 ms to 30 s
  (reflector.go `NewExponentialBackoffManager(800*time.Millisecond, 30*time.Second, ...)`).

The class defaults are the values a watch built without the daemon's configuration gets (the
data plane's CiliumNode cache): a 30 s window and request timeout, backing off 0.5 s to 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hybrid_gateway.core.backoff import Backoff

#: The back-off's first pause when the daemon derives it (never above its maximum).
DERIVED_BACKOFF_INITIAL_S = 0.2


@dataclass(frozen=True)
class WatchingSettings:
    server_timeout_s: int = 30
    connect_timeout_s: float = 30.0
    client_timeout_s: float = 60.0
    request_timeout_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.server_timeout_s < 1:
            raise ValueError(f"server_timeout_s must be >= 1, got {self.server_timeout_s}")
        if self.client_timeout_s <= self.server_timeout_s:
            raise ValueError(
                f"client_timeout_s ({self.client_timeout_s}) must exceed server_timeout_s "
                f"({self.server_timeout_s}): a quiet watch would be cut before its window ends"
            )

    @classmethod
    def derived(
        cls, *, window_s: float, request_timeout_s: float, max_backoff_s: float
    ) -> WatchingSettings:
        """Whole-second windows (at least one), a read timeout of one window plus one request
        timeout, and a back-off from DERIVED_BACKOFF_INITIAL_S up to `max_backoff_s`."""
        server = max(1, int(window_s))
        return cls(
            server_timeout_s=server,
            connect_timeout_s=request_timeout_s,
            client_timeout_s=server + request_timeout_s,
            request_timeout_s=request_timeout_s,
            backoff_initial_s=min(DERIVED_BACKOFF_INITIAL_S, max_backoff_s),
            backoff_max_s=max_backoff_s,
        )

    def with_window(self, server_timeout_s: int) -> WatchingSettings:
        """The same settings with another window; the read timeout stays one request timeout
        longer than the window."""
        server = max(1, int(server_timeout_s))
        return replace(
            self, server_timeout_s=server, client_timeout_s=server + self.request_timeout_s
        )

    @property
    def watch_request_timeout(self) -> tuple[float, float]:
        """The (connect, read) `_request_timeout` of one watch request."""
        return (self.connect_timeout_s, self.client_timeout_s)

    def reconnect_backoff(self) -> Backoff:
        """A fresh back-off for one watch (each watch keeps its own streak)."""
        return Backoff(initial_s=self.backoff_initial_s, maximum_s=self.backoff_max_s)


#: What a watch built without the daemon's configuration gets (the class defaults).
CLIENT_DEFAULTS = WatchingSettings()
