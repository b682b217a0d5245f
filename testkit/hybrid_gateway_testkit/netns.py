"""Network namespaces for tests, benchmarks and the lab: uniquely named, always removed.

Everything here shells out to iproute2 so it works the same from any process. Traffic stays
inside the namespaces a `NetnsWorld` created: it never adds addresses or routes outside them.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "hgw"


#: How long an iproute2 command may take before it counts as hung: a bound for a hang, never a
#: speed check. Every link, address and route change waits for the host-wide RTNL mutex
#: (Linux net/core/rtnetlink.c: `rtnl_lock` is a plain, uninterruptible `mutex_lock`), which
#: the kernel's teardown of namespaces deleted earlier (`cleanup_net`, long after `ip netns
#: del` returned) and every other process's netlink changes hold. On a loaded machine one
#: `ip link set ... up` did not return within 30 s; killing a command that waits there returns
#: no sooner (the kill lands once the mutex is taken) and only turns a slow kernel into a
#: failed test.
COMMAND_TIMEOUT_S = 120.0


class CommandTimedOut(subprocess.TimeoutExpired):
    """A command outlasted its timeout; the message says where it was waiting when it did
    (its process state and kernel wait channel, proc(5)), e.g. `D` in a mutex for RTNL."""

    def __init__(self, cmd: Sequence[str], timeout: float, waiting: str) -> None:
        super().__init__(list(cmd), timeout)
        self.waiting = waiting

    def __str__(self) -> str:
        return f"{super().__str__()} (when it timed out: {self.waiting})"


def kernel_wait(pid: int) -> str:
    """Where process `pid` is: its state (R running, S sleeping, D uninterruptible) and the
    kernel function it waits in (proc(5): /proc/<pid>/stat field 3, /proc/<pid>/wchan)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or "-"
    except (OSError, IndexError):
        return "exited"
    return f"state {state}, wchan {wchan}"


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Run a command, return stdout; on failure raise with its stderr in the message, and on a
    timeout (`CommandTimedOut`) with where the command was waiting."""
    with subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            waiting = kernel_wait(proc.pid)  # before the kill, which ends the wait it names
            proc.kill()
            proc.communicate()
            raise CommandTimedOut(cmd, timeout, waiting) from None
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.strip()}")
    return stdout


@dataclass(frozen=True)
class Netns:
    """One namespace; `ip(...)` and `exec(...)` run inside it."""

    name: str

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def exec(self, *argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> str:
        return run(self.exec_argv(argv), check=check, timeout=timeout)

    def ip(self, *args: str, check: bool = True) -> str:
        return run(["ip", "-n", self.name, *args], check=check)

    def sysctl(self, key: str, value: str) -> None:
        self.exec("sysctl", "-q", "-w", f"{key}={value}")


@dataclass
class NetnsWorld:
    """A set of namespaces with a shared random tag; `close()` deletes them all."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    namespaces: list[Netns] = field(default_factory=list)
    _links: int = 0

    def add(self, role: str, *, timeout: float = COMMAND_TIMEOUT_S) -> Netns:
        """Create namespace `hgw-<tag>-<role>` with loopback up.

        The name is recorded BEFORE `ip netns add` runs: a command that times out or fails
        may still have created it (`ip` makes /run/netns/<name> first, then unshares and
        bind-mounts the namespace onto it: iproute2 ip/ipnetns.c, `netns_add`), and
        `close()` must delete it then too; deleting a name that was never made is harmless."""
        ns = Netns(f"{PREFIX}-{self.tag}-{role}")
        self.namespaces.append(ns)
        run(["ip", "netns", "add", ns.name], timeout=timeout)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(
        self, a: Netns, a_addr: str | None, b: Netns, b_addr: str | None, *, mtu: int = 1500
    ) -> tuple[str, str]:
        """Connect a and b with a veth pair; give each end an address (CIDR form) if set.

        Returns the interface names (in a, in b). Names are short: the kernel allows 15 chars.
        """
        self._links += 1
        a_if, b_if = f"v{self.tag}a{self._links}", f"v{self.tag}b{self._links}"
        run(
            [
                "ip",
                "link",
                "add",
                a_if,
                "netns",
                a.name,
                "type",
                "veth",
                "peer",
                b_if,
                "netns",
                b.name,
            ]
        )
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            ns.ip("link", "set", ifname, "mtu", str(mtu))
            if addr:
                ns.ip("addr", "add", addr, "dev", ifname)
            ns.ip("link", "set", ifname, "up")
        return a_if, b_if

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            for pid in run(["ip", "netns", "pids", ns.name], check=False).split():
                run(["kill", "-9", pid], check=False)
            run(["ip", "netns", "del", ns.name], check=False)
        self.namespaces.clear()


@contextmanager
def netns_world() -> Iterator[NetnsWorld]:
    """A `NetnsWorld` that is removed on exit, also when the body raises."""
    world = NetnsWorld()
    try:
        yield world
    finally:
        world.close()


def leftover_namespaces() -> list[str]:
    """Namespaces created by this module that still exist (for leak checks in tests)."""
    names = [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]
    return [n for n in names if n.startswith(f"{PREFIX}-")]
