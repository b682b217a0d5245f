"""The namespaces of tests, benchmarks and the lab are removed even when creating one fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hybrid_gateway_testkit.netns import PREFIX, CommandTimedOut, NetnsWorld, run

pytestmark = pytest.mark.netns


def _namespaces() -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()}


def test_a_namespace_whose_creation_timed_out_is_deleted_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ip netns add` creates the namespace, then does not return in time (here: the real
    command, followed by a wait, as a slow mount on a busy host would). The world never got
    the command's answer, yet it must delete the namespace: the name is recorded before the
    command runs."""
    real_ip = shutil.which("ip")
    assert real_ip is not None
    slow_ip = tmp_path / "ip"
    slow_ip.write_text(
        "#!/bin/sh\n"
        f'{real_ip} "$@" || exit $?\n'
        'if [ "$1 $2" = "netns add" ]; then exec sleep 30; fi\n'
    )
    slow_ip.chmod(0o755)
    world = NetnsWorld()
    name = f"{PREFIX}-{world.tag}-slow"
    try:
        with monkeypatch.context() as patched:
            patched.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
            with pytest.raises(subprocess.TimeoutExpired):
                world.add("slow", timeout=1.0)
        assert name in _namespaces()  # made, although `ip` did not answer in time
        world.close()
        assert name not in _namespaces()
    finally:
        run(["ip", "netns", "del", name], check=False)  # what a leak would leave


def test_a_command_that_times_out_says_where_it_was_waiting() -> None:
    """A timed-out command is reported with its state and kernel wait channel as they were
    before the kill (here: sleeping in the kernel's nanosleep), so a hang in the kernel (`D`,
    a mutex such as RTNL's) shows apart from a slow program."""
    with pytest.raises(CommandTimedOut) as caught:
        run(["sleep", "30"], timeout=0.5)
    assert isinstance(caught.value, subprocess.TimeoutExpired)  # callers catching that still do
    waiting = caught.value.waiting
    assert waiting.startswith("state S, wchan ") and "nanosleep" in waiting, waiting
    assert "timed out after 0.5 seconds (when it timed out: state S" in str(caught.value)
