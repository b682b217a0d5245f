"""The `nft` command line, thin: load a script, list our table as JSON, delete it.

The `nft` tool (nftables package, the image copies it) talks to the kernel over netlink;
`nft -f -` applies a whole script as one transaction, `nft -j list table` prints the JSON
schema of libnftables-json(5). Needs CAP_NET_ADMIN in the node's network namespace, which the
gateway already has for its VXLAN device.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from hybrid_gateway.core.nodefilter import FAMILY, TABLE

NFT_TIMEOUT_S = 10.0


class NftError(Exception):
    """`nft` is missing, or refused a command; the message carries its error output."""


class Nft:
    def __init__(self, argv_prefix: Sequence[str] = (), binary: str = "nft") -> None:
        # argv_prefix: e.g. ("ip", "netns", "exec", NAME) in tests; empty in the daemon.
        self._prefix = list(argv_prefix)
        self._binary = binary

    def _run(self, args: Sequence[str], stdin: str | None = None) -> str:
        if not self._prefix and shutil.which(self._binary) is None:
            raise NftError(f"the `{self._binary}` tool is not installed (package nftables)")
        try:
            proc = subprocess.run(
                [*self._prefix, self._binary, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=NFT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"nft {' '.join(args)}: {exc}") from exc
        if proc.returncode != 0:
            raise NftError(f"nft {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
        return proc.stdout

    def apply(self, script: str) -> None:
        """Load `script` as one transaction (all of it or nothing)."""
        self._run(["-f", "-"], stdin=script)

    def list_table(self) -> dict[str, Any] | None:
        """Our table as `nft -j` JSON, or None when it does not exist."""
        try:
            out = self._run(["-j", "list", "table", FAMILY, TABLE])
        except NftError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise
        try:
            listing = json.loads(out)
        except ValueError as exc:
            raise NftError(f"nft -j list table: not JSON: {exc}") from exc
        if not isinstance(listing, dict):
            raise NftError("nft -j list table: not a JSON object")
        return listing

    def delete_table(self) -> bool:
        """Delete our table; False when it was not there."""
        try:
            self._run(["delete", "table", FAMILY, TABLE])
        except NftError as exc:
            if "No such file or directory" in str(exc):
                return False
            raise
        return True
