"""The installed `hybrid-gateway` console script: subcommands, JSON on stdout, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_gateway_testkit.ops_world import REGION, OpsWorld
from kube_test_apiserver import ApiServer


def script() -> str:
    found = shutil.which("hybrid-gateway", path=str(Path(sys.executable).parent))
    assert found, "the hybrid-gateway console script is not installed in this environment"
    return found


def test_preflight_as_a_process(moto_url: str, kube_api: ApiServer, world: OpsWorld) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "KUBECONFIG": str(kube_api.kubeconfig("operator")),
    }
    result = subprocess.run(
        [script(), "preflight", "--cluster", world.cluster, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"] == {"ok": 18, "warn": 0, "fail": 0, "skipped": 0}


@pytest.mark.parametrize("command", ["preflight", "status", "cleanup"])
def test_each_subcommand_has_help(command: str) -> None:
    result = subprocess.run(
        [script(), command, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert f"usage: hybrid-gateway {command}" in result.stdout
    assert "--route-table-ids" in result.stdout


def test_unknown_subcommand_lists_the_commands() -> None:
    result = subprocess.run(
        [script(), "prefligth"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "expected: run, preflight, status, cleanup" in result.stderr
