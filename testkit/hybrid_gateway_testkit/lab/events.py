"""JSON-lines event logs written by the lab's processes, stamped with the shared monotonic clock.

CLOCK_MONOTONIC is one clock for the whole machine (network namespaces do not change it), so the
events of the router, the agents, the monitor and the probes line up on one timeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", buffering=1)

    def write(self, kind: str, **fields: Any) -> None:
        self._file.write(json.dumps({"t": time.monotonic(), "kind": kind, **fields}) + "\n")

    def close(self) -> None:
        self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by SIGKILL
    return out


def first_after(
    events: Iterable[Mapping[str, Any]], t: float, pred: Callable[[Mapping[str, Any]], bool]
) -> float | None:
    """Seconds from `t` to the first event at or after it that satisfies `pred` (None: none)."""
    times = [float(e["t"]) for e in events if float(e["t"]) >= t and pred(e)]
    return min(times) - t if times else None
