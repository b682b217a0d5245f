"""How long a new leader takes to move every hybrid pod CIDR route to its ENI.

Runs the EC2 emulator (moto server) on loopback behind a proxy that adds `--latency-ms` to every
call (EC2 API calls take tens to hundreds of milliseconds in reality; the emulator answers in
about one). `--tables` route tables each hold `--cidrs` pod-CIDR routes pointing at gateway A;
then, in the same run:

- ours: gateway B's route owner, prepared at start like every replica (primary ENI and tables
  resolved before the timer starts), then the failover itself: ONE DescribeRouteTables for all
  tables and only the wrong routes replaced, in parallel;
- reference: the reference implementation's algorithm, describe + replace per table per CIDR,
  one call at a time.

Prints a few lines, then as its LAST line one JSON object with tables, cidrs, latency_ms,
switch_s, ec2_calls, sequential_s, sequential_calls.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from hybrid_gateway.adapters.ec2 import Ec2Routes, make_client
from hybrid_gateway.leader.routes import RouteOwner
from hybrid_gateway.metrics import GatewayMetrics
from hybrid_gateway_testkit.ec2emu import Ec2Proxy, ec2_client, moto_ec2, point_all, seed_world


def reference_switch(client: Any, tables: list[str], cidrs: list[str], eni: str) -> None:
    """The reference's loop: for each table, for each CIDR, describe the table, then replace."""
    for table in tables:
        for cidr in cidrs:
            client.describe_route_tables(RouteTableIds=[table])
            client.replace_route(
                RouteTableId=table, DestinationCidrBlock=cidr, NetworkInterfaceId=eni
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--cidrs", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    if not (1 <= args.tables <= 200 and 1 <= args.cidrs <= 50 and 0 <= args.latency_ms <= 5000):
        parser.error("--tables 1-200, --cidrs 1-50, --latency-ms 0-5000")

    cidrs = [f"10.{64 + i}.0.0/16" for i in range(args.cidrs)]
    with moto_ec2() as (host, port):
        direct = ec2_client(f"http://{host}:{port}")
        world = seed_world(direct, tables=args.tables, pod_cidrs=cidrs)
        proxy = Ec2Proxy((host, port), label="bench", latency_s=args.latency_ms / 1000).start()
        os.environ.update(
            AWS_ENDPOINT_URL_EC2=proxy.url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_EC2_METADATA_DISABLED="true",
        )
        try:
            # ours: leadership acquired by B -> every route points at B's ENI
            point_all(direct, world, world.enis["a"])
            owner = RouteOwner(
                Ec2Routes(make_client("us-east-1")),
                instance_id=world.instances["b"],
                table_ids=world.table_ids,
                pod_cidrs=cidrs,
                allow_takeover=False,
                metrics=GatewayMetrics(),
            )
            owner.prepare()  # at start, on every replica: not part of the failover
            proxy.reset()
            started = time.perf_counter()
            result = owner.sync(lambda: True)
            switch_s = time.perf_counter() - started
            ours_calls = proxy.count()
            if not (result.converged and world.all_point_at(direct, "b")):
                print("ours did not converge", file=sys.stderr)
                return 1

            # the reference's algorithm, same emulator, same latency
            point_all(direct, world, world.enis["a"])
            client = make_client("us-east-1")
            proxy.reset()
            started = time.perf_counter()
            reference_switch(client, world.table_ids, cidrs, world.enis["b"])
            sequential_s = time.perf_counter() - started
            sequential_calls = proxy.count()
            if not world.all_point_at(direct, "b"):
                print("reference loop did not converge", file=sys.stderr)
                return 1
        finally:
            proxy.stop()

    print(
        f"routes moved: {args.tables} tables x {args.cidrs} CIDRs, {args.latency_ms:g} ms per call"
    )
    print(f"ours:      {switch_s:.3f} s, {ours_calls} EC2 calls")
    print(f"reference: {sequential_s:.3f} s, {sequential_calls} EC2 calls (sequential)")
    print(
        json.dumps(
            {
                "tables": args.tables,
                "cidrs": args.cidrs,
                "latency_ms": args.latency_ms,
                "switch_s": round(switch_s, 3),
                "ec2_calls": ours_calls,
                "sequential_s": round(sequential_s, 3),
                "sequential_calls": sequential_calls,
                "speedup": round(sequential_s / switch_s, 1) if switch_s else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
