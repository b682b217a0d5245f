"""Which address plan a gateway writer works under, shared by the runtime and the operations
commands.

A writer is an active-standby leader (the whole remote pod networks, one Lease) or an
active-active shard owner (one cut of them, a Lease per shard). Two writers of different
"regimes" must never write at once: their routes and VTEP endpoints describe different cuts of
the same addresses, and a VPC route table keeps the most specific route, so an older, finer cut
keeps winning over a newer, coarser one. Every shard Lease therefore carries the digest of the
plan it was taken under (`PLAN_LABEL`), and the CiliumVTEPConfig names the plan its shard
endpoints belong to (`PLAN_ANNOTATION`). Pure and dependency-free.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from typing import Final

__all__ = [
    "ACTIVE_STANDBY_REGIME",
    "PLAN_ANNOTATION",
    "PLAN_LABEL",
    "plan_digest",
    "shard_regime",
]

#: Label on every active-active Lease (shard and member): the digest of its writer's plan.
PLAN_LABEL: Final = "hybrid-gateway.eks.amazonaws.com/plan"
#: Annotation on the CiliumVTEPConfig: the plan digest of the shard endpoints it holds (absent
#: when an active-standby leader wrote it last).
PLAN_ANNOTATION: Final = "hybrid-gateway.eks.amazonaws.com/plan"
#: The regime of the active-standby leader (one plan: the whole pod networks).
ACTIVE_STANDBY_REGIME: Final = "active-standby"
_DIGEST_CHARS: Final = 16


def plan_digest(
    pod_cidrs: Sequence[ipaddress.IPv4Network],
    vpc_cidrs: Sequence[ipaddress.IPv4Network],
    shards: int,
) -> str:
    """A short, stable name of an active-active plan: the shard count and both address lists
    in the order given (order decides which prefix is which shard's, so it is part of the
    plan). A valid label value (hex, 16 characters)."""
    text = "|".join(
        [
            f"shards={shards}",
            "pods=" + ",".join(str(c) for c in pod_cidrs),
            "vpc=" + ",".join(str(c) for c in vpc_cidrs),
        ]
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]


def shard_regime(digest: str | None) -> str:
    """The regime of a shard owner working under plan `digest` (None: a Lease written by a
    version that did not label its plan)."""
    return f"active-active/{digest or 'unlabelled'}"
