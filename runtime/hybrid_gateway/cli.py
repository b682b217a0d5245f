"""`hybrid-gateway run [flags]`: the command the gateway image starts; `preflight`, `status`
and `cleanup` are the operator's commands (hybrid_gateway.ops).

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 2 for a configuration error (one line
naming the variable and its value), 1 when start-up fails for another reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from hybrid_gateway.config import ConfigError, build_parser, load_config

USAGE = (
    "usage: hybrid-gateway run [--no-dataplane] [--FLAG VALUE ...]  (hybrid-gateway run --help)\n"
    "       hybrid-gateway preflight | status | cleanup [--cluster NAME] [...]  (... --help)\n"
    "       hybrid-gateway account-check --cluster NAME [...] [--execute]  (... --help)"
)
OPS_COMMANDS = ("preflight", "status", "cleanup")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in OPS_COMMANDS:
        from hybrid_gateway.ops.cli import main as ops_main

        return ops_main(command, rest)
    if command == "account-check":
        from hybrid_gateway.ops.account_check import main as account_check_main

        return account_check_main(rest)
    if command != "run":
        expected = ", ".join(("run", *OPS_COMMANDS, "account-check"))
        print(
            f"hybrid-gateway: unknown command {command!r} (expected: {expected})", file=sys.stderr
        )
        return 2
    if any(a in ("-h", "--help") for a in rest):
        build_parser().print_help()
        return 0
    try:
        config = load_config(os.environ, rest)
    except ConfigError as exc:
        print(f"hybrid-gateway: {exc}", file=sys.stderr)
        return 2
    from hybrid_gateway.daemon import run  # heavy imports only once the config is valid

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
