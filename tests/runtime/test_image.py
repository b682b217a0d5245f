"""The gateway image's recipe (no Docker engine here, so it is checked as text): built from the
repository root, it copies only the contract and the runtime and starts `hybrid-gateway run`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "runtime" / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    return [
        line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.startswith(name + " ")
    ]


def test_only_the_contract_and_runtime_are_copied_from_the_context() -> None:
    sources = [c.split()[0] for c in instructions("COPY") if not c.startswith("--from")]
    assert sources == ["contract/", "runtime/"]


def test_it_starts_the_console_script() -> None:
    assert instructions("ENTRYPOINT") == ['["/opt/gateway/bin/hybrid-gateway"]']
    assert instructions("CMD") == ['["run"]']


def test_no_build_tooling_or_cdk_reaches_the_final_stage() -> None:
    final = DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]
    assert "distroless" in DOCKERFILE and "apt-get" not in final and "pip" not in final
    assert "pip uninstall -y pip" in DOCKERFILE
    code = "\n".join(line for line in DOCKERFILE.lower().splitlines() if not line.startswith("#"))
    assert not re.search(r"aws-cdk|cdk8s|\bnode\b|npm|constructs/|testkit", code)


def test_build_context_is_limited_by_dockerignore() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!contract/", "!runtime/"} <= set(lines)
    assert not [
        line for line in lines if line.startswith("!") and line not in ("!contract/", "!runtime/")
    ]


def test_the_final_stage_gets_nft_for_the_node_filter() -> None:
    """The daemon runs `nft` (hybrid_gateway.adapters.nftables): the build stage installs the
    nftables package and collects the binary with its libraries, the final stage copies them
    and runs it once at build time (a missing library fails the build, not the pod)."""
    build = DOCKERFILE[: DOCKERFILE.rindex("\nFROM ")]
    final = DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]
    assert "nftables" in build and "ldd /usr/sbin/nft" in build
    assert "COPY --from=build /opt/nft-root/ /" in final
    assert 'RUN ["/usr/sbin/nft", "--version"]' in final
    path = next(line for line in final.splitlines() if line.startswith("ENV PATH="))
    assert "/usr/sbin" in path
