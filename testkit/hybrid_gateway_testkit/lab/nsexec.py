"""Run Python callables inside a network namespace without leaving the calling process.

A network namespace is a per-thread property in Linux: a thread that calls setns(2) on a
namespace file creates its sockets there. The lab's orchestrator lives in the root namespace
(it creates the others), yet must talk to the EC2 emulator and the API server, which only exist
inside the lab world; it hands such calls to a `NetnsExecutor`, a single thread moved into the
world once.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

CLONE_NEWNET = 0x40000000

P = ParamSpec("P")
T = TypeVar("T")


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace `name` (from `ip netns add`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into network namespace {name!r}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsExecutor:
    """One worker thread living in a network namespace; `call` runs a function there."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"netns-{netns}",
            initializer=enter_netns,
            initargs=(netns,),
        )

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
