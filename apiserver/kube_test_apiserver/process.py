"""`ApiServer`: start the test API server (a process, or threads of this one) and drive its
admin API.

The admin calls (kubeconfigs, partitions, audit, compaction) go over a Unix socket, so they work
from the test process even when the server runs inside another network namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import yaml

from .app import Serving, parse_args, serve
from .control import ADMIN_IDENTITY


class ApiServerError(RuntimeError):
    """The server did not start, or an admin call failed."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _Runner(Protocol):
    """Where the server runs: its own process, or threads of the caller's."""

    @property
    def pid(self) -> int: ...
    def running(self) -> bool: ...
    def stop(self, timeout_s: float) -> int: ...


class _Process:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout_s: float) -> int:
        return _terminate(self._process, timeout_s)


class _Threads:
    def __init__(self, serving: Serving) -> None:
        self._serving: Serving | None = serving

    @property
    def pid(self) -> int:
        return os.getpid()

    def running(self) -> bool:
        return self._serving is not None

    def stop(self, timeout_s: float) -> int:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        return 0


class ApiServer:
    """A running server; also a context manager that stops it on exit."""

    def __init__(
        self,
        *,
        process: _Runner,
        url: str,
        workdir: Path,
        admin_socket: Path,
        admin_token: str,
        log_path: Path,
    ) -> None:
        self._process = process
        self._url = url
        self.workdir = workdir
        self._admin_socket = admin_socket
        self._admin_token = admin_token
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        workdir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        netns: str | None = None,
        *,
        history_size: int = 1000,
        bookmark_interval_s: float = 1.0,
        ready_timeout_s: float = 20.0,
        tls: bool = False,
        crds: Sequence[Path | str] = (),
        namespaces: Sequence[str] = (),
        nice: int = 0,
    ) -> ApiServer:
        """Start `python -m kube_test_apiserver` (inside `netns` if given), serving the
        CustomResourceDefinitions in `crds` (files or directories) and, besides a new cluster's
        four, the `namespaces`; with `tls`, it serves HTTPS and the kubeconfigs carry its
        self-signed certificate. `nice`: the process's scheduling niceness (coreutils `nice`;
        below 0 needs root, else it keeps the caller's with a warning in its log)."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        # Unix socket paths are limited to 107 bytes: keep the admin socket in a short directory.
        socket_dir = Path(tempfile.mkdtemp(prefix="hgw-api-"))
        admin_socket = socket_dir / "admin.sock"
        log_path = workdir / "apiserver.log"
        argv = [
            sys.executable,
            "-m",
            "kube_test_apiserver",
            *_arguments(
                workdir=workdir,
                admin_socket=admin_socket,
                host=host,
                port=port,
                history_size=history_size,
                bookmark_interval_s=bookmark_interval_s,
                tls=tls,
                crds=crds,
                namespaces=namespaces,
            ),
            "--exit-on-stdin-eof",
        ]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        if nice:
            argv = ["nice", "-n", str(nice), *argv]
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file
            )
        try:
            url = _wait_ready(process, ready_timeout_s, log_path)
            admin_config = yaml.safe_load((workdir / f"{ADMIN_IDENTITY}.kubeconfig").read_text())
            token = str(admin_config["users"][0]["user"]["token"])
        except BaseException:
            _terminate(process)
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        return cls(
            process=_Process(process),
            url=url,
            workdir=workdir,
            admin_socket=admin_socket,
            admin_token=token,
            log_path=log_path,
        )

    @classmethod
    def start_in_process(
        cls,
        workdir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 1000,
        bookmark_interval_s: float = 1.0,
        tls: bool = False,
        crds: Sequence[Path | str] = (),
        namespaces: Sequence[str] = (),
    ) -> ApiServer:
        """The same server as `start`, served by threads of this process (no start-up cost, no
        network namespace); `stop()` ends them. Its log records go to this process's `logging`
        (logger `kube_test_apiserver`). A bad CRD raises `ApiServerError` naming it."""
        workdir = Path(workdir)
        socket_dir = Path(tempfile.mkdtemp(prefix="hgw-api-"))
        admin_socket = socket_dir / "admin.sock"
        args = parse_args(
            _arguments(
                workdir=workdir,
                admin_socket=admin_socket,
                host=host,
                port=port,
                history_size=history_size,
                bookmark_interval_s=bookmark_interval_s,
                tls=tls,
                crds=crds,
                namespaces=namespaces,
            )
        )
        try:
            serving = serve(args)
        except (ValueError, OSError) as exc:
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise ApiServerError(f"test API server did not start: {exc}") from exc
        admin_config = yaml.safe_load((workdir / f"{ADMIN_IDENTITY}.kubeconfig").read_text())
        return cls(
            process=_Threads(serving),
            url=serving.url,
            workdir=workdir,
            admin_socket=admin_socket,
            admin_token=str(admin_config["users"][0]["user"]["token"]),
            log_path=workdir / "apiserver.log",
        )

    # --- the interface tests use ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def pid(self) -> int:
        return self._process.pid

    def kubeconfig(self, identity: str) -> Path:
        """A kubeconfig whose bearer token identifies `identity` (created on first call)."""
        return Path(self._admin("POST", "identities", {"name": identity})["kubeconfig"])

    def token(self, identity: str) -> str:
        return str(self._admin("POST", "identities", {"name": identity})["token"])

    def partition(self, identity: str, *, hang: bool = False) -> None:
        """Cut `identity` off: its requests are dropped without a response and its watches cut.

        With `hang=True` it looks like lost packets instead: requests stay unanswered until the
        client gives up (they are never processed, even after `heal`), and open watches go
        silent, then deliver what they missed if healed before their timeout.
        """
        self._admin("POST", "partition", {"identity": identity, "mode": "hang" if hang else "drop"})

    def heal(self, identity: str) -> None:
        self._admin("POST", "heal", {"identity": identity})

    def set_latency(
        self,
        seconds: float,
        identity: str | None = None,
        *,
        resource: str | None = None,
        jitter_s: float = 0.0,
    ) -> None:
        """Delay every request of `identity` (all identities if None) to `resource` (a plural
        such as "events"; any if None) by `seconds` plus a uniform random part of `jitter_s`,
        before it is processed (a watch: before it opens)."""
        self._admin(
            "POST",
            "latency",
            {"identity": identity, "seconds": seconds, "resource": resource, "jitter": jitter_s},
        )

    def inject_errors(
        self,
        identity: str | None = None,
        *,
        code: int = 500,
        count: int = 1,
        resource: str | None = None,
    ) -> None:
        """Fail the next `count` requests of `identity` (anyone if None) to `resource` (a plural
        such as "leases"; any if None) with `code` (401, 403, 404, 429, 500, 503 or 504) and a
        real Status body; `count=0` disarms. 401/403 stand for a bad token or missing RBAC."""
        self._admin(
            "POST",
            "faults",
            {"identity": identity, "code": code, "count": count, "resource": resource},
        )

    def audit(self) -> list[dict[str, Any]]:
        """Every API request so far, in the order they completed (watches: when they opened).

        Keys: identity, verb (get/list/watch/create/update/patch/delete), method, path, query,
        resource, namespace, name, subresource, status (None if dropped by a partition),
        reason (errors), resourceVersion (writes), mono and wall (arrival; `time.monotonic()`
        is the same clock as the caller's on Linux), mono_done (just before the answer is sent,
        or when it was dropped).
        """
        records: list[dict[str, Any]] = self._admin("GET", "audit")["records"]
        return records

    def compact(self) -> str:
        """Compact as etcd does at the current version: a watch from any older resourceVersion,
        and a list continued at one, now get 410 Expired."""
        return str(self._admin("POST", "compact", {})["resourceVersion"])

    def close_watches(self) -> None:
        """End every open watch stream cleanly, as the server's watch timeout does: clients
        must re-watch from their last resourceVersion (and relist if that is compacted)."""
        self._admin("POST", "close-watches", {})

    def running(self) -> bool:
        return self._process.running()

    def stop(self, timeout_s: float = 5.0) -> int:
        """Stop the process (SIGTERM, then SIGKILL after `timeout_s`) or the threads; returns
        the exit code."""
        code = self._process.stop(timeout_s)
        shutil.rmtree(self._admin_socket.parent, ignore_errors=True)
        return code

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- plumbing ---------------------------------------------------------------------------------

    def _admin(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        conn = _UnixConnection(str(self._admin_socket), timeout=10.0)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {self._admin_token}"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, f"/_testkit/{action}", body=data, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read() or b"{}")
        except OSError as exc:
            raise ApiServerError(f"admin call {action} failed: {exc}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise ApiServerError(f"admin call {action} failed ({response.status}): {payload}")
        return payload


def _arguments(
    *,
    workdir: Path,
    admin_socket: Path,
    host: str,
    port: int,
    history_size: int,
    bookmark_interval_s: float,
    tls: bool,
    crds: Sequence[Path | str],
    namespaces: Sequence[str],
) -> list[str]:
    """The command line of `python -m kube_test_apiserver` for these options."""
    return [
        "--host",
        host,
        "--port",
        str(port),
        "--kubeconfig-dir",
        str(workdir),
        "--admin-socket",
        str(admin_socket),
        "--history-size",
        str(history_size),
        "--bookmark-interval",
        str(bookmark_interval_s),
        *(["--tls"] if tls else []),
        *(f"--crd={Path(path).resolve()}" for path in crds),
        *(f"--namespace={name}" for name in namespaces),
    ]


def _wait_ready(process: subprocess.Popen[bytes], timeout_s: float, log_path: Path) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = b""
    fd = process.stdout.fileno()
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ApiServerError(f"test API server not ready after {timeout_s} s; log: {log_path}")
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.2))
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                process.wait(timeout=5)
                log = log_path.read_text(errors="replace")[-2000:]
                raise ApiServerError(
                    f"test API server exited with {process.returncode} before READY:\n{log}"
                )
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode().strip()
    if not line.startswith("READY "):
        raise ApiServerError(f"unexpected first line from the test API server: {line!r}")
    return line.split(" ", 1)[1]


def _terminate(process: subprocess.Popen[bytes], timeout_s: float = 5.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()
    return process.returncode
