"""`python -m hybrid_gateway_testkit.lab --drill NAME`: run one failover drill in the lab.

The last line printed is one JSON object (drill, loss_window_s, probes_sent, probes_lost,
leader_before, leader_after, report, plot; with `--load iperf3` the load's headline figures
under `load`; in active-active mode victim, moved_shards and
per_shard owners, loss and time to move instead of the leaders). Needs root (it creates
network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

from hybrid_gateway_contract.sharding import GatewayMode
from hybrid_gateway_testkit.lab.active_active import ActiveActive
from hybrid_gateway_testkit.lab.active_standby import ActiveStandby
from hybrid_gateway_testkit.lab.agent import VTEP_MATCHES
from hybrid_gateway_testkit.lab.drills import DRILLS, SHARDED_DRILLS
from hybrid_gateway_testkit.lab.lab import LabOptions
from hybrid_gateway_testkit.lab.load import IPERF3, LoadSettings
from hybrid_gateway_testkit.lab.runner import DrillSettings, Mode, default_out_dir, run_drill
from hybrid_gateway_testkit.lab.topology import active_active_plan, sequential_plan


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


def configure(argv: list[str] | None = None) -> tuple[LabOptions, DrillSettings, Mode]:
    """The run the command line asks for; a bad argument exits with its usage error (2)."""
    parser = argparse.ArgumentParser(
        prog="python -m hybrid_gateway_testkit.lab", description=__doc__
    )
    parser.add_argument("--drill", required=True, choices=sorted({*DRILLS, *SHARDED_DRILLS}))
    parser.add_argument(
        "--mode",
        choices=[m.value for m in GatewayMode],
        default=GatewayMode.ACTIVE_STANDBY.value,
        help="the gateways' MODE; active-active runs kill-owner, active-standby the others",
    )
    parser.add_argument(
        "--shards", type=int, default=4, help="active-active: SHARDS (2, 4 or 8; default 4)"
    )
    parser.add_argument(
        "--gateways", type=int, default=2, choices=(2, 3), help="active-active: gateway hosts"
    )
    parser.add_argument(
        "--sequential-nodes",
        type=int,
        default=None,
        metavar="N",
        help="active-active: N hybrid nodes whose pod CIDRs Cilium's cluster-pool IPAM "
        "allocated in order from the pool's start (all in one shard of the equal cut; the "
        "daemons spread the forward prefixes over them) instead of one node per shard",
    )
    parser.add_argument(
        "--vtep-match",
        choices=VTEP_MATCHES,
        default="hash",
        help="how the hybrid nodes match VTEP endpoints: Cilium's hash under one mask "
        "(spec.cidrMask) or a longest-prefix trie",
    )
    parser.add_argument("--out", type=Path, default=None, help="default lab-out/<drill>-<time>")
    parser.add_argument(
        "--lease-duration",
        type=_positive,
        default=None,
        help="lease seconds (renew 2/3, retry 1/3 of it); default: daemon's 3 s",
    )
    parser.add_argument(
        "--renew-deadline",
        type=_positive,
        default=None,
        help="with --lease-duration: renew deadline seconds instead of 2/3 of the lease",
    )
    parser.add_argument(
        "--retry-period",
        type=_positive,
        default=None,
        help="with --lease-duration: retry period seconds instead of 1/3 of the lease",
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
    parser.add_argument(
        "--api-outage",
        type=_positive,
        default=60.0,
        help="control-plane-upgrade: seconds the Kubernetes API is unreachable (default 60)",
    )
    parser.add_argument(
        "--load",
        choices=("iperf3",),
        default=None,
        help="bulk TCP load both ways (iperf3): underlay vs tunnel, then across the drill",
    )
    parser.add_argument(
        "--load-seconds", type=_positive, default=5.0, help="--load: each steady phase"
    )
    parser.add_argument(
        "--load-failover-seconds",
        type=_positive,
        default=15.0,
        help="--load: how long the load runs on after --baseline, across the drill",
    )
    args = parser.parse_args(argv)
    active_active = args.mode == GatewayMode.ACTIVE_ACTIVE.value
    if args.load and shutil.which(IPERF3) is None:
        parser.error(
            f"--load {args.load}: {IPERF3} is not installed (make system-deps installs it)"
        )
    if active_active != (args.drill in SHARDED_DRILLS):
        parser.error(
            f"--drill {args.drill} needs --mode "
            f"{'active-active' if args.drill in SHARDED_DRILLS else 'active-standby'}"
        )
    if args.lease_duration is None and (args.renew_deadline or args.retry_period):
        parser.error("--renew-deadline and --retry-period need --lease-duration")
    if args.sequential_nodes is not None and not active_active:
        parser.error("--sequential-nodes needs --mode active-active")
    plan = None
    if active_active:
        try:
            if args.sequential_nodes is None:
                plan = active_active_plan(shards=args.shards, gateways=args.gateways)
            else:
                plan = sequential_plan(
                    nodes=args.sequential_nodes, shards=args.shards, gateways=args.gateways
                )
        except ValueError as exc:
            parser.error(str(exc))
    options = LabOptions(
        out_dir=args.out or default_out_dir(args.drill),
        lease_duration_s=args.lease_duration,
        renew_deadline_s=args.renew_deadline,
        retry_period_s=args.retry_period,
        propagation_delay_s=args.propagation_delay,
        rate=args.rate,
        vtep_match=args.vtep_match,
        # the webhook probe speaks TLS where the drill is about the API's own webhook path
        webhook_tls=args.drill == "control-plane-upgrade",
        api_outage_s=args.api_outage,
    )
    load = None
    if args.load:
        load = LoadSettings(steady_s=args.load_seconds, failover_s=args.load_failover_seconds)
    settings = DrillSettings(args.drill, args.baseline, args.after, args.timeout, load)
    mode: Mode = ActiveStandby() if plan is None else ActiveActive(plan)
    return options, settings, mode


def main(argv: list[str] | None = None) -> int:
    options, settings, mode = configure(argv)
    if os.geteuid() != 0:
        print("the lab creates network namespaces: run it as root", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C stops the lab whatever SIGINT disposition it inherited: CPython raises
    # KeyboardInterrupt on SIGINT only if the parent left it at SIG_DFL (Doc/library/signal.rst,
    # bpo-28795; Modules/signalmodule.c installs default_int_handler only then), and a
    # background job of a non-interactive shell starts with SIGINT ignored (bash(1) SIGNALS;
    # POSIX Shell Command Language 2.11): such a lab ran its drill to the end and exited 0.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        report = run_drill(options, settings, mode)
    except KeyboardInterrupt:
        print("interrupted: lab processes stopped and namespaces removed", file=sys.stderr)
        return 130
    except Exception as exc:  # cleanup has run; say what failed, in one line too
        print(f"lab failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(json.dumps({"drill": settings.drill, "error": str(exc)}))
        return 1
    print(json.dumps(mode.last_line(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
