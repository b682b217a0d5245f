"""The lab's outputs: the JSON report, the PNG timeline and the terminal summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybrid_gateway_testkit.lab.analysis import ProbeLog, delivery_buckets
from hybrid_gateway_testkit.lab.load import LoadSeries

BUCKET_S = 0.01


def timeline_png(
    path: Path,
    *,
    log: ProbeLog,
    cloud_ips: set[str],
    t0: float,
    t1: float,
    marks: list[tuple[float, str, str]],
    title: str,
    load: LoadSeries | None = None,
) -> None:
    """Delivered packets per 10 ms bucket, each direction, with (t, kind, label) marks; with
    `load`, also the bulk load's goodput and retransmits per bucket of its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = delivery_buckets(log, cloud_ips, t0, t1, BUCKET_S)
    colors = {
        "leader": "tab:red",
        "ec2-route": "tab:orange",
        "router": "tab:purple",
        "vtep": "tab:green",
        "action": "black",
        "load": "tab:brown",
    }
    rows = 4 if load else 2
    fig, axes = plt.subplots(rows, 1, figsize=(12, 3 * rows), sharex=True)
    for ax, direction in zip(axes, ("cloud_to_hybrid", "hybrid_to_cloud"), strict=False):
        counts = buckets[direction]
        xs = [i * BUCKET_S for i in range(len(counts))]
        ax.bar(xs, counts, width=BUCKET_S, align="edge", color="tab:blue", linewidth=0)
        ax.set_ylabel(f"{direction.replace('_', ' ')}\npackets / 10 ms")
    if load:
        goodput, retransmits, bucket = load
        for direction, color in zip(goodput, ("tab:blue", "tab:cyan"), strict=False):
            xs = [i * bucket for i in range(len(goodput[direction]))]
            axes[2].step(
                xs,
                [g / 1e6 for g in goodput[direction]],
                where="post",
                color=color,
                label=direction.replace("_", " "),
            )
            axes[3].bar(
                xs,
                retransmits[direction],
                width=bucket,
                align="edge",
                color=color,
                alpha=0.7,
                label=direction.replace("_", " "),
            )
        axes[2].set_ylabel(f"iperf3 goodput\nMbit/s per {bucket:g} s")
        axes[3].set_ylabel(f"TCP retransmits\nper {bucket:g} s")
        axes[2].legend(loc="lower right", fontsize=8)
    for ax in axes:
        seen: set[str] = set()
        for t, kind, label in marks:
            color = colors.get(kind, "gray")
            style = "--" if kind == "action" else "-"
            ax.axvline(
                t - t0,
                color=color,
                linestyle=style,
                linewidth=1.2,
                label=kind if kind not in seen else None,
            )
            seen.add(kind)
            if ax is axes[0]:
                ax.annotate(
                    label,
                    (t - t0, ax.get_ylim()[1]),
                    rotation=90,
                    fontsize=7,
                    va="top",
                    ha="right",
                    color=color,
                )
    axes[0].legend(loc="lower left", fontsize=8)
    axes[0].set_title(title)
    axes[-1].set_xlabel("seconds since the probes started")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_table(report: dict[str, Any]) -> str:
    """A short human table of the report."""
    rows: list[tuple[str, str]] = [
        ("drill", str(report["drill"])),
        ("leader before -> after", f"{report['leader_before']} -> {report['leader_after']}"),
        ("probes sent / lost", f"{report['probes_sent']} / {report['probes_lost']}"),
    ]
    for name, d in report["directions"].items():
        rows.append(
            (
                f"  {name.replace('_', ' ')}",
                f"sent {d['sent']}, lost {d['lost']}, longest gap {d['loss_window_s']:.3f} s",
            )
        )
    rows.append(("loss window (longest gap)", f"{report['loss_window_s']:.3f} s"))
    tcp = report["tcp"]
    rows.append(
        (
            "webhook calls (TCP)",
            f"{tcp['calls']} calls, {tcp['failed']} failed, "
            f"longest outage {tcp['longest_failure_s']:.3f} s",
        )
    )
    for key, value in report.get("timings_s", {}).items():
        rows.append((f"  {key}", "-" if value is None else f"{value:.3f} s after the action"))
    rows += load_rows(report.get("load"))
    rows.append(("report", str(report["report"])))
    rows.append(("plot", str(report["plot"])))
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 72 + "+"
    out = [line]
    for key, value in rows:
        out.append(f"| {key.ljust(width)} | {value[:70].ljust(70)} |")
    out.append(line)
    return "\n".join(out)


def load_rows(load: dict[str, Any] | None, *, steady: bool = True) -> list[tuple[str, str]]:
    """The bulk load's lines of the summary table (none without `--load`); without `steady`,
    only those of its failover."""
    if not load:
        return []
    rows: list[tuple[str, str]] = []
    for direction, cmp in load["steady"]["tunnel_vs_underlay"].items() if steady else ():
        under, tun = load["steady"]["underlay"][direction], load["steady"]["tunnel"][direction]
        rows.append(
            (
                f"load {direction.replace('_', ' ')}",
                f"tunnel {tun['goodput_mbit_s']:g} / underlay {under['goodput_mbit_s']:g} "
                f"Mbit/s = {cmp['goodput_ratio']}, retx {tun['retransmits']}/"
                f"{under['retransmits']}",
            )
        )
    for direction, fo in load["failover"].items():
        impact = fo["impact"]
        if "error" in impact:
            rows.append((f"  across the drill, {direction}", impact["error"]))
            continue
        rows.append(
            (
                f"  across the drill, {direction}",
                f"{impact['pre_failure_median_mbit_s']:g} Mbit/s; <50 % {impact['below_half_s']:g}"
                f" s; 90 % at +{impact['recovery_s']} s; retx {impact['retransmits_failure']}",
            )
        )
    return rows
