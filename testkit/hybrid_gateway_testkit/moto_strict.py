"""moto made as strict as EC2 where the gateway depends on it, applied wherever moto runs.

One source/destination check flag per primary ENI. EC2 keeps ONE flag for an instance's
primary network interface: ModifyInstanceAttribute `SourceDestCheck` sets it, and it shows as
the interface's `SourceDestCheck` in DescribeInstances / DescribeNetworkInterfaces, and the
other way round (EC2 API reference, ModifyInstanceAttribute: "SourceDestCheck ... enable or
disable source/destination checks"; EC2 user guide, "Change the source or destination checking":
the instance attribute is the primary network interface's setting). moto
(moto/ec2/models/instances.py `Instance.source_dest_check`,
moto/ec2/models/elastic_network_interfaces.py `NetworkInterface.source_dest_check`) keeps two
independent copies, so an operator's `aws ec2 modify-instance-attribute --source-dest-check` never
reached the interface the daemon reads. Here the instance's attribute IS its primary ENI's.

`python -m hybrid_gateway_testkit.moto_strict -H HOST -p PORT` runs moto_server with this applied
(the lab); `apply()` patches an in-process server (tests' `ec2emu.moto_ec2`).
"""

from __future__ import annotations

import sys
from typing import Any

_APPLIED = "_hybrid_gateway_one_flag"


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def apply() -> None:
    """Make `Instance.source_dest_check` the primary ENI's flag (idempotent)."""
    from moto.ec2.models.instances import Instance

    if getattr(Instance, _APPLIED, False):
        return

    def get(self: Any) -> bool:
        primary = (self.__dict__.get("nics") or {}).get(0)
        if primary is not None:
            return bool(primary.source_dest_check)
        return bool(self.__dict__.get("_source_dest_check", True))

    def put(self: Any, value: Any) -> None:
        flag = _as_bool(value)
        self.__dict__["_source_dest_check"] = flag
        primary = (self.__dict__.get("nics") or {}).get(0)
        if primary is not None:
            primary.source_dest_check = flag

    Instance.source_dest_check = property(get, put)  # type: ignore[assignment]
    setattr(Instance, _APPLIED, True)


def main(argv: list[str]) -> None:
    apply()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
