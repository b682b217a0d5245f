"""The lab: its parts put together, and always cleaned up.

`Lab` is a context manager that holds the lab's parts by concern: `world` (namespaces, links,
addresses, routes), `control` (API server, EC2 emulator and proxy, VPC router, Cilium agents),
`daemons` (the gateway processes), `monitor` (what points where, over time) and `probes`.
Leaving it (normally, on an exception or on Ctrl-C) stops every process it started by pid and
deletes every namespace it created.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hybrid_gateway_testkit.lab.control import ControlPlane
from hybrid_gateway_testkit.lab.daemons import Daemons
from hybrid_gateway_testkit.lab.monitor import Monitor
from hybrid_gateway_testkit.lab.options import LabError, LabOptions
from hybrid_gateway_testkit.lab.probes import Probes
from hybrid_gateway_testkit.lab.procs import ProcessSet
from hybrid_gateway_testkit.lab.topology import LabPlan, LabWorld
from hybrid_gateway_testkit.lab.world import World
from hybrid_gateway_testkit.netns import leftover_namespaces

__all__ = ["Lab", "LabError", "LabOptions", "namespaces_of_run", "running_lab", "write_json"]

#: The lab's first line of output names the pattern of its namespaces (`hgw-<tag>-*`).
NAMESPACES_LINE = "world: namespaces"


def namespaces_of_run(output: str) -> set[str]:
    """The namespaces still present of the lab whose output this is: the lab names them
    first, as other labs may run on the same machine at the same time."""
    found = re.search(rf"^{NAMESPACES_LINE} (\S+)-\*$", output, re.M)
    if found is None:
        raise LabError(f"no {NAMESPACES_LINE!r} line in the lab's output:\n{output[:2000]}")
    return {n for n in leftover_namespaces() if n.startswith(found[1] + "-")}


class Lab:
    def __init__(self, options: LabOptions, plan: LabPlan | None = None) -> None:
        self.options = options
        self.plan = plan or LabPlan()
        self.out = options.out_dir
        self.run_dir = self.out / "run"
        self.procs = ProcessSet(self.run_dir / "logs")
        self.world = World(self.plan)
        self.control = ControlPlane(self.world, options, self.procs, self.run_dir)
        self.daemons = Daemons(self.world, self.control, options, self.procs)
        self.monitor = Monitor(self.world, self.control, options, self.run_dir)
        self.probes = Probes(self.world, options, self.procs, self.run_dir)

    def __enter__(self) -> Lab:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.options.log(f"{NAMESPACES_LINE} {self.world.namespaces}")
            self.world.build()
        except BaseException:  # __exit__ does not run when __enter__ fails: clean up here
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.monitor.stop()
        # Daemons and agents first, while the API server still answers (leases get released).
        self.procs.stop_all()
        self.control.close()
        self.world.close()

    @property
    def w(self) -> LabWorld:
        """The built world's namespaces and interfaces."""
        return self.world.w


@contextmanager
def running_lab(options: LabOptions, plan: LabPlan | None = None) -> Iterator[Lab]:
    """A lab with everything up: control, router, agents, gw-a leader, gw-b ready standby; in
    active-active mode every gateway ready and the shards spread evenly over them."""
    with Lab(options, plan) as lab:
        control, daemons, monitor = lab.control, lab.daemons, lab.monitor
        control.start_ec2()
        control.start_apiserver()
        control.start_router()
        for node in lab.plan.nodes:
            control.start_agent(node)
        monitor.start()
        if lab.plan.active_active:
            hosts = [g.name for g in lab.plan.gateways]
            for host in hosts:  # all at once: the free shards spread without hand-overs
                daemons.start(host)
            for host in hosts:
                daemons.wait_ready(host)
            _, owners = monitor.wait_shards_settled(hosts, options.start_timeout_s, spread=True)
            options.log(f"lab up (active-active): shard owners {owners}")
            yield lab
            return
        first, second = (g.name for g in lab.plan.gateways)
        daemons.start(first)
        monitor.wait_converged(first, options.start_timeout_s)
        daemons.wait_ready(first)
        daemons.start(second)
        daemons.wait_ready(second)
        options.log(f"lab up: leader {first}, standby {second}")
        yield lab


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
