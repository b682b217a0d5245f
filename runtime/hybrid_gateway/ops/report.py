"""Check results, their exit code, and the two renderings (a table for people, JSON for
pipelines)."""

from __future__ import annotations

import enum
import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


_SEVERITY = {Verdict.OK: 0, Verdict.SKIPPED: 0, Verdict.WARN: 1, Verdict.FAIL: 2}


@dataclass(frozen=True)
class CheckResult:
    """One check's answer. `evidence` says what was seen; `fix` is one sentence (empty when ok);
    a skipped check says why in `evidence`."""

    check_id: str
    title: str
    verdict: Verdict
    evidence: tuple[str, ...]
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.check_id,
            "title": self.title,
            "verdict": self.verdict.value,
            "evidence": list(self.evidence),
            "fix": self.fix,
        }


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: _SEVERITY[v], default=Verdict.OK)


class Outcome(enum.Enum):
    """What a preflight run found, and its exit code (stable: pipelines branch on them)."""

    PASSED = 0  # every check ok, or skipped because it does not apply yet (before install)
    WARNINGS = 1  # warnings, no failure, every source read
    FAILED = 2  # a misconfiguration found (whether or not every source could be read)
    INCOMPLETE = 3  # no failure found, but a source (EKS, EC2, a Kubernetes read) was unreadable
    USAGE = 64  # a bad flag or value (sysexits EX_USAGE): nothing was checked


#: The version of `preflight --output json`: raised only when a key is removed or changes
#: meaning; keys may be added within a version.
JSON_SCHEMA_VERSION = 1


def outcome(results: Sequence[CheckResult], unavailable: Mapping[str, str]) -> Outcome:
    """A failure found wins (it is certain); then an unread source (what was not read is not
    a pass); then warnings."""
    verdicts = {r.verdict for r in results}
    if Verdict.FAIL in verdicts:
        return Outcome.FAILED
    if unavailable:
        return Outcome.INCOMPLETE
    if Verdict.WARN in verdicts:
        return Outcome.WARNINGS
    return Outcome.PASSED


def exit_code(results: Sequence[CheckResult], unavailable: Mapping[str, str] | None = None) -> int:
    """The run's `Outcome` as an exit code: 0 passed, 1 warnings, 2 failures, 3 incomplete."""
    return outcome(results, unavailable or {}).value


def results_json(
    results: Sequence[CheckResult], unavailable: Mapping[str, str], **extra: Any
) -> str:
    """The JSON report: `schemaVersion`, `command`, `outcome` and `exitCode`, `summary` (counts
    per verdict), `unavailable` (source -> why), `checks` (id, title, verdict, evidence, fix)."""
    counts = {v.value: sum(1 for r in results if r.verdict is v) for v in Verdict}
    found = outcome(results, unavailable)
    body = {
        "schemaVersion": JSON_SCHEMA_VERSION,
        **extra,
        "outcome": found.name.lower(),
        "exitCode": found.value,
        "summary": counts,
        "unavailable": dict(unavailable),
        "checks": [r.to_json() for r in results],
    }
    return json.dumps(body, indent=2, sort_keys=False)


def results_table(results: Sequence[CheckResult], width: int = 100) -> str:
    """One block per check: `ID  VERDICT  title`, the evidence, then `fix:` when not ok."""
    lines: list[str] = []
    id_width = max((len(r.check_id) for r in results), default=0)
    for result in results:
        lines.append(
            f"{result.check_id:<{id_width}}  {result.verdict.value.upper():<7}  {result.title}"
        )
        indent = " " * (id_width + 11)
        for item in result.evidence:
            lines.extend(
                textwrap.wrap(item, width, initial_indent=indent, subsequent_indent=indent + "  ")
            )
        if result.fix and result.verdict in (Verdict.WARN, Verdict.FAIL):
            lines.extend(
                textwrap.wrap(
                    f"fix: {result.fix}",
                    width,
                    initial_indent=indent,
                    subsequent_indent=indent + "     ",
                )
            )
    counts = {v: sum(1 for r in results if r.verdict is v) for v in Verdict}
    lines.append("")
    lines.append(
        f"{counts[Verdict.OK]} ok, {counts[Verdict.WARN]} warning(s), "
        f"{counts[Verdict.FAIL]} failure(s), {counts[Verdict.SKIPPED]} skipped"
    )
    return "\n".join(lines)
