"""Fixtures shared by every test folder (keep small: folder-specific fixtures go in subfolders)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid_gateway_testkit.kube_api import start_kube_api
from kube_test_apiserver import ApiServer


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[ApiServer]:
    """A test Kubernetes API server process on loopback, stopped after the test."""
    server = start_kube_api(tmp_path / "kube-api")
    try:
        yield server
    finally:
        server.stop()
