"""The namespaces of tests, benchmarks and the lab are removed even when creating one fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hybrid_gateway_testkit.netns import PREFIX, NetnsWorld, run

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
