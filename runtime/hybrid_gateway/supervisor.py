"""Named runnables on their own threads: started in order, watched, stopped in the order asked.

Every long-running loop of the daemon is a `Task`. Liveness (`/healthz`) is computed here from
all of them at once: a loop whose heartbeat is older than its `stale_after_s`, or a thread that
crashed or returned before it was asked to stop, makes `alive()` false and names the loop, so a
stuck replica gets restarted instead of silently not doing its job. A crash is logged with its
traceback when it happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class Beat:
    """A heartbeat for loops that have none of their own: the loop calls it, `last` reads it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def __call__(self) -> None:
        self._last = self._clock()

    def last(self) -> float:
        return self._last


@dataclass
class Task:
    """One loop: `run(stop)` returns soon after `stop` is set (`wake` ends its current wait).

    `heartbeat` returns the monotonic time of the loop's last tick; None means the loop is not
    watched for staleness (its thread must still be alive). A `one_shot` task may finish on its
    own (e.g. a start-up step retried in the background) without that being a failure.
    """

    name: str
    run: Callable[[threading.Event], None]
    heartbeat: Callable[[], float] | None = None
    stale_after_s: float | None = None
    wake: Callable[[], None] = lambda: None
    one_shot: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    crashed: str | None = None
    finished: bool = False

    def _main(self) -> None:
        try:
            self.run(self.stop)
        except Exception as exc:  # a bug or an unexpected failure: loud, and liveness fails
            self.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("loop %s crashed", self.name)
        finally:
            self.finished = True

    def problem(self, now: float) -> str | None:
        """Why this loop is not healthy, or None."""
        if self.crashed is not None:
            return f"{self.name} crashed ({self.crashed})"
        if self.thread is None:
            return None
        if self.finished:
            if self.stop.is_set() or self.one_shot:
                return None
            return f"{self.name} exited"
        if self.heartbeat is not None and self.stale_after_s is not None:
            age = now - self.heartbeat()
            if age > self.stale_after_s:
                return f"{self.name} stuck (no heartbeat for {age:.0f}s)"
        return None


class Supervisor:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> Task:
        if task.name in self._tasks:
            raise ValueError(f"two tasks named {task.name!r}")
        self._tasks[task.name] = task
        return task

    def __getitem__(self, name: str) -> Task:
        return self._tasks[name]

    @property
    def names(self) -> list[str]:
        return list(self._tasks)

    def start(self) -> None:
        """Start every task not started yet, in the order they were added (the daemon starts
        its first tasks before it has built the others)."""
        for task in self._tasks.values():
            if task.thread is not None:
                continue
            task.thread = threading.Thread(target=task._main, name=task.name, daemon=True)
            task.thread.start()

    def stop(self, names: Iterable[str], join_s: float) -> list[str]:
        """Ask the named tasks to stop, then wait for them (`join_s` in all).

        Returns the names of those still running afterwards (stuck in a call)."""
        tasks = [self._tasks[name] for name in names]
        for task in tasks:
            task.stop.set()
            task.wake()
        deadline = self._clock() + join_s
        for task in tasks:
            if task.thread is not None:
                task.thread.join(max(0.0, deadline - self._clock()))
        stuck = [t.name for t in tasks if t.thread is not None and t.thread.is_alive()]
        for name in stuck:
            log.error("%s did not stop within %.1fs", name, join_s)
        return stuck

    def running(self, exclude: Sequence[str] = ()) -> list[str]:
        """Tasks not yet asked to stop (for stopping "the rest")."""
        return [n for n, t in self._tasks.items() if n not in exclude and not t.stop.is_set()]

    def alive(self) -> tuple[bool, str]:
        """The liveness verdict over every task, naming each one that is not healthy."""
        now = self._clock()
        problems = [p for t in self._tasks.values() if (p := t.problem(now)) is not None]
        if problems:
            return False, "loop failure: " + "; ".join(problems)
        return True, "ok"
