"""Child processes of the lab: started in a namespace, logged to files, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hybrid_gateway_testkit.netns import Netns


@dataclass
class LabProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `grace_s`; returns the exit code."""
        self.signal(signal.SIGTERM)
        code = self.wait(grace_s)
        if code is None:
            self.signal(signal.SIGKILL)
            code = self.popen.wait(timeout=10)
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessSet:
    """Every process the lab started, so cleanup can stop exactly those (by pid)."""

    log_dir: Path
    procs: list[LabProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        netns: Netns,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
    ) -> LabProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                netns.exec_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,  # Ctrl-C on the terminal reaches only the orchestrator
            )
        proc = LabProcess(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop_all(self, grace_s: float = 3.0) -> None:
        for proc in reversed(self.procs):
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in reversed(self.procs):
            if proc.wait(max(0.0, deadline - time.monotonic())) is None:
                proc.signal(signal.SIGKILL)
                proc.wait(5.0)
