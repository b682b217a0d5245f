"""An API client that makes exactly one HTTP attempt per call: the one retry policy is ours.

The official client leaves `Configuration.retries` None, and its REST layer then builds the
urllib3 `PoolManager` without `retries` (kubernetes/client/rest.py), so urllib3's
`Retry.DEFAULT` (3) applies: a PUT is re-sent after a read error or timeout (PUT is in
`Retry.DEFAULT_ALLOWED_METHODS`) and any request after a connection error, below our code.
That would let a leader write leave after its lease check and stretch a Lease renewal beyond
its timeout, and it multiplies every read timeout by four: a watch hanging on a silent API
server would take 4 x (window + timeout), past the stuck-loop limit. So every call of the
daemon (Lease, CiliumVTEPConfig, CiliumNodes, Events; reads, writes and watches) goes through
a client with retries off; the callers decide whether and when to try again (the elector's
rounds, `ListWatch`'s back-off, the Event queue).
"""

from __future__ import annotations

import copy

from kubernetes import client


def single_attempt(api_client: client.ApiClient) -> client.ApiClient:
    """A new ApiClient with `api_client`'s configuration (server, credentials, token refresh)
    and urllib3 retries disabled (`retries=False`: errors are raised at once)."""
    configuration = copy.deepcopy(api_client.configuration)
    configuration.retries = False
    return client.ApiClient(configuration)
