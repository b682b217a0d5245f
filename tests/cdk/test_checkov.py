"""checkov (CloudFormation framework) over the synthesized templates: no failed check except
the justified ones below, each named with its reason, as the cdk-nag acknowledgements are.

checkov pins packages the dev environment needs newer (boto3, packaging), so it runs from its
own venv (`make deps` builds `.venv-checkov`, version pinned in the Makefile). `--skip-download`
keeps it offline (no guideline or policy download).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.cdk.conftest import Synthesized

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

# Lambda checks that do not apply to a function CloudFormation runs once per stack operation:
_ONCE = "runs only when CloudFormation creates, updates or deletes its custom resource"
_NO_VPC = (
    "calls only AWS APIs (EC2, CloudFormation, EKS, Lambda) and holds no private data; in a "
    "VPC it would need endpoints or NAT to reach them"
)
_CONCURRENCY = (
    "reserved concurrency would take from the account's unreserved pool for a function that "
    f"{_ONCE}"
)
_DLQ = (
    "the CDK Provider framework reports a failure to CloudFormation itself (the stack shows "
    "it); a dead-letter queue would hold an event nobody can replay"
)
_ENV = "its environment holds no secret: resource names and ARNs only"

_KUBECTL = (
    r"(ClusterKubectlProvider(Handler|frameworkonEvent)|Handler|ProviderframeworkonEvent)"
    r"[0-9A-F]{8}"
)
_CLEANUP = r"HybridGatewayRouteCleanup(Handler|ProviderframeworkonEvent)[0-9A-F]{8}"
_RESTRICT_SG = r"CustomVpcRestrictDefaultSGCustomResourceProviderHandler[0-9A-F]{8}"

#: (check, logical ID of the function): why it is acknowledged.
JUSTIFIED: dict[tuple[str, str], str] = {
    # The route cleanup (GatewayRouteCleanup): handler and Provider framework function.
    ("CKV_AWS_115", _CLEANUP): _CONCURRENCY,
    ("CKV_AWS_116", _CLEANUP): _DLQ,
    ("CKV_AWS_117", _CLEANUP): _NO_VPC,
    ("CKV_AWS_173", r"HybridGatewayRouteCleanupProviderframeworkonEvent[0-9A-F]{8}"): _ENV,
    # aws-cdk-lib's kubectl provider (the examples' clusters; in a nested stack for an imported
    # cluster).
    ("CKV_AWS_115", _KUBECTL): _CONCURRENCY,
    ("CKV_AWS_116", _KUBECTL): _DLQ,
    ("CKV_AWS_117", r"(Handler|ProviderframeworkonEvent)[0-9A-F]{8}"): (
        "aws-cdk-lib's kubectl provider of the imported cluster, in the cluster's subnets only "
        "when the app gives it a VPC (for a private endpoint); " + _NO_VPC
    ),
    ("CKV_AWS_173", _KUBECTL): _ENV,
    # aws-cdk-lib's custom resource behind `restrict_default_security_group` on the examples'
    # VPCs.
    ("CKV_AWS_115", _RESTRICT_SG): _CONCURRENCY,
    ("CKV_AWS_116", _RESTRICT_SG): _DLQ,
    ("CKV_AWS_117", _RESTRICT_SG): _NO_VPC,
}


def _run_checkov(files: list[Path]) -> list[dict[str, Any]]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make deps`"
    args = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--quiet"]
    for path in files:
        args += ["-f", str(path)]
    done = subprocess.run(
        [*args, "--output", "json"], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode in (0, 1), done.stderr  # 1: some check failed
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed: list[dict[str, Any]] = []
    for report in reports:
        if "results" in report:
            assert report["summary"]["parsing_errors"] == 0, report["summary"]
            failed += report["results"]["failed_checks"]
    return failed


def _justification(check: str, logical_id: str) -> tuple[str, str] | None:
    for key in JUSTIFIED:
        if key[0] == check and re.fullmatch(key[1], logical_id):
            return key
    return None


def test_checkov_finds_nothing_but_the_justified_lambda_findings(
    synthesized: Synthesized,
) -> None:
    files = sorted(synthesized.outdir.glob("*.template.json"))
    assert len(files) >= 5
    failed = _run_checkov(files)
    unjustified = []
    used = set()
    for finding in failed:
        logical_id = finding["resource"].split(".", 1)[1]
        key = _justification(finding["check_id"], logical_id)
        if key is None:
            unjustified.append(
                f"{finding['check_id']} {finding['resource']}: {finding['check_name']}"
            )
        else:
            used.add(key)
    assert unjustified == []
    # Every acknowledgement still answers a finding (none outlives what it excused).
    assert set(JUSTIFIED) - used == set()
    # The construct's own function is among what was checked and acknowledged.
    assert any(re.fullmatch(k[1], "HybridGatewayRouteCleanupHandlerAC87A05D") for k in used)
