"""The gateway nodes' boot script, run by bash against stand-in `curl`, `aws`, `sysctl` and
`logger` commands on PATH (nothing leaves the machine, no kernel setting changes).

It must turn the source/destination check off on the primary ENI the way the AWS
getting-started page does (`modify-network-interface-attribute --no-source-dest-check`), keep
trying while IAM or metadata are not there yet, log every failed attempt and fail visibly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from eks_hybrid_gateway.capacity import boot_script

ENI = "eni-0123456789abcdef0"
MAC = "0a:1b:2c:3d:4e:5f"

FAKE_CURL = f"""#!/bin/bash
# IMDSv2: a token from PUT /latest/api/token, required on every GET.
[ -e "$FAKES/imds-down" ] && exit 7
for arg in "$@"; do case "$arg" in http*) url="$arg" ;; esac; done
case "$url" in
  */latest/api/token) echo token-1; exit 0 ;;
esac
printf '%s\\n' "$*" | grep -q 'X-aws-ec2-metadata-token: token-1' || exit 22
case "$url" in
  */meta-data/placement/region) echo us-west-2 ;;
  */meta-data/mac) echo {MAC} ;;
  */meta-data/network/interfaces/macs/{MAC}/interface-id) echo {ENI} ;;
  *) exit 22 ;;
esac
"""

FAKE_AWS = """#!/bin/bash
echo "$*" >> "$FAKES/aws-calls"
calls=$(wc -l < "$FAKES/aws-calls")
if [ "$calls" -le "${AWS_FAILURES:-0}" ]; then
  echo "An error occurred (UnauthorizedOperation) when calling the" \\
    "ModifyNetworkInterfaceAttribute operation" >&2
  exit 254
fi
"""

FAKE_SYSCTL = """#!/bin/bash
echo "$*" >> "$FAKES/sysctl-calls"
[ -e "$FAKES/sysctl-fails" ] && exit 1
exit 0
"""

FAKE_LOGGER = """#!/bin/bash
echo "$*" >> "$FAKES/journal"
"""


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    for name, body in (
        ("curl", FAKE_CURL),
        ("aws", FAKE_AWS),
        ("sysctl", FAKE_SYSCTL),
        ("logger", FAKE_LOGGER),
    ):
        path = tmp_path / name
        path.write_text(body)
        path.chmod(0o755)
    return tmp_path


def _run(fakes: Path, *, deadline_s: int = 60, **env: str) -> subprocess.CompletedProcess[str]:
    script = fakes / "boot.sh"
    script.write_text(boot_script())
    return subprocess.run(
        ["bash", str(script)],
        env={
            "PATH": f"{fakes}:{os.environ['PATH']}",
            "FAKES": str(fakes),
            "HYBRID_GATEWAY_DEADLINE_S": str(deadline_s),
            "HYBRID_GATEWAY_MAX_BACKOFF_S": "1",
            "HYBRID_GATEWAY_IMDS": "http://imds.invalid",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_disables_the_check_on_the_primary_eni_after_transient_denials(fakes: Path) -> None:
    result = _run(fakes, AWS_FAILURES="2")
    assert result.returncode == 0, result.stderr
    calls = _lines(fakes / "aws-calls")
    assert (
        calls
        == [
            "ec2 modify-network-interface-attribute --region us-west-2 "
            f"--network-interface-id {ENI} --no-source-dest-check"
        ]
        * 3
    )
    assert _lines(fakes / "sysctl-calls") == ["-w net.ipv4.ip_forward=1"]
    journal = _lines(fakes / "journal")
    assert sum("UnauthorizedOperation" in line for line in journal) == 2
    assert journal[-1].endswith(f"source/destination check disabled on {ENI} (attempt 3)")
    assert "attempt 1: modify-network-interface-attribute" in result.stderr


def test_gives_up_visibly_at_the_deadline(fakes: Path) -> None:
    result = _run(fakes, deadline_s=2, AWS_FAILURES="1000")
    assert result.returncode == 1
    assert len(_lines(fakes / "aws-calls")) >= 2  # retried, not tried once
    assert "giving up after" in result.stderr
    assert "forwarded packets will be dropped" in _lines(fakes / "journal")[-1]


def test_waits_for_instance_metadata_and_never_calls_ec2_without_it(fakes: Path) -> None:
    (fakes / "imds-down").touch()
    result = _run(fakes, deadline_s=1)
    assert result.returncode == 1
    assert not (fakes / "aws-calls").exists()
    assert "instance metadata (region, primary interface) not available yet" in result.stderr


def test_stops_at_once_when_forwarding_cannot_be_enabled(fakes: Path) -> None:
    (fakes / "sysctl-fails").touch()
    result = _run(fakes)
    assert result.returncode == 1
    assert "could not enable net.ipv4.ip_forward" in result.stderr
    assert not (fakes / "aws-calls").exists()


def test_the_script_ships_as_package_data() -> None:
    from importlib import resources

    shipped = resources.files("eks_hybrid_gateway") / "scripts" / "disable-source-dest-check.sh"
    assert shipped.is_file()
    assert boot_script() == shipped.read_text()
    assert boot_script().startswith("#!/bin/bash\n")
