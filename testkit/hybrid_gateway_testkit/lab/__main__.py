"""`python -m hybrid_gateway_testkit.lab --drill NAME`: run one failover drill in the lab.

The last line printed is one JSON object (drill, loss_window_s, probes_sent, probes_lost,
leader_before, leader_after, report, plot). Needs root (it creates network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from hybrid_gateway_testkit.lab.drills import DRILLS
from hybrid_gateway_testkit.lab.lab import LabOptions
from hybrid_gateway_testkit.lab.runner import DrillSettings, default_out_dir, last_line, run_drill


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybrid_gateway_testkit.lab", description=__doc__
    )
    parser.add_argument("--drill", required=True, choices=sorted(DRILLS))
    parser.add_argument("--out", type=Path, default=None, help="default lab-out/<drill>-<time>")
    parser.add_argument(
        "--lease-duration",
        type=_positive,
        default=None,
        help="lease seconds (renew 2/3, retry 1/3 of it); default: daemon's 3 s",
    )
    parser.add_argument(
        "--propagation-delay",
        type=_non_negative,
        default=0.5,
        help="VPC route propagation delay of the lab's router, seconds",
    )
    parser.add_argument("--rate", type=_positive, default=100.0, help="UDP probes/s each way")
    parser.add_argument("--baseline", type=_positive, default=3.0, help="seconds before the drill")
    parser.add_argument("--after", type=_positive, default=3.0, help="seconds after convergence")
    parser.add_argument("--timeout", type=_positive, default=30.0, help="convergence timeout")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab creates network namespaces: run it as root", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    options = LabOptions(
        out_dir=args.out or default_out_dir(args.drill),
        lease_duration_s=args.lease_duration,
        propagation_delay_s=args.propagation_delay,
        rate=args.rate,
    )
    settings = DrillSettings(args.drill, args.baseline, args.after, args.timeout)
    try:
        report = run_drill(options, settings)
    except KeyboardInterrupt:
        print("interrupted: lab processes stopped and namespaces removed", file=sys.stderr)
        return 130
    except Exception as exc:  # cleanup has run; say what failed, in one line too
        print(f"lab failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(json.dumps({"drill": args.drill, "error": str(exc)}))
        return 1
    print(json.dumps(last_line(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
