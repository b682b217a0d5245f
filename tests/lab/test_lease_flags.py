"""The lab's lease timings: the renew deadline and retry period follow the lease duration
(2/3, 1/3) unless given, so a drill can run the timings an operator would choose."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_gateway_contract import Env
from hybrid_gateway_testkit.lab.__main__ import main as lab_main
from hybrid_gateway_testkit.lab.lab import LabOptions


def test_renew_deadline_and_retry_period_follow_the_lease_unless_given(tmp_path: Path) -> None:
    def env(**kwargs: float) -> dict[str, str]:
        return LabOptions(out_dir=tmp_path, log=lambda _: None, **kwargs).lease_env()  # type: ignore[arg-type]

    assert env() == {}
    assert env(lease_duration_s=3.0) == {
        Env.LEASE_DURATION: "3s",
        Env.RENEW_DEADLINE: "2s",
        Env.RETRY_PERIOD: "1s",
    }
    assert env(lease_duration_s=1.0, renew_deadline_s=0.6, retry_period_s=0.15) == {
        Env.LEASE_DURATION: "1s",
        Env.RENEW_DEADLINE: "0.6s",
        Env.RETRY_PERIOD: "0.15s",
    }


def test_the_cli_refuses_a_renew_deadline_without_a_lease_duration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        lab_main(["--drill", "kill-leader", "--renew-deadline", "0.6"])
    assert exc.value.code == 2
    assert "need --lease-duration" in capsys.readouterr().err
